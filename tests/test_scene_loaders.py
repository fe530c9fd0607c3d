"""EuroSAT (RGB, MS) and RESISC45 loaders on sample data written in the official layouts."""

from __future__ import annotations

import shutil

import pytest
import torch

from rsbench.constants import SPLITS_DIR
from rsbench.data import build_dataset
from rsbench.data.datasets.eurosat import CLASSES as EUROSAT_CLASSES, EuroSAT
from rsbench.data.datasets.resisc45 import CLASSES as RESISC_CLASSES
from rsbench.errors import DataError


def test_eurosat_rgb_reads_official_layout(samples):
    root = samples("eurosat")
    assert (root / "2750" / "AnnualCrop" / "AnnualCrop_1.jpg").is_file()
    ds = build_dataset("eurosat", root, "train")
    assert len(ds) == 60  # 10 classes × 10 images × 60 %
    s = ds[0]
    assert s["image"].shape == (3, 64, 64) and s["image"].dtype == torch.uint8
    assert s["label"].dtype == torch.long
    assert sorted(set(ds.targets)) == list(range(10))
    # the split file beside the data is the one used
    assert ds.split_path == root / "eurosat-train.txt"
    names = {p.name for p, _ in ds.samples}
    assert names == set((root / "eurosat-train.txt").read_text().split())


def test_eurosat_label_follows_class_folder(samples):
    ds = build_dataset("eurosat", samples("eurosat"), "val")
    for path, label in ds.samples:
        assert path.parent.name == EUROSAT_CLASSES[label]
        assert path.name.startswith(EUROSAT_CLASSES[label] + "_")


def test_eurosat_ms_reads_13_band_geotiffs(samples):
    root = samples("eurosat_ms")
    assert (root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif/Forest/Forest_1.tif").is_file()
    ds = build_dataset("eurosat_ms", root, "train")
    s = ds[0]
    assert s["image"].shape == (13, 64, 64)
    assert s["image"].dtype == torch.int32  # uint16 widened
    assert int(s["image"].max()) > 255  # raw reflectance × 10000, not rescaled


def test_eurosat_zenodo_layout_variant(samples, tmp_path):
    src = samples("eurosat")
    root = tmp_path / "eurosat"
    shutil.copytree(src / "2750", root / "EuroSAT_RGB")
    ds = build_dataset("eurosat", root, "train", split_dir=src)
    assert len(ds) == 60 and ds.image_dir.name == "EuroSAT_RGB"


def test_resisc45_reads_official_layout(samples):
    root = samples("resisc45")
    assert (root / "NWPU-RESISC45" / "airplane" / "airplane_001.jpg").is_file()
    ds = build_dataset("resisc45", root, "train", split_dir=root / "splits")
    assert len(ds) == 45  # 1 of 5 per class
    assert sorted(set(ds.targets)) == list(range(45))
    assert ds[0]["image"].shape == (3, 64, 64)
    val = build_dataset("resisc45", root, "val", split_dir=root / "splits")
    assert len(val) == 180 and val.split_path.name == "test.txt"


@pytest.mark.parametrize(
    "name,split,size,per_class",
    [("eurosat", "train", 16200, None), ("eurosat", "val", 5400, None), ("eurosat", "test", 5400, None),
     ("resisc45", "train", 6300, 140), ("resisc45", "test", 25200, 560)],
)
def test_repo_split_files_have_paper_sizes(name, split, size, per_class):
    names = (SPLITS_DIR / name / f"{split}.txt").read_text().split()
    assert len(names) == size == len(set(names))
    if per_class:
        for c in RESISC_CLASSES:
            assert sum(n.rsplit("_", 1)[0] == c for n in names) == per_class


def test_repo_splits_are_disjoint_and_complete():
    parts = [set((SPLITS_DIR / "eurosat" / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(set().union(*parts)) == 27000
    # stratified: each class keeps 60 % of its images in train
    train = parts[0]
    assert sum(n.startswith("Pasture_") for n in train) == 1200  # 2000 × 0.6


def test_repo_split_used_when_no_split_file_beside_data(samples, tmp_path):
    root = tmp_path / "eurosat"
    shutil.copytree(samples("eurosat") / "2750", root / "2750")
    with pytest.raises(DataError, match="incomplete"):
        # the repo's split names all 27,000 files; a partial copy must say so, not shrink silently
        EuroSAT(root=root, split="train")
