"""Classification augmentation pipelines of the paper's recipe, applied to whole sample dicts.

Classification (MMPretrain 1.2 recipe of the MTP configs ``configs/mtp/{eurosat,resisc45}/*.py``,
docs/protocols.md §2.1), train, in the official order:

1. ``RandomResizedCrop(224, backend='pillow', interpolation='bicubic')``: timm's
   ``RandomResizedCropAndInterpolation`` is the same algorithm (10 tries of area U(0.08, 1) and
   log-uniform ratio 3/4..4/3, rounded sides, central-crop fallback) and the same PIL bicubic resize.
2. ``RandomFlip(prob=0.5, direction='horizontal')``: timm ``hflip=0.5``.
3. ``RandAugment(policies='timm_increasing', num_policies=2, magnitude_level=9, magnitude_std=0.5,
   total_level=10, pad_val=round(mean))``: timm ``rand-m9-n2-mstd0.5-inc1`` (the policy list
   MMPretrain copied: the same 15 ops, 2 drawn with replacement, each with p 0.5, magnitude
   N(9, 0.5) clipped to 0..10, the same ranges and random signs, fill (124, 116, 104)). Known
   difference: MMPretrain's ops run on mmcv/OpenCV (Rotate/Shear/Translate: OpenCV bicubic and
   rotation centre ((w-1)/2, (h-1)/2)), timm's on PIL (PIL bicubic, centre (w/2, h/2)); the
   enhance ops agree to about one grey level. Not reproduced.
4. ``RandomErasing(erase_prob=0.25, mode='rand', min_area_ratio=0.02, max_area_ratio=1/3,
   fill_color=mean, fill_std=std)``: :class:`RandomErasing`, on the uint8 image BEFORE
   normalisation as MMPretrain does (timm's erasing, N(0, 1) after normalisation, is not used).
5. ``PackInputs`` + data preprocessor: ``(x - 255·mean) / (255·std)`` in RGB (``to_rgb=True``);
   here ``ToTensor`` (x / 255) and ``Normalize(mean, std)``. As the data preprocessor does, the factory
   (``defer_normalize``) leaves this step to the datamodule's ``on_after_batch_transfer``: the worker
   sends the uint8 image (a quarter of the bytes, through shared memory and to the device) and
   :meth:`rsbench.data.augment.Normalize.after_transfer` normalises the batch on its device with the same
   float32 operations (``/ 255``, ``- mean``, ``/ std``): the same values bit for bit (tested on the CPU).

Test: ``ResizeEdge(256, edge='short', backend='pillow', interpolation='bicubic')`` →
``CenterCrop(224)``; timm's eval transform (``Resize(256)`` = short side to img/0.875, PIL
bicubic, the long side truncated as ResizeEdge does → ``CenterCrop``) is the same computation.
For 8-bit RGB this is timm's ``create_transform`` with :class:`RandomErasing` in place of timm's.
For multispectral rasters (RandAugment's colour ops are undefined past 3 bands) the geometric
part runs on tensors with torchvision and RandAugment is left out (no official recipe).
Randomness: timm and torchvision draw from Python's and torch's generators, which DataLoader seeds
per worker; :class:`RandomErasing` from :func:`rsbench.data.augment.call_generators`.

Segmentation and change detection: :mod:`rsbench.data.seg_transforms` and
:mod:`rsbench.data.cd_transforms`, on the ops they share in :mod:`rsbench.data.augment`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T

# IMAGENET_MEAN/STD are re-exported here for older imports (defined in rsbench.constants)
from rsbench.constants import IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.augment import Normalize, call_generators, is_8bit_rgb, resolve_stats

__all__ = ["EVAL_CROP_PCT", "IMAGENET_MEAN", "IMAGENET_STD", "ClsTransform", "RandomErasing", "build_cls_transforms"]


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


class RandomErasing:
    """MMPretrain ``RandomErasing(erase_prob, min_area_ratio=0.02, max_area_ratio=1/3, mode='rand',
    fill_color=mean, fill_std=std)`` as the MTP classification configs set it: on the (H, W, C)
    image in PIXEL space, before normalisation (MMPretrain erases the uint8 image; its data
    preprocessor normalises afterwards). One try (no retries): aspect ratio log-uniform in
    ``aspect_range`` (MMPretrain's default 3/10..10/3), area U(min, max) × H·W,
    ``h = min(round(sqrt(area·ratio)), H)``, ``w = min(round(sqrt(area/ratio)), W)``, top/left
    uniform in ``[0, H - h)`` / ``[0, W - w)`` (high exclusive, as ``np.random.randint``); each
    erased pixel ~ N(fill_color, fill_std) per channel, truncated to an integer and clipped to
    ``0..high`` (MMPretrain: ``clip(normal(...).astype(int32), 0, 255)``; ``quantize=False`` keeps
    floats, for non-8-bit rasters). ``fill_color``/``fill_std`` are the normalisation's mean/std on
    the pixel scale, in the image's channel order (the configs pass ``bgr_mean``/``bgr_std`` for
    their BGR images: the same colours as RGB mean/std on RGB images).

    timm's ``RandomErasing(mode='pixel')``, used before, filled N(0, 1) after normalisation,
    neither clipped to the pixel range nor quantised, and retried up to 10 windows.
    """

    def __init__(self, prob: float, fill_color: Sequence[float], fill_std: Sequence[float], *,
                 min_area_ratio: float = 0.02, max_area_ratio: float = 1 / 3,
                 aspect_range: tuple[float, float] = (3 / 10, 10 / 3), high: float = 255.0,
                 quantize: bool = True) -> None:
        self.prob, self.min_area, self.max_area = float(prob), float(min_area_ratio), float(max_area_ratio)
        self.log_aspect = np.log(np.asarray(aspect_range, dtype=np.float32))
        self.fill_color, self.fill_std = np.asarray(fill_color, np.float64), np.asarray(fill_std, np.float64)
        self.high, self.quantize = float(high), bool(quantize)

    def window(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """(top, left, height, width) of one call, or None (not erased); MMPretrain's draw order."""
        if rng.random() > self.prob:  # MMPretrain: np.random.rand() > erase_prob disables it
            return None
        aspect = float(np.exp(rng.uniform(*self.log_aspect)))
        area = h * w * float(rng.uniform(self.min_area, self.max_area))
        eh = min(int(np.round(np.sqrt(area * aspect))), h)
        ew = min(int(np.round(np.sqrt(area / aspect))), w)
        top = int(rng.integers(0, h - eh)) if h > eh else 0
        left = int(rng.integers(0, w - ew)) if w > ew else 0
        return top, left, eh, ew

    def __call__(self, img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else call_generators()[0]
        box = self.window(img.shape[0], img.shape[1], rng)
        if box is None:
            return img
        top, left, eh, ew = box
        patch = rng.normal(self.fill_color, self.fill_std, (eh, ew, img.shape[2]))
        if self.quantize:
            patch = patch.astype(np.int32)
        img = np.array(img, copy=True)
        img[top:top + eh, left:left + ew] = np.clip(patch, 0, self.high).astype(img.dtype)
        return img


class _PixelErasing:
    """A PIL image through :class:`RandomErasing` (8-bit RGB, between RandAugment and ToTensor)."""

    def __init__(self, erasing: RandomErasing) -> None:
        self.erasing = erasing

    def __call__(self, img: Image.Image) -> Image.Image:
        return Image.fromarray(self.erasing(np.asarray(img)))


class _TensorErasing:
    """A (C, H, W) float tensor on the ``x / scale_to_unit`` scale through :class:`RandomErasing`."""

    def __init__(self, erasing: RandomErasing) -> None:
        self.erasing = erasing

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.erasing(x.permute(1, 2, 0).numpy())
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))


