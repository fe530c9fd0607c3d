"""Each bad input gives one DataError naming the file and what was expected."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rsbench.data import build_dataset
from rsbench.errors import DataError


def _copy(samples, tmp_path, name="eurosat"):
    dst = tmp_path / name
    shutil.copytree(samples(name), dst)
    return dst


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"data root .*nope does not exist.*official layout"):
        build_dataset("eurosat", tmp_path / "nope", "train")


def test_wrong_layout(tmp_path):
    (tmp_path / "eurosat" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no class folders \(AnnualCrop"):
        build_dataset("eurosat", tmp_path / "eurosat", "train")


def test_unknown_class_folder(samples, tmp_path):
    root = _copy(samples, tmp_path)
    (root / "2750" / "Glacier").mkdir()
    with pytest.raises(DataError, match=r"2750/Glacier: unknown class folder 'Glacier'"):
        build_dataset("eurosat", root, "train")


def test_truncated_image_named(samples, tmp_path):
    root = _copy(samples, tmp_path)
    name = (root / "eurosat-train.txt").read_text().split()[0]
    cls = name.rsplit("_", 1)[0]
    f = root / "2750" / cls / name
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"{name}: not a readable image"):
        build_dataset("eurosat", root, "train", verify="full")


def test_corrupt_image_header_caught_up_front(samples, tmp_path):
    root = _copy(samples, tmp_path)
    name = (root / "eurosat-val.txt").read_text().split()[0]
    f = root / "2750" / name.rsplit("_", 1)[0] / name
    f.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=rf"{name}: not a readable image"):
        build_dataset("eurosat", root, "val")  # default verify='header'


def test_wrong_band_count(samples, tmp_path):
    import rasterio

    root = _copy(samples, tmp_path, "eurosat_ms")
    name = (root / "eurosat-train.txt").read_text().split()[0].replace(".jpg", ".tif")
    f = root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif" / name.rsplit("_", 1)[0] / name
    with rasterio.open(f, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint16") as dst:
        dst.write(np.zeros((3, 64, 64), np.uint16))
    with pytest.raises(DataError, match=rf"{name}: has 3 bands, expected 13"):
        build_dataset("eurosat_ms", root, "train", verify="full")
    # without the up-front check the file still fails, by name, when it is read
    ds = build_dataset("eurosat_ms", root, "train", verify="none")
    i = next(i for i, (p, _) in enumerate(ds.samples) if p == f)
    with pytest.raises(DataError, match=rf"{name}: has 3 bands, expected 13"):
        ds[i]


def test_empty_split(samples, tmp_path):
    root = _copy(samples, tmp_path)
    (root / "eurosat-train.txt").write_text("\n")
    with pytest.raises(DataError, match=r"eurosat-train.txt: split 'train' is empty"):
        build_dataset("eurosat", root, "train")


def test_split_names_missing_files(samples, tmp_path):
    root = _copy(samples, tmp_path)
    (root / "eurosat-train.txt").write_text("AnnualCrop_1.jpg\nForest_99999.jpg\n")
    with pytest.raises(DataError, match=r"1 of 2 files of split 'train' are not under .*Forest_99999"):
        build_dataset("eurosat", root, "train")


def test_missing_class_folder(samples, tmp_path):
    root = _copy(samples, tmp_path)
    shutil.rmtree(root / "2750" / "River")
    with pytest.raises(DataError, match="class folders missing: River"):
        build_dataset("eurosat", root, "train")
