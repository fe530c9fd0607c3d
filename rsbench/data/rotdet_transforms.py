"""Rotated-detection pipelines of the MTP recipe (MMRotate 1.x, mtp_recipes §2.3 + detection.md §5), on sample dicts.

Train (``configs/mtp/{dior-r,dotav1,dotav2,fair1m20}/*.py``: ``Resize(scale=(S, S), keep_ratio=True)`` →
``RandomFlip(prob=0.75, direction=['horizontal', 'vertical', 'diagonal'])`` → [``RandomRotate(prob=0.5,
angle_range=180, rect_obj_labels=[9, 11])``]):

1. **Resize** keeping the aspect ratio (mmcv ``imrescale``, bilinear): the long side becomes S
   (:func:`rsbench.data.augment.rescale_size`); ``sx = new_w / w``, ``sy = new_h / h``; rotated boxes
   as MMRotate's ``RotatedBoxes.rescale_``: centres scaled, ``w·sqrt((sx cos t)² + (sy sin t)²)``,
   ``h·sqrt((sx sin t)² + (sy cos t)²)``, ``t' = atan2(sx sin t, sy cos t)``; polygons scaled per axis.
2. **Flip** with probability ``flip_prob`` split equally over ``flip_directions`` (mmcv's
   ``RandomFlip`` with a list: 0.25 each for 0.75 and three directions): horizontal ``cx' = W − cx``,
   ``θ' = −θ``; vertical ``cy' = H − cy``, ``θ' = −θ``; diagonal both centres, θ kept
   (:func:`rsbench.models.ops.rbox.flip_rboxes`; θ wrapped back to le90, the same region).
3. **Rotate** (``rotate_prob`` > 0; MMRotate ``RandomRotate`` + ``Rotate``): angle ``range · (2u − 1)``
   degrees, ``u ~ U[0, 1)`` (so in ``[−180, 180)`` for range 180), replaced by one of ``{90, 180, −90, −180}``
   when the image holds an object of ``rect_classes`` (MMRotate's ``rect_obj_labels``: classes that are
   always axis-aligned, DOTA-v1.0's storage-tank and roundabout); positive = clockwise on screen. The
   image: mmcv ``imrotate`` about ``((w − 1)/2, (h − 1)/2)``, same size, border 0
   (:func:`rsbench.data.augment.imrotate`); boxes: centres by ``cv2.getRotationMatrix2D((w/2, h/2), −angle)``
   and ``θ += angle·π/180`` (not re-wrapped, as MMRotate: the coder regularises) — MMRotate's
   half-pixel difference between the two centres is kept; boxes whose centre leaves ``[0, W] × [0, H]``
   are dropped (``RotatedBoxes.is_inside``).
4. **Normalise** ``(x / scale_to_unit − mean) / std`` (:class:`rsbench.data.augment.Normalize`). Padding
   to a multiple of 32 is left to the detector (mmdet's data preprocessor). By default a uint8 image is
   normalised after the transfer to the device instead (``defer_normalize``, as
   :mod:`rsbench.data.det_transforms`): the same values, a quarter of the bytes to send.

The training output has ``image``, ``boxes``, ``labels``, ``difficult`` (``polygons`` are dropped: they no
longer match the boxes after a rotation). Eval: the resize only, applied to ``boxes`` **and**
``polygons`` (the devkit-mode metric reads the polygons); MMRotate evaluates on the original-size
annotations and rescales predictions instead, the same up to the (equal) axis scales. Both outputs carry
``scale_factor`` ``(sx, sy)`` float32 so a submission can map predictions back to the file's pixels
(divide x by sx and y by sy; rotated boxes by the inverse of the rescale above).

Randomness: :func:`rsbench.data.augment.call_generators` (one draw from torch's generator per call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from rsbench.data.augment import (
    Normalize,
    call_generators,
    flip_image,
    imrescale,
    imrotate,
    in_worker,
    rescale_size,
    to_hwc,
)
from rsbench.errors import ConfigError

__all__ = ["RotDetTransform", "build_rotdet_transforms", "choose_flip", "rescale_rboxes", "resolve_classes",
           "rotate_rboxes"]

DIRECTIONS = ("horizontal", "vertical", "diagonal")
HORIZONTAL_ANGLES = (90, 180, -90, -180)


def rescale_rboxes(boxes: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """MMRotate's ``RotatedBoxes.rescale_((sx, sy))`` (module docstring)."""
    if len(boxes) == 0:
        return boxes.clone()
    b = boxes.to(torch.float64)
    cx, cy, w, h, t = b.unbind(-1)
    cos, sin = torch.cos(t), torch.sin(t)
    w = w * torch.sqrt((sx * cos) ** 2 + (sy * sin) ** 2)
    h = h * torch.sqrt((sx * sin) ** 2 + (sy * cos) ** 2)
    t = torch.atan2(sx * sin, sy * cos)
    return torch.stack([cx * sx, cy * sy, w, h, t], -1).to(boxes.dtype)