def _timm_pipeline(train: bool, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                   randaugment: str | None, random_erasing: float, crop_pct: float, defer: bool = False) -> Callable:
    """8-bit RGB: timm's ``create_transform`` (PIL in, normalised tensor out), with MMPretrain's
    pixel-space :class:`RandomErasing` between RandAugment and ToTensor/Normalize. ``defer``: timm's
    ``normalize=False`` (a (C, H, W) uint8 tensor out), normalised after the transfer."""
    from timm.data import create_transform

    if not train:
        return create_transform(input_size=img_size, is_training=False, interpolation="bicubic",
                                mean=mean, std=std, crop_pct=crop_pct, normalize=not defer)
    geometric, colour, final = create_transform(
        input_size=img_size, is_training=True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
        hflip=0.5, vflip=0.0, auto_augment=randaugment, interpolation="bicubic", re_prob=0.0,
        color_jitter=None,  # timm adds ColorJitter(0.4) when RandAugment is off; MMPretrain has none
        mean=mean, std=std, separate=True, normalize=not defer,
    )
    ops: list[Callable] = [geometric, colour]
    if random_erasing:
        ops.append(_PixelErasing(RandomErasing(random_erasing, [255 * m for m in mean], [255 * s for s in std])))
    return T.Compose([*ops, final])


