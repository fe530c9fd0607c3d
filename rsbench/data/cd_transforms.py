"""Change-detection pipelines of the MTP recipe (Open-CD 1.1.0, docs/protocols.md §2.5), on sample dicts.

Train, in the official order (``configs/mtp/{levir,whu,cdd,oscd}/*.py``):

1. ``MultiImgResize(scale=224, keep_ratio=True)`` (OSCD only, ``resize``): the two dates only,
   bilinear (mmcv ``imrescale``). The official OSCD configs load the label after the resize
   (``MultiImgLoadAnnotations`` follows ``MultiImgResize``), so the mask keeps its 96² and the
   loss is computed at the label resolution (the task resizes the logits to the mask).
2. ``MultiImgRandomRotFlip(rotate_prob=0.5, flip_prob=0.5, degree=(-20, 20))``: with p 0.5 rotate
   by U(-20°, 20°) (mmcv ``imrotate``: about ``((w-1)/2, (h-1)/2)``, same size, bilinear, image
   border 0; the mask nearest, border 255 = ignored); otherwise with p 0.5 ``rot90`` by
   k ∈ {0,1,2,3} then flip along a random axis. The same op (angle, k, axis) for both dates and
   the mask, each array about its own centre (OSCD: 224² dates, 96² mask).
3. ``MultiImgRandomCrop(crop=img_size, cat_max_ratio=0.75)``: mmseg's RandomCrop
   (:func:`rsbench.data.augment.cat_max_ratio_crop_box`, shared with segmentation): a random
   window of the dates' extent, redrawn up to 10 times until no class (ignore excluded) covers
   >= 75 % of the mask under it and two classes are present; after 10 failures the 11th draw is
   used. The same window slices both dates and the mask (OSCD: the 224² window is the whole
   224² date and the whole 96² mask). An image smaller than the crop is not cropped (it is
   padded at step 7).
4. ``MultiImgExchangeTime(p=0.5)``: swap date 1 and date 2 (the mask is symmetric).
5. ``MultiImgPhotoMetricDistortion`` per date with its own random draws (8-bit RGB only;
   :class:`rsbench.data.augment.PhotoMetric`): brightness ±10 (p 0.5), contrast ×U(0.8, 1.2)
   (p 0.5, before or after the HSV ops at random), saturation ×U(0.8, 1.2) (p 0.5), hue ±10 on
   OpenCV's 0–179 scale (p 0.5), each step clipped and truncated to uint8 as mmcv does. The
   parameters are the task config's ``photometric`` (true: mmseg's defaults 32/0.5–1.5/18).
6. Normalise: ``(x / scale_to_unit - mean) / std`` (ImageNet mean/std for RGB).
7. Pad to the crop size at the bottom/right (image 0 after normalisation; the mask by the same
   amounts with 255), as Open-CD's ``DualInputSegDataPreProcessor`` pads after normalising
   (this used to pad before normalising, i.e. with ``-mean/std``; only images smaller than the
   crop are affected).

By default (``defer_normalize``, the factory's) steps 6 and the dates' zeros of 7 run after the
transfer, on the batch's device (the factory's ``after_transfer``, applied by the datamodule's
``on_after_batch_transfer``, where Open-CD's data preprocessor runs them): 8-bit dates and the
mask leave the workers as uint8, the same values bit for bit (other dtypes: normalised in the worker).

Eval: normalise only (OSCD: resize the dates to ``resize`` first; the mask keeps its size. The task
resizes the logits to the dates' size and then to the mask's, as mmseg's ``predict_by_feat``
(to ``img_shape``) and ``postprocess_result`` (to ``ori_shape``) do, so the metric is computed at
the label resolution).

Randomness: :func:`rsbench.data.augment.call_generators` (one draw from torch's generator per
call), as segmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch

from rsbench.constants import IGNORE_INDEX
from rsbench.data.augment import (
    UNPADDED_KEY,
    Normalize,
    PhotoMetric,
    call_generators,
    cat_max_ratio_crop_box,
    dense_after_transfer,
    dense_mask_tensor,
    imrescale,
    imrotate,
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
                 photometric: bool | Mapping[str, Any] | None = None, defer_normalize: bool = False) -> None:
        self.train = train
        self.defer = bool(defer_normalize)
        self.crop_size = int(img_size)
        self.resize = int(resize) if resize else None
        self.rotate_prob, self.flip_prob, self.degree = float(rotate_prob), float(flip_prob), float(degree)
        self.cat_max_ratio, self.exchange_prob = float(cat_max_ratio), float(exchange_prob)
        self.photometric = PhotoMetric.from_spec(photometric) if is_8bit_rgb(in_chans, scale_to_unit) else None
        self.normalize = Normalize(mean, std, scale_to_unit, in_chans)

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        a, b = to_hwc(sample["image1"]), to_hwc(sample["image2"])
        m = sample["mask"].numpy().astype(np.uint8)
        if self.resize:  # MultiImgResize runs before MultiImgLoadAnnotations: the dates only
            a, b = imrescale(a, self.resize), imrescale(b, self.resize)
        if self.train:
            a, b, m = self._augment(a, b, m)
        x1, x2 = self.normalize(a, defer=self.defer), self.normalize(b, defer=self.defer)
        if self.train:
            if not x1.is_floating_point():
                out[UNPADDED_KEY] = torch.tensor(x1.shape[1:])  # both dates: one extent
            x1, m = pad_to(x1, m, self.crop_size)
            x2, _ = pad_to(x2, None, self.crop_size)
        out["image1"], out["image2"] = x1, x2
        out["mask"] = dense_mask_tensor(m, self.defer)
        return out

    def _augment(self, a: np.ndarray, b: np.ndarray, m: np.ndarray) -> Arrays:
        rng, _ = call_generators()
        a, b, m = self.rot_flip(a, b, m, rng)
        a, b, m = self.crop(a, b, m, rng)
        if rng.random() < self.exchange_prob:
            a, b = b, a
        if self.photometric is not None:
            a, b = self.photometric(a, rng), self.photometric(b, rng)
        return a, b, m

    def rot_flip(self, a: np.ndarray, b: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> Arrays:
        """``MultiImgRandomRotFlip``, its draws in its order: rotate with p ``rotate_prob`` by
        U(-degree, degree) (each array about its own centre: dates bilinear, border 0; mask
        nearest, border 255); the flip coin is drawn either way, and only when not rotated, with
        p ``flip_prob``, ``rot90`` by k ∈ {0..3} then a flip along a random axis."""
        rotate = rng.random() < self.rotate_prob
        if rotate:
            angle = float(rng.uniform(-self.degree, self.degree))
            a, b = imrotate(a, angle, 0), imrotate(b, angle, 0)
            m = imrotate(m, angle, IGNORE_INDEX, nearest=True)
        if rng.random() < self.flip_prob and not rotate:
            k, axis = int(rng.integers(0, 4)), int(rng.integers(0, 2))
            a, b, m = (np.ascontiguousarray(np.flip(np.rot90(x, k, axes=(0, 1)), axis=axis)) for x in (a, b, m))
        return a, b, m

    def crop(self, a: np.ndarray, b: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> Arrays:
        """``MultiImgRandomCrop``: one cat-max-ratio window of the dates' extent (counted on ``m``)
        for both dates and the mask."""
        y1, y2, x1, x2 = cat_max_ratio_crop_box(m, self.crop_size, rng, self.cat_max_ratio, extent=a.shape[:2])
        a, b, m = (np.ascontiguousarray(x[y1:y2, x1:x2]) for x in (a, b, m))
        return a, b, m


def build_cd_transforms(*, img_size: int, in_chans: int, mean, std, scale_to_unit: float, train_aug: bool = True,
                        resize: int | None = None, defer_normalize: bool = True, **kw: Any) -> dict[str, Callable]:
    """The transform factory of ``conf/task/cd.yaml`` (called by :class:`rsbench.data.datamodule.RSDataModule`):
    ``{"train": fn, "eval": fn, "after_transfer": fn | None}``; ``defer_normalize`` as in the module docstring."""
    common = {"img_size": img_size, "mean": mean, "std": std, "in_chans": in_chans, "scale_to_unit": scale_to_unit,
              "resize": resize, "defer_normalize": defer_normalize}
    train = CDTransform(train=train_aug, **common, **kw)
    after = partial(dense_after_transfer, normalize=train.normalize, keys=("image1", "image2")) \
        if defer_normalize else None
    return {"train": train, "eval": CDTransform(train=False, **common), "after_transfer": after}
