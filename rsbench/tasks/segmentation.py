"""Semantic segmentation: backbone pyramid → UperNet → per-pixel cross-entropy (MTP / mmseg recipe).

Model: :class:`~rsbench.models.heads.upernet.UPerHead` on the four maps of any
``build_backbone`` backbone (the ViT-RVSA's ``variant="seg"`` fpn1..4 pyramid at strides
4/8/16/32, a timm convnet's stages, InternImage's levels); logits are bilinearly upsampled to
the input (``align_corners=False``). Loss: cross-entropy with ``ignore_index=255``, averaged
over all pixels of the batch as mmseg's default ``avg_non_ignore=False`` does
(``loss.avg_non_ignore=true`` averages over labelled pixels only).

Evaluation (the paper's protocol, mtp_recipes.md §2.4 / §6): sliding-window inference at the
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

Side-by-side PNGs (image | label | prediction, in the dataset's palette; ignored pixels in a
colour outside the palette) of the first ``eval_cfg["samples_to_plot"]`` test images are written
to ``<run_dir>/predictions/``.

LoveDA test-set submission (``task.kwargs.submission_split=test``): after the test epoch the
model predicts every image of that split (sliding window, as above) and writes
``<run_dir>/submission/<image name>.png`` — one single-channel uint8 PNG per test image, with
the test image's file name (e.g. ``4191.png``), of the image's size, holding class ids 0..6
(0 background, 1 building, 2 road, 3 water, 4 barren, 5 forest, 6 agricultural). This is the
format of the official ``predict.py`` and what the LoveDA server (Codabench competition 13030,
formerly CodaLab 421) scores; no ±1 shift is needed (MTP's ``change_loveda_label.py`` only
undoes mmseg's +1). Zip the PNG files and upload them (the archive layout the server expects
is not confirmed here). Urban and Rural images go into the one folder (their ids are unique).
For the paper's protocol also train on train+val: ``dataset.splits.train=trainval``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchmetrics.classification import MulticlassConfusionMatrix

from rsbench.errors import ConfigError, DataError
from rsbench.metrics.segmentation import seg_metrics
from rsbench.models.heads.upernet import UPerHead
from rsbench.models.slide_inference import dense_inference
from rsbench.tasks.base import BaseTask

log = logging.getLogger(__name__)

IGNORE = 255


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]], ignore_index: int = IGNORE) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 in ``palette``; ignored/unknown ids get a colour not in it."""
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    spare = next(c for c in ((0, 0, 0), (128, 128, 128), (255, 0, 255), (0, 255, 255))
                 if not (pal == np.array(c, np.uint8)).all(1).any())
    lut = np.tile(np.array(spare, np.uint8), (256, 1))
    lut[: len(pal)] = pal
    return lut[np.clip(label, 0, 255).astype(np.uint8)]


def default_palette(n: int) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(12345)
    return [tuple(int(v) for v in rng.integers(30, 256, 3)) for _ in range(n)]


