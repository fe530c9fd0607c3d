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
        if im.format == "JPEG" and im.mode == "RGB" and bands in (3, None):
            arr = decode_rgb_jpeg(path, (im.height, im.width))
            if arr is not None:
                return arr
        im.load()
        got = image_bands(im.mode)
        if bands is not None and got != bands and (strict or bands != 3):
            raise DataError(f"{path}: has {got} band(s) (mode {im.mode}), expected {bands}")
        if bands == 3 and im.mode != "RGB":
            im = im.convert("RGB")
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_rgb_jpeg(path: Path, hw: tuple[int, int] | None = None) -> np.ndarray | None:
    """OpenCV's decode of an RGB JPEG, or None where PIL is to decide.

    mmcv's reader (``cv2.imdecode``), what the official pipelines decode with, ~25 % faster than PIL's
    on an 800² JPEG (both are libjpeg-turbo with its default integer IDCT and fancy upsampling: the
    same pixels, tested against PIL on every chroma subsampling, progressive and restart-marker files).
    EXIF orientation is ignored, as PIL and the header checks ignore it. A file that does not end
    with the JPEG end-of-image marker (truncated: OpenCV 4 fills the rest with grey and only warns)
    or that OpenCV cannot decode goes back to PIL, which reads it or raises the error naming it.
    ``hw``: the (H, W) the header gave, checked (None: not checked; the benchmark's plain decoding).
    """
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    if data.size < 4 or data[-2] != 0xFF or data[-1] != 0xD9:
        return None
    rgb = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11; before, BGR converted here
    arr = cv2.imdecode(data, (cv2.IMREAD_COLOR if rgb is None else rgb) | cv2.IMREAD_IGNORE_ORIENTATION)
    if arr is None or arr.ndim != 3 or (hw is not None and arr.shape[:2] != tuple(hw)):
        return None
    return arr if rgb is not None else cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


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


def hwc_to_chw(arr: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A C-contiguous (C, H, W) copy of an (H, W, C) array (any strides, read-only memmaps too), written
    into ``out`` (a C-contiguous (C, H, W) array of its dtype, e.g. a shared-memory tensor's) when given.

    The same values as ``np.array(arr.transpose(2, 0, 1), order="C")``; OpenCV's ``split`` straight into
    the planes instead of numpy's strided copy where it applies (about 4x faster on 800² RGB)."""
    c, h, w = arr.shape[2], arr.shape[0], arr.shape[1]
    if out is None:
        out = np.empty((c, h, w), arr.dtype)
    elif out.shape != (c, h, w) or out.dtype != arr.dtype or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {(c, h, w)} {arr.dtype} array, got {out.shape} {out.dtype}")
    if _cv_ok(arr, c) and arr.strides[2] == arr.itemsize and arr.strides[1] == c * arr.itemsize:
        import cv2

        planes = cv2.split(arr, list(out))
        if all(np.shares_memory(p, o) for p, o in zip(planes, out)):
            return out
    np.copyto(out, arr.transpose(2, 0, 1))
    return out


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
