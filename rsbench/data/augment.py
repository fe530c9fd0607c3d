"""The augmentation ops that segmentation and change detection share, each defined once.

:mod:`rsbench.data.seg_transforms` wraps them as albumentations transforms (image and mask
together); :mod:`rsbench.data.cd_transforms` applies them to both dates and the mask (the same
window for all three; the photometric distortion per date, with its own draws). Where the two
pipelines used to differ by accident, these follow mmcv/mmseg (noted below); what differs by
recipe (e.g. the distortion's strength: mmseg 32, Open-CD's MTP configs 10) is a parameter.

- :func:`call_generators` — the one seeding rule.
- :func:`cat_max_ratio_crop_box` — mmseg ``RandomCrop(crop, cat_max_ratio)``'s window.
- :func:`imrescale`, :func:`imrotate` — mmcv's keep-ratio resize and rotation (OpenCV).
- :class:`PhotoMetric` / :func:`apply_photometric` — mmcv/mmseg ``PhotoMetricDistortion``.
- :class:`Normalize` and :func:`pad_to` — ``(x / scale_to_unit - mean) / std``, then padding to
  the crop at the bottom/right with 0 (image, i.e. after normalisation, as mmseg's and Open-CD's
  data pre-processors pad) and ``IGNORE_INDEX`` (mask); or, deferred, 8-bit images and masks leave
  the worker as uint8 and :func:`dense_after_transfer` normalises, zeroes the padding and casts the
  mask on the batch's device (as those pre-processors do on theirs).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from rsbench.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from rsbench.data.io import CV_DTYPES, chw_to_hwc, hwc_to_chw

# -- randomness ---------------------------------------------------------------------------------

def call_generators() -> tuple[np.random.Generator, random.Random]:
    """The generators of one pipeline call, seeded by one draw from torch's global generator.

    DataLoader seeds torch per worker and ``seed_everything`` seeds it in the main process, so
    workers do not repeat each other and runs are reproducible. Every op of the call draws from
    these two objects in turn (albumentations: ``Compose.set_random_state``). Seeding each op with
    the same seed instead (albumentations' ``set_random_seed``) gives every op the same stream,
    e.g. the flip decision equal to the resize ratio's first draw; that is not done.
    """
    seed = int(torch.randint(0, 2**31 - 1, ()))
    return np.random.default_rng(seed), random.Random(seed)


# -- channels, normalisation, padding ----------------------------------------------------------

def is_8bit_rgb(in_chans: int, scale_to_unit: float) -> bool:
    """Whether the colour ops (photometric distortion, RandAugment) apply: 8-bit RGB only."""
    return in_chans == 3 and float(scale_to_unit) == 255.0


def resolve_stats(mean: Sequence[float] | None, std: Sequence[float] | None,
                  in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean``/``std`` on the 0..1 scale (ImageNet's where not given), checked against ``in_chans``."""
    mean = tuple(float(v) for v in mean) if mean is not None else IMAGENET_MEAN
    std = tuple(float(v) for v in std) if std is not None else IMAGENET_STD
    if len(mean) != in_chans or len(std) != in_chans:
        raise ValueError(f"{len(mean)} mean / {len(std)} std values for {in_chans} channels")
    return mean, std


def to_hwc(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (C, H, W) tensor as a contiguous (H, W, C) array: uint8 kept, other types as float32."""
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.is_contiguous() and image.device.type == "cpu" \
            and not image.requires_grad:
        a = chw_to_hwc(image.numpy())  # one fast interleaving copy instead of numpy's strided one
        return a if a.dtype == np.uint8 else a.astype(np.float32)
    a = image.permute(1, 2, 0).numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    return np.ascontiguousarray(a if a.dtype == np.uint8 else a.astype(np.float32))


class Normalize:
    """``(x / scale_to_unit - mean) / std`` of an (H, W, C) array → (C, H, W) float32 tensor.

    Or in two steps, for pipelines whose batches are lists of large images (detection): ``defer=True``
    gives the (C, H, W) image in its own dtype (a quarter of float32's bytes to send from a worker and to the
    device), and :meth:`on_tensor` / :meth:`after_transfer` normalise it after the transfer, on the device,
    as MMDetection's data preprocessor does, with the same float32 operations in the same order (the same
    values bit for bit; tested on the CPU)."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 scale_to_unit: float = 255.0, in_chans: int = 3) -> None:
        mean, std = resolve_stats(mean, std, in_chans)
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.scale = float(scale_to_unit)

    def __call__(self, x: np.ndarray, *, shared: bool = False, defer: bool = False) -> torch.Tensor:
        """``shared``: the result in shared memory (a DataLoader worker passes such a tensor to the main process
        without copying it; for batches collated as lists, e.g. detection, whose images are not stacked into one
        shared buffer by ``default_collate``). ``defer``: a uint8 image comes back as a (C, H, W) uint8 tensor,
        not yet normalised (other dtypes are normalised now: an integer dtype marks a deferred image)."""
        x = np.asarray(x)
        if defer and x.dtype == np.uint8:
            t = torch.empty((x.shape[2], x.shape[0], x.shape[1]), dtype=torch.uint8)
            hwc_to_chw(x, out=(t.share_memory_() if shared else t).numpy())  # one copy, into shared memory
            return t
        # the same float32 operations as ``(x.astype(float32) / scale - mean) / std`` then a (C, H, W) copy, in
        # place on one (C, H, W) buffer filled by the cast (5x faster on 800² images; the values are identical)
        if shared:
            t = torch.empty((x.shape[2], x.shape[0], x.shape[1]), dtype=torch.float32).share_memory_()
            out = t.numpy()
            np.copyto(out, x.transpose(2, 0, 1), casting="unsafe")
        else:
            out = np.array(x.transpose(2, 0, 1), dtype=np.float32, order="C")
            t = torch.from_numpy(out)
        np.divide(out, self.scale, out=out)
        out -= self.mean[:, None, None]
        out /= self.std[:, None, None]
        return t

    def on_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """A deferred (C, H, W) image (any device) normalised: a float32 copy, then ``/ scale``, ``- mean``,
        ``/ std`` in place, the worker's float32 operations in its order (the same bits on the CPU, tested).
        The divisors are device tensors, not Python scalars: CUDA would multiply by a scalar's reciprocal."""
        out = image.to(torch.float32, copy=True)
        c = out.shape[-3]
        consts = torch.tensor(np.stack([np.full(c, self.scale, np.float32), self.mean, self.std]), device=out.device)
        scale, mean, std = (v.view(c, 1, 1) for v in consts)
        return out.div_(scale).sub_(mean).div_(std)

    def after_transfer(self, batch: Any, keys: Sequence[str] = ("image",)) -> Any:
        """``on_after_batch_transfer`` of a batch whose images (each of ``keys``: a tensor or a list of them)
        may be deferred: those not yet normalised (not floating point) get :meth:`on_tensor`."""
        if not isinstance(batch, dict):
            return batch

        def norm(im: torch.Tensor) -> torch.Tensor:
            return im if im.is_floating_point() else self.on_tensor(im)

        batch = dict(batch)
        for key in keys:
            images = batch.get(key)
            if isinstance(images, (list, tuple)):
                batch[key] = [norm(im) for im in images]
            elif isinstance(images, torch.Tensor):
                batch[key] = norm(images)
        return batch


def flip_image(img: np.ndarray, direction: str) -> np.ndarray:
    """An (H, W[, C]) image flipped ``horizontal`` (columns reversed), ``vertical`` (rows) or ``diagonal``
    (both), as a new contiguous array: OpenCV's ``flip`` where it takes the array (the same pixels as
    numpy's reversed views, several times faster than copying those), else numpy."""
    code = {"horizontal": 1, "vertical": 0, "diagonal": -1}[direction]
    if img.dtype in CV_DTYPES and (img.ndim == 2 or (img.ndim == 3 and 1 < img.shape[2] <= 4)):
        return cv2.flip(np.ascontiguousarray(img), code)
    view = {1: img[:, ::-1], 0: img[::-1], -1: img[::-1, ::-1]}[code]
    return np.ascontiguousarray(view)


def in_worker() -> bool:
    """Whether this runs in a DataLoader worker process."""
    from torch.utils.data import get_worker_info

    return get_worker_info() is not None


def pad_to(image: torch.Tensor, mask: np.ndarray | None, size: int | tuple[int, int]
           ) -> tuple[torch.Tensor, np.ndarray | None]:
    """Pad a normalised (C, H, W) image with 0 at the bottom/right to at least ``size``, and its
    (h, w) mask with ``IGNORE_INDEX`` by the same amounts (mmseg's ``SegDataPreProcessor`` and
    Open-CD's ``stack_batch`` pad after normalising and pad the label by the image's padding, so a
    label smaller than the image, OSCD's 96² under 224² images, keeps its size). A deferred (uint8)
    image is padded with 0 too; :func:`dense_after_transfer` zeroes its padding again once normalised."""
    h, w = (size, size) if isinstance(size, int) else size
    ph, pw = max(h - image.shape[1], 0), max(w - image.shape[2], 0)
    if ph or pw:
        image = torch.nn.functional.pad(image, (0, pw, 0, ph), value=0)
        if mask is not None:
            mask = np.pad(mask, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
    return image, mask


#: the sample key of a deferred image's (h, w) before :func:`pad_to` (collated to (B, 2)); the padding is
#: zeroed after the normalisation on the device, and the key dropped, by :func:`dense_after_transfer`
UNPADDED_KEY = "unpadded_hw"


def dense_mask_tensor(mask: np.ndarray, defer: bool) -> torch.Tensor:
    """A segmentation / change mask (ids < 255, ``IGNORE_INDEX`` = 255) as it leaves the worker: long, or
    uint8 when the normalisation is deferred (an eighth of the bytes; :func:`dense_after_transfer` casts)."""
    t = torch.from_numpy(np.ascontiguousarray(mask))
    return t.to(torch.uint8) if defer else t.long()


def dense_after_transfer(batch: Any, *, normalize: Normalize, keys: Sequence[str]) -> Any:
    """``on_after_batch_transfer`` of segmentation / change-detection batches whose images left the worker
    as uint8: :meth:`Normalize.after_transfer` on each image of ``keys``, then the pixels :func:`pad_to`
    added set to 0 (the worker pads after normalising, as mmseg does: the same values bit for bit) and
    the uint8 mask cast to long. Float images (normalised in the worker) are left alone."""
    if not isinstance(batch, dict):
        return batch
    batch = dict(batch)
    unpadded = batch.pop(UNPADDED_KEY, None)
    deferred = [k for k in keys if isinstance(batch.get(k), torch.Tensor) and not batch[k].is_floating_point()]
    batch = normalize.after_transfer(batch, deferred)
    for key in deferred if unpadded is not None else ():
        x = batch[key]  # (B, C, H, W), a new tensor
        h, w = x.shape[-2:]
        rows = torch.arange(h, device=x.device)[None] < unpadded[:, :1].to(x.device)  # (B, H)
        cols = torch.arange(w, device=x.device)[None] < unpadded[:, 1:].to(x.device)  # (B, W)
        x.masked_fill_(~(rows[:, None, :, None] & cols[:, None, None, :]), 0.0)
    mask = batch.get("mask")
    if isinstance(mask, torch.Tensor) and mask.dtype == torch.uint8:
        batch["mask"] = mask.long()
    return batch


# -- resize and rotation (mmcv's geometric ops) -------------------------------------------------

def rescale_size(h: int, w: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with keep_ratio: the largest (h, w) of the same ratio within ``scale``."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def imrescale(img: np.ndarray, scale: int | tuple[int, int], nearest: bool = False) -> np.ndarray:
    """mmcv ``imrescale(img, scale)`` (keep ratio; cv2 bilinear, or nearest for labels)."""
    scale = (scale, scale) if isinstance(scale, (int, np.integer)) else tuple(scale)
    h, w = rescale_size(img.shape[0], img.shape[1], scale)
    return _per_chunk(img, lambda x: cv2.resize(x, (w, h), interpolation=cv2.INTER_NEAREST if nearest
                                                else cv2.INTER_LINEAR))


def imrotate(img: np.ndarray, angle: float, border_value: float = 0, nearest: bool = False) -> np.ndarray:
    """mmcv ``imrotate(img, angle, border_value=..., interpolation=...)``: ``angle`` degrees clockwise
    about ``((w - 1) / 2, (h - 1) / 2)``, same size, constant border (bilinear, or nearest for labels)."""
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) * 0.5, (h - 1) * 0.5), -float(angle), 1.0)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return _per_chunk(img, lambda x: cv2.warpAffine(x, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                                    borderValue=border_value))


