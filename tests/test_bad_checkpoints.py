"""A bad checkpoint through the CLI: a pretrained file that is truncated, not a checkpoint, or of another model,
and a truncated resume checkpoint, each end the run with rsbench's message (the file, what is wrong, what to do)
and exit 2: no Hydra "Error in call to target", no traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import TINY, run_rsbench

pytestmark = pytest.mark.slow

TESTS = str(Path(__file__).resolve().parent)


def _write_bad(path: Path, kind: str) -> str:
    """A bad ``backbone.pretrained`` file for resnet18; returns what the message must say is wrong."""
    if kind == "truncated":
        torch.save({f"w{i}": torch.randn(64, 64) for i in range(8)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return "truncated or corrupt"
    if kind == "not a checkpoint":
        path.write_text("label,count\nforest,12\n")
        return "not a PyTorch checkpoint"
    import timm

    torch.save(timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict(), path)  # another model
    return "do not fit the model (size mismatch"


@pytest.mark.parametrize("kind", ["truncated", "not a checkpoint", "wrong model"])
def test_bad_pretrained_file_is_a_clear_exit_2(tmp_path, samples, kind):
    bad = tmp_path / "weights.pth"
    what = _write_bad(bad, kind)
    proc = run_rsbench(["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}",
                        f"backbone.pretrained={bad}", *TINY], tmp_path, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert str(bad) in out and what in out and "backbone.pretrained=none" in out
    assert "Traceback" not in out and "Error in call to target" not in out
    # found before training: no run record is left behind (fixing the file is not a "different config")
    assert not list((tmp_path / "results").glob("runs/**/metrics.json"))


def test_truncated_resume_checkpoint_names_it_and_says_force(tmp_path, samples):
    run = ["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}",
           *[a for a in TINY if not a.startswith("trainer.max_epochs")], "trainer.max_epochs=2",
           "+callbacks.kill._target_=killer.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=0"]
    env = {"PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    killed = run_rsbench(run, tmp_path, check=False, env={**env, "RSBENCH_TEST_KILL": "1"})
    assert killed.returncode == -9  # SIGKILL in epoch 1: last.ckpt holds epoch 0's end
    run_dir = tmp_path / "results/runs/cls/eurosat/resnet18/default-s0"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])

    proc = run_rsbench(run, tmp_path, check=False, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert f"the resume checkpoint {ckpt} cannot be read" in out and "truncated or corrupt" in out
    assert "force=true" in out and "Traceback" not in out
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "running"  # the record left as it was

    run_rsbench([*run, "force=true"], tmp_path, env=env)  # the advice works: the run starts again and finishes
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["epochs"] == 2
