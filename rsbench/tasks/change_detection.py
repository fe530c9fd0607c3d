"""Change detection: siamese backbone → |f1 − f2| per level → UNet head → 2-class logits (CE).

The MTP model (Open-CD ``SiamEncoderDecoder`` + ``FeatureFusionNeck(abs_diff)`` + ``UNetHead``;
docs/protocols.md §2.5 and §5, :mod:`rsbench.models.heads.unet_cd`). Logits are bilinearly resized
to the label size for the loss (one step, mmseg ``loss_by_feat``) and, for the prediction, first to
the input size and then to the label size (Open-CD's ``predict_by_feat`` + ``postprocess_result``;
two steps differ from one only where the label is smaller than the input, OSCD); the loss is mmseg's
``CrossEntropyLoss`` with ``avg_non_ignore=False``: summed over labelled pixels and divided by all
pixels of the batch (ignored pixels, e.g. rotation borders, count in the denominator).

Metrics (torchmetrics, accumulated over all test pixels, label 255 ignored, in %): the paper's
number ``F1`` is the F1 of the class "changed" (mmseg ``Fscore`` of class 1), with ``Precision``,
``Recall`` and ``IoU`` of that class, ``OA`` (pixel accuracy), the means over both classes
(``mF1``, ``mIoU``, ``mPrecision``, ``mRecall``; the ``mFscore``/``mIoU`` mmseg logs), per-class
values and the confusion matrix (rows = label, columns = prediction).

The first test samples are drawn by the dataset's ``plot`` (date 1 | date 2 | label | prediction)
through :class:`rsbench.callbacks.PredictionPlots`.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score,
                                         MulticlassJaccardIndex, MulticlassPrecision, MulticlassRecall)

from rsbench.constants import IGNORE_INDEX as IGNORE
from rsbench.errors import ConfigError
from rsbench.models.heads.unet_cd import UNetHead, siamese_features
from rsbench.tasks.base import BaseTask

log = logging.getLogger(__name__)


def _resize(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """mmseg ``resize`` (bilinear, ``align_corners=False``) to ``size``; a no-op at that size."""
    size = tuple(int(v) for v in size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def cd_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """mmseg CE (``avg_non_ignore=False``): sum over labelled pixels / all pixels."""
    return F.cross_entropy(logits, mask, ignore_index=IGNORE, reduction="sum") / mask.numel()


def cd_metric_collection(num_classes: int = 2) -> MetricCollection:
    kw = dict(num_classes=num_classes, ignore_index=IGNORE, validate_args=False)
    return MetricCollection({
        "F1": MulticlassF1Score(average="none", **kw),
        "Precision": MulticlassPrecision(average="none", **kw),
        "Recall": MulticlassRecall(average="none", **kw),
        "IoU": MulticlassJaccardIndex(average="none", **kw),
        "OA": MulticlassAccuracy(average="micro", **kw),
        "confusion_matrix": MulticlassConfusionMatrix(**kw),
    })


def cd_results(values: Mapping[str, torch.Tensor], class_names: Sequence[str], changed: int = 1) -> dict[str, Any]:
    """The run record's metrics from a computed :func:`cd_metric_collection` (values in %)."""
    per = {k: (values[k].double().cpu() * 100) for k in ("F1", "Precision", "Recall", "IoU")}
    cm = values["confusion_matrix"].long().cpu()
    out: dict[str, Any] = {k: float(v[changed]) for k, v in per.items()}
    out["OA"] = float(values["OA"]) * 100
    out.update({f"m{k}": float(v.mean()) for k, v in per.items()})
    out["per_class"] = {k: dict(zip(class_names, v.tolist())) for k, v in per.items()}
    out["confusion_matrix"] = cm.tolist()
    out["class_names"] = list(class_names)
    out["num_test_pixels"] = int(cm.sum())
    return out


class ChangeDetectionTask(BaseTask):
    """Siamese encoder + UNet decoder for binary change detection (see module docstring).

    Task kwargs (``conf/task/cd.yaml``): ``decoder_channels`` ([512, 256, 128, 64]), ``dropout`` (0.1).
    """

    def __init__(self, *, num_classes: int = 2, class_names: Sequence[str] | None = None,
                 decoder_channels: Sequence[int] = (512, 256, 128, 64), dropout: float = 0.1, **kw: Any) -> None:
        if num_classes != 2:
            raise ConfigError(f"change detection here is binary (unchanged / changed); got num_classes={num_classes}")
        super().__init__(num_classes=num_classes, class_names=class_names or ["unchanged", "changed"], **kw)
        self.head = UNetHead(self.backbone.out_channels, decoder_channels, num_classes, dropout)
        self.val_metrics = cd_metric_collection(num_classes)
        self.test_metrics = cd_metric_collection(num_classes)
        self._num_test = 0

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """Logits (B, 2, H, W) bilinearly resized from the head's output to ``size`` (default: the
        input size). Training resizes them straight to the label size, as mmseg's
        ``loss_by_feat`` does."""
        logits = self.head(siamese_features(self.backbone, x1, x2))
        return _resize(logits, size if size is not None else x1.shape[-2:])

    def predict_logits(self, x1: torch.Tensor, x2: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Test-time logits at the label ``size``, in Open-CD's two steps: the head's output to the
        input size (``decode_head.predict_by_feat``, to ``img_shape``), then to the label size
        (``postprocess_result``, to ``ori_shape``). The same as :meth:`forward` where the input and
        the label have one size; OSCD (224² dates, 96² labels) goes 448 → 224 → 96."""
        return _resize(self(x1, x2), size)

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        mask = batch["mask"]
        logits = self(batch["image1"], batch["image2"], size=mask.shape[-2:])
        loss = cd_loss(logits, mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(mask))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        mask = batch["mask"]
        logits = self.predict_logits(batch["image1"], batch["image2"], mask.shape[-2:])
        self.val_metrics.update(logits.argmax(1), mask)

    def on_validation_epoch_end(self) -> None:
        v = self.val_metrics.compute()
        self.log("val/F1", float(v["F1"][1]) * 100, prog_bar=True)
        self.log("val/IoU", float(v["IoU"][1]) * 100)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self._num_test = 0

    def test_step(self, batch: dict[str, torch.Tensor], _: int) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        pred = self.predict_logits(batch["image1"], batch["image2"], mask.shape[-2:]).argmax(1)
        self.test_metrics.update(pred, mask)
        self._num_test += len(mask)
        return {"prediction": pred}

    def on_test_epoch_end(self) -> None:
        res = cd_results(self.test_metrics.compute(), self.class_names)
        res["num_test_samples"] = self._gather_count(self._num_test)
        self.log("test/F1", res["F1"])
        self.test_results = res
        self.test_metrics.reset()
