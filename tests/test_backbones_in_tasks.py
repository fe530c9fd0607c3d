"""Every MTP backbone plugs into every task through the app, with no task code aware of which
backbone it has (tiny widths, random init)."""

from __future__ import annotations

import json

import pytest

from conftest import run_rsbench

pytestmark = pytest.mark.slow

TINY_IXL = ["backbone=internimage_xl", "backbone.pretrained=none", "+backbone.kwargs.channels=16",
            "+backbone.kwargs.depths=[1,1,2,1]", "+backbone.kwargs.groups=[1,2,4,8]"]
TINY_VIT = ["backbone=vitb_rvsa", "backbone.pretrained=none", "+backbone.kwargs.embed_dim=32",
            "+backbone.kwargs.depth=4", "+backbone.kwargs.num_heads=2", "+backbone.kwargs.out_indices=[0,1,2,3]",
            "+backbone.kwargs.interval=2"]
COMMON = ["trainer=cpu", "trainer.enable_progress_bar=false", "data.num_workers=0", "logger=none",
          "dataset.sample=true", "data.batch_size=2", "eval.samples_to_plot=1"]
TASKS = {
    "cls": ["dataset=eurosat", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=112"],
    "cd": ["dataset=levir", "trainer.max_epochs=1", "sched.warmup_epochs=0", "data.img_size=112",
           "dataset.kwargs.tile=112", "task.kwargs.decoder_channels=[16,16,8,8]"],
    "seg": ["dataset=loveda", "trainer.max_steps=2", "data.img_size=112", "+dataset.sample_kwargs.size=128",
            "task.kwargs.head.channels=16", "trainer.val_check_interval=2"],
}


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("backbone", ["internimage_xl", "vitb_rvsa"])
def test_backbone_in_task(tmp_path, task, backbone):
    bb = TINY_IXL if backbone == "internimage_xl" else TINY_VIT
    run_rsbench([*TASKS[task], *bb, *COMMON], tmp_path)
    recs = list((tmp_path / "results" / "runs" / task).glob(f"*/{backbone}/default-s0/metrics.json"))
    assert len(recs) == 1
    rec = json.loads(recs[0].read_text())
    assert rec["status"] == "ok" and rec["backbone"] == backbone
    assert 0.0 <= rec["metrics"][rec["metric"]] <= 100.0
