"""Segmentation pipelines of the MTP recipe (mmseg 1.0, docs/protocols.md §2.4) on albumentations.

Train (image and mask always transformed together, one ``albumentations.Compose``):

1. :class:`RandomResize` — mmseg ``RandomResize(scale=(S, S), ratio_range=(0.5, 2.0),
   keep_ratio=True)``: a ratio r ~ U(0.5, 2.0), the image rescaled keeping its aspect ratio so
   that it fits in (r·S, r·S), i.e. its long side becomes r·S (up or down). Bilinear for the
   image, nearest for the mask. S (``scale``) defaults to the crop size.
2. :class:`CatMaxRatioCrop` — mmseg ``RandomCrop(crop, cat_max_ratio=0.75)``
   (:func:`rsbench.data.augment.cat_max_ratio_crop_box`, shared with change detection): a random
   crop (the whole extent where the image is smaller); up to 10 times a new one is drawn while
   one class covers ≥ 75 % of the crop's labelled pixels (255 not counted) or only one class is
   present; the last draw is kept. albumentations has no equivalent.
3. ``A.HorizontalFlip(p=0.5)`` — mmseg ``RandomFlip(prob=0.5)``.
4. :class:`PhotoMetricDistortion` — mmseg ``PhotoMetricDistortion``
   (:class:`rsbench.data.augment.PhotoMetric`) with its defaults: each with probability 1/2,
   brightness +U(−32, 32), contrast ×U(0.5, 1.5) (before or after the next two, by a coin flip),
   saturation ×U(0.5, 1.5) and hue +U{−18..17} (OpenCV HSV, hue in 0..179), on uint8 with
   clipping; 8-bit RGB only.
5. Normalise ``(x / scale_to_unit - mean) / std`` (ImageNet mean/std, docs/protocols.md §2.0).
6. Pad to the crop size at the bottom/right: image 0, mask 255. mmseg pads in its data
   preprocessor after normalisation, so the padded pixels are 0 in normalised space, as here.

By default (``defer_normalize``) steps 5 and the image's zeros of 6 run after the transfer, on the
batch's device (the factory's ``after_transfer``, applied by the datamodule's
``on_after_batch_transfer``, where mmseg's data preprocessor runs them): 8-bit images and the
masks leave the workers as uint8 (a quarter and an eighth of the bytes), the same values bit for bit.

Eval: normalisation only, at native resolution (the task's sliding-window inference does the
rest); the mask (if any) is left as it is.

Samples come in as ``{"image": (C, H, W) uint8, "mask": (H, W) long}`` and leave as float32
``(C, H, W)`` images and long masks (255 = ignore); deferred, as uint8 images and masks until
``after_transfer``.

Randomness: :func:`rsbench.data.augment.call_generators` (one draw from torch's generator per
call seeds the generators that every op of the call draws from in turn).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from rsbench.constants import IGNORE_INDEX
from rsbench.data.augment import (
    UNPADDED_KEY,
    Normalize,
    PhotoMetric,
    apply_photometric,
    call_generators,
    cat_max_ratio_crop_box,
    dense_after_transfer,
    dense_mask_tensor,
    is_8bit_rgb,
    pad_to,
    rescale_size,
    to_hwc,
)

__all__ = ["CatMaxRatioCrop", "PhotoMetricDistortion", "RandomResize", "SegTransform", "build_seg_transforms",
           "cat_max_ratio_crop_box", "rescale_size"]


class RandomResize(A.DualTransform):
    """mmseg ``RandomResize`` with ``ratio_range`` and ``keep_ratio=True`` (see module docstring)."""

    def __init__(self, scale: int | Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0), p: float = 1.0) -> None:
        super().__init__(p=p)
        self.scale = (int(scale), int(scale)) if isinstance(scale, (int, float)) else tuple(int(s) for s in scale)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        lo, hi = self.ratio_range
        ratio = float(self.random_generator.random()) * (hi - lo) + lo  # mmseg: np.random.random_sample()
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return {"size": rescale_size(h, w, target)}

    def apply(self, img: np.ndarray, size: tuple[int, int] = (0, 0), **_: Any) -> np.ndarray:
        return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int] = (0, 0), **_: Any) -> np.ndarray:
        return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


class CatMaxRatioCrop(A.DualTransform):
    """mmseg ``RandomCrop`` with ``cat_max_ratio``: :func:`~rsbench.data.augment.cat_max_ratio_crop_box`
    drawn from the transform's numpy generator (without a mask: one window, no retries)."""

    def __init__(self, height: int, width: int, cat_max_ratio: float = 0.75, ignore_index: int = IGNORE_INDEX,
                 p: float = 1.0) -> None:
        super().__init__(p=p)
        self.height, self.width = int(height), int(width)
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), int(ignore_index)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data.get("mask")
        ratio = self.cat_max_ratio
        if mask is None:  # only the extent matters when there is nothing to count
            mask, ratio = np.broadcast_to(np.uint8(self.ignore_index), params["shape"][:2]), 1.0
        box = cat_max_ratio_crop_box(mask, (self.height, self.width), self.random_generator, ratio, self.ignore_index)
        return {"box": box}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **_: Any) -> np.ndarray:
        return img[box[0]:box[1], box[2]:box[3]]

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **_: Any) -> np.ndarray:
        return mask[box[0]:box[1], box[2]:box[3]]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "cat_max_ratio", "ignore_index")


