"""JPEG decoding through OpenCV (mmcv's reader) against PIL's decode of the same files; the (H, W, C) →
(C, H, W) copy every loader and deferred image makes, against numpy's transpose."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

import torch

from rsbench.data.augment import Normalize
from rsbench.data.io import decode_rgb_jpeg, hwc_to_chw, read_image, to_chw_tensor
from rsbench.errors import DataError


def _pil(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth fields plus texture, so chroma upsampling and the IDCT both matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (5 + 7 * c)) * np.cos(yy / (3 + 4 * c)) for c in range(3)], -1) * 90 + 128
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


PIL_VARIANTS = {
    "444": dict(quality=92, subsampling=0),
    "422": dict(quality=85, subsampling=1),
    "420": dict(quality=75, subsampling=2),
    "420_q30": dict(quality=30, subsampling=2),
    "progressive": dict(quality=90, progressive=True),
    "optimized": dict(quality=80, optimize=True),
    "restart_markers": dict(quality=85, restart_marker_rows=1),
}


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation "rotate 90": ignored by both readers
    return exif.tobytes()


PIL_VARIANTS["exif_rotated"] = dict(quality=85, exif=_exif_rotated())


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (256, 200)])
@pytest.mark.parametrize("variant", sorted(PIL_VARIANTS))
def test_opencv_jpeg_decode_is_pil_pixel_for_pixel(tmp_path, variant, size):
    path = tmp_path / f"{variant}.jpg"
    Image.fromarray(_scene(*size, seed=len(variant))).save(path, **PIL_VARIANTS[variant])
    fast = decode_rgb_jpeg(path, size)
    assert fast is not None, "the OpenCV path was not taken"
    np.testing.assert_array_equal(fast, _pil(path))
    np.testing.assert_array_equal(read_image(path), _pil(path))


@pytest.mark.parametrize("params", [[cv2.IMWRITE_JPEG_QUALITY, 90],
                                    [cv2.IMWRITE_JPEG_QUALITY, 70, cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                                    [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]])
def test_opencv_jpeg_decode_matches_pil_on_files_opencv_wrote(tmp_path, params):
    path = tmp_path / "cv.jpg"
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(_scene(120, 90, 3), cv2.COLOR_RGB2BGR), params)
    assert ok
    path.write_bytes(buf.tobytes())
    fast = decode_rgb_jpeg(path, (120, 90))
    assert fast is not None
    np.testing.assert_array_equal(fast, _pil(path))


def test_jpegs_opencv_does_not_take_are_read_by_pil(tmp_path):
    grey, cmyk, tail = tmp_path / "grey.jpg", tmp_path / "cmyk.jpg", tmp_path / "tail.jpg"
    Image.fromarray(_scene(40, 30, 1)[..., 0]).save(grey, quality=90)
    Image.fromarray(_scene(40, 30, 2)).convert("CMYK").save(cmyk, quality=90)
    Image.fromarray(_scene(40, 30, 3)).save(tail, quality=90)
    tail.write_bytes(tail.read_bytes() + b"trailing bytes after the end-of-image marker")
    assert decode_rgb_jpeg(tail, (40, 30)) is None
    np.testing.assert_array_equal(read_image(tail), _pil(tail))
    np.testing.assert_array_equal(read_image(grey, strict=False), _pil(grey))
    np.testing.assert_array_equal(read_image(cmyk), _pil(cmyk))
    with pytest.raises(DataError, match="grey.jpg: has 1 band"):
        read_image(grey)


def test_truncated_jpeg_is_an_error_naming_the_file_not_a_grey_filled_image(tmp_path):
    path = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    Image.fromarray(_scene(200, 160, 4)).save(buf, format="JPEG", quality=90)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match=r"cut.jpg: not a readable image .*truncated"):
        read_image(path)


def _layouts(tmp_path):
    rng = np.random.default_rng(5)
    for dtype in (np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_):
        for c in (1, 3, 13):
            a = (rng.random((9, 7, c)) * 200).astype(dtype)
            yield f"{np.dtype(dtype).name}x{c}", a
    base = rng.integers(0, 255, (3, 11, 8), dtype=np.uint8)
    yield "transposed view", base.transpose(1, 2, 0)
    yield "strided slice", rng.integers(0, 255, (20, 16, 4), dtype=np.uint8)[::2, 1::2, :3]
    mm = np.lib.format.open_memmap(tmp_path / "m.npy", mode="w+", dtype=np.uint8, shape=(10, 6, 3))
    mm[:] = rng.integers(0, 255, mm.shape, dtype=np.uint8)
    mm.flush()
    yield "read-only memmap slice", np.load(tmp_path / "m.npy", mmap_mode="r")[2:8]


def test_hwc_to_chw_is_numpys_transpose_copy_into_out_when_given(tmp_path):
    for name, a in _layouts(tmp_path):
        want = np.ascontiguousarray(a.transpose(2, 0, 1))
        got = hwc_to_chw(a)
        assert got.flags.c_contiguous and got.dtype == a.dtype and not np.shares_memory(got, a), name
        np.testing.assert_array_equal(got, want, err_msg=name)
        out = np.full(want.shape, 1, a.dtype)
        assert hwc_to_chw(a, out=out) is out, name
        np.testing.assert_array_equal(out, want, err_msg=name)
        t = to_chw_tensor(a)
        assert t.is_contiguous(), name
        np.testing.assert_array_equal(t.numpy(), want.astype(np.int32) if a.dtype == np.uint16 else want, err_msg=name)
    with pytest.raises(ValueError, match="C-contiguous"):
        hwc_to_chw(np.zeros((4, 5, 3), np.uint8), out=np.zeros((3, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        hwc_to_chw(np.zeros((4, 5, 3), np.uint8), out=np.zeros((3, 4, 5), np.float32))


@pytest.mark.parametrize("shared", [False, True])
def test_a_deferred_image_is_one_contiguous_copy_in_shared_memory_when_asked(shared):
    x = np.random.default_rng(2).integers(0, 255, (33, 20, 3), dtype=np.uint8)
    t = Normalize()(x, shared=shared, defer=True)
    assert t.dtype == torch.uint8 and t.is_contiguous() and t.is_shared() == shared
    np.testing.assert_array_equal(t.numpy(), x.transpose(2, 0, 1))
