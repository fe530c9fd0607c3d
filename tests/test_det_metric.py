"""DetectionMAP against pycocotools' COCOeval run directly on hand-built COCO dicts."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rsbench.metrics import DetectionMAP

NAMES = ["plane", "ship", "tank", "bridge", "absent"]


def scene(seed: int, n_images: int = 12):
    """Integer-pixel boxes (exact in float32) of varied sizes, images without gts, class 4 never
    present, class 3 only in the predictions, distinct scores."""
    rng = np.random.default_rng(seed)
    preds, target = [], []
    for i in range(n_images):
        m = 0 if i % 4 == 3 else int(rng.integers(1, 8))
        size = rng.choice([6, 20, 60, 150], size=m)
        xy = rng.integers(0, 600, size=(m, 2))
        wh = np.maximum(1, (size[:, None] * rng.uniform(0.5, 1.5, (m, 2))).astype(int))
        gt = np.c_[xy, xy + wh].astype(float)
        gl = rng.integers(0, 3, m)
        keep = rng.random(m) < 0.8
        jit = rng.integers(-4, 5, size=(int(keep.sum()), 4))
        fake_n = int(rng.integers(0, 5))
        fxy = rng.integers(0, 600, size=(fake_n, 2))
        fake = np.c_[fxy, fxy + rng.integers(4, 120, size=(fake_n, 2))]
        db = np.r_[gt[keep] + jit, fake].astype(float)
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dl = np.r_[np.where(rng.random(int(keep.sum())) < 0.9, gl[keep], rng.integers(0, 4, int(keep.sum()))),
                   rng.integers(0, 4, fake_n)]
        preds.append({"boxes": torch.tensor(db, dtype=torch.float32), "labels": torch.tensor(dl, dtype=torch.long),
                      "scores": torch.tensor(rng.uniform(0.05, 1, len(db)), dtype=torch.float32)})
        target.append({"boxes": torch.tensor(gt, dtype=torch.float32), "labels": torch.tensor(gl, dtype=torch.long)})
    return preds, target


def cocoeval(preds, target, iou_thrs=None):
    """COCOeval on COCO dicts built by hand (ann ids from 1, iscrowd 0, area w·h), mmdet's maxDets."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, target)):
        images.append({"id": i})
        for b, c in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for b, c, s in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist()):
            dets.append({"image_id": i, "category_id": c, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})
    cats = sorted({a["category_id"] for a in anns} | {d["category_id"] for d in dets})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in cats]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [100, 300, 1000]
        ev.params.iouThrs = np.linspace(0.5, 0.95, 10) if iou_thrs is None else iou_thrs
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, cats


