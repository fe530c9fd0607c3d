"""Change-detection pipelines of the MTP recipe (Open-CD 1.1.0, mtp_recipes.md §2.5), on sample dicts.

Train, in the official order (``configs/mtp/{levir,whu,cdd,oscd}/*.py``):

1. ``MultiImgResize`` (OSCD only, ``resize=224``): both dates and the mask, keep ratio (longest
   side to ``resize``), bilinear / nearest.
2. ``MultiImgRandomRotFlip(rotate_prob=0.5, flip_prob=0.5, degree=(-20, 20))``: with p 0.5 rotate
   by U(-20°, 20°) about the centre, same size, bilinear, image border 0, mask border 255
   (ignored); otherwise with p 0.5 ``rot90`` by k ∈ {0,1,2,3} then flip along a random axis.
   The same geometric op for both dates and the mask (albumentations ``additional_targets``).
3. ``MultiImgRandomCrop(crop=img_size, cat_max_ratio=0.75)``: mmseg's RandomCrop: a random
   window, redrawn up to 10 times until no class (ignore excluded) covers >= 75 % of it and two
   classes are present; after 10 failures the 11th draw is used. An image smaller than the crop
   is not cropped; it is padded to the crop size (image 0, mask 255), as the data pre-processor
   pads.
4. ``MultiImgExchangeTime(p=0.5)``: swap date 1 and date 2 (the mask is symmetric).
5. ``MultiImgPhotoMetricDistortion`` per date with its own random draws (8-bit RGB only):
   brightness ±10 (p 0.5), contrast ×U(0.8, 1.2) (p 0.5, before or after the HSV ops at random),
   saturation ×U(0.8, 1.2) (p 0.5), hue ±10 on OpenCV's 0–179 scale (p 0.5), each step clipped
   and truncated to uint8 as mmcv does.
6. Normalise: ``(x / scale_to_unit - mean) / std`` (ImageNet mean/std for RGB).

Eval: normalise only (OSCD: resize the dates to ``resize`` first; the mask keeps its size and the
task resizes the logits to it, so the metric is computed at the label resolution).

Randomness comes from one numpy generator per process, seeded from ``torch.initial_seed()``
(Lightning's ``seed_everything(workers=True)`` makes that distinct and reproducible per worker).
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from rsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

IGNORE = 255


def random_crop_cat_max(mask: np.ndarray, crop: int, cat_max_ratio: float, rng: np.random.Generator,
                        ignore_index: int = IGNORE, tries: int = 10) -> tuple[int, int, int, int]:
    """mmseg ``RandomCrop.crop_bbox``: (y1, y2, x1, x2) of a ``crop``² window of ``mask``'s image."""
    h, w = mask.shape[:2]

    def draw() -> tuple[int, int, int, int]:
        oy = int(rng.integers(0, max(h - crop, 0) + 1))
        ox = int(rng.integers(0, max(w - crop, 0) + 1))
        return oy, oy + crop, ox, ox + crop

    box = draw()
    if cat_max_ratio < 1.0:
        for _ in range(tries):
            y1, y2, x1, x2 = box
            labels, cnt = np.unique(mask[y1:y2, x1:x2], return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio:
                break
            box = draw()
    return box


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, *, brightness_delta: float = 10,
                           contrast_range: Sequence[float] = (0.8, 1.2), saturation_range: Sequence[float] = (0.8, 1.2),
                           hue_delta: int = 10) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion`` on one (H, W, 3) uint8 RGB image."""

    def convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def contrast(x: np.ndarray) -> np.ndarray:
        if rng.integers(2):
            return convert(x, alpha=rng.uniform(*contrast_range))
        return x

    if rng.integers(2):
        img = convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = int(rng.integers(2))
    if mode == 1:
        img = contrast(img)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=rng.uniform(*saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + int(rng.integers(-hue_delta, hue_delta))) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0:
        img = contrast(img)
    return img


def _hwc(t: torch.Tensor) -> np.ndarray:
    a = t.numpy().transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
    return np.ascontiguousarray(a)


class CDTransform:
    """One of the two pipelines (``train=True``/``False``) described in the module docstring."""

    def __init__(self, *, train: bool, img_size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, in_chans: int = 3, scale_to_unit: float = 255.0,
                 resize: int | None = None, rotate_prob: float = 0.5, flip_prob: float = 0.5, degree: float = 20.0,
                 cat_max_ratio: float = 0.75, exchange_prob: float = 0.5,
                 photometric: Mapping[str, Any] | None = None) -> None:
        self.train = train
        self.crop = int(img_size)
        self.resize = int(resize) if resize else None
        self.rotate_prob, self.flip_prob = float(rotate_prob), float(flip_prob)
        self.cat_max_ratio, self.exchange_prob = float(cat_max_ratio), float(exchange_prob)
        self.photometric = dict(photometric) if photometric else None
        self.scale = float(scale_to_unit)
        self.mean = np.asarray(mean if mean is not None else IMAGENET_MEAN, np.float32)
        self.std = np.asarray(std if std is not None else IMAGENET_STD, np.float32)
        if len(self.mean) != in_chans or len(self.std) != in_chans:
            raise ValueError(f"mean/std have {len(self.mean)}/{len(self.std)} values for {in_chans} channels")
        targets = {"image2": "image"}
        self._rotate = A.Compose(
            [A.Rotate(limit=(-float(degree), float(degree)), interpolation=cv2.INTER_LINEAR,
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0)],
            additional_targets=targets)
        if self.resize:
            self._resize = A.Compose([A.LongestMaxSize(max_size=self.resize, interpolation=cv2.INTER_LINEAR,
                                                       mask_interpolation=cv2.INTER_NEAREST, p=1.0)],
                                     additional_targets=targets)
        self._key: tuple | None = None
        self._rng: np.random.Generator | None = None

    # one generator per process / DataLoader worker
    def rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = (os.getpid(), info.id if info is not None else None)
        if self._key != key or self._rng is None:
            seed = int(info.seed if info is not None else torch.initial_seed()) % (2**63)
            self._rng = np.random.default_rng([seed, 6])
            py = random.Random(seed)
            self._rotate.set_random_state(self._rng, py)
            self._key = key
        return self._rng

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_key"], d["_rng"] = None, None
        return d

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        a, b = _hwc(sample["image1"]), _hwc(sample["image2"])
        m = sample["mask"].numpy().astype(np.uint8)
        if self.train:
            a, b, m = self._augment(a, b, m, self.rng())
        elif self.resize:
            r = self._resize(image=a, image2=b)
            a, b = r["image"], r["image2"]
        out["image1"], out["image2"] = self._normalize(a), self._normalize(b)
        out["mask"] = torch.from_numpy(np.ascontiguousarray(m).astype(np.int64))
        return out

    def _augment(self, a: np.ndarray, b: np.ndarray, m: np.ndarray, rng: np.random.Generator):
        if self.resize:
            r = self._resize(image=a, image2=b, mask=m)
            a, b, m = r["image"], r["image2"], r["mask"]
        rotated = False
        if rng.random() < self.rotate_prob:
            r = self._rotate(image=a, image2=b, mask=m)
            a, b, m = r["image"], r["image2"], r["mask"]
            rotated = True
        if not rotated and rng.random() < self.flip_prob:
            k, axis = int(rng.integers(0, 4)), int(rng.integers(0, 2))
            a, b, m = (np.flip(np.rot90(x, k, axes=(0, 1)), axis=axis) for x in (a, b, m))
        y1, y2, x1, x2 = random_crop_cat_max(m, self.crop, self.cat_max_ratio, rng)
        a, b, m = (np.ascontiguousarray(x[y1:y2, x1:x2]) for x in (a, b, m))
        if m.shape[0] < self.crop or m.shape[1] < self.crop:
            ph, pw = self.crop - m.shape[0], self.crop - m.shape[1]
            pad = ((0, max(ph, 0)), (0, max(pw, 0)))
            a = np.pad(a, pad + ((0, 0),), constant_values=0)
            b = np.pad(b, pad + ((0, 0),), constant_values=0)
            m = np.pad(m, pad, constant_values=IGNORE)
        if rng.random() < self.exchange_prob:
            a, b = b, a
        if self.photometric is not None and a.dtype == np.uint8 and a.shape[2] == 3:
            a = photometric_distortion(a, rng, **self.photometric)
            b = photometric_distortion(b, rng, **self.photometric)
        return a, b, m

    def _normalize(self, x: np.ndarray) -> torch.Tensor:
        x = x.astype(np.float32) / self.scale
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def build_cd_transforms(*, img_size: int, in_chans: int, mean, std, scale_to_unit: float, train_aug: bool = True,
                        resize: int | None = None, **kw: Any) -> dict[str, Callable]:
    """The transform factory of ``conf/task/cd.yaml`` (called by :class:`rsbench.data.datamodule.RSDataModule`)."""
    common = dict(img_size=img_size, mean=mean, std=std, in_chans=in_chans, scale_to_unit=scale_to_unit, resize=resize)
    return {"train": CDTransform(train=train_aug, **common, **kw), "eval": CDTransform(train=False, **common)}