def _per_chunk(img: np.ndarray, op) -> np.ndarray:
    """``op`` on (H, W) or (H, W, C) arrays in chunks of at most 4 channels (OpenCV's warp limit),
    keeping a trailing channel axis that OpenCV drops for one channel."""
    if img.ndim == 2:
        return op(np.ascontiguousarray(img))
    parts = [op(np.ascontiguousarray(img[..., i:i + 4])) for i in range(0, img.shape[2], 4)]
    return np.concatenate([p[..., None] if p.ndim == 2 else p for p in parts], axis=2)


# -- crop ---------------------------------------------------------------------------------------

def cat_max_ratio_crop_box(mask: np.ndarray, crop: int | tuple[int, int], rng: np.random.Generator,
                           cat_max_ratio: float = 0.75, ignore_index: int = IGNORE_INDEX,
                           tries: int = 10, extent: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(y1, y2, x1, x2) of mmseg's ``RandomCrop.crop_bbox`` with ``cat_max_ratio``.

    A window of the image's ``extent`` (h, w; default ``mask``'s) with offsets uniform in
    ``[0, max(size - crop, 0)]`` (an image smaller than the crop keeps its whole extent; the slice
    stops at its border), counted on ``mask[window]`` as mmseg/Open-CD do (so a label smaller than
    the image, OSCD's, is sliced by the image's window); while one class covers
    ``>= cat_max_ratio`` of the window's labelled pixels (``ignore_index`` not counted) or fewer
    than two classes are present, a new window is drawn, up to ``tries`` times; the last draw is
    kept. ``cat_max_ratio >= 1`` draws once.
    """
    ch, cw = (crop, crop) if isinstance(crop, (int, np.integer)) else crop
    h, w = extent if extent is not None else mask.shape[:2]

    def draw() -> tuple[int, int, int, int]:
        oy = int(rng.integers(0, max(h - ch, 0) + 1))
        ox = int(rng.integers(0, max(w - cw, 0) + 1))
        return oy, oy + ch, ox, ox + cw

    box = draw()
    if cat_max_ratio < 1.0:
        counted: dict[tuple[int, int, int, int], bool] = {}  # a window drawn again (e.g. a tile the crop's size,
        for _ in range(tries):                                 # where every draw is the same) is not counted again
            if box not in counted:
                cnt = _label_counts(mask[box[0]:box[1], box[2]:box[3]], ignore_index)
                counted[box] = len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio
            if counted[box]:
                break
            box = draw()
    return box


def _label_counts(window: np.ndarray, ignore_index: int) -> np.ndarray:
    """The pixel count of each label present in ``window``, ``ignore_index`` left out (in label order, as
    ``np.unique(window, return_counts=True)`` gives them). uint8 masks (what the pipelines pass) by one
    ``bincount`` instead of a sort: the crop loop runs it up to 11 times per sample."""
    if window.dtype == np.uint8:
        cnt = np.bincount(window.reshape(-1), minlength=256)
        if 0 <= ignore_index < 256:
            cnt[ignore_index] = 0
        return cnt[cnt > 0]
    labels, cnt = np.unique(window, return_counts=True)
    return cnt[labels != ignore_index]


# -- photometric distortion --------------------------------------------------------------------

def _convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmcv's ``convert``: ``img * alpha + beta`` clipped to 0..255 and truncated to uint8."""
    return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def apply_photometric(img: np.ndarray, brightness: float | None = None, contrast_first: bool = False,
                      contrast: float | None = None, saturation: float | None = None,
                      hue: int | None = None) -> np.ndarray:
    """mmseg ``PhotoMetricDistortion.transform`` on an (H, W, 3) uint8 RGB image with drawn values
    (``None``: the step is skipped): brightness ``+beta``, contrast ``×alpha`` first or last,
    saturation ``×alpha`` and hue ``+delta`` (mod 180, OpenCV's 0..179 scale) in HSV, each step
    clipped to uint8. Saturation and hue are two HSV round trips, as mmseg's (the round trip
    through uint8 HSV is lossy, so one trip for both would differ)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"the photometric distortion works on (H, W, 3) uint8 RGB images, not "
                         f"{img.dtype} {img.shape}")
    if brightness is not None:
        img = _convert(img, beta=brightness)
    if contrast_first and contrast is not None:
        img = _convert(img, alpha=contrast)
    if saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = _convert(hsv[:, :, 1], alpha=saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(int) + hue) % 180).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and contrast is not None:
        img = _convert(img, alpha=contrast)
    return img


@dataclass(frozen=True)
class PhotoMetric:
    """mmcv/mmseg ``PhotoMetricDistortion`` with its parameters (the defaults are mmseg's; MTP's
    change-detection configs use 10, (0.8, 1.2), (0.8, 1.2), 10). Each step with probability 1/2."""

    brightness_delta: float = 32
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """The values of one call, drawn in mmseg's order (brightness, mode, [contrast],
        saturation, hue, [contrast]); the keyword arguments of :func:`apply_photometric`."""
        def coin() -> bool:  # mmcv: np.random.randint(2)
            return bool(rng.integers(2))

        p: dict[str, Any] = {"brightness": float(rng.uniform(-self.brightness_delta, self.brightness_delta))
                             if coin() else None}
        p["contrast_first"] = coin()
        if p["contrast_first"]:
            p["contrast"] = float(rng.uniform(*self.contrast_range)) if coin() else None
        p["saturation"] = float(rng.uniform(*self.saturation_range)) if coin() else None
        p["hue"] = int(rng.integers(-self.hue_delta, self.hue_delta)) if coin() else None
        if not p["contrast_first"]:
            p["contrast"] = float(rng.uniform(*self.contrast_range)) if coin() else None
        return p

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return apply_photometric(img, **self.draw(rng))

    @classmethod
    def from_spec(cls, spec: bool | Mapping[str, Any] | None) -> PhotoMetric | None:
        """A config value: false/None → off, true → mmseg's defaults, a mapping → those parameters."""
        if not spec:
            return None
        if spec is True:
            return cls()
        kw = dict(spec)
        for key in ("contrast_range", "saturation_range"):
            if key in kw:
                kw[key] = (float(kw[key][0]), float(kw[key][1]))
        return cls(**kw)
