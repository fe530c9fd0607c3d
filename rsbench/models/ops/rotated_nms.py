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
  boxes meet, and the IoU bound from the horizontal overlap and the areas can exceed the threshold) gets
  the kernel, in chunks of neighbouring boxes; then one scan in score order.
* ``"greedy"`` (CPU, crowded boxes): visit boxes by score; for each kept box, only the not yet
  suppressed, lower-scored boxes whose enclosing horizontal boxes overlap its own get the kernel. One
  kernel call per kept box, but boxes suppressed early are never compared.
* ``"dense"`` (CUDA default): the IoU matrix in row blocks on the device, thresholded and packed into
  a bitmask (8 boxes per byte), then one sequential scan on the CPU, as torchvision's CUDA NMS does.

``"auto"``: dense on CUDA; on the CPU sparse up to 16 candidate pairs a box, else greedy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .rbox import (
    _CELL,
    _SLAB,
    _exact_iou,
    _grouped_kernel,
    _grown_hbox,
    _near_coincident,
    _repair_matrix,
    _repair_pairs,
    _spatial_order,
    rbox_to_hbox,
    to_torchvision_rbox,
)

__all__ = ["batched_nms_rotated", "nms_rotated"]

_BITS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def _self_candidates(hb: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs ``i < j`` whose horizontal boxes ``hb`` ``(n, 4)`` meet, by a sweep over x (sorted ``x1``; each
    box pairs with the boxes starting inside its x range): ``O(n log n + pairs)``, no ``(n, n)`` matrix."""
    n = hb.shape[0]
    order = torch.argsort(hb[:, 0], stable=True)
    hs = hb[order]
    ar = torch.arange(n, device=hb.device)
    end = torch.searchsorted(hs[:, 0].contiguous(), hs[:, 2].contiguous(), right=True)
    cnt = (end - ar - 1).clamp(min=0)
    a = torch.repeat_interleave(ar, cnt)
    b = a + 1 + torch.arange(a.numel(), device=hb.device) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    meet = (hs[a, 1] <= hs[b, 3]) & (hs[a, 3] >= hs[b, 1])
    i, j = order[a[meet]], order[b[meet]]
    return torch.minimum(i, j), torch.maximum(i, j)


def _flagged_pairs(geom: Tensor, pairs: tuple[Tensor, Tensor] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` among the candidate ``pairs`` (default: grown horizontal boxes meet) of float64 boxes
    ``geom`` ``(n, 5)`` that the kernel may get wrong (near-coincident, see ``rbox._near_coincident``) with
    their exact IoU, sorted by ``i`` (NumPy: ``i``, ``j``, IoU)."""
    i, j = _self_candidates(_grown_hbox(geom)) if pairs is None else pairs
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
    ``geom``: the same boxes as float64 rsbench rboxes, for the exact IoU of near-coincident pairs (none:
    the raw kernel); ``pairs``: their candidate pairs if already known."""
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


_SPARSE_MAX_PAIRS_PER_BOX = 16  # "auto" on the CPU: the sparse graph up to this many candidate pairs a box


_BOUND_MARGIN = 1e-5  # far above the kernel's float32 rounding (~1e-7)


def _may_exceed(geom: Tensor, i: Tensor, j: Tensor, thr: float) -> Tensor:
    """``(K,)``: the pairs whose IoU can exceed ``thr``. The rotated boxes lie inside their horizontal
    boxes, so their intersection is at most ``min(area of the horizontal boxes' overlap, A, B)`` and the
    IoU at most that over ``A + B -`` it; pairs bounded below ``thr - 1e-5`` cannot suppress, whatever
    the kernel's rounding, and need no kernel call."""
    a, b = geom[i], geom[j]
    ha, hb = rbox_to_hbox(a), rbox_to_hbox(b)
    wh = (torch.minimum(ha[:, 2:], hb[:, 2:]) - torch.maximum(ha[:, :2], hb[:, :2])).clamp(min=0)
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    inter = torch.minimum(wh[:, 0] * wh[:, 1], torch.minimum(area_a, area_b))
    return inter >= (thr - _BOUND_MARGIN) * (area_a + area_b - inter)


def _sparse(tv: Tensor, geom: Tensor, grown: Tensor, thr: float, pairs: tuple[Tensor, Tensor]) -> list[int]:
    """NMS on score-sorted torchvision boxes ``tv`` (CPU) from the suppression graph: the kernel on every
    candidate pair ``i < j`` (``pairs``: grown horizontal boxes meet), grouped along the boxes' spatial
    order, near-coincident pairs repaired, then one scan in score order. Cheaper than :func:`_greedy` when
    few pairs overlap (one kernel call per group of boxes instead of one per kept box)."""
    n = tv.shape[0]
    i, j = pairs
    over = np.zeros(0, dtype=bool)
    if i.numel():
        may = _may_exceed(geom, i, j, thr)
        i, j = i[may], j[may]
    if i.numel():
        order = _spatial_order(grown, _CELL)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n)
        srt = torch.argsort(rank[j] * n + i)
        i, j = i[srt], j[srt]
        values = _grouped_kernel(tv[order].contiguous(), tv, rank[j].numpy(), i.numpy(), g_first=False)
        over = _repair_pairs(torch.from_numpy(values), geom[i], geom[j]).numpy() > thr
    ei, ej = i.numpy()[over], j.numpy()[over]
    by_i = np.argsort(ei, kind="stable")
    ei, ej = ei[by_i], ej[by_i]
    start = np.searchsorted(ei, np.arange(n + 1)).tolist()
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for k in range(n):
        if removed[k]:
            continue
        keep.append(k)
        if start[k + 1] > start[k]:
            removed[ej[start[k] : start[k + 1]]] = True
    return keep


def _dense(tv: Tensor, thr: float, block: int = 4096, geom: Tensor | None = None) -> list[int]:
    """Bitmask NMS on score-sorted torchvision boxes ``tv`` (any device); sorted positions. ``geom``: the
    same boxes as float64 rsbench rboxes (on ``tv``'s device), for near-coincident pairs."""
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
    at most ``16 n`` pairs, else greedy). All give the same keep set.
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
    geom = sorted_boxes.to(torch.float64)
    if method == "dense" or (method == "auto" and boxes.is_cuda):
        keep = _dense(tv, float(iou_threshold), geom=geom)
    else:
        tv, geom = tv.cpu(), geom.cpu()
        grown = _grown_hbox(geom)
        pairs = _self_candidates(grown)
        if method == "sparse" or (method == "auto" and pairs[0].numel() <= _SPARSE_MAX_PAIRS_PER_BOX * tv.shape[0]):
            keep = _sparse(tv, geom, grown, float(iou_threshold), pairs)
        else:
            keep = _greedy(tv, rbox_to_hbox(sorted_boxes).cpu(), float(iou_threshold), geom, pairs)
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


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
