"""Exact float64 polygon geometry for the DOTA devkit's IoU (its ``polyiou``), vectorised over pairs.

The devkit compares a ground-truth quadrilateral *as annotated* (possibly non-convex) with a
detection's rotated rectangle. The rectangle is convex, so Sutherland–Hodgman clipping of the
ground-truth polygon by it yields the intersection exactly (for a non-convex subject the clipped
ring may hold zero-width bridges, which add nothing to the shoelace area).
"""

from __future__ import annotations

import numpy as np


def rbox_to_poly(boxes: np.ndarray) -> np.ndarray:
    """(N, 5) ``cx, cy, w, h, angle`` (radians, MMRotate le90: clockwise-positive in image
    coordinates, the width axis along ``(cos a, sin a)``) → (N, 4, 2) corners, as MMRotate's
    ``obb2poly`` orders them."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    c, s = np.cos(b[:, 4]), np.sin(b[:, 4])
    wx, wy = b[:, 2] / 2 * c, b[:, 2] / 2 * s
    hx, hy = -b[:, 3] / 2 * s, b[:, 3] / 2 * c
    cx, cy = b[:, 0], b[:, 1]
    xs = np.stack([cx - wx - hx, cx + wx - hx, cx + wx + hx, cx - wx + hx], 1)
    ys = np.stack([cy - wy - hy, cy + wy - hy, cy + wy + hy, cy - wy + hy], 1)
    return np.stack([xs, ys], -1)


def signed_area(poly: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
    """Shoelace area of (P, V, 2) rings (positive when counter-clockwise in x-right/y-up axes);
    with ``count`` only the first ``count[p]`` vertices of ring p are used."""
    p = np.asarray(poly, dtype=np.float64)
    n = p.shape[1]
    if count is None:
        nxt = np.roll(p, -1, axis=1)
        valid = np.ones(p.shape[:2], dtype=bool)
    else:
        i = np.arange(n)[None, :]
        j = np.where(i + 1 < count[:, None], i + 1, 0)
        nxt = np.take_along_axis(p, j[..., None], axis=1)
        valid = i < count[:, None]
    cross = p[..., 0] * nxt[..., 1] - p[..., 1] * nxt[..., 0]
    return 0.5 * np.where(valid, cross, 0.0).sum(1)


def _clip_half_plane(pts: np.ndarray, cnt: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Keep the part of each ring on the left of (or on) the directed line a→b (one S–H step).

    Each edge cur→nxt emits [the crossing point if it crosses] then [nxt if nxt is inside]."""
    n = pts.shape[1]
    i = np.arange(n)[None, :]
    live = i < cnt[:, None]
    nxt = np.take_along_axis(pts, np.where(i + 1 < cnt[:, None], i + 1, 0)[..., None], axis=1)
    d = (b - a)[:, None, :]

    def side(q):
        return d[..., 0] * (q[..., 1] - a[:, None, 1]) - d[..., 1] * (q[..., 0] - a[:, None, 0])

    s_cur, s_nxt = side(pts), side(nxt)
    in_cur, in_nxt = s_cur >= 0, s_nxt >= 0
    cross = live & (in_cur != in_nxt)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, s_cur / np.where(cross, s_cur - s_nxt, 1.0), 0.0)
    hit = pts + t[..., None] * (nxt - pts)
    cand = np.stack([hit, nxt], 2).reshape(len(pts), 2 * n, 2)
    keep = np.stack([cross, live & in_nxt], 2).reshape(len(pts), 2 * n)
    pos = np.cumsum(keep, axis=1) - 1  # kept vertices moved to the front, in ring order
    new_cnt = pos[:, -1] + 1
    out = np.zeros((len(pts), max(int(new_cnt.max(initial=0)), 1), 2))
    rows = np.broadcast_to(np.arange(len(pts))[:, None], keep.shape)
    out[rows[keep], pos[keep]] = cand[keep]
    return out, new_cnt


def clip_area(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """|area(subject ∩ clip)| for (P, V, 2) simple polygons and (P, C, 2) convex polygons, any
    orientation. Exact up to float64 rounding."""
    subj = np.asarray(subject, dtype=np.float64)
    clp = np.asarray(clip, dtype=np.float64)
    if len(subj) == 0:
        return np.zeros(0)
    origin = clp.mean(1, keepdims=True)  # work near the origin: large pixel coordinates lose no digits
    subj, clp = subj - origin, clp - origin
    clp = np.where((signed_area(clp) < 0)[:, None, None], clp[:, ::-1], clp)  # counter-clockwise clip ring
    pts, cnt = subj, np.full(len(subj), subj.shape[1])
    for k in range(clp.shape[1]):
        pts, cnt = _clip_half_plane(pts, cnt, clp[:, k], clp[:, (k + 1) % clp.shape[1]])
    return np.abs(signed_area(pts, cnt))


def poly_iou(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Pairwise-aligned IoU of (P, V, 2) simple polygons with (P, C, 2) convex ones; 0 when the
    union is empty (the devkit would give NaN, which never counts as a match either)."""
    subj = np.asarray(subject, dtype=np.float64)
    clp = np.asarray(clip, dtype=np.float64)
    inter = clip_area(subj, clp)
    a1 = np.abs(signed_area(subj - subj.mean(1, keepdims=True)))
    a2 = np.abs(signed_area(clp - clp.mean(1, keepdims=True)))
    union = a1 + a2 - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
