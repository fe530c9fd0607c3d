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


def _fixed_task(boxes, scores, labels, class_names):
    import torch

    from rsbench.tasks.rotated_detection import RotatedDetectionTask

    task = RotatedDetectionTask(detector={"name": "oriented_rcnn", "fpn_channels": 16, "representation_size": 16},
                                backbone={"name": "resnet18", "features": "pyramid"}, optim={"lr": 1e-4,
                                "weight_decay": 0.05}, sched={"name": "constant"}, img_size=64,
                                num_classes=len(class_names), class_names=list(class_names))

    class Fixed(torch.nn.Module):
        def forward(self, images, targets=None):
            return [{"boxes": boxes, "scores": scores, "labels": labels} for _ in images]

    task.detector = Fixed()
    return task


def test_predict_undoes_the_resize_and_the_files_round_trip(tmp_path):
    """Equal factors: the exact similarity (corners scale); unequal: centres and side lengths are the exact
    image of the box (the angle is MMRotate's own formula, see rescale_rboxes). The per-image files keep float32."""
    import math

    import torch

    from rsbench.models.ops.rbox import rbox_to_poly
    from rsbench.tasks.rotated_detection import read_detections

    boxes = torch.tensor([[20.0, 30.0, 16.0, 8.0, math.pi / 6], [40.3, 11.7, 9.1, 3.3, -1.2]])
    task = _fixed_task(boxes, torch.tensor([0.91234567, 0.05]), torch.tensor([1, 0]), ["plane", "ship"])
    (pred,) = task.predict_step({"image": [torch.zeros(3, 64, 64)], "scale_factor": [torch.tensor([0.5, 0.5])]}, 0)
    torch.testing.assert_close(rbox_to_poly(pred["boxes"].double()), 2 * rbox_to_poly(boxes.double()),
                               rtol=0, atol=1e-4)
    (pred2,) = task.predict_step({"image": [torch.zeros(3, 64, 64)], "scale_factor": [torch.tensor([2.0, 0.5])]}, 0)
    poly = rbox_to_poly(boxes.double()).view(-1, 4, 2) / torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(pred2["boxes"][:, :2].double(), poly.mean(dim=1), rtol=0, atol=1e-4)
    side_w = (poly[:, 0] - poly[:, 3]).norm(dim=-1)   # c+u+v → c-u+v: the w side, scaled
    side_h = (poly[:, 0] - poly[:, 1]).norm(dim=-1)
    torch.testing.assert_close(pred2["boxes"][:, 2].double(), side_w, rtol=0, atol=1e-4)
    torch.testing.assert_close(pred2["boxes"][:, 3].double(), side_h, rtol=0, atol=1e-4)
    task.write_prediction(pred2, "P0001__1024__0___824", tmp_path)
    back = read_detections(tmp_path / "detections" / "P0001__1024__0___824.txt", ["plane", "ship"])
    assert torch.equal(back["boxes"], pred2["boxes"].float()) and back["labels"].tolist() == [1, 0]
    assert torch.equal(back["scores"], torch.tensor([0.91234567, 0.05]))
    (tmp_path / "detections" / "bad.txt").write_text("ship 0.9 1 2 3\n")
    from rsbench.errors import DataError

    with pytest.raises(DataError, match=r"bad\.txt, line 1: expected 'class score cx cy w h theta'"):
        read_detections(tmp_path / "detections" / "bad.txt", ["plane", "ship"])


