"""Rotated non-maximum suppression on torchvision's rotated IoU kernel (no compiled extension).

Boxes are ``(cx, cy, w, h, theta)``, theta in radians clockwise on screen (see ``rbox.py``). Semantics
as mmcv's ``nms_rotated`` (what MMRotate's ``multiclass_nms_rotated`` / mmdet's ``batched_nms`` call):
boxes visited in descending score; a box is suppressed when its IoU with a kept, higher-scored box is
**greater than** ``iou_threshold`` (mmcv's CUDA kernel; its CPU kernel uses ``>=``, which differs only
at exact equality). Equal scores keep the input order (stable sort); mmcv leaves ties to its sort.
IoU is exact (polygon intersection); no w/h clamping (mmcv's NMS does none). torchvision's kernel gets
near-coincident pairs wrong (~3 % of pairs perturbed by 1e-6 come out 1/3 or 0.6 instead of ~1, so
duplicates survived; see ``rbox.py``): both paths recompute those pairs exactly in float64 first.

Three paths, same answer (tests check each against a float64 shapely greedy reference):

* ``"sparse"`` (CPU, where boxes meet sparsely): the suppression graph. Every candidate pair (horizontal
  boxes meet, and the IoU bound from the overlaps of the horizontal boxes and of the projections on both
  boxes' own axes can exceed the threshold: on random scenes 40 % of the candidates) gets the kernel, in
  chunks of neighbouring boxes; then one scan in score order.
* ``"greedy"`` (CPU, crowded boxes): visit boxes by score; for each kept box, only the not yet
  suppressed, lower-scored boxes whose enclosing horizontal boxes overlap its own get the kernel. One
  kernel call per kept box, but boxes suppressed early are never compared.
* ``"dense"`` (CUDA default): the IoU matrix in row blocks on the device, thresholded and packed into
  a bitmask (8 boxes per byte), then one sequential scan on the CPU, as torchvision's CUDA NMS does.

``"auto"``: dense on CUDA; on the CPU sparse up to 32 candidate pairs a box, else greedy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .rbox import (
    _CELL,
    _SLAB,
    _exact_iou,
    _frame_overlaps,
    _grouped_kernel,
    _grown_hbox,
    _in_frame,
    _interval_overlap,
    _near_coincident,
    _rel_trig,
    _repair_matrix,
    _repair_pairs,
    _spatial_order,
    _with_trig,
    rbox_to_hbox,
    to_torchvision_rbox,
)

__all__ = ["batched_nms_rotated", "nms_rotated"]

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _self_candidates(h: np.ndarray) -> tuple[Tensor, Tensor]:
    """Pairs ``i < j`` whose horizontal boxes ``h`` ``(n, 4)`` meet, by a sweep over x (sorted ``x1``;
    each box pairs with the boxes starting inside its x range): ``O(n log n + pairs)``, no ``(n, n)``
    matrix. NumPy: a dozen operations on short arrays, where torch's fixed costs would be most of it. The
    one-set form of ``rbox._interval_join`` (which, applied to the boxes twice and filtered to ``i < j``, gives
    the same pairs but costs NMS of 500-2000 boxes 3-6 % in alternated runs)."""
    n = h.shape[0]
    order = np.argsort(h[:, 0], kind="stable")
    hs = h[order]
    ar = np.arange(n)
    cnt = np.maximum(np.searchsorted(hs[:, 0], hs[:, 2], side="right") - ar - 1, 0)
    a = np.repeat(ar, cnt)
    b = a + 1 + np.arange(a.shape[0]) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    meet = (hs[a, 1] <= hs[b, 3]) & (hs[a, 3] >= hs[b, 1])
    i, j = order[a[meet]], order[b[meet]]
    return torch.from_numpy(np.minimum(i, j)), torch.from_numpy(np.maximum(i, j))


def _flagged_pairs(geom: Tensor, pairs: tuple[Tensor, Tensor] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` among the candidate ``pairs`` (default: grown horizontal boxes meet) of the float64
    geometry ``geom`` ``(n, 7)`` (``rbox._with_trig``) that the kernel may get wrong (near-coincident, see
    ``rbox._near_coincident``) with their exact IoU, sorted by ``i`` (NumPy: ``i``, ``j``, IoU)."""
    i, j = _self_candidates(_grown_hbox(geom.numpy())) if pairs is None else pairs
    out_i, out_j, out_v = [], [], []
    for s in range(0, i.numel(), _SLAB):
        si, sj = i[s : s + _SLAB], j[s : s + _SLAB]
        fl = _near_coincident(geom[si], geom[sj])
        si, sj = si[fl], sj[fl]
        if si.numel():
            out_i.append(si)
            out_j.append(sj)
            out_v.append(_exact_iou(geom[si], geom[sj]))
    if not out_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    fi, fj, fv = torch.cat(out_i), torch.cat(out_j), torch.cat(out_v)
    order = torch.argsort(fi * geom.shape[0] + fj)
    return fi[order].numpy(), fj[order].numpy(), fv[order].numpy()


