"""Segmentation pipelines of the MTP recipe (mmseg 1.0, mtp_recipes.md §2.4) on albumentations.

Train (image and mask always transformed together, one ``albumentations.Compose``):

1. :class:`RandomResize` — mmseg ``RandomResize(scale=(S, S), ratio_range=(0.5, 2.0),
   keep_ratio=True)``: a ratio r ~ U(0.5, 2.0), the image rescaled keeping its aspect ratio so
   that it fits in (r·S, r·S), i.e. its long side becomes r·S (up or down). Bilinear for the
   image, nearest for the mask. S (``scale``) defaults to the crop size.
2. :class:`CatMaxRatioCrop` — mmseg ``RandomCrop(crop, cat_max_ratio=0.75)``: a random crop
   (the whole extent where the image is smaller); up to 10 times a new one is drawn while one
   class covers ≥ 75 % of the crop's labelled pixels (255 not counted) or only one class is
   present; the last draw is kept. albumentations has no equivalent.
3. ``A.HorizontalFlip(p=0.5)`` — mmseg ``RandomFlip(prob=0.5)``.
4. :class:`PhotoMetricDistortion` — mmseg ``PhotoMetricDistortion`` with its defaults: each
   with probability 1/2, brightness +U(−32, 32), contrast ×U(0.5, 1.5) (before or after the
   next two, by a coin flip), saturation ×U(0.5, 1.5) and hue +U{−18..18} (OpenCV HSV, hue in
   0..179), on uint8 with clipping.
5. ``A.Normalize`` — ImageNet mean/std (mtp_recipes.md §2.0).
6. ``A.PadIfNeeded`` to the crop size at the bottom/right: image 0, mask 255. mmseg pads in
   its data preprocessor after normalisation, so the padded pixels are 0 in normalised space,
   as here.

Eval: normalisation only, at native resolution (the task's sliding-window inference does the
rest); the mask (if any) is left as it is.

Samples come in as ``{"image": (C, H, W) uint8, "mask": (H, W) long}`` and leave as float32
``(C, H, W)`` images and long masks (255 = ignore).

Randomness: albumentations 2.x keeps its own generator per ``Compose``, which forked DataLoader
workers would all copy. Each call therefore seeds it with one draw from torch's generator,
which DataLoader seeds per worker and ``seed_everything`` seeds in the main process: workers do
not repeat each other and runs are reproducible.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from rsbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

IGNORE = 255


def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep_ratio: the largest (h, w) of the same ratio within ``scale``."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


class RandomResize(A.DualTransform):
    """mmseg ``RandomResize`` with ``ratio_range`` and ``keep_ratio=True`` (see module docstring)."""

    def __init__(self, scale: int | Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0), p: float = 1.0) -> None:
        super().__init__(p=p)
        self.scale = (int(scale), int(scale)) if isinstance(scale, (int, float)) else tuple(int(s) for s in scale)
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        lo, hi = self.ratio_range
        ratio = self.py_random.random() * (hi - lo) + lo
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return {"size": rescale_size(h, w, target)}

    def apply(self, img: np.ndarray, size: tuple[int, int] = (0, 0), **_: Any) -> np.ndarray:
        return cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, size: tuple[int, int] = (0, 0), **_: Any) -> np.ndarray:
        return cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range")


def cat_max_ratio_crop_box(mask: np.ndarray | None, crop: tuple[int, int], rng: np.random.Generator | Any,
                           cat_max_ratio: float = 0.75, ignore_index: int = IGNORE, tries: int = 10
                           ) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) of mmseg's ``RandomCrop.crop_bbox`` with ``cat_max_ratio``."""
    h, w = mask.shape[:2] if mask is not None else crop

    def draw() -> tuple[int, int, int, int]:
        oy = rng.randint(0, max(h - crop[0], 0))
        ox = rng.randint(0, max(w - crop[1], 0))
        return oy, oy + crop[0], ox, ox + crop[1]

    box = draw()
    if mask is not None and cat_max_ratio < 1.0:
        for _ in range(tries):
            seg = mask[box[0]:box[1], box[2]:box[3]]
            labels, cnt = np.unique(seg, return_counts=True)
            cnt = cnt[labels != ignore_index]
            if len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio:
                break
            box = draw()
    return box


class CatMaxRatioCrop(A.DualTransform):
    """mmseg ``RandomCrop`` with ``cat_max_ratio`` (see module docstring)."""

    def __init__(self, height: int, width: int, cat_max_ratio: float = 0.75, ignore_index: int = IGNORE,
                 p: float = 1.0) -> None:
        super().__init__(p=p)
        self.height, self.width = int(height), int(width)
        self.cat_max_ratio, self.ignore_index = float(cat_max_ratio), int(ignore_index)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        mask = data.get("mask")
        if mask is None:
            h, w = params["shape"][:2]
            mask_for_draw = np.full((h, w), self.ignore_index, np.uint8)
            box = cat_max_ratio_crop_box(mask_for_draw, (self.height, self.width), self.py_random, 1.0)
        else:
            box = cat_max_ratio_crop_box(mask, (self.height, self.width), self.py_random,
                                         self.cat_max_ratio, self.ignore_index)
        return {"box": box}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **_: Any) -> np.ndarray:
        return img[box[0]:box[1], box[2]:box[3]]

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **_: Any) -> np.ndarray:
        return mask[box[0]:box[1], box[2]:box[3]]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("height", "width", "cat_max_ratio", "ignore_index")


