"""Dense inference over images of any size: sliding window, whole image, or resize.

``model_fn`` maps a batch ``(N, C, h, w)`` to logits ``(N, K, h, w)`` at the size of its input
(a segmentation model whose logits were upsampled to the input, as mmseg's ``encode_decode``).

:func:`slide_inference` follows mmseg 1.x ``EncoderDecoder.slide_inference``: windows of
``crop_size`` every ``stride`` pixels, the last row/column of windows shifted back so that it
ends at the image border (``y1 = max(min(y1 + crop, H) - crop, 0)``), the logits of overlapping
windows summed and divided by the number of windows that cover each pixel. Every pixel is
covered at least once for any image size.

Images smaller than the crop in a dimension: mmseg passes the smaller window to the model as it
is. Backbones with a fixed input size (the ViT-RVSA of the paper) cannot take it, so by default
(``pad_small=True``) such a window is zero-padded at the bottom/right to the crop size (0 in
normalised space, as mmseg's data preprocessor pads) and its logits are cut back to the window.
``pad_small=False`` is mmseg's exact behaviour.

``window_batch`` windows go through the model together; the result is the same as one at a
time (models are in eval mode) and only memory and speed change.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    a, b = v
    return int(a), int(b)


def window_grid(size: tuple[int, int], crop_size: int | Sequence[int], stride: int | Sequence[int]
                ) -> list[tuple[int, int, int, int]]:
    """The (y1, y2, x1, x2) windows of mmseg's slide inference over an image of ``size``."""
    h_img, w_img = size
    h_crop, w_crop = _pair(crop_size)
    h_stride, w_stride = _pair(stride)
    if min(h_crop, w_crop, h_stride, w_stride) <= 0:
        raise ValueError(f"crop_size {crop_size} and stride {stride} must be positive")
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    out = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * h_stride, wi * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            out.append((y1, y2, x1, x2))
    return out


@torch.no_grad()
def slide_inference(model_fn: ModelFn, img: torch.Tensor, *, num_classes: int,
                    crop_size: int | Sequence[int], stride: int | Sequence[int],
                    window_batch: int = 1, pad_small: bool = True, pad_value: float = 0.0) -> torch.Tensor:
    """Logits ``(B, K, H, W)`` (float32) of ``img`` ``(B, C, H, W)`` by sliding-window inference."""
    b, _, h_img, w_img = img.shape
    h_crop, w_crop = _pair(crop_size)
    preds = img.new_zeros((b, num_classes, h_img, w_img), dtype=torch.float32)
    count = img.new_zeros((1, 1, h_img, w_img), dtype=torch.float32)
    windows = window_grid((h_img, w_img), (h_crop, w_crop), stride)
    for i in range(0, len(windows), max(1, int(window_batch))):
        chunk = windows[i:i + max(1, int(window_batch))]
        crops = []
        for y1, y2, x1, x2 in chunk:
            crop = img[:, :, y1:y2, x1:x2]
            if pad_small and (crop.shape[2] < h_crop or crop.shape[3] < w_crop):
                crop = F.pad(crop, (0, w_crop - crop.shape[3], 0, h_crop - crop.shape[2]), value=pad_value)
            crops.append(crop)
        if len({c.shape for c in crops}) == 1:
            logits = list(model_fn(torch.cat(crops)).split(b))
        else:  # only without pad_small: windows of different sizes go one by one
            logits = [model_fn(c) for c in crops]
        for (y1, y2, x1, x2), lg in zip(chunk, logits):
            if lg.shape[1] != num_classes:
                raise ValueError(f"model gave {lg.shape[1]} channels, expected num_classes={num_classes}")
            preds[:, :, y1:y2, x1:x2] += lg[:, :, : y2 - y1, : x2 - x1].float()
            count[:, :, y1:y2, x1:x2] += 1
    assert bool((count > 0).all()), "slide inference left pixels uncovered"
    return preds / count


@torch.no_grad()
def whole_inference(model_fn: ModelFn, img: torch.Tensor, *, size_divisor: int | None = None,
                    pad_value: float = 0.0) -> torch.Tensor:
    """Logits of the whole image at once (mmseg ``mode='whole'``), zero-padded at the bottom/right
    to a multiple of ``size_divisor`` when given, the padding cut off again."""
    h, w = img.shape[-2:]
    x = img
    if size_divisor:
        ph, pw = (-h) % size_divisor, (-w) % size_divisor
        if ph or pw:
            x = F.pad(img, (0, pw, 0, ph), value=pad_value)
    return model_fn(x)[:, :, :h, :w].float()


@torch.no_grad()
def resize_inference(model_fn: ModelFn, img: torch.Tensor, *, size: int | Sequence[int]) -> torch.Tensor:
    """Resize the image to ``size`` (bilinear), infer, and resize the logits back (bilinear):
    the validation pipeline MTP used during training (``Resize`` to the crop size)."""
    h, w = img.shape[-2:]
    x = F.interpolate(img, size=_pair(size), mode="bilinear", align_corners=False)
    logits = model_fn(x).float()
    return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)


def dense_inference(model_fn: ModelFn, img: torch.Tensor, *, num_classes: int, mode: str = "slide",
                    crop_size: int | Sequence[int] | None = None, stride: int | Sequence[int] | None = None,
                    window_batch: int = 1, pad_small: bool = True, size_divisor: int | None = None) -> torch.Tensor:
    """One entry point for the three modes (``slide`` | ``whole`` | ``resize``), as configured."""
    if mode == "slide":
        if crop_size is None or stride is None:
            raise ValueError("slide inference needs crop_size and stride")
        return slide_inference(model_fn, img, num_classes=num_classes, crop_size=crop_size, stride=stride,
                               window_batch=window_batch, pad_small=pad_small)
    if mode == "whole":
        return whole_inference(model_fn, img, size_divisor=size_divisor)
    if mode == "resize":
        if crop_size is None:
            raise ValueError("resize inference needs crop_size (the size the image is resized to)")
        return resize_inference(model_fn, img, size=crop_size)
    raise ValueError(f"inference mode must be slide, whole or resize, got {mode!r}")