class SegmentationTask(BaseTask):
    """UperNet segmentation task (module docstring)."""

    def __init__(self, *, num_classes: int, class_names: Sequence[str] | None = None,
                 head: Mapping[str, Any] | None = None, loss: Mapping[str, Any] | None = None,
                 inference: Mapping[str, Any] | None = None, val_inference: Mapping[str, Any] | None = None,
                 submission_split: str | None = None, ignore_index: int = IGNORE,
                 run_dir: str | None = None, eval_cfg: Mapping[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ConfigError(f"{len(self.class_names)} class names but num_classes={self.num_classes}")
        if len(self.backbone.out_channels) < 1:
            raise ConfigError("the backbone gives no feature maps")
        self.head = UPerHead(self.backbone.out_channels, self.num_classes, **dict(head or {}))
        self.avg_non_ignore = bool((loss or {}).get("avg_non_ignore", False))
        crop = int(kw.get("img_size") or 512)
        self.inference_cfg = self._inference_cfg(inference, crop)
        self.val_inference_cfg = self._inference_cfg(val_inference, crop) if val_inference else self.inference_cfg
        self.submission_split = submission_split
        self.run_dir = Path(run_dir) if run_dir else None
        self.samples_to_plot = int((eval_cfg or {}).get("samples_to_plot", 0) or 0)
        cm = dict(num_classes=self.num_classes, ignore_index=self.ignore_index, validate_args=False)
        self.val_cm = MulticlassConfusionMatrix(**cm)
        self.test_cm = MulticlassConfusionMatrix(**cm)
        self._plots: list[tuple[int, torch.Tensor, torch.Tensor | None, torch.Tensor]] = []
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

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        img = batch["image"]
        if "mask" not in batch:
            raise DataError("the test split has no masks; evaluate on a labelled split "
                            "(LoveDA: dataset.splits.test=val) and use task.kwargs.submission_split=test")
        pred = self.infer(img).argmax(1)
        self.test_cm.update(pred, batch["mask"])
        self._n_test += len(img)
        if self.global_rank == 0:
            for j in range(len(img)):
                if len(self._plots) < self.samples_to_plot:
                    idx = (batch_idx * len(img) + j) * self.trainer.world_size
                    self._plots.append((idx, img[j].cpu(), batch["mask"][j].cpu(), pred[j].cpu()))

    def on_test_epoch_end(self) -> None:
        m = seg_metrics(self.test_cm.compute(), self.class_names)
        self.test_cm.reset()
        n_images = int(self.all_gather(torch.tensor(self._n_test, device=self.device)).sum())
        self.log("test/mIoU", m["mIoU"] if m["mIoU"] is not None else float("nan"))
        self.test_results = {**m, "num_test_images": n_images, "inference": dict(self.inference_cfg)}
        if self.global_rank == 0 and self._plots and self.run_dir is not None:
            self.test_results["predictions_dir"] = str(self._write_plots(self.run_dir / "predictions"))
        self._plots, self._n_test = [], 0
        if self.submission_split:
            self.test_results["submission"] = self.write_submission(self.submission_split)

    # -- outputs --------------------------------------------------------------------------------
    def _dataset_attr(self, name: str, default: Any = None) -> Any:
        dm = getattr(self.trainer, "datamodule", None)
        raw = getattr(dm, "raw", {}) if dm is not None else {}
        ds = raw.get("test") if isinstance(raw, dict) else None
        return getattr(ds, name, default) if ds is not None else default

    def _denormalize(self, img: torch.Tensor) -> np.ndarray:
        dm = getattr(self.trainer, "datamodule", None)
        mean = torch.tensor(getattr(dm, "mean", None) or (0.485, 0.456, 0.406))[:, None, None]
        std = torch.tensor(getattr(dm, "std", None) or (0.229, 0.224, 0.225))[:, None, None]
        x = img[: len(mean)].float() * std + mean
        bands = list(self._dataset_attr("rgb_bands", None) or range(min(3, x.shape[0])))
        x = x[bands] if x.shape[0] >= 3 else x[:1].expand(3, -1, -1)
        return (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    def _write_plots(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        palette = self._dataset_attr("palette", None) or default_palette(self.num_classes)
        names = self._dataset_attr("image_paths", None)
        for idx, img, mask, pred in self._plots:
            panels = [self._denormalize(img)]
            panels.append(colorize(mask.numpy(), palette, self.ignore_index) if mask is not None
                          else np.zeros_like(panels[0]))
            panels.append(colorize(pred.numpy(), palette, self.ignore_index))
            h, w = panels[0].shape[:2]
            f = min(1.0, 512 / max(h, w))
            size = (max(1, round(w * f)), max(1, round(h * f)))
            ims = [Image.fromarray(p).resize(size, Image.BILINEAR if k == 0 else Image.NEAREST)
                   for k, p in enumerate(panels)]
            gap = 4
            canvas = Image.new("RGB", (3 * size[0] + 2 * gap, size[1]), (255, 255, 255))
            for k, im in enumerate(ims):
                canvas.paste(im, (k * (size[0] + gap), 0))
            stem = Path(names[idx]).stem if names is not None and idx < len(names) else f"{idx:05d}"
            canvas.save(out / f"{idx:05d}_{stem}.png")
        log.info("prediction plots (image | label | prediction): %s", out)
        return out

    @torch.no_grad()
    def write_submission(self, split: str) -> dict[str, Any]:
        """Predict every image of ``split`` and write ``<run_dir>/submission/<name>.png`` (module docstring)."""
        from rsbench.data import build_dataset

        if self.run_dir is None:
            raise ConfigError("submission_split needs a run_dir")
        dm = self.trainer.datamodule
        raw = build_dataset(dm.name, dm.root, split, None, **dict(dm.dataset_kwargs))
        tf = getattr(dm.datasets.get("test"), "transform", None)
        paths = list(getattr(raw, "image_paths"))
        names = [Path(p).with_suffix(".png").name for p in paths]
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"split {split!r} has two images named {dup}; the submission needs unique names")
        out = self.run_dir / "submission"
        out.mkdir(parents=True, exist_ok=True)
        was_training = self.training
        self.eval()
        rank, world = self.global_rank, self.trainer.world_size
        for i in range(rank, len(raw), world):
            s = raw[i]
            s = tf(s) if tf is not None else s
            pred = self.infer(s["image"][None].to(self.device).float()).argmax(1)[0]
            Image.fromarray(pred.to(torch.uint8).cpu().numpy()).save(out / names[i])
        self.train(was_training)
        log.info("submission: %d PNGs (class ids 0..%d) of split %r in %s", len(raw), self.num_classes - 1, split, out)
        return {"split": split, "dir": str(out), "num_files": len(raw)}
