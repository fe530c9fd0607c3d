"""Rotated-box mAP at one IoU threshold: MMRotate 1.x's ``DOTAMetric`` or the DOTA devkit's task 1.

Two protocols (``../shared/reference/detection.md`` §7) that differ on the same detections:

- ``mode="mmrotate"`` (DIOR-R's 71.29 in the paper): gt rboxes vs detected rboxes through
  torchvision's rotated IoU kernel in float32, a match needs IoU **>=** threshold, nothing is
  ignored (difficult gts are ordinary gts), mAP = mean over the classes that have gts.
- ``mode="devkit"`` (DOTA's evaluation code, for local checks): the gt quadrilateral as annotated
  vs the detection's rectangle, exact float64 polygon IoU, a match needs IoU **>** threshold, a
  match to a difficult gt is neither TP nor FP, difficult gts are not positives, and mAP averages
  every class of the list (a class without positive gts scores 0, as the devkit's NaN recall does).

Both: detections of a class sorted by score (stable, so ties keep input order; the originals use
an unstable sort), each matched to its max-IoU gt of the same image and class; if that gt is
already taken the detection is a false positive (no fall-back to the second best, VOC style).
``ap_mode="voc07"``: 11-point AP (max precision at recall >= 0, 0.1, ..., 1, averaged);
``"area"``: the area under the monotone precision envelope (VOC2010+).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics import Metric

from rsbench.errors import ConfigError
from rsbench.metrics.polygon import poly_iou, rbox_to_poly
from rsbench.models.ops.rbox import box_iou_rotated

_STATES = ("det_boxes", "det_scores", "det_labels", "det_image", "gt_boxes", "gt_labels", "gt_difficult",
           "gt_image", "gt_polygons")


def average_precision(tp: np.ndarray, fp: np.ndarray, npos: int, ap_mode: str) -> float:
    """AP from per-detection TP/FP flags in score order (both 0 for a detection that is ignored)."""
    tp, fp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if ap_mode == "voc07":
        return float(sum(prec[rec >= t].max() if (rec >= t).any() else 0.0 for t in np.arange(11) * 0.1) / 11)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], prec, [0.0]])[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def rotated_iou_mmrotate(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, M) IoU of le90 rboxes through torchvision's kernel (degrees, counter-clockwise positive,
    hence the sign flip), float32 as mmcv's ``box_iou_rotated``; w, h clamped at 1e-3 as
    MMRotate's ``RBboxOverlaps2D`` (only degenerate boxes are affected). Near-coincident pairs (a corner
    within ~1e-3 px of the other box's outline), which torchvision's kernel and mmcv's older copy of it
    can get badly wrong, are recomputed exactly (:func:`rsbench.models.ops.rbox.box_iou_rotated`): there
    rsbench can differ from what MTP's mmcv computed, towards the true overlap."""

    def conv(b: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(b, dtype=torch.float64).reshape(-1, 5).clone()
        t[:, 2:4] = t[:, 2:4].clamp(min=1e-3)
        t[:, 4] = -torch.rad2deg(t[:, 4])
        return t.float()

    if len(det) == 0 or len(gt) == 0:
        return np.zeros((len(det), len(gt)))
    return box_iou_rotated(conv(det), conv(gt)).double().numpy()


def candidate_pairs(d_key: np.ndarray, g_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (detection, gt) row pairs with equal (image, class) keys, det-major, gts in row order."""
    if len(d_key) == 0 or len(g_key) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, gid = np.unique(np.concatenate([d_key, g_key]), axis=0, return_inverse=True)
    gid = gid.reshape(-1)
    d_gid, g_gid = gid[: len(d_key)], gid[len(d_key):]
    g_order = np.argsort(g_gid, kind="stable")
    start = np.searchsorted(g_gid[g_order], d_gid, "left")
    count = np.searchsorted(g_gid[g_order], d_gid, "right") - start
    pi = np.repeat(np.arange(len(d_key)), count)
    offset = np.arange(len(pi)) - np.repeat(np.cumsum(count) - count, count)
    return pi, g_order[np.repeat(start, count) + offset]


def pair_iou_devkit(det: np.ndarray, gt_poly: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """Aligned IoU of detection rectangles with gt quadrilaterals; only pairs whose horizontal
    boxes overlap are computed (the devkit's prefilter: the others have IoU 0 anyway)."""
    dp, gp = rbox_to_poly(det), np.asarray(gt_poly, dtype=np.float64).reshape(-1, 4, 2)
    overlap = (np.minimum(dp.max(1), gp.max(1)) > np.maximum(dp.min(1), gp.min(1))).all(-1)
    iou = np.zeros(len(dp))
    idx = np.nonzero(overlap)[0]
    for k in range(0, len(idx), chunk):
        i = idx[k:k + chunk]
        iou[i] = poly_iou(gp[i], dp[i])
    return iou


def pair_iou_mmrotate(det: np.ndarray, gt: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Aligned IoU of (det, gt) rbox pairs, one dense kernel call per image (``image`` per pair)."""
    iou = np.zeros(len(det))
    order = np.argsort(image, kind="stable")
    _, start = np.unique(image[order], return_index=True)
    for sel in np.split(order, start[1:]) if len(order) else []:
        du, di = np.unique(det[sel], axis=0, return_inverse=True)
        gu, gi = np.unique(gt[sel], axis=0, return_inverse=True)
        iou[sel] = rotated_iou_mmrotate(du, gu)[di.reshape(-1), gi.reshape(-1)]
    return iou


def best_gt(pi: np.ndarray, pj: np.ndarray, iou: np.ndarray, n_det: int) -> tuple[np.ndarray, np.ndarray]:
    """Per detection the max IoU over its candidate gts and the first gt row reaching it (numpy's
    argmax); -inf and -1 for a detection without candidates."""
    ov, arg = np.full(n_det, -np.inf), np.full(n_det, -1)
    if len(pi) == 0:
        return ov, arg
    first = np.r_[True, pi[1:] != pi[:-1]]
    ov[pi[first]] = np.maximum.reduceat(iou, np.nonzero(first)[0])
    is_max = iou == ov[pi]
    _, k = np.unique(pi[is_max], return_index=True)
    arg[pi[is_max][k]] = pj[is_max][k]
    return ov, arg


class RotatedMeanAveragePrecision(Metric):
    """mAP of oriented boxes at one IoU threshold (see the module docstring for the two modes).

    ``update(preds, target)``: lists of dicts, one per image. preds ``boxes`` (N, 5) ``cx, cy, w, h,
    angle`` (radians, le90, clockwise-positive in image coordinates, as MMRotate), ``scores``,
    ``labels``; target ``boxes`` (M, 5), ``labels``, optional ``difficult`` (M,) bool and
    ``polygons`` (M, 8) ``x1, y1, ..., x4, y4`` as annotated (required by ``mode="devkit"``).

    ``compute()``: ``map`` (a fraction), ``map_per_class`` and ``num_gts`` (dicts by class name; AP
    ``None`` for a class without gts in mmrotate mode, ``num_gts`` = positives the mode counts).
    The class list is ``class_names``, else ``range(num_classes)``, else the labels seen.
    States are per-row tensors concatenated across processes, keyed by (rank, image counter), so
    processes may hold different numbers of images.
    """

    full_state_update = False

    def __init__(self, iou_threshold: float = 0.5, ap_mode: str = "voc07", mode: str = "mmrotate",
                 class_names: Sequence[str] | None = None, num_classes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("mmrotate", "devkit"):
            raise ConfigError(f"RotatedMeanAveragePrecision mode must be 'mmrotate' or 'devkit', not {mode!r}")
        if ap_mode not in ("voc07", "area"):
            raise ConfigError(f"RotatedMeanAveragePrecision ap_mode must be 'voc07' or 'area', not {ap_mode!r}")
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names but num_classes={num_classes}")
        self.iou_threshold, self.ap_mode, self.mode = float(iou_threshold), ap_mode, mode
        self.class_names = list(class_names) if class_names is not None else None
        self.num_classes = len(class_names) if class_names is not None else num_classes
        self._images_seen = 0  # never reset: keys only need to be unique, and forward() resets states
        for name in _STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _rows(self, x: Any, width: int | None, dtype: torch.dtype, what: str) -> torch.Tensor:
        """``x`` as a tensor on the metric's device: (N, width) rows, or (N,) when width is None."""
        t = torch.as_tensor(x).detach().to(device=self.device, dtype=dtype)
        if width is None:
            return t.reshape(-1)
        if t.numel() == 0:
            return t.reshape(0, width)
        t = t.flatten(1) if t.ndim == 3 else t  # polygons may come as (M, 4, 2)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(f"{what} must have shape (N, {width}), got {tuple(t.shape)}")
        return t

    def _check_labels(self, labels: torch.Tensor) -> None:
        if labels.numel() and (labels.min() < 0 or (self.num_classes is not None and labels.max() >= self.num_classes)):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.unique().tolist()}")

    def update(self, preds: Sequence[dict[str, Any]], target: Sequence[dict[str, Any]]) -> None:
        """Add one batch of images (see the class docstring for the keys)."""
        if len(preds) != len(target):
            raise ValueError(f"{len(preds)} predictions for {len(target)} targets")
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        for p, t in zip(preds, target):
            key = rank * 2**40 + self._images_seen
            self._images_seen += 1
            db = self._rows(p["boxes"], 5, torch.float64, "preds boxes")
            gb = self._rows(t["boxes"], 5, torch.float64, "target boxes")
            ds = self._rows(p["scores"], None, torch.float64, "")
            dl, gl = self._rows(p["labels"], None, torch.long, ""), self._rows(t["labels"], None, torch.long, "")
            diff = self._rows(t.get("difficult", torch.zeros(len(gb))), None, torch.uint8, "")
            if not len(ds) == len(dl) == len(db) or not len(gl) == len(diff) == len(gb):
                raise ValueError("boxes, scores, labels (and difficult) of one image must have the same length")
            self._check_labels(dl)
            self._check_labels(gl)
            if self.mode == "devkit":
                if t.get("polygons") is None:
                    raise ValueError("mode='devkit' compares the annotated quadrilaterals: give target 'polygons' "
                                     "(M, 8) x1, y1, ..., x4, y4 for every image")
                poly = self._rows(t["polygons"], 8, torch.float64, "target polygons")
                if len(poly) != len(gb):
                    raise ValueError(f"{len(poly)} target polygons for {len(gb)} boxes")
                self.gt_polygons.append(poly)
            rows = {"det_boxes": db, "det_scores": ds, "det_labels": dl, "det_image": torch.full_like(dl, key),
                    "gt_boxes": gb, "gt_labels": gl, "gt_difficult": diff, "gt_image": torch.full_like(gl, key)}
            for name, v in rows.items():
                getattr(self, name).append(v)

    def _state(self, name: str, width: int | None = None) -> np.ndarray:
        v = getattr(self, name)
        if isinstance(v, list):
            v = torch.cat(v) if v else torch.zeros((0, width) if width else 0)
        return v.cpu().numpy()

    def _tp_fp(self, ov: np.ndarray, arg: np.ndarray, ignored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy matching of score-sorted detections: each is TP iff it is the first to claim its
        argmax gt (no fall-back), so the first claim per gt is the TP, later claims are FP."""
        hit = ov >= self.iou_threshold if self.mode == "mmrotate" else ov > self.iou_threshold
        hit &= arg >= 0
        skip = hit & ignored[np.maximum(arg, 0)] if len(ignored) else np.zeros_like(hit)
        claim = hit & ~skip
        tp = np.zeros(len(ov))
        idx = np.nonzero(claim)[0]
        _, first = np.unique(arg[idx], return_index=True)
        tp[idx[first]] = 1.0
        fp = (~skip).astype(np.float64) - tp
        return tp, fp

    def compute(self) -> dict[str, Any]:
        """``map``, ``map_per_class``, ``num_gts``."""
        d = {"boxes": self._state("det_boxes", 5), "scores": self._state("det_scores"),
             "labels": self._state("det_labels").astype(np.int64), "image": self._state("det_image")}
        g = {"boxes": self._state("gt_boxes", 5), "labels": self._state("gt_labels").astype(np.int64),
             "image": self._state("gt_image"), "difficult": self._state("gt_difficult").astype(bool)}
        if self.mode == "devkit":
            g["polygons"] = self._state("gt_polygons", 8)
        ignored = g["difficult"] if self.mode == "devkit" else np.zeros(len(g["labels"]), dtype=bool)
        pi, pj = candidate_pairs(np.c_[d["image"], d["labels"]], np.c_[g["image"], g["labels"]])
        if self.mode == "mmrotate":
            iou = pair_iou_mmrotate(d["boxes"][pi], g["boxes"][pj], d["image"][pi])
        else:
            iou = pair_iou_devkit(d["boxes"][pi], g["polygons"][pj])
        ov, arg = best_gt(pi, pj, iou, len(d["labels"]))
        if self.num_classes is not None:
            labels = list(range(self.num_classes))
        else:
            labels = sorted(set(d["labels"].tolist()) | set(g["labels"].tolist()))
        names = self.class_names or [str(c) for c in labels]
        aps: dict[str, float | None] = {}
        npos: dict[str, int] = {}
        for c, name in zip(labels, names):
            npos[name] = int(((g["labels"] == c) & ~ignored).sum())
            sel = np.nonzero(d["labels"] == c)[0]
            sel = sel[np.argsort(-d["scores"][sel], kind="stable")]
            if npos[name] == 0:
                aps[name] = None if self.mode == "mmrotate" else 0.0
                continue
            tp, fp = self._tp_fp(ov[sel], arg[sel], ignored)
            aps[name] = average_precision(tp, fp, npos[name], self.ap_mode)
        scored = [v for v in aps.values() if v is not None]
        return {"map": float(np.mean(scored)) if scored else 0.0, "map_per_class": aps, "num_gts": npos}
