"""Multi-process training through Lightning's DDP (``trainer=ddp``; two CPU processes over gloo here): the
recipe's total batch is kept whatever the process count, by the per-process share or by gradient
accumulation, and the trained weights are those of one process on the same data and total batch."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_rsbench

pytestmark = pytest.mark.slow

#: a BatchNorm-free tiny ViT (LayerNorm only, no drop-path) without augmentation: nothing random in a step
TINY = ["dataset=eurosat", "dataset.sample=true", "backbone=vitb_rvsa", "backbone.pretrained=none",
        "+backbone.kwargs.embed_dim=32", "+backbone.kwargs.depth=2", "+backbone.kwargs.num_heads=2",
        "+backbone.kwargs.out_indices=[0,1]", "+backbone.kwargs.interval=2", "backbone.kwargs.drop_path_rate=0",
        "trainer=ddp", "trainer.accelerator=cpu", "trainer.max_epochs=1", "data.img_size=112", "data.num_workers=0",
        "logger=none", "trainer.enable_progress_bar=false", "sched.warmup_epochs=0", "callbacks.plots.num=0",
        "+data.transform_kwargs.train_aug=false"]


def _run(tmp_path, tag: str, *extra: str) -> tuple[dict, dict[str, torch.Tensor]]:
    run_rsbench([*TINY, f"tag={tag}", *extra], tmp_path)
    rec = json.loads((tmp_path / f"results/runs/cls/eurosat/vitb_rvsa/{tag}-s0/metrics.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    sd = torch.load(rec["checkpoint"], map_location="cpu", weights_only=True)
    return rec, sd.get("state_dict", sd)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_processes_equal_one_with_the_same_total_batch(tmp_path):
    """Total batch 4: two processes x 2 (gradients averaged over gloo), one process x 4, and one process x 2
    with two accumulation steps see the same 4 images per optimiser step (Lightning's DistributedSampler
    gives rank r the permutation's r-th, r+2-th, ... images) and end with the same weights, to float32
    rounding; a total batch of 2 does not (the comparison can fail)."""
    two, w2 = _run(tmp_path, "ddp2", "trainer.devices=2", "data.batch_size=4")
    one, w1 = _run(tmp_path, "ddp1", "trainer.devices=1", "data.batch_size=4")
    acc, wa = _run(tmp_path, "acc2", "trainer.devices=1", "data.batch_size=4", "data.per_device_batch=2")
    assert two["batch"] == {"total": 4, "world": 2, "per_device": 2, "accumulate": 1} and two["world_size"] == 2
    assert one["batch"] == {"total": 4, "world": 1, "per_device": 4, "accumulate": 1}
    assert acc["batch"] == {"total": 4, "world": 1, "per_device": 2, "accumulate": 2}
    assert _max_diff(w2, w1) < 1e-6
    assert _max_diff(wa, w1) < 1e-6
    assert two["metrics"]["OA"] == pytest.approx(one["metrics"]["OA"], abs=1e-6)
    assert two["metrics"]["confusion_matrix"] == one["metrics"]["confusion_matrix"]  # each test image once
    _, w_small = _run(tmp_path, "b2", "trainer.devices=1", "data.batch_size=2")
    assert _max_diff(w_small, w1) > 1e-4


def test_batch_plan_rules():
    from rsbench.data.datamodule import RSDataModule
    from rsbench.errors import ConfigError

    def plan(total, world, cap=None):
        return RSDataModule(dataset="eurosat", root=".", splits={}, batch_size=total,
                            per_device_batch=cap).batch_plan(world)

    assert plan(64, 8) == {"total": 64, "world": 8, "per_device": 8, "accumulate": 1}
    assert plan(64, 8, cap=2) == {"total": 64, "world": 8, "per_device": 2, "accumulate": 4}
    assert plan(32, 1, cap=12) == {"total": 32, "world": 1, "per_device": 8, "accumulate": 4}  # 32 = 8 x 4, not 12 + ...
    assert plan(4, 4, cap=16)["accumulate"] == 1
    with pytest.raises(ConfigError, match=r"data.batch_size=4 \(the total batch\) is not divisible by the 8 processes"):
        plan(4, 8)


def test_ddp_run_killed_and_relaunched_ends_as_the_uninterrupted_run(tmp_path):
    """Two gloo processes, SIGKILLed together in epoch 1 (after the epoch-0 checkpoint); the same command
    resumes both from last.ckpt and ends with the weights and metrics of the run that was never killed."""
    import os
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    env = {"PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    args = ["trainer.devices=2", "data.batch_size=4", "trainer.max_epochs=2", "+callbacks.kill._target_=killer.KillAt",
            "+callbacks.kill.epoch=1", "+callbacks.kill.batch=2"]
    run_rsbench([*TINY, "tag=whole", *args], tmp_path, env=env)
    whole = json.loads((tmp_path / "results/runs/cls/eurosat/vitb_rvsa/whole-s0/metrics.json").read_text())
    killed = run_rsbench([*TINY, "tag=killed", *args], tmp_path, check=False, env={**env, "RSBENCH_TEST_KILL": "1"})
    assert killed.returncode == -9
    run_dir = tmp_path / "results/runs/cls/eurosat/vitb_rvsa/killed-s0"
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 0
    again = run_rsbench([*TINY, "tag=killed", *args], tmp_path, env=env)
    assert "resuming the unfinished run" in again.stdout + again.stderr
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["epochs"] == whole["epochs"] == 2 and rec["world_size"] == 2
    assert rec["metrics"]["confusion_matrix"] == whole["metrics"]["confusion_matrix"]
    w_whole = torch.load(whole["checkpoint"], weights_only=True)
    w_again = torch.load(rec["checkpoint"], weights_only=True)
    assert _max_diff(w_whole.get("state_dict", w_whole), w_again.get("state_dict", w_again)) == 0.0
