"""COCO box AP as MMDetection 3.1's ``CocoMetric`` reports it (the paper's DIOR and xView number).

:class:`DetectionMAP` is torchmetrics' ``MeanAveragePrecision`` with the settings that make it equal
pycocotools as mmdet drives it (``../shared/reference/detection.md`` §3):

- IoU thresholds ``np.linspace(.5, .95, 10)`` and recall thresholds ``np.linspace(0, 1, 101)`` as
  float64 (torchmetrics' defaults are float32 ``torch.linspace``, which moved AP50 by up to 1.4e-4);
- ``maxDets = [100, 300, 1000]``: mmdet's ``bbox_mAP_50`` is ``stats[1]``, at maxDets 1000.

The numbers are read from COCOeval's float64 precision array (``extended_summary``), not from
torchmetrics' float32 ``stats``, so the unrounded values equal pycocotools to ~1e-15. Per-class AP
comes from the same array (what ``class_metrics=True`` gives, without a second evaluation per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.detection import MeanAveragePrecision

from rsbench.errors import ConfigError

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
REC_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()
MAX_DETS = [100, 300, 1000]
PER_IMAGE_STATES = ("detection_box", "detection_scores", "detection_labels", "groundtruth_box", "groundtruth_labels",
                    "groundtruth_crowds", "groundtruth_area")  # torchmetrics' list states of iou_type="bbox"
AREAS = {"": 0, "_small": 1, "_medium": 2, "_large": 3}  # COCOeval's areaRng order: all, small, medium, large


def _mean_valid(p: np.ndarray) -> float | None:
    """COCOeval ``summarize``: mean over the entries that are not -1 (-1 = no ground truth)."""
    v = p[p > -1]
    return float(v.mean()) if v.size else None


def _mmdet_percent(x: float | None) -> float | None:
    """mmdet keeps ``round(x, 3)`` of the fraction; in percent that is one decimal."""
    return None if x is None else round(round(x, 3) * 100, 10)


class DetectionMAP(MeanAveragePrecision):
    """COCO AP in percent, as MMDetection's ``CocoMetric`` (``bbox_mAP``, ``bbox_mAP_50``, ...).

    ``update(preds, target)`` takes torchvision-style lists of dicts, one per image: preds ``boxes``
    (N, 4) xyxy pixels, ``scores`` (N,), ``labels`` (N,); target ``boxes`` (M, 4), ``labels`` (M,)
    int64, 0-based. Areas for small/medium/large are w·h of the gt box, crowds none.

    ``compute()`` returns python floats in percent:

    - ``map_50``, ``map``, ``map_75``, ``map_small``, ``map_medium``, ``map_large``: rounded as mmdet
      (``round(fraction, 3) * 100``); the same keys with ``_raw`` are unrounded. All at maxDets 1000.
    - ``map_per_class`` (AP@[.5:.95], mmdet's classwise table) and ``map_50_per_class``: dicts
      class name → unrounded percent.

    Classes without ground truth: COCOeval marks their precision −1 and leaves them out of every
    mean; here their per-class values are ``None`` (not −100), as are the classes never seen in
    the predictions or the targets. If no image holds any ground truth at all, every AP is ``None``.

    Annotation ids: MTP's converters start COCO annotation ids at 0 and pycocotools treats a match
    to id 0 as unmatched (cocoapi #664), so one gt per evaluation is never matched there.
    torchmetrics numbers ids from 1 and rsbench follows it: negligible on the real test sets,
    large on toy data.

    DDP: the states are torchmetrics' own (this class *is* the inner metric), gathered on compute as
    objects (:meth:`_sync_dist`), so the ranks may hold different numbers of images.
    ``backend`` is ``"faster_coco_eval"`` (same numbers, ~3× faster on DIOR-test) or ``"pycocotools"``.
    """

    def __init__(
        self, class_names: Sequence[str] | None = None, backend: str = "faster_coco_eval", **kwargs: Any
    ) -> None:
        if backend not in ("faster_coco_eval", "pycocotools"):
            raise ConfigError(f"DetectionMAP backend must be 'faster_coco_eval' or 'pycocotools', not {backend!r}")
        super().__init__(
            box_format="xyxy",
            iou_type="bbox",
            iou_thresholds=list(IOU_THRESHOLDS),
            rec_thresholds=list(REC_THRESHOLDS),
            max_detection_thresholds=list(MAX_DETS),
            class_metrics=False,  # per-class AP is read from the precision array instead
            extended_summary=True,  # gives that float64 array
            backend=backend,
            **kwargs,
        )
        self.class_names = list(class_names) if class_names is not None else None

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        """Gather every per-image state rank by rank with ``all_gather_object``.

        torchmetrics gathers list states one element at a time, which needs the same number of
        images on every rank; rsbench's evaluation sampler gives each test image to one rank only
        (no padding with repeats), so the counts may differ by one.
        """
        import torch.distributed as dist

        world = dist.get_world_size(group=process_group)
        for attr in PER_IMAGE_STATES:
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, [t.cpu() for t in getattr(self, attr)], group=process_group)
            setattr(self, attr, [t.to(self.device) for part in parts for t in part])

    def _name(self, label: int) -> str:
        if self.class_names is None:
            return str(label)
        if not 0 <= label < len(self.class_names):
            raise ValueError(f"label {label} outside the {len(self.class_names)} class names given to DetectionMAP")
        return self.class_names[label]

    def compute(self) -> dict[str, Any]:
        """The mmdet numbers from COCOeval's precision array [T, R, K, A, M] (M = -1: maxDets 1000)."""
        res = super().compute()
        classes = [int(c) for c in res["classes"].tolist()]
        prec = res.get("precision")
        if not isinstance(prec, torch.Tensor) or prec.ndim != 5:  # update() never called: nothing to score
            prec = np.full((len(IOU_THRESHOLDS), len(REC_THRESHOLDS), len(classes), len(AREAS), len(MAX_DETS)), -1.0)
        else:
            prec = prec.detach().cpu().double().numpy()
        t50, t75 = IOU_THRESHOLDS.index(0.5), IOU_THRESHOLDS.index(0.75)
        out: dict[str, Any] = {}
        for suffix, a in AREAS.items():
            out[f"map{suffix}_raw"] = _mean_valid(prec[:, :, :, a, -1])
        out["map_50_raw"] = _mean_valid(prec[t50, :, :, 0, -1])
        out["map_75_raw"] = _mean_valid(prec[t75, :, :, 0, -1])
        for key in [k for k in out if k.endswith("_raw")]:
            out[key[: -len("_raw")]] = _mmdet_percent(out[key])
            out[key] = None if out[key] is None else out[key] * 100
        names = self.class_names if self.class_names is not None else [str(c) for c in classes]
        per_class: dict[str, float | None] = dict.fromkeys(names)
        per_class_50: dict[str, float | None] = dict.fromkeys(names)
        for k, c in enumerate(classes):
            ap, ap50 = _mean_valid(prec[:, :, k, 0, -1]), _mean_valid(prec[t50, :, k, 0, -1])
            per_class[self._name(c)] = None if ap is None else ap * 100
            per_class_50[self._name(c)] = None if ap50 is None else ap50 * 100
        out["map_per_class"] = per_class
        out["map_50_per_class"] = per_class_50
        return out
