"""Rotated boxes: conversions, le90 regularisation, IoU and flips, with MMRotate 1.x's semantics.

Convention everywhere in rsbench (MMRotate 1.x ``RotatedBoxes``): a rotated box is
``(cx, cy, w, h, theta)`` in pixels of an image whose y axis points down; ``theta`` is in radians and
the box is the horizontal box ``(cx, cy, w, h)`` rotated about its centre by ``theta`` **clockwise on
screen**, i.e. the w side runs along ``(cos theta, sin theta)`` and the h side along
``(-sin theta, cos theta)``. In the le90 form ``theta`` lies in ``[-pi/2, pi/2)`` and ``w >= h``
(``w > h`` unless the box is a square). Horizontal boxes are ``(x1, y1, x2, y2)``; polygons
(quadrilaterals) are ``(x1, y1, ..., x4, y4)``.

IoU goes through torchvision's own rotated kernel (``torch.ops.torchvision.box_iou_rotated``, the
one ``torchvision.ops.box_iou(..., fmt="cxcywhr")`` calls), whose angles are degrees,
counter-clockwise on screen: ``deg = -rad2deg(theta)`` (``tests/test_rotated_ops.py`` checks an
asymmetric pair against shapely).

**The kernel is wrong on near-coincident pairs, so rsbench repairs them.** Measured against shapely
(``scripts/bench_rotated_ops.py``, ``results/bench_rotated_ops.md``; 20 000 random boxes, each paired with a
copy whose five parameters carry ``eps`` Gaussian noise, CPU): |error| > 1e-3 for 2.9 % of the pairs at
eps 1e-6 in float32 (4.8 % in float64; 24 % in float64 at eps 1e-7), 0.5 % at 1e-5, 0.06 % at 1e-4,
0.01 % at 1e-3, none at 1e-2; the wrong values are typically 1/3 or 0.6 instead of ~1 (half or a quarter
of the intersection lost), and they also occur for a shared corner, collinear sides (a box shifted along
its w side, or with another width and the same centre and angle: 2 % of pairs even in float64), and
boxes that just touch (a 1e-6 sliver of overlap came out as IoU ~1). Exact duplicates and integer-grid
boxes are fine. Cause (reproduced by a line-by-line Python port of torchvision's
``csrc/ops/box_iou_rotated_utils.h``): near-coincident boxes produce clusters of near-duplicate
intersection points (each corner appears as its own vertex, the other box's vertex and several
edge-edge crossings, some within 1e-8 px of each other; nearly parallel edges add ill-conditioned
crossings along the sides). The Graham scan pops a point only if the turn test on exact coordinates is
``>= 0``; across a pair of near-duplicate points that test has a random sign, the popping stops early
and a reflex vertex at the start point stays in the "hull", which cuts a triangle (1/2 or 1/4 of the
box) out of the area. torchvision's file is detectron2's current one, which already carries
detectron2's fixes for this family (PR #2178, Oct 2020, for issues #2154/#2167: ``EPS = 1e-5``
tolerances on the edge-crossing and point-in-box tests; 2023: a bubble sort instead of ``std::sort``
with a non-strict comparator, and a non-FMA turn test); the near-duplicate case is still open there.
**MMCV** (``mmcv/ops/csrc/common/box_iou_rotated_utils.hpp``, unchanged in substance since 2021, checked
at the 2026-01 master) is the older detectron2 code *without* any of these fixes: strict ``[0, 1]``
crossing and inside tests, ``std::sort`` with the non-strict comparator on the CPU, the FMA turn test —
so it has the same flaw and more (mmcv #2621: 0.333 where torchvision gives 1.0; #2952, #2964).
Consequence: where a pair is near-coincident, rsbench's IoU (exact) can differ from what MTP computed
with mmcv's ``box_iou_rotated`` (assigner targets, NMS, the DOTA/DIOR-R mAP): mmcv may under- (or over-)
state it there. Such pairs need corners within ~1e-3 px of the other box's sides, which happens for
duplicated annotations/detections, collinear sides, and boxes re-derived from the same polygon, rarely
for free predictions; the effect on MTP's numbers is not measurable here.

The repair (``box_iou_rotated``, ``box_iou_rotated_aligned``, used by :func:`rbox_iou`,
:func:`rbox_iou_aligned` and rotated NMS): pairs whose horizontal enclosing boxes meet get a vectorised
corner test (a corner of one box within ``1e-3 * max side + 1e-3`` px of the other box's boundary,
measured in the other box's frame, float64); those, and only those, get an exact IoU in float64 from the
given boxes (Sutherland-Hodgman clipping of one box against the other's four sides in the other's frame,
fixed-size arrays, shoelace area; equal to shapely to ~1e-14). No per-pair Python loop; NumPy on the CPU
(its per-operation cost is a fifth of torch's on the few pairs a call has), torch on CUDA, one code.
After it: max error vs shapely 3e-8 (the float32 output) over all the cases above.

Speed on the CPU (``scripts/bench_rotated.py``, ``results/bench_rotated.md``): the kernel runs only on
the pairs whose (grown) horizontal boxes meet and that no axis of either box separates by more than the
corner tolerances (:func:`_separated`; on random scenes a third of the horizontal candidates), in chunks
of neighbouring boxes (:func:`_sparse_pairs`; a kernel call costs ~5 us plus ~0.15-0.25 us a pair), and
returns the same values as one dense call. On CUDA, and where more than a quarter of the pairs meet, one
dense call.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.box_iou_rotated)
from torch import Tensor

__all__ = [
    "box_iou_rotated",
    "box_iou_rotated_aligned",
    "flip_rboxes",
    "hbox_to_rbox",
    "norm_angle_le90",
    "poly_to_rbox",
    "rbox_iou",
    "rbox_iou_aligned",
    "rbox_to_hbox",
    "rbox_to_poly",
    "regularize_le90",
    "regularize_rboxes",
    "rescale_rboxes",
    "to_torchvision_rbox",
]

_PATTERNS = {"oc": (False, -90.0), "le90": (True, -90.0), "le135": (True, -45.0)}


def norm_angle_le90(theta: Tensor) -> Tensor:
    """Wrap angles (radians, any sign) into ``[-pi/2, pi/2)`` as MMRotate's ``norm_angle(t, 'le90')``.

    Only the angle changes: a box keeps its region when ``theta`` moves by a multiple of pi.
    """
    return torch.remainder(theta + math.pi / 2, math.pi) - math.pi / 2


def regularize_rboxes(rboxes: Tensor, pattern: str = "le90") -> Tensor:
    """Unique representation of rotated boxes, as MMRotate 1.x ``RotatedBoxes.regularize_boxes``.

    ``rboxes`` ``(..., 5)`` ``(cx, cy, w, h, theta)``, theta radians clockwise on screen. Patterns:

    * ``"le90"``: ``w >= h`` and theta in ``[-pi/2, pi/2)``. Rule: unless ``w > h`` (strictly), swap w and
      h and add pi/2; then wrap theta into ``[-pi/2, pi/2)``. A square therefore always gets pi/2 added.
    * ``"le135"``: the same with theta in ``[-pi/4, 3pi/4)``.
    * ``"oc"``: OpenCV's (pre-4.5.1) form: theta in ``[-pi/2, 0)``, w/h swapped whenever wrapping needs it.

    Returns a new tensor; the region of every box is unchanged.
    """
    if pattern not in _PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(_PATTERNS)}, got {pattern!r}")
    width_longer, start_deg = _PATTERNS[pattern]
    start = start_deg / 180 * math.pi
    x, y, w, h, t = rboxes.unbind(dim=-1)
    if width_longer:
        keep = w > h
        w_, h_ = torch.where(keep, w, h), torch.where(keep, h, w)
        t = torch.where(keep, t, t + math.pi / 2)
        t = torch.remainder(t - start, math.pi) + start
    else:
        t = torch.remainder(t - start, math.pi)
        keep = t < math.pi / 2
        w_, h_ = torch.where(keep, w, h), torch.where(keep, h, w)
        t = torch.where(keep, t, t - math.pi / 2) + start
    return torch.stack([x, y, w_, h_, t], dim=-1)


def regularize_le90(rboxes: Tensor) -> Tensor:
    """``regularize_rboxes(rboxes, "le90")``: ``w >= h``, theta in ``[-pi/2, pi/2)`` (radians, clockwise)."""
    return regularize_rboxes(rboxes, "le90")


def rbox_to_poly(rboxes: Tensor) -> Tensor:
    """Corners ``(..., 8)`` of rotated boxes ``(..., 5)``, in MMRotate's ``rbox2qbox`` order.

    With ``u = w/2 (cos t, sin t)`` and ``v = h/2 (-sin t, cos t)`` (theta clockwise on screen):
    ``c + u + v``, ``c + u - v``, ``c - u - v``, ``c - u + v``. For ``theta = 0`` that is
    bottom-right, top-right, top-left, bottom-left in image coordinates (y down).
    """
    ctr, w, h, t = torch.split(rboxes, (2, 1, 1, 1), dim=-1)
    cos, sin = torch.cos(t), torch.sin(t)
    u = torch.cat([w / 2 * cos, w / 2 * sin], dim=-1)
    v = torch.cat([-h / 2 * sin, h / 2 * cos], dim=-1)
    return torch.cat([ctr + u + v, ctr + u - v, ctr - u - v, ctr - u + v], dim=-1)


def poly_to_rbox(polys: Tensor, version: str | None = "le90") -> Tensor:
    """Minimum-area rotated rectangle of each quadrilateral, as MMRotate 1.x ``qbox2rbox``.

    ``polys`` ``(..., 8)`` pixel corners ``(x1, y1, ..., x4, y4)`` in any order. Each polygon goes to
    ``cv2.minAreaRect`` as float32 points (on the CPU, one call per polygon, like MMRotate); the
    result ``(cx, cy, w, h, angle_deg)`` becomes ``(cx, cy, w, h, angle_deg / 180 * pi)`` in the
    input's dtype and device. OpenCV's angle is clockwise on screen as ours, so no sign change; its
    range depends on the OpenCV version ([-90, 0) in 4.5.0- and 5.x, (0, 90] in 4.5.1-4.x), which
    ``version`` removes:

    * ``"le90"`` (default) / ``"le135"`` / ``"oc"``: then :func:`regularize_rboxes` with that pattern
      (what MMRotate's coders and losses do with these boxes); for le90: ``w >= h``, theta in
      ``[-pi/2, pi/2)``. Exact squares keep an OpenCV-version-dependent angle (theta or theta+pi/2;
      same region).
    * ``None``: OpenCV's raw answer, exactly what ``qbox2rbox`` returns.
    """
    import cv2

    shape = polys.shape[:-1]
    pts = polys.detach().reshape(-1, 4, 2).cpu().numpy().astype(np.float32)
    out = np.zeros((pts.shape[0], 5), dtype=np.float64)
    for i, p in enumerate(pts):
        (x, y), (w, h), angle = cv2.minAreaRect(p)
        out[i] = (x, y, w, h, angle / 180 * np.pi)
    rboxes = torch.from_numpy(out).to(dtype=polys.dtype, device=polys.device).reshape(*shape, 5)
    return rboxes if version is None else regularize_rboxes(rboxes, version)


def rbox_to_hbox(rboxes: Tensor) -> Tensor:
    """Enclosing horizontal box ``(..., 4)`` ``(x1, y1, x2, y2)`` of rotated boxes ``(..., 5)`` (MMRotate
    ``rbox2hbox``): half extents ``|w/2 cos t| + |h/2 sin t|`` and ``|w/2 sin t| + |h/2 cos t|``."""
    ctr, w, h, t = torch.split(rboxes, (2, 1, 1, 1), dim=-1)
    half = torch.cat(_half_extents(w, h, torch.cos(t), torch.sin(t)), dim=-1)
    return torch.cat([ctr - half, ctr + half], dim=-1)


def _half_extents(w, h, c, s):
    """Half extents along the reference axes of a ``w x h`` box whose w side has cosine ``c``, sine ``s``
    with them: ``|w/2 c| + |h/2 s|``, ``|w/2 s| + |h/2 c|`` (tensors or NumPy arrays)."""
    xp = _xp(w)
    return xp.abs(w / 2 * c) + xp.abs(h / 2 * s), xp.abs(w / 2 * s) + xp.abs(h / 2 * c)


def _in_frame(dx, dy, c, s):
    """A vector ``(dx, dy)`` in the frame whose first axis is ``(c, s)``."""
    return dx * c + dy * s, dy * c - dx * s


def _rel_trig(a, b):
    """Cosine and sine of ``theta_b - theta_a`` from the stored trig of geometries ``(P, 7)``."""
    ca, sa, cb, sb = a[:, 5], a[:, 6], b[:, 5], b[:, 6]
    return ca * cb + sa * sb, sb * ca - cb * sa


def _interval_overlap(half, ctr, ext):
    """Width of the overlap of ``[-half, half]`` and ``[ctr - ext, ctr + ext]`` (negative: a gap)."""
    xp = _xp(half)
    return xp.minimum(half, ctr + ext) - xp.maximum(-half, ctr - ext)


def hbox_to_rbox(hboxes: Tensor) -> Tensor:
    """Horizontal boxes ``(..., 4)`` ``(x1, y1, x2, y2)`` as rotated boxes ``(cx, cy, x2-x1, y2-y1, 0)``
    (MMRotate ``hbox2rbox``; not le90-regularised, so a tall box keeps ``w < h``)."""
    wh = hboxes[..., 2:] - hboxes[..., :2]
    ctr = (hboxes[..., 2:] + hboxes[..., :2]) / 2
    return torch.cat([ctr, wh, torch.zeros_like(wh[..., :1])], dim=-1)


def to_torchvision_rbox(rboxes: Tensor, min_size: float | None = None) -> Tensor:
    """Our ``(cx, cy, w, h, theta_rad_clockwise)`` → torchvision's ``cxcywhr`` (degrees, counter-clockwise).

    ``min_size`` clamps w and h from below (MMRotate's ``RBboxOverlaps2D`` uses 1e-3)."""
    ctr, wh, t = rboxes[..., :2], rboxes[..., 2:4], rboxes[..., 4:5]
    if min_size is not None:
        wh = wh.clamp(min=min_size)
    return torch.cat([ctr, wh, -torch.rad2deg(t)], dim=-1)


def _iou_to_mode(iou: Tensor, a: Tensor, b: Tensor, mode: str, aligned: bool) -> Tensor:
    if mode == "iou":
        return iou
    if mode != "iof":
        raise ValueError(f"mode must be 'iou' or 'iof', got {mode!r}")
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    total = area_a + area_b if aligned else area_a[:, None] + area_b[None, :]
    inter = iou * total / (1 + iou)  # iou = I / (A + B - I)
    return inter / (area_a if aligned else area_a[:, None])


# Near-coincident repair of torchvision's rotated IoU (see the module docstring).
_NEAR_REL = 1e-3  # a corner within this fraction of the pair's largest side (+ _NEAR_ABS px) of the other box's
_NEAR_ABS = 1e-3  # boundary flags the pair for the exact recomputation
_SLAB = 1 << 18  # candidate pairs per vectorised slab (bounds the temporaries: ~100 MB in float64)


def _with_trig(g: Tensor) -> Tensor:
    """Float64 geometry ``(N, 7)``: rsbench rboxes ``g`` ``(N, 5)`` (float64) and ``cos theta``, ``sin theta``,
    computed once a box: the pair tests below take them from there (per-pair trig would be most of a
    pair test's cost, and NumPy's is slow)."""
    return torch.cat([g, torch.cos(g[:, 4:5]), torch.sin(g[:, 4:5])], dim=1)


def _tv_geometry(tv: Tensor) -> Tensor:
    """torchvision ``cxcywhr`` boxes (degrees, counter-clockwise) → float64 geometry ``(N, 7)``
    (:func:`_with_trig`) in rsbench's clockwise convention (the same rectangles)."""
    g = tv.to(torch.float64)
    return _with_trig(torch.cat([g[:, :4], -torch.deg2rad(g[:, 4:5])], dim=1))


def _xp(x):
    """The array module of ``x``: the pair geometry below runs on NumPy arrays on the CPU (~0.5-1 us an
    operation instead of torch's ~2-5 us, and as fast on large arrays: no trig per pair) and on tensors on
    other devices, with one code."""
    return np if isinstance(x, np.ndarray) else torch


def _corners_in_frame(a, b):
    """Corners ``(u, v)``, each ``(P, 4)`` in cyclic order, of boxes ``a`` ``(P, 7)`` in the frame of ``b``
    ``(P, 7)`` (origin at b's centre, u along b's w side, v along its h side); geometry of :func:`_with_trig`."""
    xp = _xp(a)
    d = a[:, :2] - b[:, :2]
    du, dv = _in_frame(d[:, 0], d[:, 1], b[:, 5], b[:, 6])
    cr, sr = (x[:, None] for x in _rel_trig(b, a))  # of the angle of a relative to b
    hw, hh = a[:, 2] / 2, a[:, 3] / 2
    x = xp.stack([hw, -hw, -hw, hw], 1)  # corner signs along w and h, cyclic
    y = xp.stack([hh, hh, -hh, -hh], 1)
    return du[:, None] + x * cr - y * sr, dv[:, None] + x * sr + y * cr


def _near_boundary(a, b, tol):
    """``(P,)``: some corner of ``a`` lies within ``tol`` ``(P,)`` of the boundary of ``b``."""
    xp = _xp(a)
    u, v = _corners_in_frame(a, b)
    u, v, tol = xp.abs(u), xp.abs(v), tol[:, None]
    hw, hh = b[:, 2:3] / 2, b[:, 3:4] / 2
    on_w = (xp.abs(u - hw) <= tol) & (v <= hh + tol)
    on_h = (xp.abs(v - hh) <= tol) & (u <= hw + tol)
    return (on_w | on_h).any(1)


_NUMPY_ON_CPU = True  # False runs the torch code (CUDA's) on the CPU: the tests compare the two


def _arrays(a: Tensor, b: Tensor) -> tuple:
    """NumPy views of CPU tensors (see :func:`_xp`), the tensors themselves on other devices."""
    return (a.numpy(), b.numpy()) if a.device.type == "cpu" and _NUMPY_ON_CPU else (a, b)


def _as_tensor(x) -> Tensor:
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else x


def _near_coincident(a: Tensor, b: Tensor) -> Tensor:
    """``(P,)`` pairs the kernel may get wrong: a corner of one box (nearly) on the other's boundary (both
    ways round in one call of :func:`_near_boundary`); geometry ``(P, 7)`` of :func:`_with_trig`."""
    a_, b_ = _arrays(a, b)
    xp = _xp(a_)
    cat = np.concatenate if xp is np else torch.cat
    tol = _NEAR_REL * xp.maximum(xp.maximum(a_[:, 2], a_[:, 3]), xp.maximum(b_[:, 2], b_[:, 3])) + _NEAR_ABS
    p = a_.shape[0]
    both = _near_boundary(cat([a_, b_]), cat([b_, a_]), cat([tol, tol]))
    return _as_tensor(both[:p] | both[p:])


def _roll(x):
    """``x`` ``(P, K)`` shifted left by one along its vertices (NumPy's ``roll`` costs ~10 us a call)."""
    return np.concatenate([x[:, 1:], x[:, :1]], axis=1) if isinstance(x, np.ndarray) else x.roll(-1, 1)


def _interleave(x, y):
    """``(P, 2K)``: the columns of ``x`` and ``y`` ``(P, K)`` alternating (``stack`` + ``reshape`` costs more)."""
    shape = (x.shape[0], 2 * x.shape[1])
    out = np.empty(shape) if isinstance(x, np.ndarray) else x.new_empty(shape)
    out[:, 0::2], out[:, 1::2] = x, y
    return out


def _clip(u, v, coord: int, sign: float, lim):
    """Sutherland-Hodgman step with fixed shapes: polygons ``(u, v)`` ``(P, K)`` (cyclic) clipped to the
    half-plane ``sign * (u if coord == 0 else v) <= lim`` ``(P, 1)``; returns ``(P, 2K)`` polygons. Each
    vertex is followed by the crossing of its edge with the clip line (or by itself when the edge does not
    cross), and vertices outside are moved onto the line: points on one line add no area (the path along
    the line has the signed area of its end-to-end chord), so the shoelace area is the clipped polygon's,
    with no compaction of the vertex list. ~14 array operations a step: on the handful of pairs a call
    usually gets, their fixed cost is the whole cost."""
    xp = _xp(u)
    c, free = (u, v) if coord == 0 else (v, u)
    d = lim - c if sign > 0 else lim + c  # >= 0 inside
    d1 = _roll(d)
    cross = (d >= 0) != (d1 >= 0)
    t = d / (d - d1)  # only read where ``cross`` (then d - d1 != 0); elsewhere possibly inf or nan
    at = free + t * (_roll(free) - free)  # the other coordinate of the crossing
    line = sign * lim
    c = xp.minimum(c, line) if sign > 0 else xp.maximum(c, line)  # outside vertices onto the line
    c, free = _interleave(c, xp.where(cross, line, c)), _interleave(free, xp.where(cross, at, free))
    return (c, free) if coord == 0 else (free, c)


def _exact_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU ``(P,)`` of the pairs ``(a[i], b[i])`` (float64 geometry ``(P, 7)`` of :func:`_with_trig`): ``a``
    clipped against ``b``'s four sides in ``b``'s frame (Sutherland-Hodgman, exact up to rounding), shoelace
    area."""
    a_, b_ = _arrays(a, b)
    xp = _xp(a_)
    with np.errstate(divide="ignore", invalid="ignore"):  # _clip's unread quotients
        u, v = _corners_in_frame(a_, b_)
        hw, hh = b_[:, 2:3] / 2, b_[:, 3:4] / 2
        for coord, sign, lim in ((0, 1.0, hw), (0, -1.0, hw), (1, 1.0, hh), (1, -1.0, hh)):
            u, v = _clip(u, v, coord, sign, lim)
    inter = 0.5 * xp.abs((u * _roll(v) - _roll(u) * v).sum(1))
    area_a, area_b = a_[:, 2] * a_[:, 3], b_[:, 2] * b_[:, 3]
    union = area_a + area_b - inter
    ok = (area_a >= 1e-14) & (area_b >= 1e-14) & (union > 1e-14)  # the kernel's degenerate-box rule
    return _as_tensor(xp.where(ok, inter / xp.where(ok, union, 1.0), 0.0).clip(0, 1))


def _repair_pairs(values: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
    """``values`` ``(P,)`` (kernel IoU of the pairs ``(ga[i], gb[i])``) with the near-coincident pairs
    replaced by :func:`_exact_iou`; slabs of ``_SLAB`` pairs. Returns a new tensor."""
    out = values.clone()
    for s in range(0, values.shape[0], _SLAB):
        a, b = ga[s : s + _SLAB], gb[s : s + _SLAB]
        sel = _near_coincident(a, b).nonzero().squeeze(1)
        if sel.numel():
            out[s + sel] = _exact_iou(a[sel], b[sel]).to(out.dtype)
    return out


def _grown_hbox(g):
    """Enclosing horizontal boxes ``(N, 4)`` of float64 geometries ``g`` ``(N, 7)`` (tensor, or NumPy on the
    CPU paths) grown by each box's share of the corner tolerance (``_NEAR_REL * max(w, h) + _NEAR_ABS``),
    so every pair :func:`_near_coincident` can flag meets; ``rbox_to_hbox``'s half extents, from the stored
    trig."""
    xp = _xp(g)
    grow = _NEAR_REL * xp.maximum(g[:, 2], g[:, 3]) + _NEAR_ABS
    bx, by = _half_extents(g[:, 2], g[:, 3], g[:, 5], g[:, 6])
    bx, by = bx + grow, by + grow
    return xp.stack([g[:, 0] - bx, g[:, 1] - by, g[:, 0] + bx, g[:, 1] + by], 1)


def _frame_overlaps(a, b):
    """Widths ``(P, 4)`` of the overlap of each pair's projections on ``a``'s w and h axes (columns 0, 1)
    and on ``b``'s (2, 3); negative: a gap; geometry ``(P, 7)`` of :func:`_with_trig`. For the
    separating-axis test and an upper bound of the intersection (``a & b`` lies in each box's frame within
    the product of its two widths), tighter than the horizontal boxes' for rotated, elongated boxes.
    Tensors or NumPy arrays."""
    xp = _xp(a)
    cr, sr = _rel_trig(a, b)  # the angle between them (its sign does not change the extents)
    dx, dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    out = []
    for x, y, sgn in ((a, b, 1.0), (b, a, -1.0)):  # y's projections in x's frame
        du, dv = _in_frame(sgn * dx, sgn * dy, x[:, 5], x[:, 6])
        eu, ev = _half_extents(y[:, 2], y[:, 3], cr, sr)
        out += [_interval_overlap(x[:, 2] / 2, du, eu), _interval_overlap(x[:, 3] / 2, dv, ev)]
    return xp.stack(out, 1)


def _separated(a: Tensor, b: Tensor) -> Tensor:
    """``(P,)`` pairs apart along one of the boxes' own axes by more than both boxes' corner tolerances (as
    :func:`_grown_hbox`): the kernel gives them 0 (its own tolerances are far smaller) and
    :func:`_near_coincident` cannot flag them (no corner within ``tol`` of the other box)."""
    a_, b_ = _arrays(a, b)
    xp = _xp(a_)
    tol = _NEAR_REL * (xp.maximum(a_[:, 2], a_[:, 3]) + xp.maximum(b_[:, 2], b_[:, 3])) + 2 * _NEAR_ABS
    return _as_tensor(-xp.amin(_frame_overlaps(a_, b_), 1) > tol)


def _hbox_meet(ha: Tensor, hb: Tensor) -> Tensor:
    """``(N, M)`` mask of the pairs whose horizontal boxes ``(N, 4)``, ``(M, 4)`` meet; one ``(N, M)``
    comparison per side (no ``(N, M, 2)`` temporaries)."""
    ax1, ay1, ax2, ay2 = (c[:, None] for c in ha.unbind(1))
    bx1, by1, bx2, by2 = (c[None, :] for c in hb.unbind(1))
    return (ax1 <= bx2) & (ax2 >= bx1) & (ay1 <= by2) & (ay2 >= by1)


def _hbox_candidates(ha: Tensor, hb: Tensor) -> tuple[Tensor, Tensor]:
    """Index pairs ``(i, j)`` (row-major) whose grown horizontal boxes ``(N, 4)``, ``(M, 4)`` meet."""
    return torch.where(_hbox_meet(ha, hb))


def _geometry(rboxes: Tensor, min_size: float | None) -> Tensor:
    """Float64 geometry ``(N, 7)`` (:func:`_with_trig`) of rsbench rboxes with w, h clamped as
    :func:`to_torchvision_rbox` does."""
    g = rboxes.detach().to(torch.float64)
    if min_size is not None:
        g = torch.cat([g[:, :2], g[:, 2:4].clamp(min=min_size), g[:, 4:]], dim=1)
    return _with_trig(g)


def _repair_matrix(iou: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
    """In place on the kernel's ``(N, M)`` IoU: pairs whose (grown) enclosing horizontal boxes meet get
    the corner test, the flagged ones the exact IoU. Row blocks bound the temporaries."""
    if iou.numel() == 0:
        return iou
    ha, hb = _grown_hbox(ga), _grown_hbox(gb)
    rows = max(1, (1 << 22) // gb.shape[0])
    for r in range(0, ga.shape[0], rows):
        i, j = _hbox_candidates(ha[r : r + rows], hb)
        if i.numel():
            i = i + r
            iou[i, j] = _repair_pairs(iou[i, j], ga[i], gb[j])
    return iou


def _aligned_kernel(ta: Tensor, tb: Tensor, chunk: int) -> Tensor:
    kernel = torch.ops.torchvision.box_iou_rotated
    return torch.cat([kernel(ta[i : i + chunk], tb[i : i + chunk]).diagonal() for i in range(0, ta.shape[0], chunk)])


_CELL = 8  # boxes per cell of the spatial order the sparse CPU path chunks pairs along
_CHUNK_PER_BOX = 8  # kernel pairs wanted per call, per box of the grouped side (see _grouped_kernel)
_SPARSE_MAX_DENSITY = 0.25  # above this fraction of candidate pairs, one dense kernel call is cheaper


def _spatial_order(h: np.ndarray, per_cell: int) -> np.ndarray:
    """Order of horizontal boxes ``h`` ``(N, 4)`` along a boustrophedon over square cells holding about
    ``per_cell`` boxes each, so that consecutive boxes lie close together."""
    n = h.shape[0]
    lo, hi = h[:, :2].min(axis=0), h[:, 2:].max(axis=0)
    cell = float((hi - lo).max()) * math.sqrt(per_cell / n) + 1e-9
    ctr = (h[:, :2] + h[:, 2:]) / 2
    strip = np.floor((ctr[:, 0] - lo[0]) / cell)
    along = np.where(strip % 2 == 0, ctr[:, 1], hi[1] - ctr[:, 1]) / (hi[1] - lo[1] + 1e-9)
    return np.argsort(strip * (4 * n + 1) + along * 2 * n)


def _chunk_unique(x: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each chunk of ``chunk`` consecutive entries of the int array ``x``: its sorted distinct values
    and each entry's position among them, for all chunks in one pass (a per-chunk ``np.unique`` costs
    ~5-10 us, more than the kernel call it feeds). Returns ``(values, start, pos)``: chunk ``c``'s values
    are ``values[start[c]:start[c + 1]]``, entry ``k``'s is ``values[start[k // chunk] + pos[k]]``."""
    cid = np.arange(x.shape[0]) // chunk
    key = cid * (int(x.max()) + 1) + x
    srt = np.argsort(key, kind="stable")
    ks = key[srt]
    first = np.empty(ks.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(ks[1:], ks[:-1], out=first[1:])
    rank = np.cumsum(first) - 1  # global index of each sorted entry's distinct value
    start = np.searchsorted(cid[srt][first], np.arange(cid[-1] + 2))
    pos = np.empty_like(rank)
    pos[srt] = rank - start[cid[srt]]
    return x[srt][first], start, pos


def _grouped_kernel(tg: Tensor, to: Tensor, r: np.ndarray, i: np.ndarray, g_first: bool) -> np.ndarray:
    """The kernel's values ``(K,)`` for the pairs of ``tg[r[k]]`` and ``to[i[k]]`` (``r`` ascending, ``tg`` in
    a spatial order), the kernel called as ``kernel(tg, to)`` if ``g_first`` else ``kernel(to, tg)`` (its
    float32 rounding is not symmetric). One call per chunk of consecutive pairs, on the boxes the chunk
    names; the kernel is per pair, so each value is the one a dense call gives. A call costs ~5 us and
    ~0.15-0.25 us a pair it computes (one CPU thread), so a chunk holds ~8 pairs per box of ``tg`` it
    touches: isolated pairs come 8 to a call, crowded boxes many more."""
    out = np.empty(i.shape[0], dtype=np.float32)  # the kernel's output dtype, whatever its input's
    if i.shape[0] == 0:
        return out
    per_box = i.shape[0] / (np.count_nonzero(np.diff(r)) + 1)
    chunk = int(min(1024, max(8, _CHUNK_PER_BOX * per_box)))
    rows, rstart, ri = _chunk_unique(i, chunk)
    cols, cstart, ci = _chunk_unique(r, chunk)
    others = torch.from_numpy(to.detach().numpy()[rows])  # every chunk's boxes, gathered once: a chunk's are a
    mines = torch.from_numpy(tg.detach().numpy()[cols])   # contiguous slice
    rstart, cstart = rstart.tolist(), cstart.tolist()
    kernel = torch.ops.torchvision.box_iou_rotated
    for c, s in enumerate(range(0, i.shape[0], chunk)):
        other, mine = others[rstart[c] : rstart[c + 1]], mines[cstart[c] : cstart[c + 1]]
        e = s + chunk
        if g_first:
            out[s:e] = kernel(mine, other).numpy()[ci[s:e], ri[s:e]]
        else:
            out[s:e] = kernel(other, mine).numpy()[ri[s:e], ci[s:e]]
    return out


def _interval_join(s1: np.ndarray, e1: np.ndarray, s2: np.ndarray, e2: np.ndarray, strict: bool,
                   limit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Index pairs ``(p, q)`` with ``s1[p] <= s2[q] <= e1[p]`` (``<`` on the left if ``strict``): the second
    set's intervals that start inside the first's, by a sort and two binary searches; ``None`` when there
    are more than ``limit``."""
    o = np.argsort(s2, kind="stable")
    ss = s2[o]
    lo = np.searchsorted(ss, s1, side="right" if strict else "left")
    cnt = np.maximum(np.searchsorted(ss, e1, side="right") - lo, 0)
    total = int(cnt.sum())
    if total > limit:
        return None
    p = np.repeat(np.arange(s1.shape[0]), cnt)
    return p, o[np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(total)]


def _cross_candidates(ha: np.ndarray, hb: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Pairs ``(i, j)`` whose horizontal boxes ``ha`` ``(N, 4)``, ``hb`` ``(M, 4)`` meet, by a sweep along the
    axis where the boxes spread most (two interval joins: b starts inside a, or a strictly inside b, then the
    other axis compared): ``O((N + M) log + pairs)`` where a mask is ``N x M``. ``None`` when more than
    ``limit`` pairs overlap along the sweep axis (a crowded scene: one dense kernel call is cheaper)."""
    both = np.concatenate([ha, hb])
    x = int(np.ptp(both[:, 0] + both[:, 2]) < np.ptp(both[:, 1] + both[:, 3]))  # the sweep axis
    y = 1 - x
    first = _interval_join(ha[:, x], ha[:, x + 2], hb[:, x], hb[:, x + 2], False, limit)
    if first is None:
        return None
    second = _interval_join(hb[:, x], hb[:, x + 2], ha[:, x], ha[:, x + 2], True, limit - first[0].shape[0])
    if second is None:
        return None
    i, j = np.concatenate([first[0], second[1]]), np.concatenate([first[1], second[0]])
    meet = (ha[i, y] <= hb[j, y + 2]) & (ha[i, y + 2] >= hb[j, y])
    return i[meet], j[meet]


def _sparse_pairs(ta: Tensor, tb: Tensor, ga: Tensor, gb: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """On the CPU: the candidate pairs ``(i, j)`` (grown horizontal boxes meet, no axis of either box
    separates them) and their repaired IoU, the kernel run on those pairs only, the shorter side grouped
    along its spatial order; ``None`` when more than :data:`_SPARSE_MAX_DENSITY` of all pairs overlap
    along the sweep axis (one dense call is cheaper then)."""
    n, m = ta.shape[0], tb.shape[0]
    ha, hb = _grown_hbox(ga.numpy()), _grown_hbox(gb.numpy())
    g_first = n < m
    (tg, hg, gg), (to, ho, go) = ((ta, ha, ga), (tb, hb, gb)) if g_first else ((tb, hb, gb), (ta, ha, ga))
    pairs = _cross_candidates(hg, ho, _SPARSE_MAX_DENSITY * n * m)
    if pairs is None:
        return None
    order = _spatial_order(hg, _CELL)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    r, i = rank[pairs[0]], pairs[1]
    srt = np.argsort(r * ho.shape[0] + i)  # by the grouped box's position in ``order``, then the other box
    r, i = torch.from_numpy(r[srt]), torch.from_numpy(i[srt])
    order = torch.from_numpy(order)
    meet = ~_separated(gg[order[r]], go[i])  # the others are 0 in a dense call too
    r, i = r[meet], i[meet]
    values = _grouped_kernel(tg.detach()[order].contiguous(), to, r.numpy(), i.numpy(), g_first)
    ia, ib = (order[r], i) if g_first else (i, order[r])
    return ia, ib, _repair_pairs(torch.from_numpy(values), ga[ia], gb[ib])


def _iou_matrix(ta: Tensor, tb: Tensor, ga: Tensor, gb: Tensor) -> Tensor:
    """The kernel's ``(N, M)`` IoU with the near-coincident pairs repaired.

    On the CPU the kernel runs only on the pairs whose (grown) horizontal boxes meet (the others are 0:
    their rotated boxes cannot meet), in chunks of neighbouring boxes (:func:`_sparse_pairs`);
    on a sparse scene that is a few percent of the pairs (2000 x 2000 boxes of 4-64 px on 1024 px: 0.4 %).
    The same values as one dense call: the kernel is per pair. Crowded inputs and CUDA: one dense call."""
    if not ta.is_cuda and ta.shape[0] and tb.shape[0]:
        sparse = _sparse_pairs(ta, tb, ga, gb)
        if sparse is not None:
            i, j, values = sparse
            out = torch.zeros((ta.shape[0], tb.shape[0]), dtype=torch.float32)
            out[i, j] = values
            return out
    return _repair_matrix(torch.ops.torchvision.box_iou_rotated(ta, tb), ga, gb)


def box_iou_rotated(ta: Tensor, tb: Tensor) -> Tensor:
    """Drop-in for ``torch.ops.torchvision.box_iou_rotated`` (``(N, 5)`` x ``(M, 5)`` torchvision ``cxcywhr``
    boxes, degrees counter-clockwise → ``(N, M)`` float32 IoU), with the pairs the kernel can get wrong
    (near-coincident boxes: a corner of one within ``1e-3 * max side + 1e-3`` px of the other's boundary)
    recomputed exactly in float64. Any device; the extra cost is a horizontal-box overlap test on all
    pairs plus the corner test on the overlapping ones (see the module docstring)."""
    return _iou_matrix(ta, tb, _tv_geometry(ta), _tv_geometry(tb))


def box_iou_rotated_aligned(ta: Tensor, tb: Tensor, chunk: int = 64) -> Tensor:
    """IoU ``(N,)`` of the pairs ``(ta[i], tb[i])`` (torchvision ``cxcywhr``), as :func:`box_iou_rotated`:
    diagonals of ``chunk x chunk`` kernel blocks, then the near-coincident pairs recomputed exactly."""
    return _repair_pairs(_aligned_kernel(ta, tb, chunk), _tv_geometry(ta), _tv_geometry(tb))


def rbox_iou(a: Tensor, b: Tensor, mode: str = "iou", min_size: float = 1e-3) -> Tensor:
    """Pairwise overlaps ``(N, M)`` of rotated boxes ``a`` ``(N, 5)`` and ``b`` ``(M, 5)`` (our convention).

    As MMRotate's ``RBboxOverlaps2D`` / ``rbbox_overlaps``: w and h clamped to ``>= min_size`` (1e-3) on
    detached copies, exact polygon intersection (torchvision's kernel, CPU or CUDA; it returns float32
    values, cast back to the input dtype: ~3e-8 from shapely in float64), except for near-coincident
    pairs, which the kernel can get badly wrong and which are recomputed exactly in float64 from the
    given boxes (see the module docstring). ``mode="iof"``: intersection over the area of ``a`` (derived
    from the IoU). No autograd.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        return a.new_zeros((a.shape[0], b.shape[0]))
    ta = to_torchvision_rbox(a.detach(), min_size)
    tb = to_torchvision_rbox(b.detach().to(a.dtype), min_size)
    iou = _iou_matrix(ta, tb, _geometry(a, min_size), _geometry(b, min_size)).to(ta.dtype)
    return _iou_to_mode(iou, ta, tb, mode, aligned=False)


def rbox_iou_aligned(a: Tensor, b: Tensor, mode: str = "iou", min_size: float = 1e-3, chunk: int = 64) -> Tensor:
    """Overlaps ``(N,)`` of the pairs ``(a[i], b[i])`` (both ``(N, 5)``), as :func:`rbox_iou`.

    torchvision has no aligned kernel, so this takes the diagonals of ``chunk x chunk`` blocks
    (``N * chunk`` pair evaluations, ~0.4 us each on one CPU thread), then repairs the near-coincident
    pairs as :func:`rbox_iou`.
    """
    if a.shape != b.shape:
        raise ValueError(f"aligned IoU needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0:
        return a.new_zeros((0,))
    ta = to_torchvision_rbox(a.detach(), min_size)
    tb = to_torchvision_rbox(b.detach().to(a.dtype), min_size)
    iou = _aligned_kernel(ta, tb, chunk).to(ta.dtype)
    iou = _repair_pairs(iou, _geometry(a, min_size), _geometry(b, min_size))
    return _iou_to_mode(iou, ta, tb, mode, aligned=True)


def flip_rboxes(rboxes: Tensor, width: float, height: float, direction: str = "horizontal",
                normalize: bool = True) -> Tensor:
    """Rotated boxes ``(..., 5)`` after flipping an image of ``width`` x ``height`` pixels.

    As MMRotate 1.x ``RotatedBoxes.flip_`` (no -1: pixel edges are coordinates 0 and W):
    ``"horizontal"``: ``cx' = W - cx``, ``theta' = -theta``; ``"vertical"``: ``cy' = H - cy``,
    ``theta' = -theta``; ``"diagonal"`` (both flips = a 180 degree rotation): both centres, theta kept.
    w and h are kept. MMRotate leaves ``-theta`` as it is (pi/2 for a le90 box at -pi/2); with
    ``normalize`` (default) the angle is wrapped back into ``[-pi/2, pi/2)`` (:func:`norm_angle_le90`),
    which changes no region, so a le90 box stays le90. Returns a new tensor.
    """
    if direction not in ("horizontal", "vertical", "diagonal"):
        raise ValueError(f"direction must be horizontal, vertical or diagonal, got {direction!r}")
    cx, cy, w, h, t = rboxes.unbind(dim=-1)
    if direction in ("horizontal", "diagonal"):
        cx = width - cx
    if direction in ("vertical", "diagonal"):
        cy = height - cy
    if direction != "diagonal":
        t = -t
        if normalize:
            t = norm_angle_le90(t)
    return torch.stack([cx, cy, w, h, t], dim=-1)


def rescale_rboxes(rboxes: Tensor, scale_x: float, scale_y: float) -> Tensor:
    """Rotated boxes ``(..., 5)`` with centres scaled by ``(scale_x, scale_y)``, as MMRotate 1.x's
    ``RotatedBoxes.rescale_`` (what ``predict(rescale=True)`` applies with ``1 / scale_factor``).

    Its formulas, kept as they are: ``w' = w * sqrt((sx cos t)^2 + (sy sin t)^2)``,
    ``h' = h * sqrt((sx sin t)^2 + (sy cos t)^2)``, ``t' = atan2(sx sin t, sy cos t)``. For ``sx == sy``
    (a keep-ratio resize that rounds to equal factors) this is the exact similarity; for ``sx != sy``
    the angle is detectron2's (counter-clockwise) formula applied to MMRotate's clockwise angle, which
    is not the exact image of the box, and that is what the official submissions hold. Returns a new tensor.
    """
    ctr, w, h, t = torch.split(rboxes, (2, 1, 1, 1), dim=-1)
    cos, sin = torch.cos(t), torch.sin(t)
    ctr = ctr * ctr.new_tensor([scale_x, scale_y])
    w = w * torch.sqrt((scale_x * cos) ** 2 + (scale_y * sin) ** 2)
    h = h * torch.sqrt((scale_x * sin) ** 2 + (scale_y * cos) ** 2)
    t = torch.atan2(scale_x * sin, scale_y * cos)
    return torch.cat([ctr, w, h, t], dim=-1)
