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