def test_dota_paper_protocol_writes_task1_files(tmp_path):
    """protocol=paper on DOTA-v1.0 (split patches): train on trainval, predict the unlabelled test patches,
    merge them per original image and write Task1_<class>.txt for all 15 classes plus the zip."""
    import zipfile

    root = tmp_path / "data" / "dota10"
    run_rsbench(["dataset=dota10", "protocol=paper", f"dataset.root={root}", "dataset.sample=true",
                 f"paths.cache_dir={tmp_path / 'cache'}", "+task.module.detector.box_score_thresh=0.0", *ROTDET_TINY], tmp_path)
    (run_dir,) = (tmp_path / "results" / "runs" / "rotdet" / "dota10" / "resnet18").iterdir()
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["status"] == "ok", rec.get("error")
    sub = rec["metrics"]["submission"]
    out = Path(sub["dir"])
    from rsbench.data.datasets.dota import CLASSES_V1, DOTA

    files = sorted(out.glob("Task1_*.txt"))
    assert [f.name for f in files] == sorted(f"Task1_{c}.txt" for c in CLASSES_V1)
    with zipfile.ZipFile(sub["merged"]["zip"]) as z:
        assert sorted(z.namelist()) == [f.name for f in files]
    test_ids = set(DOTA(root, "test").original_ids())
    lines = [ln.split(" ") for f in files for ln in f.read_text().splitlines()]
    assert lines, "an untrained detector at score_thr 0 still proposes boxes"
    assert len(lines) == sub["merged"]["num_detections"]
    for parts in lines:
        assert len(parts) == 10 and parts[0] in test_ids and "__" not in parts[0]  # original ids, not patches
        assert str(round(float(parts[1]), 2)) == parts[1]
        assert all(len(v.split(".")[1]) == 2 for v in parts[2:])
    assert len(sorted((out / "detections").glob("*.txt"))) == len(DOTA(root, "test"))


def test_fair1m_submission_xml_round_trips_through_the_loader(samples, tmp_path):
    """The test patches' merged detections → one XML per original test image, with the size split_dota.py
    recorded, parsed back by the loader's own XML reader (classes in the release's spelling)."""
    import zipfile

    import numpy as np
    import torch
    from PIL import Image

    from rsbench.data.datasets.fair1m import FAIR1M, OFFICIAL_NAMES, parse_fair1m_xml

    root = samples("fair1m", patches=True)
    ds = FAIR1M(root, "test")
    assert ds.layout == "patches"
    ids = ds.original_ids()
    assert ids and all("__" not in i for i in ids)
    merged = {ids[0]: {"boxes": torch.tensor([[30.0, 40.0, 20.0, 10.0, 0.3], [60.0, 50.0, 12.0, 6.0, -0.5]]),
                       "scores": torch.tensor([0.876, 0.5]), "labels": torch.tensor([24, 29])}}
    summary = ds.write_submission(merged, tmp_path / "submission")
    xmls = sorted((tmp_path / "submission" / "test").glob("*.xml"))
    assert sorted(x.stem for x in xmls) == sorted(ids)  # every test image, with objects or not
    polys, labels = parse_fair1m_xml(tmp_path / "submission" / "test" / f"{ids[0]}.xml")
    assert sorted(labels.tolist()) == [24, 29]
    text = (tmp_path / "submission" / "test" / f"{ids[0]}.xml").read_text()
    assert f"<name>{OFFICIAL_NAMES[24]}</name>" in text and "<name>other-airplane</name>" in text
    assert "<name>Small Car</name>" in text and "<probability>0.88</probability>" in text
    sources = json.loads((root / "test" / "sources.json").read_text())
    w, h = sources[ids[0]]["width"], sources[ids[0]]["height"]
    assert f"<width>{w}</width>" in text and f"<height>{h}</height>" in text
    assert Image.open(root / "release" / "test" / "images" / f"{ids[0]}.tif").size == (w, h)
    assert w < 128  # the one padded 128² patch would overstate it
    from rsbench.models.ops.rbox import rbox_to_poly

    want = np.round(rbox_to_poly(merged[ids[0]]["boxes"].double()).numpy(), 2)
    got = polys[np.argsort(labels)]
    np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want.astype(np.float32), axis=0), atol=1e-5)
    with zipfile.ZipFile(summary["zip"]) as z:
        assert sorted(z.namelist()) == sorted(f"test/{i}.xml" for i in ids)
