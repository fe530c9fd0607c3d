"""``python -m rsbench task=det`` end to end on sample data in the official layouts (DIOR, xView)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_rsbench

pytestmark = pytest.mark.slow

#: Tiny detection runs: 2 steps of a random-init ResNet-18 pyramid on 64² inputs.
DET_TINY = ["trainer=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "trainer.enable_progress_bar=false",
            "data.batch_size=2", "data.num_workers=0", "data.img_size=64", "backbone=resnet18", "logger=none",
            "callbacks.plots.num=2"]


def _record(tmp: Path, dataset: str) -> dict:
    return json.loads((tmp / "results" / "runs" / "det" / dataset / "resnet18" / "default-s0" / "metrics.json").read_text())


@pytest.mark.parametrize("dataset,detector", [("dior", "faster_rcnn"), ("xview", "retinanet")])
def test_det_fit_and_test(tmp_path, dataset, detector):
    root = tmp_path / "data" / dataset
    run_rsbench([f"dataset={dataset}", f"dataset.root={root}", "dataset.sample=true",
                 f"paths.cache_dir={tmp_path / 'cache'}", *DET_TINY], tmp_path)
    rec = _record(tmp_path, dataset)
    assert rec["status"] == "ok" and rec["task"] == "det" and rec["metric"] == "AP50"  # the dataset implies the task
    m = rec["metrics"]
    assert m["detector"] == detector
    assert 0 <= m["AP50"] <= 100 and 0 <= m["mAP"] <= m["AP50"] + 1e-9
    assert m["num_test_images"] > 0 and len(m["class_names"]) == {"dior": 20, "xview": 60}[dataset]
    assert set(m["per_class"]["AP"]) == set(m["class_names"])
    plots = sorted(Path(m["predictions_dir"]).glob("*.png"))
    assert len(plots) == 2
    # the recipe's schedule: MultiStepLR at epochs 8 and 11 after a 500-iteration warm-up
    cfg = yaml.safe_load((tmp_path / "results" / "runs" / "det" / dataset / "resnet18" / "default-s0" / "config.yaml").read_text())
    assert cfg["sched"]["name"] == "multistep" and cfg["sched"]["milestones"] == [8, 11]
    assert cfg["sched"]["warmup_steps"] == 500 and cfg["optim"]["lr"] == 1e-4