def _tensor_pipeline(train: bool, img_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                     scale_to_unit: float, random_erasing: float, crop_pct: float) -> Callable:
    """Multispectral rasters: the geometric part with torchvision on ``x / scale_to_unit`` (no
    RandAugment); erasing before normalisation with N(mean, std) clipped to 0..1 (the unit scale
    that ``scale_to_unit`` defines), not quantised."""
    bicubic = T.InterpolationMode.BICUBIC
    ops: list[Callable] = [T.Lambda(lambda x: x.to(torch.float32) / scale_to_unit)]
    if train:
        ops += [T.RandomResizedCrop(img_size, scale=(0.08, 1.0), interpolation=bicubic, antialias=True),
                T.RandomHorizontalFlip(0.5)]
        if random_erasing:
            ops.append(_TensorErasing(RandomErasing(random_erasing, mean, std, high=1.0, quantize=False)))
    else:
        ops += [T.Resize(round(img_size / crop_pct), interpolation=bicubic, antialias=True), T.CenterCrop(img_size)]
    ops.append(T.Normalize(mean=list(mean), std=list(std)))
    return T.Compose(ops)


class ClsTransform:
    """``sample['image']`` (C,H,W uint8/int) → normalised float (C,img,img); label untouched.

    ``defer_normalize`` (8-bit RGB only): the image leaves as (C,img,img) uint8, for
    :attr:`after_transfer` (the factory's default; see the module docstring)."""

    def __init__(self, *, train: bool, img_size: int, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, in_chans: int = 3, scale_to_unit: float = 255.0,
                 randaugment: str | None = "rand-m9-n2-mstd0.5-inc1", random_erasing: float = 0.25,
                 crop_pct: float = EVAL_CROP_PCT, defer_normalize: bool = False) -> None:
        self.rgb = is_8bit_rgb(in_chans, scale_to_unit)
        mean, std = resolve_stats(mean, std, in_chans)
        self.defer = self.rgb and bool(defer_normalize)
        #: what the datamodule applies to a batch on its device (None: nothing deferred)
        self.after_transfer = Normalize(mean, std, 255.0, in_chans).after_transfer if self.defer else None
        if self.rgb:
            self.tf = _timm_pipeline(train, img_size, mean, std, randaugment, random_erasing, crop_pct, self.defer)
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
                         train_aug: bool = True, defer_normalize: bool = True, **kw: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn, "after_transfer": fn | None}`` (``conf/task/cls.yaml``); ``kw`` are
    :class:`ClsTransform`'s recipe arguments. 8-bit RGB images are normalised after the transfer
    (``defer_normalize``, as the data preprocessor of the official code), on the batch's device."""
    common = {"img_size": img_size, "mean": mean, "std": std, "in_chans": in_chans, "scale_to_unit": scale_to_unit,
              "defer_normalize": defer_normalize}
    train = ClsTransform(train=train_aug, **common, **kw)
    return {"train": train, "eval": ClsTransform(train=False, **common), "after_transfer": train.after_transfer}
