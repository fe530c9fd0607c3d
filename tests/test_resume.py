"""A killed run, relaunched with the same command, continues and ends as the run that was not killed."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import TINY, run_rsbench
from killer import logged_steps

pytestmark = pytest.mark.slow

TESTS = str(Path(__file__).resolve().parent)
RUN = ["dataset=eurosat", "backbone=resnet18", "dataset.sample=true", "+dataset.sample_kwargs.per_class=6",
       *[a for a in TINY if not a.startswith("trainer.max_epochs")], "trainer.max_epochs=3",
       "sched.warmup_epochs=1", "+callbacks.steps._target_=killer.StepLog", "+callbacks.kill._target_=killer.KillAt",
       "+callbacks.kill.epoch=1", "+callbacks.kill.batch=1"]
ENV = {"PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
KILL = {**ENV, "RSBENCH_TEST_KILL": "1"}
RUN_DIR = "results/runs/cls/eurosat/resnet18/default-s0"


def _record(tmp: Path) -> dict:
    return json.loads((tmp / RUN_DIR / "metrics.json").read_text())


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict:
    """The record of the run that was not interrupted."""
    tmp = tmp_path_factory.mktemp("whole")
    run_rsbench(RUN, tmp, env=ENV)
    return _record(tmp)


@pytest.mark.parametrize("stage", ["train", "test"])
def test_sigkill_then_relaunch_ends_as_the_uninterrupted_run(tmp_path, whole, stage):
    args = RUN if stage == "train" else [*RUN, "+callbacks.kill.stage=test", "callbacks.kill.batch=0"]
    proc = run_rsbench(args, tmp_path, check=False, env=KILL)
    assert proc.returncode == -9 and _record(tmp_path)["status"] == "running"
    ckpt = tmp_path / RUN_DIR / "checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == (0 if stage == "train" else 2)
    steps = tmp_path / "steps.txt"
    again = run_rsbench(args, tmp_path, env={**ENV, "RSBENCH_TEST_STEPLOG": str(steps)})
    assert "resuming the unfinished run" in again.stdout + again.stderr
    rec = _record(tmp_path)
    assert rec["status"] == "ok" and rec["resumed_from"] == str(ckpt)
    assert rec["metrics"]["confusion_matrix"] == whole["metrics"]["confusion_matrix"]
    assert rec["metrics"]["OA"] == whole["metrics"]["OA"]
    assert rec["epochs"] == whole["epochs"] == 3  # the record counts the whole run, not only the resumed part
    # the relaunch trains on from the checkpoint's step (a run restarted from scratch, deterministic, would
    # end with the same metrics; only the steps it trained tell them apart)
    done = state["global_step"]
    trained = logged_steps(steps)
    if stage == "train":
        assert done > 0 and trained and trained[0] == done and trained == list(range(done, done + len(trained)))
    else:  # killed while testing: training had ended, nothing is trained again
        assert trained == []


def test_sigterm_saves_records_interrupted_exits_143_and_resumes(tmp_path):
    args = [*RUN, "+callbacks.kill.signame=SIGTERM"]
    proc = run_rsbench(args, tmp_path, check=False, env=KILL)
    rec = _record(tmp_path)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert rec["status"] == "interrupted" and "SIGTERM" in rec["error"]
    ckpt = tmp_path / RUN_DIR / "checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert state["epoch"] == 1 and state["global_step"] > 0  # saved at the signal, mid-epoch 1
    steps = tmp_path / "steps.txt"
    run_rsbench(args, tmp_path, env={**ENV, "RSBENCH_TEST_STEPLOG": str(steps)})
    assert logged_steps(steps)[0] == state["global_step"]  # on from the signal's step, not from step 0
    rec = _record(tmp_path)
    assert rec["status"] == "ok" and rec["epochs"] == 3 and rec["resumed_from"] == str(ckpt)


def test_whole_state_kept_on_request_loads_with_weights_only(tmp_path):
    """checkpoint.keep=last keeps the resumable state: plain types and tensors only (no OmegaConf, no pickles)."""
    run_rsbench([*RUN[:-3], "trainer.max_epochs=1", "callbacks.checkpoint.keep=last"], tmp_path, env=ENV)
    ckpts = tmp_path / RUN_DIR / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["last.ckpt"]
    state = torch.load(ckpts / "last.ckpt", weights_only=True, map_location="cpu")
    assert state["hyper_parameters"]["num_classes"] == 10 and "optimizer_states" in state and "loops" in state


def test_cluster_requeue_signal_saves_at_the_batch_hands_over_and_resumes_exactly(tmp_path, whole):
    """A requeue signal under a cluster tool's handler (submitit's SIGUSR2, faked): the state is saved at the
    end of the batch, the tool's handler then runs (it "requeues"), the record says interrupted, exit 140;
    the requeued run resumes from that batch and ends as the run that was never interrupted."""
    marker = tmp_path / "requeued.txt"
    args = [*RUN[:-3], "+callbacks.kill._target_=killer.FakeSubmitit", "+callbacks.kill.epoch=1",
            "+callbacks.kill.batch=1", f"+callbacks.kill.marker={marker}"]
    proc = run_rsbench(args, tmp_path, check=False, env=KILL)
    assert proc.returncode == 140, proc.stderr[-3000:]
    assert marker.read_text().startswith("requeued at epoch 1")
    rec = _record(tmp_path)
    assert rec["status"] == "interrupted" and "SIGUSR2" in rec["error"]
    state = torch.load(tmp_path / RUN_DIR / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert state["epoch"] == 1 and state["global_step"] > 0  # saved mid-epoch, at the batch's end
    run_rsbench(args, tmp_path, env=ENV)
    rec = _record(tmp_path)
    assert rec["status"] == "ok" and rec["epochs"] == whole["epochs"]
    assert rec["metrics"]["confusion_matrix"] == whole["metrics"]["confusion_matrix"]


def test_a_resumed_run_continues_its_wandb_run_and_a_fresh_start_draws_a_new_id(tmp_path):
    """logger=wandb (offline): the relaunch after SIGTERM logs under the wandb run id of the interrupted
    launch (kept in <run>/wandb_id, resume="allow"), so a requeued job does not split its curves over two
    wandb runs; a run that does not resume (force=true) gets a new id."""
    from test_plots import _wandb_records

    args = [*RUN, "+callbacks.kill.signame=SIGTERM", "logger=wandb"]
    wenv = {"WANDB_MODE": "offline", "WANDB_CONSOLE": "off"}
    assert run_rsbench(args, tmp_path, check=False, env={**KILL, **wenv}).returncode == 143
    run_rsbench(args, tmp_path, env={**ENV, **wenv})
    run_dir = tmp_path / RUN_DIR

    def ids() -> list[str]:
        files = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb")))
        return [next(r.run for r in _wandb_records(Path(f)) if r.WhichOneof("record_type") == "run").run_id
                for f in files]

    first = ids()
    assert len(first) == 2 and first[0] == first[1] == (run_dir / "wandb_id").read_text().strip()
    from rsbench.tracking import wandb_run_id

    fresh = wandb_run_id(run_dir, resume=False)  # what a force=true rerun (no resume) is given
    assert fresh not in first and (run_dir / "wandb_id").read_text().strip() == fresh
    assert wandb_run_id(run_dir, resume=True) == fresh


def test_an_unreadable_wandb_id_file_is_named_and_replaced(tmp_path, caplog):
    from rsbench.tracking import WANDB_ID_FILE, wandb_run_id

    (tmp_path / WANDB_ID_FILE).write_text("not an id!\n")
    with caplog.at_level("WARNING", logger="rsbench.tracking"):
        new = wandb_run_id(tmp_path, resume=True)
    assert new.isalnum() and (tmp_path / WANDB_ID_FILE).read_text().strip() == new
    assert str(tmp_path / WANDB_ID_FILE) in caplog.text and "new wandb run" in caplog.text
