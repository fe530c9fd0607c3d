"""Horizontal object detection: the backbone's pyramid → FPN → Faster R-CNN or RetinaNet (MMDetection's
settings, docs/protocols.md §2.2) → COCO AP as MMDetection's ``CocoMetric`` reports it.

The detector is torchvision's, with the small subclasses of :mod:`rsbench.models.detection` where a
constructor argument cannot match MMDetection 3.1 (``../shared/reference/detection.md`` §2): chosen by
``detector.name`` (``faster_rcnn`` for DIOR, ``retinanet`` for xView; the recipe sets it), its other
keys passed to the builder. Images arrive resized and normalised by :mod:`rsbench.data.det_transforms`;
the detector only pads them to a multiple of 32 (no internal resizing, as MTP's 800² and 416² inputs).

Batches are lists (images hold different numbers of boxes): ``{"image": [...], "boxes": [...],
"labels": [...]}`` with 0-based labels. Metrics (:class:`rsbench.metrics.DetectionMAP`): ``AP50``
(the paper's number, COCO AP at IoU 0.5, maxDets 1000 — equal to 100 since the detector keeps ≤ 100),
``mAP`` (AP@[.5:.95]), ``AP75`` and AP per class, in percent. Validation uses the same metric.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch

from rsbench.data.augment import in_worker
from rsbench.data.packing import pack_lists
from rsbench.errors import ConfigError
from rsbench.metrics.detection import DetectionMAP
from rsbench.tasks.base import BaseTask

log = logging.getLogger(__name__)

TARGET_KEYS = ("boxes", "labels")
BACKBONE_PATH = "backbone.body"  # where torchvision's detectors hold the feature extractor


def _num(x: float | None) -> float:
    """A metric for the logger: None (no ground truth in the split) becomes NaN."""
    return float("nan") if x is None else float(x)


def collate_detection(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Samples → a dict of lists (one entry per image; boxes differ in number). In a DataLoader worker the
    lists are packed into few tensors for the trip (:func:`rsbench.data.packing.pack_lists`; the
    datamodule's ``on_after_batch_transfer`` gives the lists back)."""
    batch = {k: [s[k] for s in samples] for k in samples[0]}
    return pack_lists(batch) if in_worker() else batch


class DetectorTask(BaseTask):
    """What the detection tasks share: list batches (:func:`collate_detection`), a detector that returns its
    loss dict in training and per-image predictions otherwise, the losses summed and logged. A subclass
    gives ``targets(batch)``: the per-image dicts the detector trains on."""

    collate_fn = staticmethod(collate_detection)
    detector: torch.nn.Module

    @staticmethod
    def batch_size_of(batch: Mapping[str, Any]) -> int:
        return len(batch["image"])

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return self.detector(images)

    def training_step(self, batch: Mapping[str, Any], _: int) -> torch.Tensor:
        losses = self.detector(batch["image"], self.targets(batch))
        loss = sum(losses.values())
        n = self.batch_size_of(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        return loss

    @staticmethod
    def _detach(preds: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        return [{k: v.detach() for k, v in p.items()} for p in preds]


class DetectionTask(DetectorTask):
    """A torchvision detector on the rsbench backbone (module docstring).

    ``detector``: ``{name, **builder arguments}`` for :func:`rsbench.models.detection.build_detector`.
    The detector owns the backbone (``detector.backbone.body``, torchvision's place for it);
    ``self.backbone`` refers to it.
    """

    def __init__(self, *, detector: Mapping[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        from rsbench.models.detection import build_detector

        cfg = dict(detector or {})
        name = cfg.pop("name", None)
        if not name:
            raise ConfigError("task.module.detector.name is not set (faster_rcnn | retinanet; the dataset's recipe "
                              "sets it)")
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names but num_classes={self.num_classes}")
        self.detector = build_detector(name, self.backbone, self.num_classes, img_size=int(kw["img_size"]), **cfg)
        self.adopt_backbone(self.detector, BACKBONE_PATH)
        self.detector_name = name
        self.val_map = DetectionMAP(class_names=self.class_names)
        self.test_map = DetectionMAP(class_names=self.class_names)
        self._n_test = 0

    # -- hooks ----------------------------------------------------------------------------------
    @staticmethod
    def targets(batch: Mapping[str, Any]) -> list[dict[str, torch.Tensor]]:
        return [{k: batch[k][i] for k in TARGET_KEYS} for i in range(len(batch["image"]))]

    # -- steps ----------------------------------------------------------------------------------
    def validation_step(self, batch: Mapping[str, Any], _: int) -> None:
        self.val_map.update(self._detach(self(batch["image"])), self.targets(batch))

    def on_validation_epoch_end(self) -> None:
        m = self.val_map.compute()
        self.val_map.reset()
        self.log("val/AP50", _num(m["map_50"]), prog_bar=True)
        self.log("val/mAP", _num(m["map"]))

    def test_step(self, batch: Mapping[str, Any], _: int) -> dict[str, Any]:
        preds = self._detach(self(batch["image"]))
        self.test_map.update(preds, self.targets(batch))
        self._n_test += len(preds)
        return {"prediction": preds}

    def on_test_epoch_end(self) -> None:
        m = self.test_map.compute()
        self.test_map.reset()
        self.log("test/AP50", _num(m["map_50"]))
        self.test_results = {
            "AP50": m["map_50"], "mAP": m["map"], "AP75": m.get("map_75"),
            "per_class": {"AP": m.get("map_per_class"), "AP50": m.get("map_50_per_class")},
            "metric_detail": {k: v for k, v in m.items() if not k.endswith("per_class")},
            "class_names": self.class_names,
            "num_test_images": self._gather_count(self._n_test),
            "detector": self.detector_name,
        }
        self._n_test = 0
