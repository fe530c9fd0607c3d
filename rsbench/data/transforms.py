"""Classification augmentation pipelines of the paper's recipe, applied to whole sample dicts.

Classification (MMPretrain recipe, docs/protocols.md §2.1): RandomResizedCrop (bicubic) → HFlip →
RandAugment (timm "increasing" policy, 2 ops, magnitude 9, std 0.5) → RandomErasing (p 0.25,
random pixels); test: resize the short side to img/0.875 (256 for 224) → CenterCrop. For 8-bit
RGB this is timm's ``create_transform``, the same code MMPretrain's RandAugment was ported from.
For multispectral rasters (RandAugment's colour ops are undefined past 3 bands) the geometric
part runs on tensors with torchvision and RandAugment is left out. Randomness: timm and
torchvision draw from Python's and torch's generators, which DataLoader seeds per worker.

Segmentation and change detection: :mod:`rsbench.data.seg_transforms` and
:mod:`rsbench.data.cd_transforms`, on the ops they share in :mod:`rsbench.data.augment`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms import v2 as T

# IMAGENET_MEAN/STD are re-exported here for older imports (defined in rsbench.constants)
from rsbench.constants import IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.augment import is_8bit_rgb, resolve_stats

__all__ = ["EVAL_CROP_PCT", "IMAGENET_MEAN", "IMAGENET_STD", "ClsTransform", "build_cls_transforms"]


def _posterize_zero_bits_ok(img, bits_to_keep, **__):
    """timm/MMCV posterize, where keeping 0 bits gives a black image; recent Pillow rejects 0."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    from PIL import ImageOps

    return ImageOps.posterize(img, bits_to_keep)


def _patch_timm_posterize() -> None:
    from timm.data import auto_augment

    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        if auto_augment.NAME_TO_OP.get(name) is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize_zero_bits_ok


_patch_timm_posterize()

EVAL_CROP_PCT = 224 / 256


def _timm_pipeline(train: bool, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                   randaugment: str | None, random_erasing: float, crop_pct: float) -> Callable:
    """8-bit RGB: timm's ``create_transform`` (PIL in, normalised tensor out)."""
    from timm.data import create_transform

    return create_transform(
        input_size=img_size, is_training=train, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
        hflip=0.5, vflip=0.0, auto_augment=randaugment if train else None,
        interpolation="bicubic", re_prob=random_erasing if train else 0.0, re_mode="pixel",
        re_count=1, mean=mean, std=std, crop_pct=crop_pct,
    )


def _tensor_pipeline(train: bool, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                     scale_to_unit: float, random_erasing: float, crop_pct: float) -> Callable:
    """Multispectral rasters: the geometric part with torchvision on ``x / scale_to_unit`` (no RandAugment)."""
    bicubic = T.InterpolationMode.BICUBIC
    ops: list[Callable] = [T.Lambda(lambda x: x.to(torch.float32) / scale_to_unit)]
    if train:
        ops += [T.RandomResizedCrop(img_size, scale=(0.08, 1.0), interpolation=bicubic, antialias=True),
                T.RandomHorizontalFlip(0.5)]
    else:
        ops += [T.Resize(round(img_size / crop_pct), interpolation=bicubic, antialias=True), T.CenterCrop(img_size)]
    ops.append(T.Normalize(mean=list(mean), std=list(std)))
    if train and random_erasing:
        ops.append(T.RandomErasing(p=random_erasing, value="random"))
    return T.Compose(ops)


class ClsTransform:
    """``sample['image']`` (C,H,W uint8/int) → normalised float (C,img,img); label untouched."""

    def __init__(self, *, train: bool, img_size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, in_chans: int = 3, scale_to_unit: float = 255.0,
                 randaugment: str | None = "rand-m9-n2-mstd0.5-inc1", random_erasing: float = 0.25,
                 crop_pct: float = EVAL_CROP_PCT) -> None:
        self.rgb = is_8bit_rgb(in_chans, scale_to_unit)
        mean, std = resolve_stats(mean, std, in_chans)
        if self.rgb:
            self.tf = _timm_pipeline(train, img_size, mean, std, randaugment, random_erasing, crop_pct)
        else:
            self.tf = _tensor_pipeline(train, img_size, mean, std, scale_to_unit, random_erasing, crop_pct)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        img = sample["image"]
        if self.rgb:
            img = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy())
        sample = dict(sample)
        sample["image"] = self.tf(img)
        return sample


def build_cls_transforms(*, img_size: int, in_chans: int, mean, std, scale_to_unit: float,
                         train_aug: bool = True, **kw: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn}`` (``conf/task/cls.yaml``); ``kw`` are :class:`ClsTransform`'s recipe arguments."""
    common = {"img_size": img_size, "mean": mean, "std": std, "in_chans": in_chans, "scale_to_unit": scale_to_unit}
    return {
        "train": ClsTransform(train=train_aug, **common, **kw),
        "eval": ClsTransform(train=False, **common),
    }
