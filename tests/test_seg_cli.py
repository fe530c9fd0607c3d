"""``python -m rsbench task=seg`` end to end on sample data: fit + slide test, records, submission."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_rsbench

pytestmark = pytest.mark.slow

#: Tiny seg runs: 2 iterations of a ResNet-18 + 32-channel UperNet on 64² crops, slide stride 48.
SEG_TINY = ["trainer=cpu", "trainer.max_steps=2", "trainer.enable_progress_bar=false", "data.batch_size=2",
            "data.num_workers=0", "data.img_size=64", "task.module.inference.stride=48", "task.module.head.channels=32",
            "backbone=resnet18", "logger=none", "sched.warmup_steps=1", "callbacks.plots.num=2"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # see tests/test_seg_model.py::_one_thread


def _record(tmp: Path, dataset: str) -> dict:
    return json.loads((tmp / "results" / "runs" / "seg" / dataset / "resnet18" / "default-s0" / "metrics.json").read_text())


def _check_metrics(m: dict, classes: int) -> None:
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (classes, classes) and cm.sum() == m["num_test_pixels"] > 0
    assert m["OA"] == pytest.approx(100 * np.trace(cm) / cm.sum())
    ious = [v for v in m["per_class"]["IoU"].values() if v is not None]
    assert len(m["per_class"]["IoU"]) == classes and m["mIoU"] == pytest.approx(sum(ious) / len(ious))
    assert 0 <= m["mIoU"] <= 100 and set(m["per_class"]) == {"IoU", "F1", "precision", "recall"}


def test_spacenet1_fit_and_slide_test(tmp_path):
    root = tmp_path / "data" / "sn1"
    run_rsbench(["task=seg", "dataset=spacenet1", f"dataset.root={root}", "dataset.sample=true",
                 "+dataset.sample_kwargs.n_tiles=6", "+dataset.sample_kwargs.height=90", "+dataset.sample_kwargs.width=100",
                 "+dataset.sample_kwargs.n_val=2", f"paths.cache_dir={tmp_path / 'cache'}", *SEG_TINY],
                tmp_path, env=ONE_THREAD)
    rec = _record(tmp_path, "spacenet1")
    assert rec["status"] == "ok" and rec["metric"] == "mIoU" and rec["test_split"] == "val"
    m = rec["metrics"]
    _check_metrics(m, 2)
    assert list(m["per_class"]["IoU"]) == ["background", "building"]
    # native resolution: every pixel of the 2 val tiles (90/91 × 100/101) is scored
    val = (root / "spacenet1-val.txt").read_text().split()
    sizes = {n: (90 + int(n[3:]) % 2) * (100 + int(n[3:]) % 2) for n in val}
    assert m["num_test_pixels"] == sum(sizes.values()) and m["num_test_images"] == 2
    assert m["inference"] == {"mode": "slide", "crop_size": 64, "stride": 48, "window_batch": 4, "pad_small": True,
                              "size_divisor": 32}
    plots = sorted(Path(m["predictions_dir"]).glob("*.png"))
    assert len(plots) == 2 and all("3band_AOI_1_RIO_img" in p.name for p in plots)
    w, h = Image.open(plots[0]).size
    assert w > 2 * h  # image | label | prediction side by side


def test_loveda_trainval_with_validation_and_submission(tmp_path):
    root = tmp_path / "data" / "loveda"
    run_rsbench(["dataset=loveda", f"dataset.root={root}", "dataset.sample=true", "+dataset.sample_kwargs.size=80",
                 "dataset.splits.train=trainval", "dataset.splits.predict=test", "trainer.val_check_interval=2",
                 f"paths.cache_dir={tmp_path / 'cache'}", *SEG_TINY], tmp_path, env=ONE_THREAD)
    rec = _record(tmp_path, "loveda")
    assert rec["status"] == "ok" and rec["task"] == "seg"  # the dataset implies the task
    m = rec["metrics"]
    _check_metrics(m, 7)
    assert m["per_class"]["IoU"].keys() == {"background", "building", "road", "water", "barren", "forest", "agricultural"}
    assert m["num_test_images"] == 4
    sub = m["submission"]
    files = sorted(Path(sub["dir"]).iterdir())
    test_names = sorted(p.name for p in (root / "Test").rglob("images_png/*.png"))
    assert sub["split"] == "test" and [f.name for f in files] == test_names and sub["num_files"] == 4
    for f in files:
        a = np.asarray(Image.open(f))
        assert Image.open(f).mode == "L" and a.shape == (80, 80) and a.dtype == np.uint8 and a.max() <= 6
    assert len(list(Path(m["predictions_dir"]).glob("*.png"))) == 2


def test_missing_dataset_is_reported_before_training(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_rsbench(["dataset=loveda", f"dataset.root={tmp_path / 'empty'}", *SEG_TINY], tmp_path, check=False,
                       env=ONE_THREAD)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "no Train/, Val/ or Test/ folder" in out and "Traceback" not in out
    assert not (tmp_path / "results" / "runs" / "seg" / "loveda" / "resnet18" / "default-s0" / "metrics.json").exists()
