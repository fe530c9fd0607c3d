"""Rotated object detection: the backbone's pyramid → FPN → Oriented R-CNN (MMRotate 1.x settings of MTP,
``../shared/reference/mtp_recipes.md`` §2.3, ``detection.md`` §5) → rotated mAP at IoU 0.5.

The detector is :func:`rsbench.models.detection.oriented_rcnn.build_oriented_rcnn`, chosen by
``detector.name`` (``oriented_rcnn``), its other keys passed to the builder. Images arrive resized (keep
ratio) and normalised by :mod:`rsbench.data.rotdet_transforms`; the detector only pads them to a multiple
of 32. Batches are lists (``{"image": [...], "boxes": [(N, 5)], "labels": [...], "difficult": [...],
"polygons": [...] (eval), "scale_factor": [...]}``), labels 0-based, boxes ``(cx, cy, w, h, theta)``
radians le90, in the resized frame.

Metric: :class:`rsbench.metrics.rotated.RotatedMeanAveragePrecision` (IoU 0.5, VOC07 11-point AP) with
``metric_mode`` from the config: ``mmrotate`` (DIOR-R's reported number: rbox IoU, ``>=``, nothing
ignored) or ``devkit`` (DOTA devkit task 1: the annotated polygons, difficult ignored). Predictions
and targets are both in the eval transform's resized frame, where they are scored. ``test_results``:
``mAP`` in percent, ``per_class`` AP in percent (``None``: a class without gts in mmrotate mode),
``num_gts``, ``num_test_images``, ``detector``, ``metric_mode``.

Submissions (a ``predict`` split, e.g. DOTA / FAIR1M test patches): ``predict_step`` maps each image's
detections back to the file's pixels (the eval transform's ``scale_factor``: corners divided by
``(sx, sy)``) and :meth:`RotatedDetectionTask.write_prediction` writes one ``<name>.txt`` per image (patch)
with DOTA-style lines ``x1 y1 x2 y2 x3 y3 x4 y4 class score``; merging patches and the server formats
(``Task1_<class>.txt``, FAIR1M XML) are a later step (``scripts/split_dota.py``'s merge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rsbench.errors import ConfigError
from rsbench.metrics.rotated import RotatedMeanAveragePrecision
from rsbench.tasks.base import BaseTask
from rsbench.tasks.detection import BACKBONE_PATH, collate_detection

log = logging.getLogger(__name__)

#: what the detector trains on; the metric also reads ``difficult`` and ``polygons`` when present
TARGET_KEYS = ("boxes", "labels")
METRIC_KEYS = ("boxes", "labels", "difficult", "polygons")
DETECTORS = ("oriented_rcnn",)


def build_rotated_detector(name: str, backbone: torch.nn.Module, num_classes: int, img_size: Any,
                           **kw: Any) -> torch.nn.Module:
    """The rotated detector ``name`` (``oriented_rcnn``) on ``backbone``; ``kw`` overrides its recipe."""
    if name == "oriented_rcnn":
        from rsbench.models.detection.oriented_rcnn import build_oriented_rcnn

        return build_oriented_rcnn(backbone, num_classes, img_size=img_size, **kw)
    raise ConfigError(f"task.module.detector.name: unknown rotated detector {name!r}; known: {', '.join(DETECTORS)}")


class RotatedDetectionTask(BaseTask):
    """Oriented R-CNN on the rsbench backbone (module docstring).

    ``detector``: ``{name, **builder arguments}``; ``metric_mode``: ``mmrotate`` | ``devkit``;
    ``ap_mode``: ``voc07`` | ``area``; ``iou_threshold``: 0.5. The detector holds the backbone at
    ``detector.backbone.body`` (stored once; layer-wise LR decay reads its names under that prefix).
    """

    collate_fn = staticmethod(collate_detection)

    def __init__(self, *, detector: Mapping[str, Any], metric_mode: str = "mmrotate", ap_mode: str = "voc07",
                 iou_threshold: float = 0.5, **kw: Any) -> None:
        super().__init__(**kw)
        cfg = dict(detector or {})
        name = cfg.pop("name", None) or "oriented_rcnn"
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names but num_classes={self.num_classes}")
        self.detector = build_rotated_detector(name, self.backbone, self.num_classes, img_size=int(kw["img_size"]),
                                               **cfg)
        self.adopt_backbone(self.detector, BACKBONE_PATH)
        self.detector_name = name
        self.metric_mode = metric_mode
        metric = {"iou_threshold": float(iou_threshold), "ap_mode": ap_mode, "mode": metric_mode,
                  "class_names": self.class_names}
        self.val_map = RotatedMeanAveragePrecision(**metric)
        self.test_map = RotatedMeanAveragePrecision(**metric)
        self._n_test = 0

    # -- hooks ----------------------------------------------------------------------------------
    @staticmethod
    def batch_size_of(batch: Mapping[str, Any]) -> int:
        return len(batch["image"])

    @staticmethod
    def targets(batch: Mapping[str, Any], keys: tuple[str, ...] = TARGET_KEYS) -> list[dict[str, torch.Tensor]]:
        return [{k: batch[k][i] for k in keys if k in batch and batch[k][i] is not None}
                for i in range(len(batch["image"]))]

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.detector(images)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Any], _: int) -> torch.Tensor:
        losses = self.detector(batch["image"], self.targets(batch))
        loss = sum(losses.values())
        n = self.batch_size_of(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        return loss

    def validation_step(self, batch: Mapping[str, Any], _: int) -> None:
        self.val_map.update(self._detach(self(batch["image"])), self.targets(batch, METRIC_KEYS))

    def on_validation_epoch_end(self) -> None:
        m = self.val_map.compute()
        self.val_map.reset()
        self.log("val/mAP", 100.0 * float(m["map"]), prog_bar=True)

    def test_step(self, batch: Mapping[str, Any], _: int) -> dict[str, Any]:
        preds = self._detach(self(batch["image"]))
        self.test_map.update(preds, self.targets(batch, METRIC_KEYS))
        self._n_test += len(preds)
        return {"prediction": preds}

    def on_test_epoch_end(self) -> None:
        m = self.test_map.compute()
        self.test_map.reset()
        self.log("test/mAP", 100.0 * float(m["map"]))
        self.test_results = {
            "mAP": 100.0 * float(m["map"]),
            "per_class": {"AP": {k: None if v is None else 100.0 * float(v) for k, v in m["map_per_class"].items()}},
            "num_gts": dict(m["num_gts"]),
            "class_names": self.class_names,
            "num_test_images": self._gather_count(self._n_test),
            "detector": self.detector_name,
            "metric_mode": self.metric_mode,
        }
        self._n_test = 0

    # -- submission -----------------------------------------------------------------------------
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, torch.Tensor]]:
        """Detections per image with ``polygons`` ``(K, 8)`` in the file's pixels (``scale_factor`` undone)."""
        from rsbench.models.ops.rbox import rbox_to_poly

        preds = self._detach(self(batch["image"]))
        factors = batch.get("scale_factor") or [None] * len(preds)
        out = []
        for p, sf in zip(preds, factors):
            poly = rbox_to_poly(p["boxes"].double())
            if sf is not None:
                poly = poly / torch.as_tensor(sf, dtype=poly.dtype, device=poly.device).repeat(4)
            out.append({**p, "polygons": poly})
        return out

    def write_prediction(self, prediction: Mapping[str, torch.Tensor], name: str, out_dir: Path) -> None:
        """``<name>.txt``: one ``x1 y1 ... x4 y4 class score`` line per detection (DOTA's class names as the
        dataset's list spells them; merge patches and write the server format from these)."""
        poly = prediction["polygons"].cpu().tolist()
        labels, scores = prediction["labels"].cpu().tolist(), prediction["scores"].cpu().tolist()
        lines = [" ".join(f"{v:.2f}" for v in pts) + f" {self.class_names[c]} {s:.4f}"
                 for pts, c, s in zip(poly, labels, scores)]
        Path(out_dir, f"{Path(name).name}.txt").write_text("".join(line + "\n" for line in lines))

    @staticmethod
    def _detach(preds: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        return [{k: v.detach() for k, v in p.items()} for p in preds]
