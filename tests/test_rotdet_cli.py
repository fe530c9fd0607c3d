"""``python -m rsbench dataset=dior_r`` (task rotdet, Oriented R-CNN) end to end on sample data in the official layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_rsbench

pytestmark = pytest.mark.slow

#: 2 steps of a random-init ResNet-18 pyramid on 64 px inputs, with a narrow head (the recipe's structure)
ROTDET_TINY = ["trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
               "trainer.enable_progress_bar=false", "data.batch_size=2", "data.num_workers=0", "data.img_size=64",
               "backbone=resnet18", "logger=none", "sched.warmup_steps=1", "callbacks.plots.num=2",
               "+task.module.detector.fpn_channels=32", "+task.module.detector.representation_size=64",
               "+task.module.detector.rpn_post_nms_top_n_train=300", "+task.module.detector.rpn_post_nms_top_n_test=300"]


def test_rotdet_fit_and_test(tmp_path):
    root = tmp_path / "data" / "dior_r"
    run_rsbench(["dataset=dior_r", f"dataset.root={root}", "dataset.sample=true", f"paths.cache_dir={tmp_path / 'cache'}",
                 *ROTDET_TINY], tmp_path)
    run_dir = tmp_path / "results" / "runs" / "rotdet" / "dior_r" / "resnet18" / "default-s0"
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["status"] == "ok" and rec["task"] == "rotdet" and rec["metric"] == "mAP"  # the dataset implies the task
    m = rec["metrics"]
    assert m["detector"] == "oriented_rcnn" and m["metric_mode"] == "mmrotate"
    assert 0 <= m["mAP"] <= 100
    assert m["num_test_images"] > 0 and len(m["class_names"]) == 20
    assert set(m["per_class"]["AP"]) == set(m["class_names"])
    assert all(v is None or 0 <= v <= 100 for v in m["per_class"]["AP"].values())
    assert len(sorted(Path(m["predictions_dir"]).glob("*.png"))) == 2
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["sched"]["name"] == "multistep" and cfg["sched"]["milestones"] == [8, 11]
    assert cfg["sched"]["warmup_start_factor"] == 1e-6 and cfg["optim"]["lr"] == 1e-4
    assert cfg["data"]["transform_kwargs"]["flip_prob"] == 0.75


def test_submission_lines_in_the_files_pixels(tmp_path):
    """predict_step undoes the eval resize (scale_factor) on the corners; write_prediction writes DOTA lines."""
    import math

    import torch

    from rsbench.models.ops.rbox import rbox_to_poly
    from rsbench.tasks.rotated_detection import RotatedDetectionTask

    task = RotatedDetectionTask(detector={"name": "oriented_rcnn", "fpn_channels": 16, "representation_size": 16},
                                backbone={"name": "resnet18", "features": "pyramid"}, optim={"lr": 1e-4,
                                "weight_decay": 0.05}, sched={"name": "constant"}, img_size=64, num_classes=2,
                                class_names=["plane", "ship"])
    boxes = torch.tensor([[20.0, 30.0, 16.0, 8.0, math.pi / 6]])

    class Fixed(torch.nn.Module):
        def forward(self, images, targets=None):
            return [{"boxes": boxes, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])} for _ in images]

    task.detector = Fixed()
    batch = {"image": [torch.zeros(3, 64, 64)], "scale_factor": [torch.tensor([2.0, 0.5])]}
    (pred,) = task.predict_step(batch, 0)
    want = rbox_to_poly(boxes.double())[0].view(4, 2) / torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(pred["polygons"][0].view(4, 2), want)
    task.write_prediction(pred, "P0001__1024__0___824", tmp_path)
    (line,) = (tmp_path / "P0001__1024__0___824.txt").read_text().splitlines()
    parts = line.split()
    assert parts[8:] == ["ship", "0.9000"]
    assert [float(v) for v in parts[:8]] == pytest.approx(want.reshape(-1).tolist(), abs=0.01)
