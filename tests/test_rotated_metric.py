"""RotatedMeanAveragePrecision: geometry against shapely, AP by hand, and an independent
straightforward (loop-per-detection, shapely IoU) rewrite of the DOTA devkit's ``voc_eval``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from rsbench.metrics import RotatedMeanAveragePrecision
from rsbench.metrics.polygon import poly_iou, rbox_to_poly
from rsbench.metrics.rotated import rotated_iou_mmrotate


def corners(cx, cy, w, h, a):
    """MMRotate le90: the width axis along (cos a, sin a) in image coordinates (y down)."""
    u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
    c = np.array([cx, cy])
    return np.array([c + sx * w / 2 * u + sy * h / 2 * v for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])


def shapely_iou(p, q):
    p, q = Polygon(p), Polygon(q)
    return p.intersection(q).area / p.union(q).area


def random_rboxes(rng, n, lo=0, hi=100):
    return np.c_[rng.uniform(lo, hi, (n, 2)), rng.uniform(2, 60, (n, 2)), rng.uniform(-np.pi / 2, np.pi / 2, n)]


def random_quads(rng, n):
    """Simple quads, about a fifth non-convex: four vertices around a centre at jittered angles."""
    c = rng.uniform(0, 100, (n, 2))
    ang = rng.uniform(0, 2 * np.pi, (n, 1)) + np.arange(4) * np.pi / 2 + rng.uniform(-0.7, 0.7, (n, 4))
    r = rng.uniform(2, 50, (n, 4))
    q = np.stack([c[:, None, 0] + r * np.cos(ang), c[:, None, 1] + r * np.sin(ang)], -1)
    flip = rng.random(n) < 0.5
    q[flip] = q[flip, ::-1]  # both orientations
    return q


def test_rbox_corners_follow_mmrotate():
    b = np.array([[10.0, 20.0, 8.0, 2.0, 0.4], [3.0, -4.0, 1.0, 5.0, -1.2]])
    for got, box in zip(rbox_to_poly(b), b):
        np.testing.assert_allclose(got, corners(*box), atol=1e-12)


def test_polygon_iou_vs_shapely():
    rng = np.random.default_rng(0)
    n = 2000
    det = rbox_to_poly(random_rboxes(rng, n))
    for gt in (rbox_to_poly(random_rboxes(rng, n)), random_quads(rng, n)):
        assert all(Polygon(g).is_valid for g in gt)
        ref = np.array([shapely_iou(g, d) for g, d in zip(gt, det)])
        assert (ref > 0).mean() > 0.2
        np.testing.assert_allclose(poly_iou(gt, det), ref, rtol=0, atol=1e-9)
    quads = random_quads(rng, n)
    assert np.mean([not Polygon(q).equals(Polygon(q).convex_hull) for q in quads]) > 0.1  # non-convex ones tested
    far = rbox_to_poly(np.array([[1e4, 1e4, 30.0, 10.0, 0.3]]))  # large coordinates keep their precision
    assert poly_iou(far + [[5.0, 1.0]], far)[0] == pytest.approx(shapely_iou(far[0] + [5, 1], far[0]), abs=1e-9)


def test_torchvision_rotated_iou_vs_shapely():
    rng = np.random.default_rng(1)
    a, b = random_rboxes(rng, 80, 0, 60), random_rboxes(rng, 60, 0, 60)
    got = rotated_iou_mmrotate(a, b)
    pa, pb = [Polygon(corners(*p)) for p in a], [Polygon(corners(*q)) for q in b]
    ref = np.array([[p.intersection(q).area / p.union(q).area for q in pb] for p in pa])
    assert (ref > 0).mean() > 0.1
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    # asymmetric case: the wrong angle sign gives a clearly different value
    p, q = np.array([10.0, 10.0, 20.0, 4.0, 0.0]), np.array([16.0, 13.0, 12.0, 3.0, 0.4])
    want = shapely_iou(corners(*p), corners(*q))
    assert rotated_iou_mmrotate(p[None], q[None])[0, 0] == pytest.approx(want, abs=1e-6)
    flipped = q.copy()
    flipped[4] = -flipped[4]
    assert abs(shapely_iou(corners(*p), corners(*flipped)) - want) > 0.03


def hand_scene():
    """Class 0. Image A: G1, G2 (difficult). Image B: G3, axis-aligned 4×2. Detections by score:
    d1 = G1 (TP), d2 = G1 again (FP: G1 taken), d3 = G2, d4 far away (FP), d5 the left half of G3
    (IoU exactly 0.5). Class 1: one detection, no gt. Class 2: nothing."""
    g1, g2, g3 = [10.0, 10.0, 4.0, 2.0, 0.3], [50.0, 50.0, 6.0, 3.0, -0.7], [20.0, 20.0, 4.0, 2.0, 0.0]
    far = [100.0, 100.0, 5.0, 5.0, 0.0]
    poly = [corners(*g1).ravel(), corners(*g2).ravel()]
    tgt = [{"boxes": torch.tensor([g1, g2]), "labels": torch.tensor([0, 0]), "difficult": torch.tensor([False, True]),
            "polygons": torch.tensor(np.array(poly))},
           {"boxes": torch.tensor([g3]), "labels": torch.tensor([0]),
            "polygons": torch.tensor([[18.0, 19.0, 22.0, 19.0, 22.0, 21.0, 18.0, 21.0]])}]
    preds = [{"boxes": torch.tensor([g1, g1, g2, far, far]), "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3]),
              "labels": torch.tensor([0, 0, 0, 0, 1])},
             {"boxes": torch.tensor([[19.0, 20.0, 2.0, 2.0, 0.0]]), "scores": torch.tensor([0.5]),
              "labels": torch.tensor([0])}]
    return preds, tgt


@pytest.mark.parametrize(
    ("mode", "ap_mode", "ap0"),
    [
        # mmrotate: npos 3; TP FP TP FP TP → rec 1/3 1/3 2/3 2/3 1, prec 1 1/2 2/3 1/2 3/5
        ("mmrotate", "voc07", (4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11),
        ("mmrotate", "area", (1 + 2 / 3 + 0.6) / 3),
        # devkit: npos 2; TP FP (ignored) FP FP → rec 1/2 throughout, prec 1 1/2 1/2 1/3 1/4
        ("devkit", "voc07", 6 / 11),
        ("devkit", "area", 0.5),
    ],
)
def test_hand_computed(mode, ap_mode, ap0):
    preds, tgt = hand_scene()
    m = RotatedMeanAveragePrecision(mode=mode, ap_mode=ap_mode, class_names=["a", "b", "c"])
    m.update(preds, tgt)
    r = m.compute()
    assert r["map_per_class"]["a"] == pytest.approx(ap0, abs=1e-12)
    if mode == "mmrotate":  # classes without gts left out of the mean
        assert r["map_per_class"]["b"] is None and r["map_per_class"]["c"] is None
        assert r["map"] == pytest.approx(ap0, abs=1e-12) and r["num_gts"] == {"a": 3, "b": 0, "c": 0}
    else:  # the devkit averages its whole class list
        assert r["map_per_class"]["b"] == 0.0 and r["map"] == pytest.approx(ap0 / 3, abs=1e-12)
        assert r["num_gts"]["a"] == 2


def test_threshold_equality():
    """IoU exactly 0.5: a match for MMRotate (>=), not for the devkit (>)."""
    gt = [{"boxes": torch.tensor([[20.0, 20.0, 4.0, 2.0, 0.0]]), "labels": torch.tensor([0]),
           "polygons": torch.tensor([[18.0, 19.0, 22.0, 19.0, 22.0, 21.0, 18.0, 21.0]])}]
    det = [{"boxes": torch.tensor([[19.0, 20.0, 2.0, 2.0, 0.0]]), "scores": torch.tensor([0.5]),
            "labels": torch.tensor([0])}]
    got = {}
    for mode in ("mmrotate", "devkit"):
        m = RotatedMeanAveragePrecision(mode=mode)
        m.update(det, gt)
        got[mode] = m.compute()["map"]
    assert got == {"mmrotate": 1.0, "devkit": 0.0}


def random_scene(seed, n_images=15, n_classes=4):
    """Jittered copies of the gts, duplicates and random boxes; difficult gts; class 3 has only
    difficult gts (devkit npos 0); some images without gts; quadrilaterals perturbed from the
    rectangles (not rectangles any more)."""
    rng = np.random.default_rng(seed)
    preds, tgt = [], []
    for i in range(n_images):
        m = 0 if i % 5 == 4 else int(rng.integers(1, 10))
        gb = random_rboxes(rng, m, 0, 300)
        gl = rng.integers(0, n_classes, m)
        diff = (rng.random(m) < 0.2) | (gl == 3)
        quads = rbox_to_poly(gb) + rng.normal(0, 1.5, (m, 4, 2))
        pick = rng.integers(0, max(m, 1), int(rng.integers(0, 2 * m + 1))) if m else np.zeros(0, int)
        db = gb[pick] + rng.normal(0, 1, (len(pick), 5)) * [2, 2, 3, 3, 0.1]
        db = np.r_[db, random_rboxes(rng, int(rng.integers(0, 6)), 0, 300)]
        db[:, 2:4] = np.abs(db[:, 2:4]) + 0.5
        dl = np.r_[np.where(rng.random(len(pick)) < 0.9, gl[pick], rng.integers(0, n_classes, len(pick))),
                   rng.integers(0, n_classes, len(db) - len(pick))]
        preds.append({"boxes": torch.tensor(db), "labels": torch.tensor(dl), "scores": torch.tensor(rng.random(len(db)))})
        tgt.append({"boxes": torch.tensor(gb).reshape(-1, 5), "labels": torch.tensor(gl),
                    "difficult": torch.tensor(diff), "polygons": torch.tensor(quads.reshape(-1, 8))})
    return preds, tgt


def voc_ap_reference(rec, prec, use_07):
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            ap += (np.max(prec[rec >= t]) if np.sum(rec >= t) else 0.0) / 11.0
        return ap
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def devkit_reference(preds, tgt, classes, use_07=True, thr=0.5):
    """The devkit's voc_eval loop: detections of a class by score, gts prefiltered by horizontal
    overlap with the +1 convention, polygon IoU (shapely), match if > thr, difficult ignored."""
    aps = []
    for c in classes:
        recs, npos = {}, 0
        for i, t in enumerate(tgt):
            sel = (t["labels"] == c).numpy()
            recs[i] = {"poly": t["polygons"].numpy()[sel].reshape(-1, 4, 2), "diff": t["difficult"].numpy()[sel],
                       "det": [False] * int(sel.sum())}
            npos += int((~recs[i]["diff"]).sum())
        dets = [(float(s), i, corners(*b)) for i, p in enumerate(preds)
                for b, s, lab in zip(p["boxes"].numpy(), p["scores"].numpy(), p["labels"].numpy()) if lab == c]
        dets.sort(key=lambda x: -x[0])
        tp, fp = np.zeros(len(dets)), np.zeros(len(dets))
        for d, (_, i, bb) in enumerate(dets):
            r, ovmax, jmax = recs[i], -np.inf, -1
            for j, g in enumerate(r["poly"]):
                iw = min(g[:, 0].max(), bb[:, 0].max()) - max(g[:, 0].min(), bb[:, 0].min()) + 1
                ih = min(g[:, 1].max(), bb[:, 1].max()) - max(g[:, 1].min(), bb[:, 1].min()) + 1
                if iw > 0 and ih > 0:
                    ov = shapely_iou(g, bb)
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            if ovmax > thr:
                if not r["diff"][jmax]:
                    if not r["det"][jmax]:
                        tp[d], r["det"][jmax] = 1, True
                    else:
                        fp[d] = 1
            else:
                fp[d] = 1
        if npos == 0:
            aps.append(0.0)  # the devkit's recall is NaN here; 11-point AP then 0 (area mode: rsbench's choice)
            continue
        tp, fp = np.cumsum(tp), np.cumsum(fp)
        aps.append(voc_ap_reference(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), use_07))
    return float(np.mean(aps)), aps


@pytest.mark.parametrize("ap_mode", ["voc07", "area"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_devkit_mode_equals_reference(seed, ap_mode):
    preds, tgt = random_scene(seed)
    m = RotatedMeanAveragePrecision(mode="devkit", ap_mode=ap_mode, num_classes=4)
    for k in range(0, len(preds), 4):
        m.update(preds[k:k + 4], tgt[k:k + 4])
    r = m.compute()
    want, aps = devkit_reference(preds, tgt, range(4), use_07=ap_mode == "voc07")
    assert r["map"] == pytest.approx(want, abs=1e-9)
    assert list(r["map_per_class"].values()) == pytest.approx(aps, abs=1e-9)
    assert 0.1 < want < 0.9 and r["map_per_class"]["3"] == 0.0


def mmrotate_reference(preds, tgt, classes, use_07=True, thr=0.5):
    """MMRotate's eval_rbbox_map as described: per image, detections by score take their argmax gt
    (shapely IoU of the rectangles) if IoU >= thr and it is free, else FP; nothing ignored; mean
    over the classes with gts."""
    aps = []
    for c in classes:
        scores, tps, npos = [], [], 0
        for p, t in zip(preds, tgt):
            gts = [corners(*g) for g, lab in zip(t["boxes"].numpy(), t["labels"].numpy()) if lab == c]
            npos += len(gts)
            sel = [(float(s), corners(*b)) for b, s, lab in zip(p["boxes"].numpy(), p["scores"].numpy(),
                                                                   p["labels"].numpy()) if lab == c]
            covered = [False] * len(gts)
            for s, bb in sorted(sel, key=lambda x: -x[0]):
                ious = [shapely_iou(bb, g) for g in gts]
                j = int(np.argmax(ious)) if ious else -1
                tp = j >= 0 and ious[j] >= thr and not covered[j]
                if tp:
                    covered[j] = True
                scores.append(s)
                tps.append(float(tp))
        if npos == 0:
            continue
        order = np.argsort(-np.array(scores), kind="stable")
        tp = np.cumsum(np.array(tps)[order]) if tps else np.zeros(0)
        fp = np.cumsum(1 - np.array(tps)[order]) if tps else np.zeros(0)
        aps.append(voc_ap_reference(tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps), use_07))
    return float(np.mean(aps))


@pytest.mark.parametrize("ap_mode", ["voc07", "area"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mmrotate_mode_equals_reference(seed, ap_mode):
    preds, tgt = random_scene(seed)
    m = RotatedMeanAveragePrecision(mode="mmrotate", ap_mode=ap_mode)
    m.update(preds, tgt)
    want = mmrotate_reference(preds, tgt, range(4), use_07=ap_mode == "voc07")
    assert m.compute()["map"] == pytest.approx(want, abs=1e-9)


def test_mmrotate_mode_excludes_classes_without_gts_and_counts_difficult():
    preds, tgt = random_scene(5)
    for t in tgt:  # no gts of class 2 anywhere
        keep = t["labels"] != 2
        for k in t:
            t[k] = t[k][keep]
    m = RotatedMeanAveragePrecision(mode="mmrotate", num_classes=4)
    m.update(preds, tgt)
    r = m.compute()
    assert r["map_per_class"]["2"] is None and r["num_gts"]["2"] == 0
    assert r["num_gts"]["3"] == sum(int((t["labels"] == 3).sum()) for t in tgt) > 0  # difficult count
    assert r["map"] == pytest.approx(np.mean([r["map_per_class"][k] for k in "013"]), abs=1e-12)


def test_forward_batches_equal_update():
    preds, tgt = random_scene(6)
    a, b = RotatedMeanAveragePrecision(mode="devkit"), RotatedMeanAveragePrecision(mode="devkit")
    a.update(preds, tgt)
    for k in range(0, len(preds), 3):
        b(preds[k:k + 3], tgt[k:k + 3])
    assert a.compute() == b.compute()
    b.reset()
    assert b.compute()["map"] == 0.0


def test_bad_input():
    from rsbench.errors import ConfigError

    preds, tgt = hand_scene()
    del tgt[1]["polygons"]
    m = RotatedMeanAveragePrecision(mode="devkit")
    with pytest.raises(ValueError, match="polygons"):
        m.update(preds, tgt)
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        RotatedMeanAveragePrecision().update([{**preds[0], "boxes": torch.zeros(5, 4)}], tgt[:1])
    with pytest.raises(ValueError, match="labels"):
        RotatedMeanAveragePrecision(num_classes=1).update(preds[:1], tgt[:1])
    with pytest.raises(ConfigError):
        RotatedMeanAveragePrecision(mode="dota")
    with pytest.raises(ConfigError):
        RotatedMeanAveragePrecision(ap_mode="11points")