_PHOTOMETRIC_ARGS = ("brightness", "contrast_first", "contrast", "saturation", "hue")  # apply_photometric's


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmseg ``PhotoMetricDistortion`` on RGB uint8: :class:`~rsbench.data.augment.PhotoMetric`'s
    values drawn from the transform's numpy generator, applied by
    :func:`~rsbench.data.augment.apply_photometric`."""

    def __init__(self, brightness_delta: float = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.op = PhotoMetric.from_spec({"brightness_delta": brightness_delta, "contrast_range": contrast_range,
                                         "saturation_range": saturation_range, "hue_delta": int(hue_delta)})

    def get_params(self) -> dict[str, Any]:
        return self.op.draw(self.random_generator)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return apply_photometric(img, **{k: params[k] for k in params if k in _PHOTOMETRIC_ARGS})

    def get_transform_init_args(self) -> dict[str, Any]:
        return asdict(self.op)


class SegTransform:
    """An albumentations pipeline, then normalisation and padding, on a sample dict of tensors.

    ``defer_normalize``: an 8-bit image leaves as (C, H, W) uint8 (padded with 0, its size before padding
    in ``UNPADDED_KEY``) and the mask as uint8, for :func:`~rsbench.data.augment.dense_after_transfer`."""

    def __init__(self, pipeline: A.Compose | None, normalize: Normalize, pad: int | None = None,
                 defer_normalize: bool = False) -> None:
        self.pipeline, self.normalize, self.pad = pipeline, normalize, pad
        self.defer = bool(defer_normalize)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"image": to_hwc(sample["image"])}
        if "mask" in sample:
            m = sample["mask"]
            m = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
            data["mask"] = m.astype(np.uint8)  # ids < 255 and the 255 ignore value fit
        if self.pipeline is not None:
            self.pipeline.set_random_state(*call_generators())
            data = self.pipeline(**data)
        image, mask = self.normalize(data["image"], defer=self.defer), data.get("mask")
        sample = dict(sample)
        if self.pad:
            if not image.is_floating_point():
                sample[UNPADDED_KEY] = torch.tensor(image.shape[1:])
            image, mask = pad_to(image, mask, self.pad)
        sample["image"] = image
        if mask is not None:
            sample["mask"] = dense_mask_tensor(mask, self.defer)
        return sample


def build_seg_transforms(*, img_size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                         in_chans: int = 3, scale_to_unit: float = 255.0, crop_size: int | None = None,
                         scale: int | Sequence[int] | None = None, ratio_range: Sequence[float] = (0.5, 2.0),
                         cat_max_ratio: float = 0.75, flip_prob: float = 0.5,
                         photometric: bool | Mapping[str, Any] = True, train_aug: bool = True,
                         defer_normalize: bool = True, **_: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn, "after_transfer": fn | None}`` for the datamodule; ``crop_size`` and
    ``scale`` default to ``img_size``.

    ``photometric``: true (mmseg's parameters), false, or the parameters of
    :class:`~rsbench.data.augment.PhotoMetric`; 8-bit RGB only (skipped otherwise).
    ``defer_normalize`` (the default): uint8 images and masks leave the workers, normalised, padded
    and cast on the batch's device by ``after_transfer`` (mmseg's ``SegDataPreProcessor`` normalises and
    pads there too), with the same values bit for bit; images of other dtypes are normalised in the worker.
    """
    crop = int(crop_size or img_size)
    normalize = Normalize(mean, std, scale_to_unit, in_chans)
    ops: list[Any] = []
    if train_aug:
        ops += [RandomResize(scale if scale is not None else crop, ratio_range), CatMaxRatioCrop(crop, crop, cat_max_ratio)]
        if flip_prob > 0:
            ops.append(A.HorizontalFlip(p=flip_prob))
        distortion = PhotoMetric.from_spec(photometric)
        if distortion is not None and is_8bit_rgb(in_chans, scale_to_unit):
            ops.append(PhotoMetricDistortion(**asdict(distortion)))
    after = partial(dense_after_transfer, normalize=normalize, keys=("image",)) if defer_normalize else None
    return {"train": SegTransform(A.Compose(ops) if ops else None, normalize, pad=crop, defer_normalize=defer_normalize),
            "eval": SegTransform(None, normalize, defer_normalize=defer_normalize), "after_transfer": after}
