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

Submissions (a ``predict`` split, e.g. DOTA / FAIR1M test patches; ``protocol=paper``): ``predict_step``
maps each image's detections back to the file's pixels as MMRotate's ``predict(rescale=True)``;
:meth:`RotatedDetectionTask.write_prediction` writes ``detections/<name>.txt`` per image (patch), and after
the last one :meth:`RotatedDetectionTask.finish_submission` merges the patches per original image
(class-wise rotated NMS at ``merge_iou`` 0.1, MMRotate's ``DOTAMetric.merge_results``) and has the dataset
write the server's format (:mod:`rsbench.data.rotated_submission`: DOTA ``Task1_<class>.txt`` + zip,
FAIR1M-2.0 one XML per image + zip).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from rsbench.errors import ConfigError
from rsbench.metrics.rotated import RotatedMeanAveragePrecision
from rsbench.tasks.detection import BACKBONE_PATH, DetectorTask

log = logging.getLogger(__name__)

#: what the detector trains on; the metric also reads ``difficult`` and ``polygons`` when present
TARGET_KEYS = ("boxes", "labels")
METRIC_KEYS = ("boxes", "labels", "difficult", "polygons")
DETECTORS = ("oriented_rcnn",)
DETECTIONS_DIR = "detections"  # per image (patch) files of a submission, before merging


def build_rotated_detector(name: str, backbone: torch.nn.Module, num_classes: int, img_size: Any,
                           **kw: Any) -> torch.nn.Module:
    """The rotated detector ``name`` (``oriented_rcnn``) on ``backbone``; ``kw`` overrides its recipe."""
    if name == "oriented_rcnn":
        from rsbench.models.detection.oriented_rcnn import build_oriented_rcnn

        return build_oriented_rcnn(backbone, num_classes, img_size=img_size, **kw)
    raise ConfigError(f"task.module.detector.name: unknown rotated detector {name!r}; known: {', '.join(DETECTORS)}")


class RotatedDetectionTask(DetectorTask):
    """Oriented R-CNN on the rsbench backbone (module docstring).

    ``detector``: ``{name, **builder arguments}``; ``metric_mode``: ``mmrotate`` | ``devkit``;
    ``ap_mode``: ``voc07`` | ``area``; ``iou_threshold``: 0.5. The detector holds the backbone at
    ``detector.backbone.body`` (stored once; layer-wise LR decay reads its names under that prefix).
    """

    def __init__(self, *, detector: Mapping[str, Any], metric_mode: str = "mmrotate", ap_mode: str = "voc07",
                 iou_threshold: float = 0.5, merge_iou: float = 0.1, **kw: Any) -> None:
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
        self.merge_iou = float(merge_iou)
        metric = {"iou_threshold": float(iou_threshold), "ap_mode": ap_mode, "mode": metric_mode,
                  "class_names": self.class_names}
        self.val_map = RotatedMeanAveragePrecision(**metric)
        self.test_map = RotatedMeanAveragePrecision(**metric)
        self._n_test = 0

    # -- hooks ----------------------------------------------------------------------------------
    @staticmethod
    def targets(batch: Mapping[str, Any], keys: tuple[str, ...] = TARGET_KEYS) -> list[dict[str, torch.Tensor]]:
        return [{k: batch[k][i] for k in keys if k in batch and batch[k][i] is not None}
                for i in range(len(batch["image"]))]

    # -- steps ----------------------------------------------------------------------------------
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
        """Detections per image in the file's pixels: the eval resize undone as MMRotate's
        ``predict(rescale=True)`` does it (:func:`rsbench.models.ops.rbox.rescale_rboxes` by ``1 / scale_factor``)."""
        from rsbench.models.ops.rbox import rescale_rboxes

        preds = self._detach(self(batch["image"]))
        factors = batch.get("scale_factor") or [None] * len(preds)
        out = []
        for p, sf in zip(preds, factors):
            boxes = p["boxes"].float()
            if sf is not None:
                sx, sy = (float(v) for v in sf)
                boxes = rescale_rboxes(boxes, 1.0 / sx, 1.0 / sy)
            out.append({**p, "boxes": boxes})
        return out

    def write_prediction(self, prediction: Mapping[str, torch.Tensor], name: str, out_dir: Path) -> None:
        """``<out_dir>/detections/<name>.txt``: one ``class score cx cy w h theta`` line per detection (the
        file's pixels, theta in radians le90, ``%.9g``: float32 exactly), read back by :meth:`finish_submission`."""
        folder = Path(out_dir, DETECTIONS_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        boxes = prediction["boxes"].cpu().float().tolist()
        labels, scores = prediction["labels"].cpu().tolist(), prediction["scores"].cpu().float().tolist()
        lines = [f"{self.class_names[c]} {s:.9g} " + " ".join(f"{v:.9g}" for v in b)
                 for b, c, s in zip(boxes, labels, scores)]
        tmp = folder / f".{Path(name).name}.txt.tmp"
        tmp.write_text("".join(line + "\n" for line in lines))
        tmp.replace(folder / f"{Path(name).name}.txt")

    def finish_submission(self, out_dir: Path, dataset: Any) -> dict[str, Any]:
        """Merge the images' (patches') detections per original image (class-wise rotated NMS at
        ``merge_iou``, :func:`rsbench.data.dota_split.merge_patch_detections`) and write the dataset's server
        format (``dataset.write_submission``: DOTA ``Task1_<class>.txt``, FAIR1M XML), on rank 0 after
        every process has written its files."""
        from rsbench.data.dota_split import merge_patch_detections

        self.trainer.strategy.barrier("rsbench-submission")
        if self.trainer.global_rank != 0:
            return {}
        names = [dataset.sample_name(i) for i in range(len(dataset))]
        merged = merge_patch_detections(((n, read_detections(Path(out_dir, DETECTIONS_DIR, f"{n}.txt"),
                                                              self.class_names)) for n in names),
                                        iou_thr=self.merge_iou)
        summary = dataset.write_submission(merged, Path(out_dir))
        log.info("submission: %s (%d images, %d detections after merging)", summary.get("zip"),
                 summary.get("num_images", 0), summary.get("num_detections", 0))
        return {"merged": summary}


def read_detections(path: Path, class_names: list[str]) -> dict[str, torch.Tensor]:
    """What :meth:`RotatedDetectionTask.write_prediction` wrote (float32 boxes and scores, class ids)."""
    from rsbench.errors import DataError

    index = {c: i for i, c in enumerate(class_names)}
    boxes, scores, labels = [], [], []
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: the detections of this image are missing ({e}); rerun the prediction") from e
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 7 or parts[0] not in index:
            raise DataError(f"{path}, line {lineno}: expected 'class score cx cy w h theta', got {line!r}")
        labels.append(index[parts[0]])
        scores.append(float(parts[1]))
        boxes.append([float(v) for v in parts[2:]])
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 5),
            "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.tensor(labels, dtype=torch.long)}