def rotate_rboxes(boxes: torch.Tensor, width: int, height: int, angle: float) -> torch.Tensor:
    """Rotated boxes after rotating their ``width`` × ``height`` image by ``angle`` degrees clockwise
    (MMRotate ``RotatedBoxes.rotate_`` about ``(W/2, H/2)``; θ not wrapped)."""
    if len(boxes) == 0:
        return boxes.clone()
    m = torch.as_tensor(cv2.getRotationMatrix2D((width * 0.5, height * 0.5), -float(angle), 1.0), dtype=torch.float64)
    b = boxes.to(torch.float64)
    ctr = torch.cat([b[:, :2], torch.ones(len(b), 1, dtype=torch.float64)], 1) @ m.T
    t = b[:, 4] + float(angle) / 180 * math.pi
    return torch.cat([ctr, b[:, 2:4], t[:, None]], 1).to(boxes.dtype)


def choose_flip(rng: np.random.Generator, prob: float, directions: Sequence[str]) -> str | None:
    """mmcv ``RandomFlip._choose_direction`` for a float ``prob`` and a list: ``prob / n`` per direction."""
    if prob <= 0 or not directions:
        return None
    n = len(directions)
    probs = [prob / n] * n + [1 - prob]
    choice = int(rng.choice(n + 1, p=probs))
    return None if choice == n else directions[choice]


def _flip_polys(polys: np.ndarray, w: int, h: int, direction: str) -> np.ndarray:
    p = polys.copy()
    if direction in ("horizontal", "diagonal"):
        p[:, 0::2] = w - p[:, 0::2]
    if direction in ("vertical", "diagonal"):
        p[:, 1::2] = h - p[:, 1::2]
    return p


def resolve_classes(rect_classes: Sequence[int | str], classes: Sequence[str] | None) -> tuple[int, ...]:
    """Class ids of ``rect_classes`` given as ids or names (names need ``classes``, the dataset's list)."""
    out = []
    for c in rect_classes or ():
        if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.isdigit()):
            out.append(int(c))
            continue
        if not classes:
            raise ConfigError(f"rect_classes names ({c!r}) need the dataset's class list (transform_kwargs.classes)")
        if c not in classes:
            raise ConfigError(f"rect_classes: {c!r} is not one of the dataset's classes {', '.join(classes)}")
        out.append(list(classes).index(c))
    return tuple(out)