def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """mmseg ``PhotoMetricDistortion`` on RGB uint8 (see module docstring)."""

    def __init__(self, brightness_delta: int = 32, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_range: Sequence[float] = (0.5, 1.5), hue_delta: int = 18, p: float = 1.0) -> None:
        super().__init__(p=p)
        self.brightness_delta = int(brightness_delta)
        self.contrast_range = (float(contrast_range[0]), float(contrast_range[1]))
        self.saturation_range = (float(saturation_range[0]), float(saturation_range[1]))
        self.hue_delta = int(hue_delta)

    def get_params(self) -> dict[str, Any]:
        r = self.py_random
        return {
            "brightness": r.uniform(-self.brightness_delta, self.brightness_delta) if r.randint(0, 1) else None,
            "contrast_first": bool(r.randint(0, 1)),
            "contrast": r.uniform(*self.contrast_range) if r.randint(0, 1) else None,
            "saturation": r.uniform(*self.saturation_range) if r.randint(0, 1) else None,
            "hue": r.randint(-self.hue_delta, self.hue_delta - 1) if r.randint(0, 1) else None,
        }

    def apply(self, img: np.ndarray, brightness=None, contrast_first=False, contrast=None, saturation=None,
              hue=None, **_: Any) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("PhotoMetricDistortion works on (H, W, 3) uint8 RGB images")
        if brightness is not None:
            img = _convert(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = _convert(img, alpha=contrast)
        if saturation is not None or hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            if saturation is not None:
                hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=saturation)
            if hue is not None:
                hsv[:, :, 0] = ((hsv[:, :, 0].astype(int) + hue) % 180).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if not contrast_first and contrast is not None:
            img = _convert(img, alpha=contrast)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")


class SegTransform:
    """Applies an albumentations pipeline to a sample dict of tensors (see module docstring)."""

    def __init__(self, pipeline: A.Compose) -> None:
        self.pipeline = pipeline

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        # one draw from torch's generator seeds the pipeline: per-worker seeds and seed_everything apply
        self.pipeline.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
        return self._apply(sample)

    def _apply(self, sample: dict[str, Any]) -> dict[str, Any]:
        img = sample["image"]
        img_np = img.permute(1, 2, 0).contiguous().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
        data: dict[str, Any] = {"image": img_np}
        if "mask" in sample:
            m = sample["mask"]
            m_np = m.numpy() if isinstance(m, torch.Tensor) else np.asarray(m)
            data["mask"] = m_np.astype(np.uint8)  # ids < 255 and the 255 ignore value fit
        out = self.pipeline(**data)
        sample = dict(sample)
        sample["image"] = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()
        if "mask" in out:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(out["mask"])).long()
        return sample


def build_seg_transforms(*, img_size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                         in_chans: int = 3, scale_to_unit: float = 255.0, crop_size: int | None = None,
                         scale: int | Sequence[int] | None = None, ratio_range: Sequence[float] = (0.5, 2.0),
                         cat_max_ratio: float = 0.75, flip_prob: float = 0.5, photometric: bool = True,
                         train_aug: bool = True, **_: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn}`` for the datamodule; ``crop_size`` and ``scale`` default to ``img_size``."""
    crop = int(crop_size or img_size)
    scale = scale if scale is not None else crop
    mean = tuple(mean) if mean is not None else IMAGENET_MEAN
    std = tuple(std) if std is not None else IMAGENET_STD
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"{len(mean)} mean / {len(std)} std values for {in_chans} channels")
    normalize = A.Normalize(mean=mean, std=std, max_pixel_value=float(scale_to_unit), p=1.0)
    train_ops: list[Any] = []
    if train_aug:
        train_ops += [RandomResize(scale, ratio_range), CatMaxRatioCrop(crop, crop, cat_max_ratio)]
        if flip_prob > 0:
            train_ops.append(A.HorizontalFlip(p=flip_prob))
        if photometric and in_chans == 3 and scale_to_unit == 255.0:
            train_ops.append(PhotoMetricDistortion())
    train_ops += [normalize, A.PadIfNeeded(min_height=crop, min_width=crop, position="top_left",
                                           border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE)]
    return {
        "train": SegTransform(A.Compose(train_ops)),
        "eval": SegTransform(A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=float(scale_to_unit), p=1.0)])),
    }
