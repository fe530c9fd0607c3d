"""Image reading with errors that name the file.

Every loader reads pixels through these functions, so a truncated JPEG, a GeoTIFF with the
wrong band count or an unreadable PNG is reported as one :class:`DataError` naming the file and
what was expected, never as a traceback from deep inside PIL or GDAL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from rsbench.errors import DataError


def read_image(path: str | Path, *, mode: str = "RGB") -> np.ndarray:
    """An 8-bit image (PNG/JPEG/BMP/TIFF via PIL) as an (H, W, C) uint8 array (H, W for 'L')."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if mode and im.mode != mode:
                im = im.convert(mode)
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({e}); the file may be truncated or corrupt") from e
    return arr


def read_mask(path: str | Path) -> np.ndarray:
    """A single-channel label image as (H, W) uint8; palette/RGB label files are read as grey."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                arr = np.asarray(im)  # palette indices are the labels
            elif im.mode in ("L", "1", "I", "I;16"):
                arr = np.asarray(im.convert("L") if im.mode == "1" else im)
            else:
                arr = np.asarray(im.convert("L"))
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable label image ({e}); the file may be truncated or corrupt") from e
    return arr


def read_raster(path: str | Path, *, bands: int | None = None) -> np.ndarray:
    """A GeoTIFF (any dtype) as a (C, H, W) array through rasterio; checks the band count."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: raster file not found")
    try:
        with rasterio.open(path) as src:
            arr = src.read()
    except (RasterioIOError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable GeoTIFF ({e}); the file may be truncated or corrupt") from e
    if bands is not None and arr.shape[0] != bands:
        raise DataError(f"{path}: has {arr.shape[0]} bands, expected {bands}")
    return arr


def to_chw_tensor(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (H, W) array → (C, H, W) tensor in the array's own dtype (uint16 → int32)."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    return t


def raster_tensor(arr: np.ndarray) -> torch.Tensor:
    """(C, H, W) raster → tensor; uint16 is widened to int32 because torch lacks full uint16 ops."""
    if arr.dtype == np.uint16:
        arr = arr.astype(np.int32)
    return torch.from_numpy(np.ascontiguousarray(arr))


def read_lines(path: str | Path) -> list[str]:
    """Non-empty, stripped lines of a text file (split lists)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e})") from e
    return [ln.strip() for ln in text.splitlines() if ln.strip()]