def run(preds, target, **kw):
    m = DetectionMAP(class_names=NAMES, **kw)
    m.update(preds[: len(preds) // 2], target[: len(target) // 2])
    m.update(preds[len(preds) // 2:], target[len(target) // 2:])
    return m.compute()


@pytest.mark.parametrize("backend", ["faster_coco_eval", "pycocotools"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_cocoeval(seed, backend):
    preds, target = scene(seed)
    ev, cats = cocoeval(preds, target)
    r = run(preds, target, backend=backend)
    assert r["map_50_raw"] / 100 == pytest.approx(ev.stats[1], abs=1e-9)
    assert r["map_raw"] / 100 == pytest.approx(ev.stats[0], abs=1e-9)
    assert r["map_75_raw"] / 100 == pytest.approx(ev.stats[2], abs=1e-9)
    for key, i in (("map_small", 3), ("map_medium", 4), ("map_large", 5)):
        assert (r[f"{key}_raw"] or -100) / 100 == pytest.approx(ev.stats[i], abs=1e-9)
    assert r["map_50"] == pytest.approx(round(ev.stats[1], 3) * 100, abs=1e-9)  # mmdet's rounding
    prec = ev.eval["precision"]
    for k, c in enumerate(cats):
        p_all, p_50 = prec[:, :, k, 0, -1], prec[0, :, k, 0, -1]
        want = p_all[p_all > -1].mean() * 100 if (p_all > -1).any() else None
        want50 = p_50[p_50 > -1].mean() * 100 if (p_50 > -1).any() else None
        assert r["map_per_class"][NAMES[c]] == pytest.approx(want, abs=1e-9)
        assert r["map_50_per_class"][NAMES[c]] == pytest.approx(want50, abs=1e-9)
    assert r["map_per_class"]["bridge"] is None  # predicted, never in the ground truth: COCO's -1
    assert r["map_per_class"]["absent"] is None


def test_per_class_equals_torchmetrics_class_metrics():
    from torchmetrics.detection import MeanAveragePrecision

    preds, target = scene(3)
    tm = MeanAveragePrecision(iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
                              rec_thresholds=np.linspace(0, 1, 101).tolist(), max_detection_thresholds=[100, 300, 1000],
                              class_metrics=True, backend="faster_coco_eval")
    tm.update(preds, target)
    ref = tm.compute()
    r = run(preds, target)
    for c, v in zip(ref["classes"].tolist(), ref["map_per_class"].tolist()):
        assert (r["map_per_class"][NAMES[c]] or -100) / 100 == pytest.approx(v, abs=1e-6)
    assert r["map_50_raw"] / 100 == pytest.approx(float(ref["map_50"]), abs=1e-6)


def test_float32_thresholds_would_differ():
    """torchmetrics' default float32 linspace puts e.g. 0.55 at 0.550000011920929: a pair at IoU
    exactly 0.55 then stops matching, so AP@[.5:.95] moves."""
    gt = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 10.0]]), "labels": torch.tensor([0])}
    det = {"boxes": torch.tensor([[0.0, 0.0, 11.0, 10.0]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    # IoU = 110 / 200 = 0.55
    ours = run([det, det], [gt, gt])
    ev64, _ = cocoeval([det], [gt])
    ev32, _ = cocoeval([det], [gt], iou_thrs=np.array(torch.linspace(0.5, 0.95, 10).tolist()))
    assert ours["map_raw"] / 100 == pytest.approx(ev64.stats[0], abs=1e-12) == 0.2
    assert ev32.stats[0] == pytest.approx(0.1)


def test_hand_computed_ap50():
    """2 gts, 3 detections ranked TP, FP, TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. The
    101-point interpolated precision is 1 for recall ≤ 0.5 (51 points) and 2/3 above (50 points)."""
    target = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]]), "labels": torch.tensor([0, 0])}]
    preds = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 70, 69]]),
              "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0])}]
    m = DetectionMAP(class_names=["a"])
    m.update(preds, target)
    r = m.compute()
    assert r["map_50_raw"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101 * 100, abs=1e-9)
    assert r["map_50"] == round((51 + 100 / 3) / 101, 3) * 100


def test_empty_predictions_and_no_ground_truth():
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    r = run([none, none], [gt, gt])
    assert r["map_50"] == r["map"] == 0.0
    assert r["map_per_class"]["ship"] == 0.0 and r["map_per_class"]["plane"] is None
    no_gt = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    det = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}
    r = run([det, det], [no_gt, no_gt])
    assert r["map_50"] is None and r["map"] is None and r["map_per_class"]["plane"] is None
    assert DetectionMAP().compute()["map_50"] is None  # never updated


def test_reset_and_bad_backend():
    from rsbench.errors import ConfigError

    preds, target = scene(4, n_images=4)
    m = DetectionMAP(class_names=NAMES)
    m.update(preds, target)
    first = m.compute()
    m.reset()
    m.update(preds, target)
    assert m.compute() == first
    with pytest.raises(ConfigError):
        DetectionMAP(backend="coco")


def _ddp_worker(rank: int, world: int, port: int, scenes, out) -> None:
    import torch.distributed as dist

    from rsbench.metrics.detection import DetectionMAP

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        m = DetectionMAP()
        mine = scenes[: 3] if rank == 0 else scenes[3:]  # 3 and 2 images: unequal, as rsbench's eval sampler
        for preds, target in mine:
            m.update([preds], [target])
        res = m.compute()
        if rank == 0:
            out.put(res["map_50_raw"])
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_with_different_image_counts():
    """Two gloo processes holding 3 and 2 images give the single-process result."""
    import socket

    import torch.multiprocessing as mp

    from rsbench.metrics.detection import DetectionMAP

    g = torch.Generator().manual_seed(3)
    scenes = []
    for _ in range(5):
        xy = torch.rand(4, 2, generator=g) * 60
        gt = torch.cat([xy, xy + 10 + torch.rand(4, 2, generator=g) * 20], 1)
        det = gt + torch.randn(4, 4, generator=g) * 3
        scenes.append(({"boxes": det, "scores": torch.rand(4, generator=g), "labels": torch.tensor([0, 1, 1, 2])},
                       {"boxes": gt, "labels": torch.tensor([0, 1, 2, 2])}))
    single = DetectionMAP()
    for p, t in scenes:
        single.update([p], [t])
    expected = single.compute()["map_50_raw"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.start_processes(_ddp_worker, args=(2, port, scenes, out), nprocs=2, join=True, start_method="spawn")
    assert out.get(timeout=30) == pytest.approx(expected, abs=1e-12)
