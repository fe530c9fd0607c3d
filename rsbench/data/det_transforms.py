"""Detection pipelines of the MTP recipe (mmdet 3.1, mtp_recipes §2.2), on sample dicts.

Train (``configs/mtp/{dior,xview}/*.py``: ``Resize(scale=crop, keep_ratio=True)``,
``RandomFlip(prob=0.5)``):

1. Resize keeping the aspect ratio (mmcv ``imrescale``, bilinear, cv2): the image is scaled by
   ``min(S / long side, S / short side)`` for a square scale S = ``img_size``, i.e. its long side
   becomes S (:func:`rsbench.data.augment.rescale_size`, ``int(x * f + 0.5)``). Boxes are scaled
   by the actual ``new_w / w`` and ``new_h / h`` and, as mmdet's ``clip_object_border=True`` does,
   clipped to the image — also when the resize is the identity (DIOR's 800², xView's 416² tiles,
   where the pixels are not touched).
2. Horizontal flip with probability ``flip_prob``: image columns reversed, boxes
   ``x1' = W - x2, x2' = W - x1`` (mmdet ``HorizontalBoxes.flip_``).
3. Normalise ``(x / scale_to_unit - mean) / std`` (:class:`rsbench.data.augment.Normalize`; ImageNet
   mean/std for RGB). Padding to a multiple of 32 is left to the detector. By default (``defer_normalize``)
   a uint8 image leaves the pipeline as uint8 and is normalised after the transfer to the device, by the
   datamodule's ``on_after_batch_transfer`` (the factory's ``after_transfer``; MMDetection's data
   preprocessor also normalises there): the same values, a quarter of the bytes through the worker queue
   and to the GPU.

Eval: the same resize (boxes scaled, **not** clipped: mmdet's test pipeline loads the annotations
after ``Resize`` and its metric reads the annotation file, so the ground truth stays as given),
then normalise.

Samples come in as ``{"image": (C, H, W) uint8, "boxes": (N, 4) float, "labels": (N,) long}``
and leave with a float32 image (uint8 until ``after_transfer`` when deferred), float32 boxes and long
labels (other keys passed through).

Randomness: :func:`rsbench.data.augment.call_generators` (one draw from torch's generator per
call), as the other families.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rsbench.data.augment import Normalize, call_generators, flip_image, imrescale, in_worker, rescale_size, to_hwc

__all__ = ["DetTransform", "build_det_transforms", "flip_boxes", "resize_boxes"]


def resize_boxes(boxes: np.ndarray, scale_xy: tuple[float, float], clip_hw: tuple[int, int] | None) -> np.ndarray:
    """Boxes scaled by ``(sx, sy)`` and, with ``clip_hw = (H, W)``, clipped to ``[0, W] × [0, H]``."""
    out = boxes * np.array([scale_xy[0], scale_xy[1], scale_xy[0], scale_xy[1]], np.float32)
    if clip_hw is not None:
        h, w = clip_hw
        out[:, 0::2] = out[:, 0::2].clip(0, w)
        out[:, 1::2] = out[:, 1::2].clip(0, h)
    return out


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Horizontal flip in an image ``width`` px wide: ``x1' = W - x2``, ``x2' = W - x1`` (mmdet)."""
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


class DetTransform:
    """Keep-ratio resize to ``img_size``, optional horizontal flip, normalisation (module docstring)."""

    def __init__(self, img_size: int | Sequence[int], normalize: Normalize, *, flip_prob: float = 0.0,
                 clip: bool = True, defer_normalize: bool = False) -> None:
        s = (int(img_size), int(img_size)) if isinstance(img_size, (int, float)) else tuple(int(v) for v in img_size)
        self.scale: tuple[int, int] = (s[0], s[1])
        self.normalize, self.flip_prob, self.clip = normalize, float(flip_prob), bool(clip)
        self.defer_normalize = bool(defer_normalize)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = to_hwc(sample["image"])
        h, w = image.shape[:2]
        has_boxes = "boxes" in sample
        boxes = _as_boxes(sample.get("boxes"))
        nh, nw = rescale_size(h, w, self.scale)
        if (nh, nw) != (h, w):
            image = imrescale(image, self.scale)
            nh, nw = image.shape[:2]
        boxes = resize_boxes(boxes, (nw / w, nh / h), (nh, nw) if self.clip else None) \
            if ((nh, nw) != (h, w) or self.clip) else boxes
        if self.flip_prob > 0:
            rng, _ = call_generators()
            if rng.random() < self.flip_prob:
                image = flip_image(image, "horizontal")
                boxes = flip_boxes(boxes, nw)
        out = dict(sample)
        # batches are lists, not stacked into one shared buffer: a worker writes the image to shared memory itself
        out["image"] = self.normalize(image, shared=in_worker(), defer=self.defer_normalize)
        if has_boxes:
            out["boxes"] = torch.from_numpy(np.ascontiguousarray(boxes, np.float32))
        if "labels" in sample:
            lab = sample["labels"]
            out["labels"] = lab.long() if isinstance(lab, torch.Tensor) else torch.as_tensor(np.asarray(lab), dtype=torch.long)
        return out


def _as_boxes(boxes: Any) -> np.ndarray:
    if boxes is None:
        return np.zeros((0, 4), np.float32)
    b = boxes.detach().cpu().numpy() if isinstance(boxes, torch.Tensor) else np.asarray(boxes)
    return np.array(b, np.float32).reshape(-1, 4)


def build_det_transforms(*, img_size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                         in_chans: int = 3, scale_to_unit: float = 255.0, flip_prob: float = 0.5,
                         defer_normalize: bool = True, **_: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn, "after_transfer": fn}`` for the datamodule (the factory shape of the other
    families; ``after_transfer`` normalises the deferred images of a batch on its device)."""
    normalize = Normalize(mean, std, scale_to_unit, in_chans)
    return {"train": DetTransform(img_size, normalize, flip_prob=flip_prob, clip=True, defer_normalize=defer_normalize),
            "eval": DetTransform(img_size, normalize, flip_prob=0.0, clip=False, defer_normalize=defer_normalize),
            "after_transfer": normalize.after_transfer}
