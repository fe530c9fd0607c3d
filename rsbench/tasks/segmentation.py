"""Semantic segmentation: backbone pyramid → UperNet → per-pixel cross-entropy (MTP / mmseg recipe).

Model: :class:`~rsbench.models.heads.upernet.UPerHead` on the four maps of any
``build_backbone`` backbone with ``features="pyramid"`` (a ViT gets the fpn1..4 neck of rsbench/models/necks.py, strides
4/8/16/32, a timm convnet's stages, InternImage's levels); logits are bilinearly upsampled to
the input (``align_corners=False``). Loss: cross-entropy with ``ignore_index=255``, averaged
over all pixels of the batch as mmseg's default ``avg_non_ignore=False`` does
(``loss.avg_non_ignore=true`` averages over labelled pixels only).

Evaluation (the paper's protocol, docs/protocols.md §2.4 / §6): sliding-window inference at the
native resolution (``inference.mode=slide``, crop = the training crop, stride per dataset:
SpaceNet 1 384/256, LoveDA 512/384), logits averaged over overlaps, argmax; see
:mod:`rsbench.models.slide_inference` (also ``whole``, for backbones that take any input size
— not the fixed-size ViT-RVSA — and ``resize``, MTP's validation pipeline during training).
Validation during training uses the same unless ``val_inference`` is given. Under DDP,
Lightning's distributed sampler pads the val/test set to a multiple of the device count, so a
few images may be scored twice; single-device numbers are exact. Metrics from a torchmetrics confusion
matrix (255 ignored), computed as mmseg's ``IoUMetric`` (:mod:`rsbench.metrics.segmentation`):
``mIoU`` (%, the paper's number and the headline), ``OA``, ``mF1``, ``mAcc``, per-class IoU,
F1, precision and recall, and the confusion matrix, all in ``test_results``.

The first test images are drawn by the dataset's ``plot`` (image | label | prediction in the
palette) through :class:`rsbench.callbacks.PredictionPlots`.

LoveDA test-set submission (``dataset.splits.predict=test``): after the test the model predicts
every image of that split (sliding window, as above) and :meth:`SegmentationTask.write_prediction`
writes ``<run_dir>/submission/<image name>.png`` — one single-channel uint8 PNG per test image,
with the test image's file name (e.g. ``4191.png``), of the image's size, holding class ids
0..K-1 (LoveDA: 0 background, 1 building, 2 road, 3 water, 4 barren, 5 forest, 6 agricultural).
This is the format of the official ``predict.py`` and what the LoveDA server (Codabench
competition 13030, formerly CodaLab 421) scores; no ±1 shift is needed (MTP's
``change_loveda_label.py`` only undoes mmseg's +1). Zip the PNG files and upload them (the
archive layout the server expects is not confirmed here). Urban and Rural images go into the one
folder (their ids are unique). For the paper's protocol also train on train+val:
``dataset.splits.train=trainval``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.classification import MulticlassConfusionMatrix

from rsbench.constants import IGNORE_INDEX
from rsbench.errors import ConfigError, DataError
from rsbench.metrics.segmentation import seg_metrics
from rsbench.models.heads.upernet import UPerHead
from rsbench.models.slide_inference import dense_inference
from rsbench.tasks.base import BaseTask

log = logging.getLogger(__name__)

class SegmentationTask(BaseTask):
    """UperNet segmentation task (module docstring)."""

    def __init__(self, *, head: Mapping[str, Any] | None = None, loss: Mapping[str, Any] | None = None,
                 inference: Mapping[str, Any] | None = None, val_inference: Mapping[str, Any] | None = None,
                 ignore_index: int = IGNORE_INDEX, **kw: Any) -> None:
        super().__init__(**kw)
        self.ignore_index = int(ignore_index)
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names but num_classes={self.num_classes}")
        if len(self.backbone.out_channels) < 1:
            raise ConfigError("the backbone gives no feature maps")
        self.head = UPerHead(self.backbone.out_channels, self.num_classes, **dict(head or {}))
        self.avg_non_ignore = bool((loss or {}).get("avg_non_ignore", False))
        crop = int(kw.get("img_size") or 512)
        self.inference_cfg = self._inference_cfg(inference, crop)
        self.val_inference_cfg = self._inference_cfg(val_inference, crop) if val_inference else self.inference_cfg
        cm = dict(num_classes=self.num_classes, ignore_index=self.ignore_index, validate_args=False)
        self.val_cm = MulticlassConfusionMatrix(**cm)
        self.test_cm = MulticlassConfusionMatrix(**cm)
        self._n_test = 0

    @staticmethod
    def _inference_cfg(cfg: Mapping[str, Any] | None, crop: int) -> dict[str, Any]:
        c = dict(cfg or {})
        c.setdefault("mode", "slide")
        if c.get("crop_size") is None:
            c["crop_size"] = crop
        if c.get("stride") is None:
            c["stride"] = max(1, int(c["crop_size"]) * 2 // 3)
        if c["mode"] not in ("slide", "whole", "resize"):
            raise ConfigError(f"inference.mode must be slide, whole or resize, got {c['mode']!r}")
        return c

    # -- model ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def infer(self, img: torch.Tensor, cfg: Mapping[str, Any] | None = None) -> torch.Tensor:
        """Logits (B, K, H, W) of full-size images by the configured dense inference."""
        return dense_inference(self, img, num_classes=self.num_classes, **(cfg or self.inference_cfg))

    def loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), mask, ignore_index=self.ignore_index, reduction="none")
        if self.avg_non_ignore:
            return ce.sum() / (mask != self.ignore_index).sum().clamp(min=1)
        return ce.mean()

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        pred = self.infer(batch["image"], self.val_inference_cfg).argmax(1)
        self.val_cm.update(pred, batch["mask"])

    def on_validation_epoch_end(self) -> None:
        m = seg_metrics(self.val_cm.compute(), self.class_names)
        self.val_cm.reset()
        self.log("val/mIoU", m["mIoU"] if m["mIoU"] is not None else float("nan"), prog_bar=True)
        self.log("val/OA", m["OA"] if m["OA"] is not None else float("nan"))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        if "mask" not in batch:
            raise DataError("the test split has no masks; evaluate on a labelled split "
                            "(LoveDA: dataset.splits.test=val) and predict the other (dataset.splits.predict=test)")
        pred = self.infer(batch["image"]).argmax(1)
        self.test_cm.update(pred, batch["mask"])
        self._n_test += len(pred)
        return {"prediction": pred}

    def on_test_epoch_end(self) -> None:
        m = seg_metrics(self.test_cm.compute(), self.class_names)
        self.test_cm.reset()
        self.log("test/mIoU", m["mIoU"] if m["mIoU"] is not None else float("nan"))
        self.test_results = {**m, "num_test_images": self._gather_count(self._n_test),
                             "inference": dict(self.inference_cfg)}
        self._n_test = 0

    # -- submission -----------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.infer(batch["image"]).argmax(1)

    def write_prediction(self, prediction: torch.Tensor, name: str, out_dir: Path) -> None:
        """One uint8 PNG of class ids, named as the image (module docstring)."""
        Image.fromarray(prediction.to(torch.uint8).cpu().numpy()).save(out_dir / f"{Path(name).stem}.png")