def _greedy(tv: Tensor, hb: Tensor, thr: float, geom: Tensor | None = None,
            pairs: tuple[Tensor, Tensor] | None = None) -> list[int]:
    """Greedy NMS on score-sorted torchvision boxes ``tv`` with enclosing boxes ``hb``; sorted positions.
    ``geom``: the same boxes as float64 geometry (``rbox._with_trig``), for the exact IoU of near-coincident
    pairs (none: the raw kernel); ``pairs``: their candidate pairs if already known."""
    n = tv.shape[0]
    fi, fj, fv = _flagged_pairs(geom, pairs) if geom is not None else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
    fstart = np.searchsorted(fi, np.arange(n + 1))
    x1, y1, x2, y2 = hb.numpy().T  # the bookkeeping in NumPy: ~1 us per call instead of ~5 for torch
    alive = np.ones(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if not alive[i]:
            continue
        keep.append(i)
        s = slice(i + 1, n)
        cand = alive[s] & (x1[s] <= x2[i]) & (x2[s] >= x1[i]) & (y1[s] <= y2[i]) & (y2[s] >= y1[i])
        idx = np.flatnonzero(cand) + (i + 1)
        if idx.size:
            iou = torch.ops.torchvision.box_iou_rotated(tv[i : i + 1], tv[torch.from_numpy(idx)])[0]
            over = iou.numpy() > thr
            a, b = fstart[i], fstart[i + 1]
            if b > a:  # near-coincident pairs of box i: the exact IoU decides
                pos = np.minimum(np.searchsorted(idx, fj[a:b]), idx.size - 1)
                hit = idx[pos] == fj[a:b]
                over[pos[hit]] = fv[a:b][hit] > thr
            alive[idx[over]] = False
    return keep


_SPARSE_MAX_PAIRS_PER_BOX = 32  # "auto" on the CPU: the sparse graph up to this many candidate pairs a box


_BOUND_MARGIN = 1e-5  # far above the kernel's float32 rounding (~1e-7)


def _inscribed(w: np.ndarray, h: np.ndarray, c: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half sides ``(p, q)`` of the largest rectangle with sides along the reference axes inside a ``w x h``
    box whose w side makes an angle of cosine ``c``, sine ``s`` with them, centred on it: maximise ``p q``
    under ``p|c| + q|s| <= w/2`` and ``p|s| + q|c| <= h/2`` (the corners stay inside); the optimum is the
    crossing of the two constraints or the tangency on one of them, whichever is feasible and larger."""
    c, s = np.abs(c), np.abs(s)
    best_p, best_q = np.zeros_like(w), np.zeros_like(w)
    slack = 1 + 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):  # aligned or 45-degree boxes: inf/nan, not taken
        det = c * c - s * s
        cands = (((w * c - h * s) / (2 * det), (h * c - w * s) / (2 * det)),
                 (w / (4 * c), w / (4 * s)), (h / (4 * s), h / (4 * c)))
        for p, q in cands:
            ok = np.isfinite(p) & np.isfinite(q) & (p >= 0) & (q >= 0)
            ok &= (p * c + q * s <= w / 2 * slack) & (p * s + q * c <= h / 2 * slack)
            better = ok & (p * q > best_p * best_q)
            best_p, best_q = np.where(better, p, best_p), np.where(better, q, best_q)
    return best_p, best_q


def _inner_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Area ``(P,)`` inside both boxes: ``a`` and the rectangle :func:`_inscribed` in ``b`` along ``a``'s
    axes, in ``a``'s frame (a lower bound of the intersection)."""
    du, dv = _in_frame(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1], a[:, 5], a[:, 6])
    p, q = _inscribed(b[:, 2], b[:, 3], *_rel_trig(a, b))
    ou, ov = _interval_overlap(a[:, 2] / 2, du, p), _interval_overlap(a[:, 3] / 2, dv, q)
    return np.maximum(ou, 0) * np.maximum(ov, 0)


def _iou_upper(g: np.ndarray, h: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Upper bounds ``(K,)`` of the IoU of the pairs ``(i, j)`` of the geometry ``g`` (NumPy, CPU paths): the
    intersection lies inside the overlap of the horizontal boxes ``h`` (the grown ones of
    ``rbox._grown_hbox`` do: larger boxes only loosen it) and inside the overlap rectangles of the
    projections on each box's own axes (``rbox._frame_overlaps``), so it is at most the smallest of their
    areas (and ``A``, ``B``); the bound is that area over ``A + B -`` it."""
    a, b, ha, hb = g[i], g[j], h[i], h[j]
    wh = np.maximum(np.minimum(ha[:, 2:], hb[:, 2:]) - np.maximum(ha[:, :2], hb[:, :2]), 0)
    fw = np.maximum(_frame_overlaps(a, b), 0)
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    inter = np.minimum.reduce([wh[:, 0] * wh[:, 1], fw[:, 0] * fw[:, 1], fw[:, 2] * fw[:, 3], area_a, area_b])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / (area_a + area_b - inter), nan=1.0)


def _iou_lower(g: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Lower bounds ``(K,)`` of the IoU of the pairs ``(i, j)``: the intersection holds the overlap of either
    box with the largest rectangle along that box's axes inside the other (:func:`_inner_overlap`). 0 for
    boxes under 1e-6 px² (the kernel gives IoU 0 below 1e-14: such pairs are left to it)."""
    a, b = g[i], g[j]
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    inter = np.maximum(_inner_overlap(a, b), _inner_overlap(b, a))
    inter = np.where(np.minimum(area_a, area_b) >= 1e-6, inter, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(inter / (area_a + area_b - inter))


def _sparse(tv: Tensor, geom: Tensor, grown: np.ndarray, thr: float, pairs: tuple[Tensor, Tensor]) -> np.ndarray:
    """NMS on score-sorted torchvision boxes ``tv`` (CPU) from the suppression graph, then one scan in
    score order over the boxes that suppress something. Of the candidate pairs ``i < j`` (``pairs``: grown
    horizontal boxes meet), those whose IoU bounds (:func:`_iou_upper`, :func:`_iou_lower`) lie above ``thr + 1e-5`` suppress
    without a kernel call, those below ``thr - 1e-5`` never do (whatever the kernel's rounding, ~1e-7), and
    the rest get the kernel, grouped along the boxes' spatial order, near-coincident pairs repaired (on
    random scenes 30 % of the candidates). Cheaper than :func:`_greedy` when few pairs overlap (one kernel
    call per group of boxes instead of one per kept box)."""
    n, g = tv.shape[0], geom.numpy()
    i, j = pairs[0].numpy(), pairs[1].numpy()
    may = _iou_upper(g, grown, i, j) >= thr - _BOUND_MARGIN
    i, j = i[may], j[may]
    sure = _iou_lower(g, i, j) > thr + _BOUND_MARGIN
    ei, ej = [i[sure]], [j[sure]]
    ni, nj = i[~sure], j[~sure]
    if ni.shape[0]:
        order = _spatial_order(grown, _CELL)
        rank = np.empty_like(order)
        rank[order] = np.arange(n)
        srt = np.argsort(rank[nj] * n + ni)
        ni, nj = ni[srt], nj[srt]
        values = _grouped_kernel(tv[torch.from_numpy(order)].contiguous(), tv, rank[nj], ni, g_first=False)
        ti, tj = torch.from_numpy(ni), torch.from_numpy(nj)
        over = _repair_pairs(torch.from_numpy(values), geom[ti], geom[tj]).numpy() > thr
        ei.append(ni[over])
        ej.append(nj[over])
    ei, ej = np.concatenate(ei), np.concatenate(ej)
    by_i = np.argsort(ei, kind="stable")
    ei, ej = ei[by_i], ej[by_i]
    src, start = np.unique(ei, return_index=True)
    bounds = np.append(start, ei.shape[0]).tolist()
    removed = np.zeros(n, dtype=bool)
    for c, k in enumerate(src.tolist()):  # j > k: a box's fate is settled before its turn
        if not removed[k]:
            removed[ej[bounds[c] : bounds[c + 1]]] = True
    return np.flatnonzero(~removed)


def _dense(tv: Tensor, thr: float, block: int = 4096, geom: Tensor | None = None) -> list[int]:
    """Bitmask NMS on score-sorted torchvision boxes ``tv`` (any device); sorted positions. ``geom``: the
    same boxes as float64 geometry (``rbox._with_trig``) (on ``tv``'s device), for near-coincident pairs."""
    n = tv.shape[0]
    pad = (-n) % 8
    bits = _BITS.to(tv.device)
    col = torch.arange(n, device=tv.device)
    rows = []
    for r in range(0, n, block):
        iou = torch.ops.torchvision.box_iou_rotated(tv[r : r + block], tv)
        if geom is not None:
            iou = _repair_matrix(iou, geom[r : r + block], geom)
        over = iou > thr
        over &= col[None, :] > col[r : r + block, None]  # only lower-scored boxes are suppressed
        over = torch.nn.functional.pad(over, (0, pad))
        rows.append((over.view(over.shape[0], -1, 8).to(torch.uint8) * bits).sum(-1, dtype=torch.uint8))
    mask = torch.cat(rows).cpu().numpy()  # (n, ceil(n/8)) bit j of row i: i suppresses j
    removed = np.zeros(mask.shape[1], dtype=np.uint8)
    keep: list[int] = []
    for i in range(n):
        if not removed[i >> 3] & (128 >> (i & 7)):
            keep.append(i)
            removed |= mask[i]
    return keep


def nms_rotated(boxes: Tensor, scores: Tensor, iou_threshold: float, method: str = "auto") -> Tensor:
    """Indices (int64, into ``boxes``) of the rotated boxes NMS keeps, by decreasing score.

    ``boxes`` ``(N, 5)`` ``(cx, cy, w, h, theta)`` (pixels, radians clockwise on screen), ``scores``
    ``(N,)``. A box is dropped when its IoU with a kept higher-scored box is ``> iou_threshold``.
    ``method``: ``"greedy"`` (horizontal-box prefilter + exact IoU per kept box, CPU), ``"sparse"`` (the
    suppression graph of all candidate pairs, then one scan; CPU), ``"dense"`` (blocked IoU matrix + bitmask;
    used on CUDA) or ``"auto"`` (dense on CUDA; on the CPU sparse when the boxes' horizontal boxes meet in
    at most ``32 n`` pairs, else greedy). All give the same keep set.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 5 or scores.shape != boxes.shape[:1]:
        raise ValueError(f"boxes must be (N, 5) and scores (N,), got {tuple(boxes.shape)}, {tuple(scores.shape)}")
    if method not in ("auto", "greedy", "sparse", "dense"):
        raise ValueError(f"method must be auto, greedy, sparse or dense, got {method!r}")
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    sorted_boxes = boxes.detach()[order]
    tv = to_torchvision_rbox(sorted_boxes).contiguous()
    geom = _with_trig(sorted_boxes.to(torch.float64))
    if method == "dense" or (method == "auto" and boxes.is_cuda):
        keep = _dense(tv, float(iou_threshold), geom=geom)
    else:
        tv, geom = tv.cpu(), geom.cpu()
        grown = _grown_hbox(geom.numpy())
        pairs = _self_candidates(grown)
        if method == "sparse" or (method == "auto" and pairs[0].numel() <= _SPARSE_MAX_PAIRS_PER_BOX * tv.shape[0]):
            keep = _sparse(tv, geom, grown, float(iou_threshold), pairs)
        else:
            keep = _greedy(tv, rbox_to_hbox(sorted_boxes).cpu(), float(iou_threshold), geom, pairs)
    return order[torch.as_tensor(keep, dtype=torch.long).to(order.device)]


def batched_nms_rotated(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float,
                        class_agnostic: bool = False, split_thr: int = 10000, method: str = "auto") -> Tensor:
    """Class-aware rotated NMS, as mmdet's ``batched_nms`` with ``nms_rotated`` (MMRotate's RoI head).

    Boxes of different ``idxs`` (class ids, ``(N,)`` integers) never suppress each other. Below
    ``split_thr`` boxes, mmdet's offset trick: centres shifted by ``idx * (max(cx, cy) + max(w, h) + 1)``
    (in the boxes' dtype, so float32 rounding of far-shifted centres is reproduced), one NMS; from
    ``split_thr`` on, one NMS per class. Returns indices into ``boxes`` by decreasing score (stable).
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    if class_agnostic:
        return nms_rotated(boxes, scores, iou_threshold, method)
    boxes = boxes.detach()
    if boxes.shape[0] < split_thr:
        max_coordinate = boxes[:, :2].max() + boxes[:, 2:4].max()
        offsets = idxs.to(boxes) * (max_coordinate + 1)
        shifted = torch.cat([boxes[:, :2] + offsets[:, None], boxes[:, 2:]], dim=1)
        return nms_rotated(shifted, scores, iou_threshold, method)
    kept = []
    for c in torch.unique(idxs):
        sel = (idxs == c).nonzero().squeeze(1)
        kept.append(sel[nms_rotated(boxes[sel], scores[sel], iou_threshold, method)])
    keep = torch.cat(kept).sort().values  # input order first, so equal scores stay in input order
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
