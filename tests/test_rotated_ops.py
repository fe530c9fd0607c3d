"""Rotated boxes, IoU, NMS and box coders (rsbench/models/ops/{rbox,rotated_nms,rbox_coders}.py).

Oracles: shapely polygons in float64 (IoU, a greedy NMS reference), OpenCV conventions checked on
rectangles of known angle, and hand-derived answers of MMRotate 1.x's coder formulas
(Xie et al. 2021, midpoint offsets). Boxes are (cx, cy, w, h, theta), theta radians clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
import torch

from rsbench.models.ops.rbox import (
    _exact_iou,
    _with_trig,
    box_iou_rotated,
    flip_rboxes,
    hbox_to_rbox,
    norm_angle_le90,
    poly_to_rbox,
    rbox_iou,
    rbox_iou_aligned,
    rbox_to_hbox,
    rbox_to_poly,
    regularize_le90,
    regularize_rboxes,
    to_torchvision_rbox,
)
from rsbench.models.ops.rbox_coders import DeltaXYWHTRBoxCoder, MidpointOffsetCoder
from rsbench.models.ops.rotated_nms import batched_nms_rotated, nms_rotated

D = torch.float64
PI = math.pi


def T(*rows):
    return torch.tensor(rows, dtype=D)


def random_rboxes(n, seed, extent=200.0, size=(4.0, 40.0)):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(n, 5, generator=g, dtype=D)
    lo, hi = size
    return torch.stack([u[:, 0] * extent, u[:, 1] * extent, lo + u[:, 2] * (hi - lo), lo + u[:, 3] * (hi - lo) / 2,
                        (u[:, 4] - 0.5) * PI], dim=1)


def shapely_polys(rboxes):
    return shapely.polygons(rbox_to_poly(rboxes.to(D)).numpy().reshape(-1, 4, 2))


def shapely_iou(a, b):
    pa, pb = shapely_polys(a), shapely_polys(b)
    inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
    union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
    return inter / union


def same_region(a, b, tol=1e-4):
    """Rotated boxes describe the same rectangles (corner sets equal, any order)."""
    pa, pb = rbox_to_poly(a).view(-1, 4, 1, 2), rbox_to_poly(b).view(-1, 1, 4, 2)
    d = (pa - pb).norm(dim=-1)  # (n, 4, 4)
    return bool((d.min(dim=2).values.max() < tol) and (d.min(dim=1).values.max() < tol))


# ----------------------------------------------------------------------------- conversions


def test_rbox_to_poly_order_and_clockwise_angle():
    # theta = 0: c+u+v, c+u-v, c-u-v, c-u+v = bottom-right, top-right, top-left, bottom-left (y down)
    assert rbox_to_poly(T([10, 20, 4, 2, 0])).tolist() == [[12, 21, 12, 19, 8, 19, 8, 21]]
    # theta = +pi/2 turns the w side clockwise on screen: from +x to +y (down)
    p = rbox_to_poly(T([0, 0, 4, 2, PI / 2])).view(4, 2)
    torch.testing.assert_close(p, T([-1, 2], [1, 2], [1, -2], [-1, -2]), atol=1e-12, rtol=0)
    torch.testing.assert_close(rbox_to_hbox(T([0, 0, 4, 2, PI / 2])), T([-1, -2, 1, 2]), atol=1e-12, rtol=0)


def test_hbox_roundtrip_and_enclosing_box():
    hb = T([1, 2, 41, 12], [5, 5, 9, 50])
    r = hbox_to_rbox(hb)
    assert r.tolist() == [[21, 7, 40, 10, 0], [7, 27.5, 4, 45, 0]]
    torch.testing.assert_close(rbox_to_hbox(r), hb)
    b = random_rboxes(50, 1)
    p = rbox_to_poly(b).view(-1, 4, 2)
    torch.testing.assert_close(rbox_to_hbox(b), torch.cat([p.min(1).values, p.max(1).values], 1))


def test_norm_angle_and_regularize_le90():
    t = T(PI / 2, -PI / 2, PI, 3 * PI / 4, -3 * PI / 4, 0.3, 5.0)
    torch.testing.assert_close(norm_angle_le90(t), T(-PI / 2, -PI / 2, 0, -PI / 4, PI / 4, 0.3, 5.0 - 2 * PI))
    # MMRotate's docstring example (0, 0, 4, 5, 0.5): w <= h -> swap and add pi/2, then wrap into [-pi/2, pi/2)
    torch.testing.assert_close(regularize_le90(T([0, 0, 4, 5, 0.5])), T([0, 0, 5, 4, 0.5 + PI / 2 - PI]))
    sq = regularize_le90(T([0, 0, 3, 3, 0.2]))  # a square always gets +pi/2 (strict w > h rule)
    torch.testing.assert_close(sq, T([0, 0, 3, 3, 0.2 + PI / 2 - PI]))
    b = random_rboxes(200, 2)
    b[:, 4] = (torch.rand(200, dtype=D) - 0.5) * 6 * PI
    b[::2, 2], b[::2, 3] = b[::2, 3].clone(), b[::2, 2].clone()  # half of them tall
    for pattern, lo, hi, longer in [("le90", -PI / 2, PI / 2, True), ("le135", -PI / 4, 3 * PI / 4, True),
                                    ("oc", -PI / 2, 0, False)]:
        r = regularize_rboxes(b, pattern)
        assert same_region(r, b)
        assert bool(((r[:, 4] >= lo - 1e-12) & (r[:, 4] < hi)).all())
        if longer:
            assert bool((r[:, 2] >= r[:, 3]).all())
        torch.testing.assert_close(regularize_rboxes(r, pattern), r)  # idempotent
    with pytest.raises(ValueError):
        regularize_rboxes(b, "le45")


KNOWN = [  # (w, h, theta) of le90 rectangles, theta in [-pi/2, pi/2), w > h
    (40, 10, 0.0), (40, 10, PI / 4), (40, 10, -PI / 4), (40, 10, -PI / 2), (40, 10, 0.3), (40, 10, -0.3),
    (30, 12, 1.2), (30, 12, -1.2), (30, 29, PI / 2 - 0.01), (25, 5, PI / 2 - 1e-3),
]


@pytest.mark.parametrize("w,h,theta", KNOWN)
def test_poly_to_rbox_known_angles(w, h, theta):
    box = T([300.5, 200.25, w, h, theta])
    poly = rbox_to_poly(box)
    got = poly_to_rbox(poly.float()).double()
    assert same_region(got, box, tol=1e-3)
    torch.testing.assert_close(got[:, :4], box[:, :4], atol=2e-4, rtol=1e-5)
    dt = (got[0, 4] - theta + PI / 2) % PI - PI / 2  # -pi/2 and pi/2 - eps are neighbours
    assert abs(float(dt)) < 1e-5
    assert -PI / 2 - 1e-6 <= float(got[0, 4]) < PI / 2
    # corner order and orientation do not matter
    rev = poly.view(4, 2).flip(0).roll(1, 0).reshape(1, 8)
    torch.testing.assert_close(poly_to_rbox(rev.float()), poly_to_rbox(poly.float()), atol=2e-4, rtol=0)


def test_poly_to_rbox_axis_aligned_exact_and_raw_opencv_range():
    wide = T([10, 20, 50, 20, 50, 30, 10, 30])  # 40 x 10, axis-aligned
    tall = T([10, 20, 20, 20, 20, 60, 10, 60])  # 10 x 40
    assert poly_to_rbox(wide).tolist() == [[30.0, 25.0, 40.0, 10.0, 0.0]]
    torch.testing.assert_close(poly_to_rbox(tall), T([15.0, 40.0, 40.0, 10.0, -PI / 2]))
    raw = poly_to_rbox(torch.cat([wide, tall, rbox_to_poly(T([0, 0, 40, 10, 0.7]))]), version=None)
    # OpenCV's angle: [-90, 0) up to 4.5.0 and in 5.x, (0, 90] in 4.5.1-4.x; raw boxes keep the region
    a = torch.rad2deg(raw[:, 4])
    assert bool(((a >= -90) & (a < 0)).all()) or bool(((a > 0) & (a <= 90)).all())
    assert same_region(raw[:2], poly_to_rbox(torch.cat([wide, tall])))
    assert same_region(raw[2:], T([0, 0, 40, 10, 0.7]), tol=1e-3)
    assert poly_to_rbox(torch.zeros(0, 8)).shape == (0, 5)


def test_poly_to_rbox_square_ambiguity():
    for theta in (0.0, PI / 4, 0.5, -0.5):
        sq = T([7, 9, 20, 20, theta])
        got = poly_to_rbox(rbox_to_poly(sq).float()).double()
        assert same_region(got, sq, tol=1e-3)
        # a square's angle is only defined modulo pi/2; which representative depends on OpenCV's version
        d = (got[0, 4] - theta) % (PI / 2)
        assert min(float(d), PI / 2 - float(d)) < 1e-5


# ----------------------------------------------------------------------------- IoU


def test_iou_angle_sign_against_shapely():
    a, b = T([0, 0, 10, 2, 0.5]), T([3, 1.5, 10, 2, 0.3])  # asymmetric: the sign matters
    ref = shapely_iou(a, b)[0, 0]
    assert abs(float(rbox_iou(a, b)) - ref) < 1e-6
    wrong = torch.ops.torchvision.box_iou_rotated(
        torch.cat([a[:, :4], torch.rad2deg(a[:, 4:])], 1), torch.cat([b[:, :4], torch.rad2deg(b[:, 4:])], 1))
    assert abs(float(wrong) - ref) > 0.1  # +rad2deg would be wrong


def test_iou_random_against_shapely_iof_and_aligned():
    a, b = random_rboxes(40, 3, extent=80), random_rboxes(30, 4, extent=80)
    iou = rbox_iou(a, b)
    assert iou.shape == (40, 30) and iou.dtype == D
    ref = shapely_iou(a, b)
    np.testing.assert_allclose(iou.numpy(), ref, atol=1e-6)
    assert (ref > 0.05).sum() > 20  # the boxes do overlap
    pa, pb = shapely_polys(a), shapely_polys(b)
    iof = shapely.area(shapely.intersection(pa[:, None], pb[None, :])) / shapely.area(pa)[:, None]
    np.testing.assert_allclose(rbox_iou(a, b, mode="iof").numpy(), iof, atol=1e-5)
    c = a[:30] + torch.randn(30, 5, dtype=D, generator=torch.Generator().manual_seed(0)) * T([2, 2, 0, 0, 0.2])
    al = rbox_iou_aligned(a[:30], c, chunk=7)
    torch.testing.assert_close(al, rbox_iou(a[:30], c).diagonal())
    np.testing.assert_allclose(al.numpy(), np.diag(shapely_iou(a[:30], c)), atol=1e-6)
    assert rbox_iou(a[:0], b).shape == (0, 30) and rbox_iou_aligned(a[:0], a[:0]).shape == (0,)


def test_iou_clamps_degenerate_sizes():
    a = T([10, 10, 0, 5, 0], [10, 10, 4, 4, 0])
    iou = rbox_iou(a, a)
    assert torch.isfinite(iou).all()
    torch.testing.assert_close(iou[0, 0], torch.tensor(1.0, dtype=D))  # a 1e-3 x 5 sliver, itself
    assert float(iou[0, 1]) == pytest.approx(4e-3 / (16 + 5e-3 - 4e-3), rel=1e-4)  # sliver clipped to h 4


def near_identical_pairs(n, seed, eps=1e-6, dtype=torch.float32):
    """Random boxes and copies perturbed by ``eps`` noise (the kernel's failure case), in ``dtype``."""
    a = random_rboxes(n, seed, extent=200)
    b = a + eps * torch.randn(n, 5, generator=torch.Generator().manual_seed(seed + 1), dtype=D)
    return a.to(dtype), b.to(dtype)


def aligned_shapely_iou(a, b):
    pa, pb = shapely_polys(a), shapely_polys(b)
    inter = shapely.area(shapely.intersection(pa, pb))
    return inter / (shapely.area(pa) + shapely.area(pb) - inter)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_iou_near_identical_pairs_against_shapely(dtype):
    a, b = near_identical_pairs(1500, 21, dtype=dtype)
    ref = aligned_shapely_iou(a, b)
    kernel = torch.ops.torchvision.box_iou_rotated(to_torchvision_rbox(a), to_torchvision_rbox(b)).diagonal()
    assert (np.abs(kernel.double().numpy() - ref) > 0.1).sum() >= 5  # the raw kernel's flaw (~3 % of pairs)
    np.testing.assert_allclose(rbox_iou_aligned(a, b).double().numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(rbox_iou(a, b).diagonal().double().numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(box_iou_rotated(to_torchvision_rbox(a), to_torchvision_rbox(b)).diagonal().numpy(),
                               ref, atol=1e-5, rtol=0)
    # the example of the report, at many noise draws
    one = T([50.3, 40.7, 30.1, 10.2, 0.3]).float()
    pert = one + 1e-6 * torch.randn(500, 5, generator=torch.Generator().manual_seed(5), dtype=D).float()
    np.testing.assert_allclose(rbox_iou(one, pert)[0].double().numpy(), shapely_iou(one, pert)[0], atol=1e-5)


def test_iou_touching_and_collinear_configurations():
    """Other near-coincident layouts the kernel gets wrong: a shared corner, collinear sides (a shift along
    w, equal centres and angles with another width), a sliver of overlap with the neighbour."""
    a = random_rboxes(400, 23, extent=200)
    g = torch.Generator().manual_seed(24)
    c, s = torch.cos(a[:, 4]), torch.sin(a[:, 4])
    shift = torch.rand(400, generator=g, dtype=D) * a[:, 2]
    b1 = a.clone()
    b1[:, 0] += shift * c
    b1[:, 1] += shift * s
    b2 = a.clone()
    b2[:, 2] *= 0.5 + torch.rand(400, generator=g, dtype=D)
    b3 = a.clone()
    b3[:, 0] += a[:, 2] * c * 0.999999
    b3[:, 1] += a[:, 2] * s * 0.999999
    for b in (b1, b2, b3):
        for dtype in (torch.float32, D):
            got = rbox_iou_aligned(a.to(dtype), b.to(dtype)).double().numpy()
            np.testing.assert_allclose(got, aligned_shapely_iou(a.to(dtype), b.to(dtype)), atol=1e-5, rtol=0)


def test_iou_exact_fallback_general_pairs_and_empty():
    """The clipping fallback is exact on arbitrary pairs (disjoint, nested, crossing), not only near ones."""
    a, b = random_rboxes(3000, 25, extent=60), random_rboxes(3000, 26, extent=60)
    np.testing.assert_allclose(_exact_iou(_with_trig(a), _with_trig(b)).numpy(), aligned_shapely_iou(a, b),
                               atol=1e-12, rtol=0)
    far = _with_trig(T([0, 0, 4, 2, 0.3], [100, 100, 4, 2, 0.3]))
    assert _exact_iou(far[:1], far[1:]).tolist() == [0.0]


# ----------------------------------------------------------------------------- flips


@pytest.mark.parametrize("direction", ["horizontal", "vertical", "diagonal"])
def test_flip_matches_flipped_polygon(direction):
    W, H = 640.0, 480.0
    b = regularize_le90(random_rboxes(60, 5, extent=400))
    b[0, 4] = -PI / 2  # MMRotate would give +pi/2 after a horizontal flip
    f = flip_rboxes(b, W, H, direction)
    p = rbox_to_poly(b).view(-1, 4, 2)
    if direction in ("horizontal", "diagonal"):
        p = torch.stack([W - p[..., 0], p[..., 1]], dim=-1)
    if direction in ("vertical", "diagonal"):
        p = torch.stack([p[..., 0], H - p[..., 1]], dim=-1)
    torch.testing.assert_close(rbox_to_poly(f).view(-1, 4, 2).sort(1).values.sum(-1), p.sort(1).values.sum(-1))
    assert same_region(f, poly_to_rbox(p.reshape(-1, 8)), tol=1e-3)
    assert bool(((f[:, 4] >= -PI / 2) & (f[:, 4] < PI / 2)).all())
    torch.testing.assert_close(f[:, 2:4], b[:, 2:4])
    if direction == "horizontal":
        torch.testing.assert_close(f[:, 0], W - b[:, 0])
        torch.testing.assert_close(flip_rboxes(b, W, H, direction, normalize=False)[:, 4], -b[:, 4])
        assert float(f[0, 4]) == -PI / 2
    torch.testing.assert_close(flip_rboxes(f, W, H, direction), b)  # an involution


# ----------------------------------------------------------------------------- NMS


def reference_nms(boxes, scores, thr):
    """Float64 greedy NMS with shapely IoU: stable descending order, suppress when IoU > thr."""
    iou = shapely_iou(boxes, boxes)
    order = np.argsort(-scores.numpy(), kind="stable")
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for pos, i in enumerate(order):
        if not alive[pos]:
            continue
        keep.append(int(i))
        later = order[pos + 1:]
        alive[pos + 1:] &= ~(iou[i, later] > thr)
    return keep


@pytest.mark.parametrize("thr", [0.1, 0.5, 0.8])
def test_nms_equals_float64_reference_with_ties(thr):
    boxes = random_rboxes(300, 6, extent=150)
    g = torch.Generator().manual_seed(7)
    scores = torch.rand(300, generator=g, dtype=D)
    scores[::3] = torch.round(scores[::3] * 5) / 5  # many exact ties
    ref = reference_nms(boxes, scores, thr)
    assert len(ref) < 290 or thr > 0.5  # suppression happened (at 0.8: see the near duplicates)
    for method in ("greedy", "sparse", "dense"):
        assert nms_rotated(boxes, scores, thr, method=method).tolist() == ref
    near_dups = torch.cat([boxes[:50], boxes[:50] + T([0.5, 0, 0, 0, 0.01])])
    s2 = torch.cat([scores[:50], scores[:50]])  # ties between a box and its near duplicate
    ref2 = reference_nms(near_dups, s2, thr)
    for method in ("greedy", "sparse", "dense"):
        assert nms_rotated(near_dups.float(), s2.float(), thr, method=method).tolist() == ref2


@pytest.mark.parametrize("thr", [0.5, 0.7, 0.9])
def test_nms_suppresses_near_identical_duplicates(thr):
    """Each box plus two copies perturbed by ~1e-6 (IoU ~1): one box per group survives, in both paths
    (with the raw kernel ~3 % of the copies came out at IoU 1/3 or 0.6 and survived)."""
    base = random_rboxes(200, 31, extent=2000).float()  # spread out: groups do not touch each other
    g = torch.Generator().manual_seed(32)
    noise = [1e-6 * torch.randn(200, 5, generator=g) for _ in range(2)]
    boxes = torch.cat([base, base + noise[0], base + noise[1]])
    scores = torch.rand(600, generator=g)
    group_best = scores.view(3, 200).argmax(0) * 200 + torch.arange(200)
    expected = group_best[torch.sort(scores[group_best], descending=True, stable=True).indices]
    tv = to_torchvision_rbox(boxes)
    raw = torch.ops.torchvision.box_iou_rotated(tv[:200], tv[200:400]).diagonal()
    assert int((raw < 0.7).sum()) >= 1  # the unfixed kernel would keep duplicates here
    for method in ("greedy", "sparse", "dense"):
        assert nms_rotated(boxes, scores, thr, method=method).tolist() == expected.tolist()
    idxs = torch.zeros(600, dtype=torch.long)
    assert batched_nms_rotated(boxes, scores, idxs, thr).tolist() == expected.tolist()


def test_nms_paths_agree_float32_and_edge_cases():
    boxes = random_rboxes(500, 8, extent=300).float()
    scores = torch.rand(500, generator=torch.Generator().manual_seed(9))
    for thr in (0.05, 0.3, 0.7):
        k1 = nms_rotated(boxes, scores, thr, method="greedy")
        assert torch.equal(k1, nms_rotated(boxes, scores, thr, method="dense"))
        assert torch.equal(k1, nms_rotated(boxes, scores, thr, method="sparse"))
        assert bool((scores[k1][1:] <= scores[k1][:-1]).all())
    assert nms_rotated(boxes[:0], scores[:0], 0.5).shape == (0,)
    assert nms_rotated(boxes[:1], scores[:1], 0.5).tolist() == [0]
    same = boxes[:1].repeat(3, 1)
    assert nms_rotated(same, torch.tensor([0.2, 0.9, 0.5]), 0.5).tolist() == [1]
    tiny = T([10, 10, 1e-8, 1e-8, 0.3], [10, 10, 1e-8, 1e-8, 0.3])  # the kernel's IoU of sub-1e-14 boxes is 0:
    for method in ("sparse", "greedy", "dense"):  # no bound decides them otherwise
        assert nms_rotated(tiny, torch.tensor([0.9, 0.8], dtype=D), 0.1, method).tolist() == [0, 1]
    with pytest.raises(ValueError):
        nms_rotated(boxes[:, :4], scores, 0.5)


def test_nms_auto_picks_sparse_for_sparse_scenes_and_the_bound_is_safe(monkeypatch):
    """"auto" on the CPU takes the sparse graph when few horizontal boxes meet and greedy when many do
    (same keep set); the pair bound that spares the kernel never falls below the true IoU."""
    from rsbench.models.ops import rotated_nms as N

    sparse_scene, crowded = random_rboxes(400, 51, extent=2000), random_rboxes(400, 52, extent=60)
    scores = torch.rand(400, generator=torch.Generator().manual_seed(53), dtype=D)
    used = []
    for name in ("_sparse", "_greedy"):
        fn = getattr(N, name)
        monkeypatch.setattr(N, name, lambda *a, _fn=fn, _name=name, **k: used.append(_name) or _fn(*a, **k))
    for boxes in (sparse_scene, crowded):
        assert nms_rotated(boxes, scores, 0.3).tolist() == reference_nms(boxes, scores, 0.3)
    assert used == ["_sparse", "_greedy"]
    a, b = random_rboxes(3000, 54, extent=80), random_rboxes(3000, 55, extent=80)
    true = aligned_shapely_iou(a, b)
    geom, idx = _with_trig(torch.cat([a, b])), np.arange(3000)
    g = geom.numpy()
    lo, hi = N._iou_lower(g, idx, idx + 3000), N._iou_upper(g, N._grown_hbox(g), idx, idx + 3000)
    assert (lo <= true + 1e-9).all() and (hi >= true - 1e-9).all()  # bounds: the kernel decides in between
    assert ((true > 0) & (lo > 0.3 * true)).sum() > 0.3 * (true > 0).sum()  # and they are not trivial
    assert ((true < 0.9) & (hi < true + 0.3)).sum() > 0.5 * (true < 0.9).sum()
    aligned = torch.tensor([[0, 0, 40, 20, 0.3], [5, 2, 40, 20, 0.3], [0, 0, 40, 20, 0.3 + PI / 2]], dtype=D)
    g, i, j = _with_trig(aligned).numpy(), np.array([0, 0]), np.array([1, 2])
    lo, hi = N._iou_lower(g, i, j), N._iou_upper(g, N._grown_hbox(g), i, j)
    exact = aligned_shapely_iou(aligned[[0, 0]], aligned[[1, 2]])
    np.testing.assert_allclose(lo[0], exact[0], rtol=1e-9)  # equal angles: the inner rectangle is the box
    assert lo[1] <= exact[1] + 1e-12 and hi[1] >= exact[1] - 1e-12


def test_batched_nms_is_class_aware():
    boxes = random_rboxes(300, 10, extent=120)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(11), dtype=D)
    idxs = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(12))
    ref = []
    for c in range(4):
        sel = (idxs == c).nonzero().squeeze(1)
        ref += sel[reference_nms(boxes[sel], scores[sel], 0.3)].tolist()
    ref = sorted(ref, key=lambda i: (-float(scores[i]), i))
    assert batched_nms_rotated(boxes, scores, idxs, 0.3).tolist() == ref  # offset trick
    assert batched_nms_rotated(boxes, scores, idxs, 0.3, split_thr=10).tolist() == ref  # per class
    assert batched_nms_rotated(boxes, scores, idxs, 0.3, method="dense").tolist() == ref
    two = T([50, 50, 20, 10, 0.3], [50, 50, 20, 10, 0.3])
    assert batched_nms_rotated(two, T(0.9, 0.8), torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms_rotated(two, T(0.9, 0.8), torch.tensor([1, 1]), 0.5).tolist() == [0]
    assert batched_nms_rotated(two, T(0.9, 0.8), torch.tensor([0, 1]), 0.5, class_agnostic=True).tolist() == [0]


# ----------------------------------------------------------------------------- DeltaXYWHT coder


def test_delta_coder_known_answers_and_proj_xy():
    c = DeltaXYWHTRBoxCoder()
    p, g = T([100, 100, 40, 20, 0.0]), T([110, 105, 80, 10, 0.3])
    want = [0.25 / 0.1, 0.25 / 0.1, math.log(2) / 0.2, math.log(0.5) / 0.2, 0.3 / 0.1]
    torch.testing.assert_close(c.encode(p, g), T(want))
    # proj_xy: the offset (4, 2) in the proposal's own frame (w axis, h axis), proposal turned by pi/6
    t = PI / 6
    off = 4 * torch.tensor([math.cos(t), math.sin(t)]) + 2 * torch.tensor([-math.sin(t), math.cos(t)])
    p2, g2 = T([100, 100, 40, 20, t]), T([100 + float(off[0]), 100 + float(off[1]), 40, 20, t])
    torch.testing.assert_close(c.encode(p2, g2), T([0.1 / 0.1, 0.1 / 0.1, 0, 0, 0]))
    plain = DeltaXYWHTRBoxCoder(proj_xy=False).encode(p2, g2)
    torch.testing.assert_close(plain[:, :2], T([float(off[0]) / 40 / 0.1, float(off[1]) / 20 / 0.1]))
    for coder, pp, gg in ((c, p, g), (c, p2, g2), (DeltaXYWHTRBoxCoder(proj_xy=False), p2, g2)):
        torch.testing.assert_close(coder.decode(pp, coder.encode(pp, gg)), gg)


def test_delta_coder_edge_swap():
    p, g = T([0, 0, 40, 20, 0.0]), T([3, -2, 80, 10, 1.2])  # |dt| = 1.2 > pi/4
    d = DeltaXYWHTRBoxCoder().encode(p, g)
    dt2 = 1.2 + PI / 2 - PI  # the swapped reading (gh, gw, gt + pi/2), wrapped: |dt2| = 0.37
    torch.testing.assert_close(d[:, 2:], T([math.log(10 / 40) / 0.2, math.log(80 / 20) / 0.2, dt2 / 0.1]))
    torch.testing.assert_close(DeltaXYWHTRBoxCoder().decode(p, d), g)  # back to w >= h, theta 1.2
    d_ns = DeltaXYWHTRBoxCoder(edge_swap=False).encode(p, g)
    torch.testing.assert_close(d_ns[:, 2:], T([math.log(2) / 0.2, math.log(0.5) / 0.2, 1.2 / 0.1]))
    # a tall target is regularised first: (80 x 10 at 1.2) given as (10 x 80 at 1.2 - pi/2)
    torch.testing.assert_close(DeltaXYWHTRBoxCoder().encode(p, T([3, -2, 10, 80, 1.2 - PI / 2])), d)


def test_delta_coder_roundtrip_clips_and_shapes():
    c = DeltaXYWHTRBoxCoder()
    p = regularize_le90(random_rboxes(300, 13, extent=500))
    g = p + torch.randn(300, 5, dtype=D, generator=torch.Generator().manual_seed(1)) * T([4, 4, 3, 2, .6])
    g[:, 2:4] = g[:, 2:4].abs() + 1
    g = regularize_le90(g)
    d = c.encode(p, g)
    assert float(d[:, 4].abs().max()) * 0.1 <= PI / 4 + 1e-9
    assert same_region(c.decode(p, d), g, tol=1e-8)
    assert c.encode(p.float(), g.float()).dtype == torch.float32
    huge = torch.zeros(1, 5, dtype=D)
    huge[0, 2] = 100.0
    out = c.decode(p[:1], huge, max_shape=(50, 60))
    assert float(out[0, :2].max()) <= 59 and float(max(out[0, 2], out[0, 3]) / p[0, 2:4].max()) <= 1000 / 16 + 1e-6
    far = T([1e4, -1e4, 0, 0, 0])
    out = c.decode(p[:1], far, max_shape=(50, 60))
    assert 0 <= float(out[0, 0]) <= 59 and 0 <= float(out[0, 1]) <= 49
    multi = torch.cat([d[:4], d[4:8]], dim=1)  # (N, 2 classes * 5)
    torch.testing.assert_close(c.decode(p[:4], multi)[:, 5:], c.decode(p[:4], d[4:8]))
    assert c.decode(p[:0], d[:0]).shape == (0, 5)


# ----------------------------------------------------------------------------- midpoint-offset coder


def test_midpoint_encode_known_answers():
    m = MidpointOffsetCoder()
    anchor = T([80, 90, 120, 110])
    # upright gt = the anchor: top vertex at the top-right corner, right vertex at the bottom-right
    torch.testing.assert_close(m.encode(anchor, T([100, 100, 40, 20, 0])), T([0, 0, 0, 0, 0.5 / 0.5, 0.5 / 0.5]))
    # gt (50, 50, 20, 10, pi/6): u = 10 (cos, sin), v = 5 (-sin, cos); enclosing box 22.32 x 18.66;
    # top vertex c - u - v -> alpha = (-10 cos + 5 sin) / gw; right vertex c + u - v -> beta = (10 sin - 5 cos) / gh
    t = PI / 6
    gw, gh = 2 * (10 * math.cos(t) + 5 * math.sin(t)), 2 * (10 * math.sin(t) + 5 * math.cos(t))
    alpha, beta = (-10 * math.cos(t) + 5 * math.sin(t)) / gw, (10 * math.sin(t) - 5 * math.cos(t)) / gh
    assert (round(gw, 3), round(gh, 3), round(alpha, 4), round(beta, 4)) == (22.321, 18.660, -0.276, 0.0359)
    a2 = T([40, 40, 60, 60])
    want = [(50 - 50) / 20, 0.0, math.log(gw / 20), math.log(gh / 20), alpha / 0.5, beta / 0.5]
    torch.testing.assert_close(m.encode(a2, T([50, 50, 20, 10, t])), T(want))
    # a tall target (10 x 20 at t - pi/2) is the same rectangle: same deltas after le90 regularisation
    torch.testing.assert_close(m.encode(a2, T([50, 50, 10, 20, t - PI / 2])), T(want))


def test_midpoint_decode_known_answer():
    m = MidpointOffsetCoder(rect="closed_form")
    anchor = T([0, 0, 100, 50])
    # da = db = 0.25 (raw, std 0.5): vertices (75, 0), (100, 37.5), (25, 50), (0, 12.5) about (50, 25);
    # the shorter diagonal (75,0)-(25,50) is stretched to the longer one's half length sqrt(50^2 + 12.5^2)
    half = math.hypot(50, 12.5)
    k = half / math.hypot(25, 25)
    v1, v2 = (50 + 25 * k, 25 - 25 * k), (100.0, 37.5)
    v3 = (100 - v1[0], 50 - v1[1])  # opposite v1 through the centre
    e1, e2 = (v2[0] - v1[0], v2[1] - v1[1]), (v3[0] - v2[0], v3[1] - v2[1])
    w, h = math.hypot(*e2), math.hypot(*e1)  # e2 is the longer side here
    theta = (math.atan2(e2[1], e2[0]) + PI / 2) % PI - PI / 2
    assert (round(w, 2), round(h, 2), round(math.degrees(theta), 2)) == (89.7, 50.79, -15.48)
    d = T([0, 0, 0, 0, 0.5, 0.5])
    for coder in (m, MidpointOffsetCoder()):
        torch.testing.assert_close(coder.decode(anchor, d), T([50, 25, w, h, theta]), atol=2e-4, rtol=1e-5)
    up = T([0, 0, 0, 0, 1.0, 1.0])  # da = db = 0.5: the anchor itself, upright
    torch.testing.assert_close(MidpointOffsetCoder().decode(anchor, up), T([50, 25, 100, 50, 0]), atol=1e-5, rtol=0)
    assert MidpointOffsetCoder().decode(anchor[:0], d[:0]).shape == (0, 5)


def test_midpoint_roundtrip_and_cv2_vs_closed_form():
    g = regularize_le90(random_rboxes(300, 14, extent=500, size=(6, 60)))
    s, c = g[:, 4].sin().abs(), g[:, 4].cos().abs()
    g = g[(torch.stack([g[:, 2] * s, g[:, 3] * s, g[:, 2] * c, g[:, 3] * c], 1).min(1).values > 0.2) | (s == 0)]
    n = g.shape[0]  # (boxes within 0.1 px of upright hit MMRotate's tolerance, see the test below)
    noise = torch.randn(n, 4, dtype=D, generator=torch.Generator().manual_seed(2)).clamp(-2, 2)
    anchors = rbox_to_hbox(g) + noise  # every side >= 6 - 4
    m_cv, m_cf = MidpointOffsetCoder(), MidpointOffsetCoder(rect="closed_form")
    d = m_cv.encode(anchors, g)
    assert bool((d[:, 4:].abs() <= 1 + 1e-9).all())
    torch.testing.assert_close(m_cf.decode(anchors, d), g)
    assert same_region(m_cv.decode(anchors, d).double(), g, tol=2e-3)  # minAreaRect on float32 points
    noisy = d + torch.randn(n, 6, dtype=D, generator=torch.Generator().manual_seed(3))  # incl. clipped da, db
    a, b = m_cv.decode(anchors, noisy), m_cf.decode(anchors, noisy)
    assert same_region(a, b, tol=5e-3)
    nonsq = (b[:, 2] - b[:, 3]) > 1e-2
    torch.testing.assert_close(a[nonsq, :4], b[nonsq, :4], atol=5e-3, rtol=1e-5)
    dt = (a[nonsq, 4] - b[nonsq, 4] + PI / 2) % PI - PI / 2
    assert float(dt.abs().max()) < 1e-3
    assert m_cf.decode(anchors.float(), d.float()).dtype == torch.float32


def test_midpoint_encode_keeps_mmrotates_0p1_pixel_tolerance():
    """MMRotate's encoder picks the top vertex among corners within 0.1 px of the top edge (largest x)
    and the right vertex among corners within 0.1 px of the right edge (largest y). A box turned
    clockwise by 0.003 rad (40 x 20): its top corners differ by 40 sin t = 0.12 px (one counts: the
    left one, alpha ~ -0.5) but its right corners by 20 sin t = 0.06 px (both count: the lower one,
    beta = +0.5), so the target decodes to a sliver along the diagonal. Reproduced, not fixed."""
    m, anchor = MidpointOffsetCoder(), T([30, 40, 70, 60])
    d = m.encode(anchor, T([50, 50, 40, 20, 0.003]))
    assert float(d[0, 4]) == pytest.approx(-0.997, abs=1e-3) and float(d[0, 5]) == 1.0
    assert float(m.decode(anchor, d)[0, 3]) < 0.05  # degenerate
    d2 = m.encode(anchor, T([50, 50, 40, 20, -0.003]))  # counter-clockwise: consistent, decodes back
    torch.testing.assert_close(m.decode(anchor, d2), T([50, 50, 40, 20, -0.003]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("extent", [1024.0, 60.0])  # a sparse scene and a crowded one
def test_sparse_cpu_iou_equals_the_dense_kernel(extent, monkeypatch):
    """On the CPU the kernel runs only on the pairs whose horizontal boxes meet, in chunks; every value is
    the one dense call's, bit for bit, both ways round (the kernel's arguments keep their order), in float32
    and float64. A crowded scene falls back to one dense call."""
    from rsbench.models.ops import rbox as R

    g = torch.Generator().manual_seed(3)
    u = torch.rand(1300, 5, generator=g, dtype=torch.float64)
    boxes = torch.stack([u[:, 0] * extent, u[:, 1] * extent, 3 + u[:, 2] * 50, 3 + u[:, 3] * 20,
                         (u[:, 4] - 0.5) * math.pi], 1).float()
    boxes[700:720] = boxes[:20] + 1e-6  # near-duplicates across the two sets: repaired on both paths
    gap = torch.rand(40, generator=g) * 0.2  # boxes just apart along their w side: the separating-axis
    shift = boxes[20:60, 2] + gap              # pruning's margin (gaps 0-0.2 px, the tolerance ~0.05 px)
    boxes[720:760] = boxes[20:60]
    boxes[720:760, 0] += shift * torch.cos(boxes[20:60, 4])
    boxes[720:760, 1] += shift * torch.sin(boxes[20:60, 4])
    a, b = boxes[:700], boxes[700:]
    calls, kernel = [], torch.ops.torchvision.box_iou_rotated
    monkeypatch.setattr(R.torch.ops.torchvision, "box_iou_rotated",
                        lambda x, y: calls.append(len(x) * len(y)) or kernel(x, y), raising=False)
    sparse = {k: (R.rbox_iou(a.to(k), b.to(k)), R.rbox_iou(b.to(k), a.to(k))) for k in (torch.float32, torch.float64)}
    if extent > 500:
        assert len(calls) > 4 and sum(calls) < 0.05 * 4 * 700 * 600  # a few percent of the pairs
    else:
        assert calls == [700 * 600] * 4  # crowded: one dense call each
    monkeypatch.undo()
    assert (sparse[torch.float32][0] > 0).float().mean() < (0.2 if extent > 500 else 1.0)
    assert float(sparse[torch.float32][0][torch.arange(20), torch.arange(20)].min()) > 0.99
    monkeypatch.setattr(R, "_SPARSE_MAX_DENSITY", -1.0)  # always dense
    for k, (ab, ba) in sparse.items():
        assert torch.equal(ab, R.rbox_iou(a.to(k), b.to(k)))
        assert torch.equal(ba, R.rbox_iou(b.to(k), a.to(k)))


def test_sparse_cpu_iou_without_candidates_and_the_sweep(monkeypatch):
    """Boxes that nowhere meet: zeros and no kernel call. The candidate sweep (along the axis of largest
    spread) finds exactly the pairs whose horizontal boxes meet, touching and nested ones included, along
    either axis, and gives up past its limit."""
    from rsbench.models.ops import rbox as R

    a = random_rboxes(300, 41, extent=100)
    far = a.clone()
    far[:, 0] += 1000
    calls, kernel = [], torch.ops.torchvision.box_iou_rotated
    monkeypatch.setattr(R.torch.ops.torchvision, "box_iou_rotated",
                        lambda x, y: calls.append(len(x) * len(y)) or kernel(x, y), raising=False)
    assert torch.equal(R.rbox_iou(a, far), torch.zeros(300, 300, dtype=a.dtype)) and calls == []
    monkeypatch.undo()
    b = random_rboxes(2000, 42, extent=2000)
    np.testing.assert_allclose(R.rbox_iou(b, b[:300]).numpy(), shapely_iou(b, b[:300]), atol=1e-6, rtol=0)
    g = torch.Generator().manual_seed(43)
    for spread in (torch.tensor([400.0, 20.0]), torch.tensor([20.0, 400.0])):  # sweeps along x, then y
        lo = torch.rand(900, 2, generator=g, dtype=D) * spread
        h = torch.cat([lo, lo + torch.rand(900, 2, generator=g, dtype=D) * 12], 1)
        h[600:650] = h[:50]  # duplicates
        h[650:700, :2], h[650:700, 2:] = h[50:100, 2:], h[50:100, 2:] + 3  # touching at a corner
        ha, hb = h[:500].numpy(), h[500:].numpy()
        i, j = R._cross_candidates(ha, hb, math.inf)
        mask = ((ha[:, None, 0] <= hb[None, :, 2]) & (ha[:, None, 2] >= hb[None, :, 0])
                & (ha[:, None, 1] <= hb[None, :, 3]) & (ha[:, None, 3] >= hb[None, :, 1]))
        assert sorted(zip(i.tolist(), j.tolist())) == sorted(zip(*map(np.ndarray.tolist, np.nonzero(mask))))
        assert R._cross_candidates(ha, hb, 0.5 * mask.sum()) is None


def test_separating_axis_pruning_against_shapely():
    """The projections on the boxes' own axes: a negative overlap exactly when the boxes are disjoint
    (rectangles: four axes decide), the overlap rectangles contain the intersection (the NMS bound), and a
    pair pruned with the corner tolerances lies farther apart than them (its kernel value is 0)."""
    from rsbench.models.ops import rbox as R

    a, b = random_rboxes(4000, 61, extent=80), random_rboxes(4000, 62, extent=80)
    ga, gb = _with_trig(a), _with_trig(b)
    fo = R._frame_overlaps(ga, gb)
    torch.testing.assert_close(torch.from_numpy(R._frame_overlaps(ga.numpy(), gb.numpy())), fo, rtol=0, atol=1e-12)
    pa, pb = shapely_polys(a), shapely_polys(b)
    inter, dist = shapely.area(shapely.intersection(pa, pb)), shapely.distance(pa, pb)
    clear = (dist > 1e-9) | (inter > 1e-9)
    assert np.array_equal((fo.amin(dim=1) < 0).numpy()[clear], (dist > 1e-9)[clear])
    w = fo.clamp(min=0).numpy()
    assert (inter <= w[:, 0] * w[:, 1] + 1e-9).all() and (inter <= w[:, 2] * w[:, 3] + 1e-9).all()
    sep = R._separated(ga, gb).numpy()
    tol = 1e-3 * (a[:, 2:4].amax(dim=1) + b[:, 2:4].amax(dim=1)).numpy() + 2e-3
    assert sep.sum() > 1000 and (dist[sep] > tol[sep]).all()


def test_pair_geometry_torch_code_equals_numpy_code(monkeypatch):
    """The pair tests run in NumPy on the CPU and in torch on CUDA, one code: run here both ways, the exact
    IoU, the near-coincident flags, the separating-axis test and the grown boxes agree (to rounding)."""
    from rsbench.models.ops import rbox as R

    a, b = random_rboxes(3000, 71, extent=60), random_rboxes(3000, 72, extent=60)
    b[:1000] = a[:1000] + 1e-4 * torch.randn(1000, 5, generator=torch.Generator().manual_seed(73), dtype=D)
    ga, gb = _with_trig(a), _with_trig(b)
    fns = (R._exact_iou, R._near_coincident, R._separated)
    numpy_out = [f(ga, gb) for f in fns]
    monkeypatch.setattr(R, "_NUMPY_ON_CPU", False)
    torch_out = [f(ga, gb) for f in fns]
    torch.testing.assert_close(torch_out[0], numpy_out[0], rtol=0, atol=1e-12)
    assert torch.equal(torch_out[1], numpy_out[1]) and numpy_out[1].sum() > 500
    assert torch.equal(torch_out[2], numpy_out[2])
    torch.testing.assert_close(R._grown_hbox(ga), torch.from_numpy(R._grown_hbox(ga.numpy())), rtol=0, atol=0)
