"""Every sweep member leaves a true record: failures before training too, a DataLoader worker's error with
its file name, colour codes stripped; the data root's name is part of a run's identity; a job that does not
run leaves the finished run's files as they were; the members an interrupt left out are listed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import TINY, run_rsbench

from rsbench.errors import DataError, error_text, unwrap_worker_error
from rsbench.results import RunRecord, config_hash, write_failure_before_start

CFG = {"dataset": {"name": "levir", "root": "/data/levir"}, "data": {"batch_size": 8}}


class _Broken:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        raise DataError(f"/data/eurosat/2750/Forest/Forest_{i}.jpg: not a readable image (truncated)")


def _worker_error() -> BaseException:
    from torch.utils.data import DataLoader

    with pytest.raises(DataError) as e:
        next(iter(DataLoader(_Broken(), batch_size=2, num_workers=1)))
    return e.value


def test_a_worker_error_keeps_its_type_and_the_file_name():
    e = _worker_error()
    assert str(e).startswith("Caught DataError in DataLoader worker process 0")  # what torch gives
    assert error_text(e) == "DataError: /data/eurosat/2750/Forest/Forest_0.jpg: not a readable image (truncated)"
    original = unwrap_worker_error(e)
    assert type(original) is DataError and str(original).startswith("/data/eurosat/2750/Forest/Forest_0.jpg")


def test_the_record_of_a_failure_has_no_colour_codes_and_the_original_error(tmp_path):
    rec = RunRecord(tmp_path, CFG, {"task": "cd"})
    rec.start()
    out = rec.fail(RuntimeError("\x1b[31mCUDA out of memory\x1b[0m"))
    assert out["error"] == "RuntimeError: CUDA out of memory" and "\x1b" not in out["traceback"]
    assert rec.fail(_worker_error())["error"].startswith("DataError: /data/eurosat/2750/Forest/Forest_0.jpg")


def test_the_data_roots_name_is_part_of_the_identity():
    def h(root: str) -> str:
        return config_hash({**CFG, "dataset": {**CFG["dataset"], "root": root}})

    assert h("/data/levir_v1") != h("/data/levir_v2")  # a sweep over roots: one run each
    assert h("/data/levir") == h("/scratch/levir/") == h("/data/./levir")  # moving the folder keeps the runs


def test_a_record_written_before_the_root_was_hashed_is_still_this_run(tmp_path):
    import yaml

    rec = RunRecord(tmp_path, CFG, {"task": "cd"})
    rec.start()
    rec.finish({"F1": 1.0}, {})
    old = json.loads(rec.metrics_path.read_text())
    rec.metrics_path.write_text(json.dumps({**old, "config_hash": "0123456789abcdef"}))  # the old hash
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == CFG
    assert RunRecord(tmp_path, CFG, {"task": "cd"}).plan(tmp_path / "last.ckpt")[0] == "skip"


def test_a_failure_before_training_is_recorded_and_does_not_hold_the_folder(tmp_path):
    path = write_failure_before_start(tmp_path, {"task": "cd", "seed": 0}, DataError("data root /x does not exist"))
    rec = json.loads(path.read_text())
    assert (rec["status"], rec["stage"], rec["error"]) == ("failed", "before training",
                                                           "DataError: data root /x does not exist")
    other = {**CFG, "data": {"batch_size": 4}}  # a later run with another config takes the folder
    assert RunRecord(tmp_path, other, {"task": "cd"}).plan(tmp_path / "last.ckpt") == ("start", None)
    done = RunRecord(tmp_path, other, {"task": "cd"})
    done.start()
    done.finish({"F1": 1.0}, {})
    assert write_failure_before_start(tmp_path, {"task": "cd"}, DataError("x")) is None  # never over a run
    assert json.loads(path.read_text())["status"] == "ok"


def test_a_job_that_runs_nothing_leaves_the_finished_runs_files(tmp_path):
    """Hydra rewrote .hydra/*.yaml and the job logged into run.log: both back as the finished run left them."""
    from rsbench.app import _Job

    hydra = tmp_path / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("- dataset.root=A\n")
    rec = RunRecord(tmp_path, CFG, {"task": "cd"})
    rec.start()  # keeps Hydra's files of the run
    rec.finish({"F1": 1.0}, {})
    (tmp_path / "run.log").write_text("the run's log\n")
    job = _Job.begin(tmp_path)
    (hydra / "overrides.yaml").write_text("- dataset.root=B\n")  # what Hydra writes for the next job
    handler = logging.FileHandler(tmp_path / "run.log", delay=True)
    logging.getLogger().addHandler(handler)
    try:
        logging.getLogger("rsbench").warning("a line of the job that ran nothing")
        job.leave_untouched()
    finally:
        logging.getLogger().removeHandler(handler)
    assert (hydra / "overrides.yaml").read_text() == "- dataset.root=A\n"
    assert (tmp_path / "run.log").read_text() == "the run's log\n"


def test_members_not_run_after_an_interrupt():
    from rsbench.app import members_not_run

    argv = ["-m", "dataset=eurosat", "seed=0,1", "backbone.name=a,b", "data.num_workers=0"]
    assert members_not_run(argv, job_num=1) == ["seed=1 backbone.name=a", "seed=1 backbone.name=b"]
    assert members_not_run(argv, job_num=3) == []


def test_lightning_lines_are_printed_once():
    import lightning  # noqa: F401

    from rsbench.app import one_console_line_each

    root = logging.getLogger()
    added = logging.StreamHandler() if not root.handlers else None
    if added:
        root.addHandler(added)
    try:
        one_console_line_each()
        assert not [h for h in logging.getLogger("lightning").handlers if type(h) is logging.StreamHandler]
    finally:
        if added:
            root.removeHandler(added)


def test_a_headline_metric_of_none_is_a_warning_in_the_record(caplog):
    from omegaconf import OmegaConf

    from rsbench.app import _missing_metric

    c = OmegaConf.create({"task": {"metric": "mIoU"}, "dataset": {"splits": {"test": "val"}}})
    with caplog.at_level("WARNING", logger="rsbench"):
        warnings = _missing_metric(c, {"mIoU": None, "OA": None})
    assert warnings and "mIoU = None" in warnings[0] and "'val'" in warnings[0] and "mIoU = None" in caplog.text
    assert _missing_metric(c, {"mIoU": 50.0}) == []


@pytest.mark.slow
def test_sweep_over_roots_records_each_member_and_its_failure(tmp_path, samples):
    """Three roots, a folder each (tag from the root's name): one good, one missing (fails before training),
    one with a truncated image read in a DataLoader worker; each has a record and a leaderboard line."""
    good = tmp_path / "good"
    shutil.copytree(samples("eurosat"), good)
    broken = tmp_path / "broken"
    shutil.copytree(samples("eurosat"), broken)
    for jpg in sorted((broken / "2750").glob("*/*.jpg")):
        jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])  # the header passes, the pixels do not
    missing = tmp_path / "missing"
    tiny = [a for a in TINY if not a.startswith("data.num_workers")]
    proc = run_rsbench(["-m", "dataset=eurosat", "backbone=resnet18", *tiny, "data.num_workers=1",
                        "data.full_check_max_samples=0",  # no full read before training: the worker meets the file
                        f"dataset.root={good},{missing},{broken}", "tag='${rsbench_basename:${dataset.root}}'"],
                       tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    runs = tmp_path / "results/runs/cls/eurosat/resnet18"
    recs = {t: json.loads((runs / f"{t}-s0" / "metrics.json").read_text()) for t in ("good", "missing", "broken")}
    assert recs["good"]["status"] == "ok"
    assert recs["missing"]["status"] == "failed" and recs["missing"]["stage"] == "before training"
    assert f"data root {missing} does not exist" in recs["missing"]["error"]
    assert recs["broken"]["status"] == "failed" and recs["broken"]["error"].startswith(f"DataError: {broken}")
    assert "Caught" not in recs["broken"]["error"] and ".jpg" in recs["broken"]["error"].splitlines()[0]
    assert "Caught DataError" not in proc.stderr and f"DataError: {broken}" in proc.stderr
    board = (tmp_path / "results/leaderboard.md").read_text().split("## Failed or unfinished runs")[1]
    assert "| missing | 0 | failed | DataError: dataset 'eurosat': data root" in board and f"| broken | 0 | failed | DataError: {broken}" in board
    assert Path(recs["good"]["run_dir"]).name == "good-s0"


@pytest.mark.parametrize("status", ["running", "interrupted"])
def test_an_unfinished_run_with_its_checkpoint_is_resumed_from_it(tmp_path, status):
    """The relaunch of an unfinished run hands its checkpoint to the training function (Lightning's
    ``ckpt_path``) and keeps the first start's time; without a checkpoint it starts over."""
    first = RunRecord(tmp_path, CFG, {"task": "cd"})
    first.start()
    if status != "running":  # "running": killed, no record update
        first.fail(RuntimeError("stopped"), status=status)
    started = json.loads(first.metrics_path.read_text())["started"]
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert RunRecord(tmp_path, CFG, {"task": "cd"}).plan(ckpt)[0] == "start"  # no checkpoint (yet)
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"state")
    action, prev = RunRecord(tmp_path, CFG, {"task": "cd"}).plan(ckpt)
    assert action == "resume" and prev["status"] == status
    calls = []
    rec = RunRecord(tmp_path, CFG, {"task": "cd"}).execute(lambda resume: (calls.append(resume), ({"F1": 1.0}, {}))[1],
                                                          checkpoint=ckpt)
    assert calls == [str(ckpt)] and rec["resumed_from"] == str(ckpt) and rec["status"] == "ok"
    assert rec["started"] == started and ckpt.is_file()
    # finished: the same command again trains nothing
    calls.clear()
    again = RunRecord(tmp_path, CFG, {"task": "cd"}).execute(lambda resume: calls.append(resume), checkpoint=ckpt)
    assert calls == [] and again["skipped"] is True
