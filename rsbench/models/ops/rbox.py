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
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.box_iou_rotated)
from torch import Tensor

__all__ = [
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
    cos, sin = torch.cos(t), torch.sin(t)
    bx = torch.abs(w / 2 * cos) + torch.abs(h / 2 * sin)
    by = torch.abs(w / 2 * sin) + torch.abs(h / 2 * cos)
    half = torch.cat([bx, by], dim=-1)
    return torch.cat([ctr - half, ctr + half], dim=-1)


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


def rbox_iou(a: Tensor, b: Tensor, mode: str = "iou", min_size: float = 1e-3) -> Tensor:
    """Pairwise overlaps ``(N, M)`` of rotated boxes ``a`` ``(N, 5)`` and ``b`` ``(M, 5)`` (our convention).

    As MMRotate's ``RBboxOverlaps2D`` / ``rbbox_overlaps``: w and h clamped to ``>= min_size`` (1e-3) on
    detached copies, exact polygon intersection (torchvision's kernel, CPU or CUDA, in the input
    dtype; the kernel returns float32 values, cast back to the input dtype: ~3e-8 from shapely in
    float64). ``mode="iof"``: intersection over the area of ``a`` (derived from the IoU). No autograd.
    """
    if a.shape[0] == 0 or b.shape[0] == 0:
        return a.new_zeros((a.shape[0], b.shape[0]))
    ta = to_torchvision_rbox(a.detach(), min_size)
    tb = to_torchvision_rbox(b.detach().to(a.dtype), min_size)
    iou = torch.ops.torchvision.box_iou_rotated(ta, tb).to(ta.dtype)
    return _iou_to_mode(iou, ta, tb, mode, aligned=False)


def rbox_iou_aligned(a: Tensor, b: Tensor, mode: str = "iou", min_size: float = 1e-3, chunk: int = 64) -> Tensor:
    """Overlaps ``(N,)`` of the pairs ``(a[i], b[i])`` (both ``(N, 5)``), as :func:`rbox_iou`.

    torchvision has no aligned kernel, so this takes the diagonals of ``chunk x chunk`` blocks
    (``N * chunk`` pair evaluations, ~0.4 us each on one CPU thread).
    """
    if a.shape != b.shape:
        raise ValueError(f"aligned IoU needs equal shapes, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0:
        return a.new_zeros((0,))
    ta = to_torchvision_rbox(a.detach(), min_size)
    tb = to_torchvision_rbox(b.detach().to(a.dtype), min_size)
    parts = [
        torch.ops.torchvision.box_iou_rotated(ta[i : i + chunk], tb[i : i + chunk]).diagonal()
        for i in range(0, ta.shape[0], chunk)
    ]
    return _iou_to_mode(torch.cat(parts).to(ta.dtype), ta, tb, mode, aligned=True)


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
