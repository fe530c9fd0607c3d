"""Change-detection pipelines of the MTP recipe (Open-CD 1.1.0, docs/protocols.md §2.5), on sample dicts.

Train, in the official order (``configs/mtp/{levir,whu,cdd,oscd}/*.py``):

1. ``MultiImgResize`` (OSCD only, ``resize=224``): both dates and the mask, keep ratio (longest
   side to ``resize``), bilinear / nearest.
2. ``MultiImgRandomRotFlip(rotate_prob=0.5, flip_prob=0.5, degree=(-20, 20))``: with p 0.5 rotate
   by U(-20°, 20°) about the centre, same size, bilinear, image border 0, mask border 255
   (ignored); otherwise with p 0.5 ``rot90`` by k ∈ {0,1,2,3} then flip along a random axis.
   The same geometric op for both dates and the mask (albumentations ``additional_targets``).
3. ``MultiImgRandomCrop(crop=img_size, cat_max_ratio=0.75)``: mmseg's RandomCrop
   (:func:`rsbench.data.augment.cat_max_ratio_crop_box`, shared with segmentation): a random
   window, redrawn up to 10 times until no class (ignore excluded) covers >= 75 % of it and two
   classes are present; after 10 failures the 11th draw is used. The same window for both dates
   and the mask. An image smaller than the crop is not cropped (it is padded at step 7).
4. ``MultiImgExchangeTime(p=0.5)``: swap date 1 and date 2 (the mask is symmetric).
5. ``MultiImgPhotoMetricDistortion`` per date with its own random draws (8-bit RGB only;
   :class:`rsbench.data.augment.PhotoMetric`): brightness ±10 (p 0.5), contrast ×U(0.8, 1.2)
   (p 0.5, before or after the HSV ops at random), saturation ×U(0.8, 1.2) (p 0.5), hue ±10 on
   OpenCV's 0–179 scale (p 0.5), each step clipped and truncated to uint8 as mmcv does. The
   parameters are the task config's ``photometric`` (true: mmseg's defaults 32/0.5–1.5/18).
6. Normalise: ``(x / scale_to_unit - mean) / std`` (ImageNet mean/std for RGB).
7. Pad to the crop size at the bottom/right (image 0 after normalisation, mask 255), as Open-CD's
   ``DualInputSegDataPreProcessor`` pads after normalising (this used to pad before normalising,
   i.e. with ``-mean/std``; only images smaller than the crop are affected).

Eval: normalise only (OSCD: resize the dates to ``resize`` first; the mask keeps its size and the
task resizes the logits to it, so the metric is computed at the label resolution).

Randomness: :func:`rsbench.data.augment.call_generators` (one draw from torch's generator per
call), as segmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from rsbench.constants import IGNORE_INDEX
from rsbench.data.augment import (
    Normalize,
    PhotoMetric,
    call_generators,
    cat_max_ratio_crop_box,
    is_8bit_rgb,
    pad_to,
    to_hwc,
)

__all__ = ["CDTransform", "build_cd_transforms"]

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # date 1, date 2, mask (H, W[, C])


class CDTransform:
    """One of the two pipelines (``train=True``/``False``) described in the module docstring."""

    def __init__(self, *, train: bool, img_size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, in_chans: int = 3, scale_to_unit: float = 255.0,
                 resize: int | None = None, rotate_prob: float = 0.5, flip_prob: float = 0.5, degree: float = 20.0,
                 cat_max_ratio: float = 0.75, exchange_prob: float = 0.5,
                 photometric: bool | Mapping[str, Any] | None = None) -> None:
        self.train = train
        self.crop_size = int(img_size)
        self.resize = int(resize) if resize else None
        self.rotate_prob, self.flip_prob = float(rotate_prob), float(flip_prob)
        self.cat_max_ratio, self.exchange_prob = float(cat_max_ratio), float(exchange_prob)
        self.photometric = PhotoMetric.from_spec(photometric) if is_8bit_rgb(in_chans, scale_to_unit) else None
        self.normalize = Normalize(mean, std, scale_to_unit, in_chans)
        targets = {"image2": "image"}
        self._rotate = A.Compose(
            [A.Rotate(limit=(-float(degree), float(degree)), interpolation=cv2.INTER_LINEAR,
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0)],
            additional_targets=targets)
        if self.resize:
            self._resize = A.Compose([A.LongestMaxSize(max_size=self.resize, interpolation=cv2.INTER_LINEAR,
                                                       mask_interpolation=cv2.INTER_NEAREST, p=1.0)],
                                     additional_targets=targets)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        a, b = to_hwc(sample["image1"]), to_hwc(sample["image2"])
        m = sample["mask"].numpy().astype(np.uint8)
        if self.train:
            a, b, m = self._augment(a, b, m)
        elif self.resize:
            r = self._resize(image=a, image2=b)
            a, b = r["image"], r["image2"]
        x1, x2 = self.normalize(a), self.normalize(b)
        if self.train:
            x1, m = pad_to(x1, m, self.crop_size)
            x2, _ = pad_to(x2, None, self.crop_size)
        out["image1"], out["image2"] = x1, x2
        out["mask"] = torch.from_numpy(np.ascontiguousarray(m).astype(np.int64))
        return out

    def _augment(self, a: np.ndarray, b: np.ndarray, m: np.ndarray) -> Arrays:
        rng, py = call_generators()
        self._rotate.set_random_state(rng, py)
        if self.resize:
            r = self._resize(image=a, image2=b, mask=m)
            a, b, m = r["image"], r["image2"], r["mask"]
        a, b, m = self.rot_flip(a, b, m, rng)
        a, b, m = self.crop(a, b, m, rng)
        if rng.random() < self.exchange_prob:
            a, b = b, a
        if self.photometric is not None:
            a, b = self.photometric(a, rng), self.photometric(b, rng)
        return a, b, m

    def rot_flip(self, a: np.ndarray, b: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> Arrays:
        """``MultiImgRandomRotFlip``: rotate (``self._rotate``, drawing from ``rng`` too) or rot90 + flip."""
        if rng.random() < self.rotate_prob:
            r = self._rotate(image=a, image2=b, mask=m)
            return r["image"], r["image2"], r["mask"]
        if rng.random() < self.flip_prob:
            k, axis = int(rng.integers(0, 4)), int(rng.integers(0, 2))
            a, b, m = (np.flip(np.rot90(x, k, axes=(0, 1)), axis=axis) for x in (a, b, m))
        return a, b, m

    def crop(self, a: np.ndarray, b: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> Arrays:
        """``MultiImgRandomCrop``: one cat-max-ratio window of ``m`` for both dates and the mask."""
        y1, y2, x1, x2 = cat_max_ratio_crop_box(m, self.crop_size, rng, self.cat_max_ratio)
        a, b, m = (np.ascontiguousarray(x[y1:y2, x1:x2]) for x in (a, b, m))
        return a, b, m


def build_cd_transforms(*, img_size: int, in_chans: int, mean, std, scale_to_unit: float, train_aug: bool = True,
                        resize: int | None = None, **kw: Any) -> dict[str, Callable]:
    """The transform factory of ``conf/task/cd.yaml`` (called by :class:`rsbench.data.datamodule.RSDataModule`)."""
    common = {"img_size": img_size, "mean": mean, "std": std, "in_chans": in_chans, "scale_to_unit": scale_to_unit,
              "resize": resize}
    return {"train": CDTransform(train=train_aug, **common, **kw), "eval": CDTransform(train=False, **common)}
