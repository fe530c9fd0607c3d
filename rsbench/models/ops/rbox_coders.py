"""Box coders of Oriented R-CNN with MMRotate 1.x's semantics (le90 angles).

Rotated boxes are ``(cx, cy, w, h, theta)``, pixels, theta radians clockwise on screen (y down), see
``rbox.py``; horizontal boxes ``(x1, y1, x2, y2)``. Deltas are normalised: ``(raw - mean) / std``.

* :class:`DeltaXYWHTRBoxCoder` — MMRotate ``DeltaXYWHTRBBoxCoder`` as the Oriented R-CNN RoI head
  configures it (means 0, stds ``(0.1, 0.1, 0.2, 0.2, 0.1)``, le90, ``edge_swap``, ``proj_xy``, no
  norm_factor, no centre clamp): rotated proposals → rotated targets.
* :class:`MidpointOffsetCoder` — MMRotate ``MidpointOffsetCoder`` of the oriented RPN (stds
  ``(1, 1, 1, 1, 0.5, 0.5)``): horizontal anchors → rotated targets through the midpoint-offset
  representation of Xie et al., "Oriented R-CNN for Object Detection", ICCV 2021.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .rbox import norm_angle_le90, poly_to_rbox, rbox_to_hbox, rbox_to_poly, regularize_le90

__all__ = ["DeltaXYWHTRBoxCoder", "MidpointOffsetCoder"]


def _norm(deltas: Tensor, means: Sequence[float], stds: Sequence[float]) -> Tensor:
    return (deltas - deltas.new_tensor(means)) / deltas.new_tensor(stds)


def _denorm(deltas: Tensor, means: Sequence[float], stds: Sequence[float]) -> Tensor:
    return deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)


class DeltaXYWHTRBoxCoder:
    """Rotated proposals ``(N, 5)`` ↔ 5 deltas ``(dx, dy, dw, dh, dt)`` (MMRotate ``DeltaXYWHTRBBoxCoder``).

    ``encode``: the target is first le90-regularised (``w >= h``, theta in ``[-pi/2, pi/2)``); with
    ``proj_xy`` the centre offset is expressed in the proposal's own frame,
    ``dx = (cos pt (gx-px) + sin pt (gy-py)) / pw``, ``dy = (-sin pt (gx-px) + cos pt (gy-py)) / ph``;
    ``dw = log(gw/pw)``, ``dh = log(gh/ph)``, ``dt = norm_le90(gt - pt)``. With ``edge_swap`` the target
    may instead be read as ``(gh, gw, gt + pi/2)``, whichever gives the smaller ``|dt|`` (strictly
    smaller for the unswapped form to win), so ``|dt| <= pi/4``.

    ``decode``: inverse; ``dw, dh`` clipped to ``|log(wh_ratio_clip)|``, centre clamped to
    ``[0, W-1] x [0, H-1]`` when ``max_shape=(H, W)``, theta ``norm_le90(pt + dt)``; with ``edge_swap`` the
    output is regularised to ``w >= h`` (swap + pi/2 unless ``w > h``). Deltas may be ``(N, 5k)``
    (one box per class); the output then is ``(N, 5k)``.
    """

    def __init__(self, target_means: Sequence[float] = (0.0,) * 5,
                 target_stds: Sequence[float] = (0.1, 0.1, 0.2, 0.2, 0.1), edge_swap: bool = True,
                 proj_xy: bool = True) -> None:
        self.means, self.stds = tuple(target_means), tuple(target_stds)
        self.edge_swap, self.proj_xy = edge_swap, proj_xy

    def encode(self, proposals: Tensor, gt: Tensor) -> Tensor:
        """Deltas ``(N, 5)`` (float32 or the inputs' float64) taking ``proposals`` to ``gt`` (both ``(N, 5)``)."""
        if proposals.shape != gt.shape or proposals.shape[-1] != 5:
            raise ValueError(f"need two (N, 5) tensors, got {tuple(proposals.shape)} and {tuple(gt.shape)}")
        dtype = torch.float64 if proposals.dtype == torch.float64 else torch.float32
        px, py, pw, ph, pt = proposals.to(dtype).unbind(-1)
        gx, gy, gw, gh, gt_ = regularize_le90(gt.to(dtype)).unbind(-1)
        if self.proj_xy:
            dx = (torch.cos(pt) * (gx - px) + torch.sin(pt) * (gy - py)) / pw
            dy = (-torch.sin(pt) * (gx - px) + torch.cos(pt) * (gy - py)) / ph
        else:
            dx, dy = (gx - px) / pw, (gy - py) / ph
        dt = norm_angle_le90(gt_ - pt)
        if self.edge_swap:
            dt2 = norm_angle_le90(gt_ - pt + math.pi / 2)
            plain = dt.abs() < dt2.abs()
            gw, gh = torch.where(plain, gw, gh), torch.where(plain, gh, gw)
            dt = torch.where(plain, dt, dt2)
        deltas = torch.stack([dx, dy, torch.log(gw / pw), torch.log(gh / ph), dt], dim=-1)
        return _norm(deltas, self.means, self.stds)

    def decode(self, proposals: Tensor, deltas: Tensor, max_shape: Sequence[int] | None = None,
               wh_ratio_clip: float = 16 / 1000) -> Tensor:
        """Rotated boxes ``(N, 5k)`` from ``proposals`` ``(N, 5)`` and ``deltas`` ``(N, 5k)``."""
        n = deltas.shape[0]
        if n == 0:
            return deltas
        d = _denorm(deltas.reshape(n, -1, 5), self.means, self.stds)
        dx, dy, dw, dh, dt = d.unbind(-1)
        px, py, pw, ph, pt = (v[:, None] for v in proposals.to(deltas.dtype).unbind(-1))
        max_ratio = abs(math.log(wh_ratio_clip))
        gw = pw * dw.clamp(-max_ratio, max_ratio).exp()
        gh = ph * dh.clamp(-max_ratio, max_ratio).exp()
        if self.proj_xy:
            gx = dx * pw * torch.cos(pt) - dy * ph * torch.sin(pt) + px
            gy = dx * pw * torch.sin(pt) + dy * ph * torch.cos(pt) + py
        else:
            gx, gy = px + pw * dx, py + ph * dy
        gt = norm_angle_le90(pt + dt)
        if max_shape is not None:
            gx = gx.clamp(min=0, max=max_shape[1] - 1)
            gy = gy.clamp(min=0, max=max_shape[0] - 1)
        out = torch.stack([gx, gy, gw, gh, gt], dim=-1)
        if self.edge_swap:
            out = regularize_le90(out)
        return out.reshape(deltas.shape)


class MidpointOffsetCoder:
    """Horizontal anchors ``(N, 4)`` ↔ 6 deltas ``(dx, dy, dw, dh, da, db)`` (MMRotate ``MidpointOffsetCoder``).

    ``encode(anchors, gt)``: ``gt`` ``(N, 5)`` is le90-regularised; ``(gx, gy, gw, gh)`` is its enclosing
    horizontal box (centre, size), encoded against the anchor as usual (``dx = (gx-px)/pw``,
    ``dw = log(gw/pw)``, ...). ``ga`` is the largest x among the corners lying on the top edge of the
    enclosing box (``|y - ymin| <= 0.1``), ``gb`` the largest y among the corners on its right edge
    (``|x - xmax| <= 0.1``); ``da = (ga - gx)/gw``, ``db = (gb - gy)/gh`` (each in ``[-0.5, 0.5]``; an
    upright box gives ``(0.5, 0.5)``).

    ``decode(anchors, deltas)``: the enclosing box from the first four deltas (``dw, dh`` clipped to
    ``|log(wh_ratio_clip)|``), ``da, db`` clipped to ``[-0.5, 0.5]``, the parallelogram
    ``(ga, y1), (x2, gb), (2gx-ga, y2), (x1, 2gy-gb)`` with ``ga = gx + da gw``, ``gb = gy + db gh``;
    each centre-to-vertex vector is stretched to the longest one (a rectangle), then
    ``cv2.minAreaRect`` (as MMRotate's ``qbox2rbox``; ``rect="closed_form"``: the rectangle's own
    sides, on the device, equal up to float rounding) and le90 regularisation. Returns ``(N, 5)``.
    """

    def __init__(self, target_means: Sequence[float] = (0.0,) * 6,
                 target_stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 0.5, 0.5), rect: str = "cv2") -> None:
        if rect not in ("cv2", "closed_form"):
            raise ValueError(f"rect must be 'cv2' or 'closed_form', got {rect!r}")
        self.means, self.stds, self.rect = tuple(target_means), tuple(target_stds), rect

    def encode(self, anchors: Tensor, gt: Tensor) -> Tensor:
        """Deltas ``(N, 6)`` taking horizontal ``anchors`` ``(N, 4)`` to rotated ``gt`` ``(N, 5)``."""
        if anchors.shape[0] != gt.shape[0] or anchors.shape[-1] != 4 or gt.shape[-1] != 5:
            raise ValueError(f"need (N, 4) anchors and (N, 5) targets, got {tuple(anchors.shape)}, {tuple(gt.shape)}")
        dtype = torch.float64 if anchors.dtype == torch.float64 else torch.float32
        a, g = anchors.to(dtype), regularize_le90(gt.to(dtype))
        px, py = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        pw, ph = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        hb, poly = rbox_to_hbox(g), rbox_to_poly(g)
        gx, gy = (hb[:, 0] + hb[:, 2]) / 2, (hb[:, 1] + hb[:, 3]) / 2
        gw, gh = hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1]
        xs, ys = poly[:, 0::2], poly[:, 1::2]
        on_top = (ys - ys.min(dim=1, keepdim=True).values).abs() <= 0.1
        on_right = (xs - xs.max(dim=1, keepdim=True).values).abs() <= 0.1
        ga = torch.where(on_top, xs, -torch.inf).max(dim=1).values
        gb = torch.where(on_right, ys, -torch.inf).max(dim=1).values
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph),
                              (ga - gx) / gw, (gb - gy) / gh], dim=-1)
        return _norm(deltas, self.means, self.stds)

    def decode_polygons(self, anchors: Tensor, deltas: Tensor, wh_ratio_clip: float = 16 / 1000) -> Tensor:
        """The stretched (rectangular) midpoint-offset polygons ``(N, 8)`` before ``minAreaRect``."""
        dx, dy, dw, dh, da, db = _denorm(deltas, self.means, self.stds).unbind(-1)
        a = anchors.to(deltas.dtype)
        px, py = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        pw, ph = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        max_ratio = abs(math.log(wh_ratio_clip))
        gw = pw * dw.clamp(-max_ratio, max_ratio).exp()
        gh = ph * dh.clamp(-max_ratio, max_ratio).exp()
        gx, gy = px + pw * dx, py + ph * dy
        ga = da.clamp(-0.5, 0.5) * gw  # offsets from the centre
        gb = db.clamp(-0.5, 0.5) * gh
        vec = torch.stack([ga, -gh / 2, gw / 2, gb, -ga, gh / 2, -gw / 2, -gb], dim=-1).view(-1, 4, 2)
        length = vec.norm(dim=-1, keepdim=True)
        vec = vec * (length.max(dim=1, keepdim=True).values / length)
        return (vec + torch.stack([gx, gy], dim=-1)[:, None, :]).reshape(-1, 8)

    def decode(self, anchors: Tensor, deltas: Tensor, max_shape: Sequence[int] | None = None,
               wh_ratio_clip: float = 16 / 1000) -> Tensor:
        """Rotated boxes ``(N, 5)`` (le90) from horizontal ``anchors`` ``(N, 4)`` and ``deltas`` ``(N, 6)``.

        ``max_shape`` is accepted and ignored, as in MMRotate."""
        del max_shape
        if deltas.shape[0] == 0:
            return deltas.new_zeros((0, 5))
        polys = self.decode_polygons(anchors, deltas, wh_ratio_clip)
        if self.rect == "cv2":
            return poly_to_rbox(polys, version="le90")
        pts = polys.view(-1, 4, 2)
        e1, e2 = pts[:, 1] - pts[:, 0], pts[:, 2] - pts[:, 1]
        l1, l2 = e1.norm(dim=-1), e2.norm(dim=-1)
        first = l1 >= l2
        long_edge = torch.where(first[:, None], e1, e2)
        theta = torch.atan2(long_edge[:, 1], long_edge[:, 0])
        ctr = pts.mean(dim=1)
        out = torch.stack([ctr[:, 0], ctr[:, 1], torch.maximum(l1, l2), torch.minimum(l1, l2), theta], dim=-1)
        return regularize_le90(out)
