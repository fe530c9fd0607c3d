"""Every read of a dataset file, with errors that name the file.

Loaders read pixels, rasters, label maps, GeoJSON and split lists only through these functions,
so a truncated JPEG, a GeoTIFF with the wrong band count or an unreadable PNG is reported as one
:class:`DataError` naming the file and what is wrong, never as a traceback from deep inside PIL
or GDAL. All of them turn a failed read into an error in one place, :func:`_open_error`:
``<file>: <kind> not found`` or ``<file>: not a readable <kind> (<reason>); the file may be
truncated or corrupt``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from rsbench.errors import DataError

#: What a failed open/decode raises: PIL's UnidentifiedImageError and rasterio's RasterioIOError
#: are OSErrors; truncated or malformed data gives ValueError/SyntaxError (JSON and Unicode errors
#: are ValueErrors).
_READ_ERRORS = (OSError, ValueError, SyntaxError)


def _open_error(path: Path, exc: BaseException, kind: str) -> DataError:
    """The one error text for a file that cannot be read."""
    if isinstance(exc, FileNotFoundError):
        return DataError(f"{path}: {kind} not found")
    return DataError(f"{path}: not a readable {kind} ({exc}); the file may be truncated or corrupt")


@contextmanager
def _reading(path: Path, kind: str) -> Iterator[None]:
    try:
        yield
    except _READ_ERRORS as e:
        raise _open_error(path, e, kind) from (None if isinstance(e, FileNotFoundError) else e)


# ------------------------------------------------------------------------------------------ images


def image_bands(mode: str) -> int:
    """Bands rsbench reads from a PIL image of ``mode``: RGBA and palette images count as RGB."""
    return 3 if mode in ("RGB", "RGBA", "P", "PA", "YCbCr", "CMYK", "RGBX") else 1


def image_header(path: str | Path, *, verify: bool = False) -> tuple[tuple[int, int], int]:
    """((H, W), bands) from an image header, without decoding the pixels (``verify``: PIL's
    structural check too, e.g. PNG chunk checksums)."""
    path = Path(path)
    with _reading(path, "image"), Image.open(path) as im:
        (w, h), bands = im.size, image_bands(im.mode)
        if verify:
            im.verify()
    return (h, w), bands


def read_image(path: str | Path, *, bands: int | None = 3, strict: bool = True) -> np.ndarray:
    """An 8-bit image (PNG/JPEG/BMP/TIFF via PIL) as an (H, W, C) uint8 array.

    ``bands=3``: RGB as stored, RGBA without alpha, palette expanded. A 1-band file where 3 are
    expected is an error (``strict``; in change detection it means the two dates are different
    products), or is repeated to grey RGB (``strict=False``, PIL's ``convert("RGB")`` as TorchGeo's
    and mmcv's readers do). ``bands=None``: as stored.
    """
    path = Path(path)
    with _reading(path, "image"), Image.open(path) as im:
        im.load()
        got = image_bands(im.mode)
        if bands is not None and got != bands and (strict or bands != 3):
            raise DataError(f"{path}: has {got} band(s) (mode {im.mode}), expected {bands}")
        if bands == 3 and im.mode != "RGB":
            im = im.convert("RGB")
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel label image as (H, W) values; palette files give their indices, RGB is read as grey."""
    path = Path(path)
    with _reading(path, "label image"), Image.open(path) as im:
        im.load()
        if im.mode == "P" or im.mode in ("L", "I", "I;16"):
            arr = np.asarray(im)  # palette indices are the labels
        else:
            arr = np.asarray(im.convert("L"))
    return arr


# ------------------------------------------------------------------------------------------ rasters


def raster_header(path: str | Path) -> tuple[tuple[int, int], int]:
    """((H, W), band count) of a GeoTIFF, without reading the pixels."""
    import rasterio

    path = Path(path)
    with _reading(path, "GeoTIFF"), rasterio.open(path) as src:
        return (src.height, src.width), src.count


def read_georaster(path: str | Path, *, bands: int | None = None) -> tuple[np.ndarray, Any, Any]:
    """A GeoTIFF (any dtype) as ((C, H, W) array, affine geotransform, CRS); checks the band count."""
    import rasterio

    path = Path(path)
    if not path.is_file():  # GDAL's own message for a missing file is not a FileNotFoundError
        raise _open_error(path, FileNotFoundError(path), "GeoTIFF")
    with _reading(path, "GeoTIFF"), rasterio.open(path) as src:
        arr, transform, crs = src.read(), src.transform, src.crs
    if bands is not None and arr.shape[0] != bands:
        raise DataError(f"{path}: has {arr.shape[0]} bands, expected {bands}")
    return arr, transform, crs


def read_raster(path: str | Path, *, bands: int | None = None) -> np.ndarray:
    """A GeoTIFF (any dtype) as a (C, H, W) array through rasterio; checks the band count."""
    return read_georaster(path, bands=bands)[0]


# ------------------------------------------------------------------------------------------ text


def read_json(path: str | Path, kind: str = "JSON file") -> Any:
    """A JSON document, or ``None`` for an empty (0-byte or blank) file."""
    path = Path(path)
    with _reading(path, kind):
        text = path.read_bytes()
        return json.loads(text) if text.strip() else None


def read_lines(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a text file (split lists)."""
    path = Path(path)
    with _reading(path, "split file"):
        text = path.read_text()
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


# ------------------------------------------------------------------------------------------ tensors


#: dtypes OpenCV's split/merge copy (the fast paths of :func:`hwc_to_chw` / :func:`chw_to_hwc`); OpenCV's channel limit
CV_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64))
_CV_MAX_CHANNELS = 512


def _cv_ok(arr: np.ndarray, channels: int) -> bool:
    return arr.ndim == 3 and arr.dtype in CV_DTYPES and 1 < channels <= _CV_MAX_CHANNELS and arr.size > 0


def hwc_to_chw(arr: np.ndarray) -> np.ndarray:
    """A new C-contiguous (C, H, W) copy of an (H, W, C) array (any strides, read-only memmaps too).

    The same values as ``np.array(arr.transpose(2, 0, 1), order="C")``; OpenCV's ``split`` instead of
    numpy's strided copy where it applies (about 4x faster on 800² RGB)."""
    if _cv_ok(arr, arr.shape[2]) and arr.strides[2] == arr.itemsize and arr.strides[1] == arr.shape[2] * arr.itemsize:
        import cv2

        return np.stack(cv2.split(arr))
    return np.array(arr.transpose(2, 0, 1), copy=True, order="C")


def chw_to_hwc(arr: np.ndarray) -> np.ndarray:
    """A C-contiguous (H, W, C) array of a (C, H, W) one: the same values as
    ``np.ascontiguousarray(arr.transpose(1, 2, 0))``; OpenCV's ``merge`` of the contiguous planes where it
    applies (numpy's strided copy of 800² RGB takes milliseconds)."""
    if _cv_ok(arr, arr.shape[0]) and arr.flags.c_contiguous:
        import cv2

        out = cv2.merge(list(arr))
        return out if out.ndim == 3 else out[:, :, None]
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def to_chw_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) array (possibly a read-only memmap slice) → (C, H, W) tensor (a copy) in the
    array's own dtype, uint16 widened to int32 (torch lacks full uint16 ops)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    chw = hwc_to_chw(arr)
    return torch.from_numpy(chw.astype(np.int32) if chw.dtype == np.uint16 else chw)


def raster_tensor(arr: np.ndarray) -> torch.Tensor:
    """(C, H, W) raster → tensor (a copy); uint16 is widened to int32."""
    arr = np.array(arr, copy=True, order="C")
    return torch.from_numpy(arr.astype(np.int32) if arr.dtype == np.uint16 else arr)
