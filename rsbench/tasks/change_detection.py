"""Change detection: siamese backbone → |f1 − f2| per level → UNet head → 2-class logits (CE).

The MTP model (Open-CD ``SiamEncoderDecoder`` + ``FeatureFusionNeck(abs_diff)`` + ``UNetHead``;
mtp_recipes.md §2.5 and §5, :mod:`rsbench.models.heads.unet_cd`). Logits are bilinearly resized
to the label size for the loss and the prediction, as mmseg does; the loss is mmseg's
``CrossEntropyLoss`` with ``avg_non_ignore=False``: summed over labelled pixels and divided by all
pixels of the batch (ignored pixels, e.g. rotation borders, count in the denominator).

Metrics (torchmetrics, accumulated over all test pixels, label 255 ignored, in %): the paper's
number ``F1`` is the F1 of the class "changed" (mmseg ``Fscore`` of class 1), with ``Precision``,
``Recall`` and ``IoU`` of that class, ``OA`` (pixel accuracy), the means over both classes
(``mF1``, ``mIoU``, ``mPrecision``, ``mRecall``; the ``mFscore``/``mIoU`` mmseg logs), per-class
values and the confusion matrix (rows = label, columns = prediction).

During test, the first ``eval_cfg['samples_to_plot']`` samples are drawn side by side (date 1,
date 2, label, prediction) into ``<run_dir>/predictions/``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score,
                                         MulticlassJaccardIndex, MulticlassPrecision, MulticlassRecall)

from rsbench.errors import ConfigError
from rsbench.models.heads.unet_cd import UNetHead, siamese_features
from rsbench.tasks.base import BaseTask

log = logging.getLogger(__name__)
IGNORE = 255


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

    def __init__(self, *, num_classes: int = 2, class_names: Sequence[str] | None = None, run_dir: str | None = None,
                 eval_cfg: Mapping[str, Any] | None = None, decoder_channels: Sequence[int] = (512, 256, 128, 64),
                 dropout: float = 0.1, **kw: Any) -> None:
        if num_classes != 2:
            raise ConfigError(f"change detection here is binary (unchanged / changed); got num_classes={num_classes}")
        super().__init__(**kw)
        self.class_names = list(class_names) if class_names else ["unchanged", "changed"]
        self.head = UNetHead(self.backbone.out_channels, decoder_channels, num_classes, dropout)
        self.run_dir = Path(run_dir) if run_dir else None
        self.samples_to_plot = int((eval_cfg or {}).get("samples_to_plot", 0) or 0)
        self.val_metrics = cd_metric_collection(num_classes)
        self.test_metrics = cd_metric_collection(num_classes)
        self._plotted = 0
        self._seen = 0
        self._num_test = 0

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        """Logits (B, 2, H, W) at ``size`` (default: the input size)."""
        logits = self.head(siamese_features(self.backbone, x1, x2))
        size = tuple(size) if size is not None else tuple(x1.shape[-2:])
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
        mask = batch["mask"]
        logits = self(batch["image1"], batch["image2"], size=mask.shape[-2:])
        loss = cd_loss(logits, mask)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(mask))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        mask = batch["mask"]
        logits = self(batch["image1"], batch["image2"], size=mask.shape[-2:])
        self.val_metrics.update(logits.argmax(1), mask)

    def on_validation_epoch_end(self) -> None:
        v = self.val_metrics.compute()
        self.log("val/F1", float(v["F1"][1]) * 100, prog_bar=True)
        self.log("val/IoU", float(v["IoU"][1]) * 100)
        self.val_metrics.reset()

    def on_test_epoch_start(self) -> None:
        self._plotted = self._seen = self._num_test = 0

    def test_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
        mask = batch["mask"]
        logits = self(batch["image1"], batch["image2"], size=mask.shape[-2:])
        pred = logits.argmax(1)
        self.test_metrics.update(pred, mask)
        self._num_test += len(mask)
        if self._plotted < self.samples_to_plot and self.run_dir is not None and self.global_rank == 0:
            self._plot(batch, pred)
        self._seen += len(mask)

    def on_test_epoch_end(self) -> None:
        res = cd_results(self.test_metrics.compute(), self.class_names)
        n = torch.tensor(self._num_test, device=self.device)
        if self.trainer.world_size > 1:
            n = self.all_gather(n).sum()
        res["num_test_samples"] = int(n)
        self.log("test/F1", res["F1"])
        self.test_results = res
        self.test_metrics.reset()

    # -- plots --------------------------------------------------------------------------------
    def _test_dataset(self):
        dm = getattr(self.trainer, "datamodule", None)
        return getattr(dm, "raw", {}).get("test") if dm is not None else None

    def _plot(self, batch: dict[str, torch.Tensor], pred: torch.Tensor) -> None:
        from PIL import Image

        ds = self._test_dataset()
        rgb = list(getattr(ds, "rgb_bands", (0, 1, 2)))
        out = self.run_dir / "predictions"  # type: ignore[operator]
        out.mkdir(parents=True, exist_ok=True)
        for j in range(len(pred)):
            if self._plotted >= self.samples_to_plot:
                break
            idx = self._seen + j
            name = ds.item_name(idx) if (ds is not None and hasattr(ds, "item_name") and self.trainer.world_size == 1) \
                else f"{idx:05d}"
            m = batch["mask"][j].cpu().numpy()
            p = pred[j].cpu().numpy()
            panels = [_display(batch["image1"][j], rgb, m.shape), _display(batch["image2"][j], rgb, m.shape),
                      _label_rgb(m), _pred_rgb(p, m)]
            h, w = m.shape
            sep = 4
            canvas = np.full((h, 4 * w + 3 * sep, 3), 255, np.uint8)
            for k, panel in enumerate(panels):
                canvas[:, k * (w + sep):k * (w + sep) + w] = panel
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            Image.fromarray(canvas).save(out / f"{self._plotted:03d}_{safe}.png")
            self._plotted += 1


def _display(img: torch.Tensor, rgb: list[int], size: tuple[int, int]) -> np.ndarray:
    """A normalised (C, H, W) image as (H, W, 3) uint8, 2–98 % stretched, resized to ``size``."""
    x = img.detach().float().cpu()
    x = x[rgb] if x.shape[0] >= 3 and max(rgb) < x.shape[0] else x[:1].expand(3, -1, -1)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
    lo, hi = torch.quantile(x.flatten(), torch.tensor([0.02, 0.98]))
    x = ((x - lo) / (hi - lo + 1e-6)).clamp(0, 1)
    return (x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def _label_rgb(m: np.ndarray) -> np.ndarray:
    """Label: changed white, unchanged black, ignored grey."""
    out = np.zeros((*m.shape, 3), np.uint8)
    out[m == 1] = 255
    out[m == IGNORE] = 128
    return out


def _pred_rgb(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Prediction: true change white, false alarm red, missed change blue, no change black."""
    out = np.zeros((*p.shape, 3), np.uint8)
    out[(p == 1) & (m == 1)] = (255, 255, 255)
    out[(p == 1) & (m == 0)] = (230, 40, 40)
    out[(p == 0) & (m == 1)] = (40, 90, 230)
    out[m == IGNORE] = np.where(p[m == IGNORE, None] == 1, 200, 100).astype(np.uint8)
    return out