class RotDetTransform:
    """Keep-ratio resize, [flip, rotate,] normalisation of a rotated-detection sample (module docstring)."""

    def __init__(self, img_size: int | Sequence[int], normalize: Normalize, *, train: bool, flip_prob: float = 0.0,
                 flip_directions: Sequence[str] = DIRECTIONS, rotate_prob: float = 0.0, rotate_range: float = 180,
                 rect_labels: Sequence[int] = (), rotate_border: float = 0, defer_normalize: bool = False) -> None:
        s = (int(img_size), int(img_size)) if isinstance(img_size, (int, float)) else tuple(int(v) for v in img_size)
        self.scale: tuple[int, int] = (s[0], s[1])
        self.normalize, self.train = normalize, bool(train)
        bad = [d for d in flip_directions if d not in DIRECTIONS]
        if bad:
            raise ConfigError(f"flip_directions: {bad} not in {DIRECTIONS}")
        if not 0 < float(rotate_range) <= 180:
            raise ConfigError(f"rotate_range must lie in (0, 180], got {rotate_range}")
        self.flip_prob, self.flip_directions = float(flip_prob), tuple(flip_directions)
        self.rotate_prob, self.rotate_range = float(rotate_prob), float(rotate_range)
        self.rect_labels = tuple(int(c) for c in rect_labels)
        self.rotate_border = rotate_border
        self.defer_normalize = bool(defer_normalize)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        image = to_hwc(sample["image"])
        h, w = image.shape[:2]
        boxes = _tensor(sample.get("boxes"), (0, 5), torch.float32)
        labels = _tensor(sample.get("labels"), (0,), torch.int64)
        difficult = _tensor(sample.get("difficult"), (0,), torch.bool)
        polys = None if sample.get("polygons") is None else \
            _tensor(sample["polygons"], (0, 8), torch.float32).numpy().astype(np.float32)
        nh, nw = rescale_size(h, w, self.scale)
        if (nh, nw) != (h, w):
            image = imrescale(image, self.scale)
            nh, nw = image.shape[:2]
        sx, sy = nw / w, nh / h
        if (sx, sy) != (1.0, 1.0):
            boxes = rescale_rboxes(boxes, sx, sy)
            if polys is not None:
                polys = polys * np.array([sx, sy] * 4, np.float32)
        out = dict(sample)
        if self.train:
            from rsbench.models.ops.rbox import flip_rboxes

            rng, _ = call_generators()
            direction = choose_flip(rng, self.flip_prob, self.flip_directions)
            if direction is not None:
                image = flip_image(image, direction)
                boxes = flip_rboxes(boxes, nw, nh, direction)
            if self.rotate_prob > 0 and rng.random() < self.rotate_prob:
                angle = self.rotate_range * (2 * rng.random() - 1)
                if self.rect_labels and bool(torch.isin(labels, torch.tensor(self.rect_labels)).any()):
                    angle = float(HORIZONTAL_ANGLES[int(rng.integers(len(HORIZONTAL_ANGLES)))])
                image = imrotate(image, angle, border_value=self.rotate_border)
                boxes = rotate_rboxes(boxes, nw, nh, angle)
                inside = (boxes[:, 0] >= 0) & (boxes[:, 0] <= nw) & (boxes[:, 1] >= 0) & (boxes[:, 1] <= nh)
                boxes, labels, difficult = boxes[inside], labels[inside], difficult[inside]
            out.pop("polygons", None)
        elif polys is not None:
            out["polygons"] = torch.from_numpy(np.ascontiguousarray(polys, np.float32))
        # batches are lists, not stacked into one shared buffer: a worker writes the image to shared memory itself
        out["image"] = self.normalize(image, shared=in_worker(), defer=self.defer_normalize)
        out["boxes"] = boxes.to(torch.float32).contiguous()
        out["labels"] = labels
        out["difficult"] = difficult
        out["scale_factor"] = torch.tensor([sx, sy], dtype=torch.float32)
        return out


def _tensor(x: Any, empty_shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    if x is None:
        return torch.zeros(empty_shape, dtype=dtype)
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype).reshape(-1, *empty_shape[1:]).clone()


def build_rotdet_transforms(*, img_size: int, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                            in_chans: int = 3, scale_to_unit: float = 255.0, flip_prob: float = 0.75,
                            flip_directions: Sequence[str] = DIRECTIONS, rotate_prob: float = 0.0,
                            rotate_range: float = 180, rect_classes: Sequence[int | str] = (),
                            classes: Sequence[str] | None = None, train_aug: bool = True,
                            defer_normalize: bool = True, **_: Any) -> dict[str, Callable]:
    """``{"train": fn, "eval": fn, "after_transfer": fn}`` for the datamodule (the factory shape of the other
    families; ``after_transfer`` normalises the deferred images of a batch on its device).

    ``rect_classes``: MMRotate's ``rect_obj_labels`` as class ids or names (names are looked up in
    ``classes``, the dataset's class list; the recipes pass names). ``train_aug=False``: train = resize only.
    """
    normalize = Normalize(mean, std, scale_to_unit, in_chans)
    rect = resolve_classes(rect_classes, classes)
    train = RotDetTransform(img_size, normalize, train=True, flip_prob=flip_prob if train_aug else 0.0,
                            flip_directions=flip_directions, rotate_prob=rotate_prob if train_aug else 0.0,
                            rotate_range=rotate_range, rect_labels=rect, defer_normalize=defer_normalize)
    return {"train": train, "eval": RotDetTransform(img_size, normalize, train=False, defer_normalize=defer_normalize),
            "after_transfer": normalize.after_transfer}
