"""A file cut short after its header (the header check passes, the pixels do not decode): a small split is read in
full before training (``verify=auto``), so it stops the run there; in a larger split it stops the run when it is
read, mid-training, with exit 2 and the file's name, also with DataLoader workers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY, run_rsbench
from rsbench.data import build_dataset
from rsbench.data.datamodule import RSDataModule
from rsbench.errors import DataError

TIF_DIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"


def _cut(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _train_file(root: Path, folder: str, ext: str) -> Path:
    """The last file of EuroSAT's train list (not the first of its class, which the header check of the 13-band
    GeoTIFFs reads in full)."""
    name = Path((root / "eurosat-train.txt").read_text().split()[-1]).stem + ext
    return root / folder / name.rsplit("_", 1)[0] / name


@pytest.mark.parametrize("dataset, folder, ext", [("eurosat", "2750", ".jpg"), ("eurosat_ms", TIF_DIR, ".tif")])
def test_header_passes_but_auto_reads_a_small_split_in_full(samples, tmp_path, dataset, folder, ext):
    root = tmp_path / dataset
    shutil.copytree(samples(dataset), root)
    bad = _cut(_train_file(root, folder, ext))
    build_dataset(dataset, root, "train", verify="header")  # the header check alone does not see it
    dm = RSDataModule(dataset=dataset, root=root, splits={"train": "train"}, batch_size=4, num_workers=0,
                      dataset_kwargs={"verify": "auto"})
    with pytest.raises(DataError, match=rf"{bad.name}: not a readable"):
        dm.check()
    small = RSDataModule(dataset=dataset, root=root, splits={"train": "train"}, batch_size=4, num_workers=0,
                         dataset_kwargs={"verify": "auto"}, full_check_max_samples=5)
    small.check()  # a split larger than the limit: headers only, as documented


def test_truncated_png_found_before_training(samples, tmp_path):
    root = tmp_path / "loveda"
    shutil.copytree(samples("loveda"), root)
    bad = _cut(sorted((root / "Train").glob("*/images_png/*.png"))[0])
    dm = RSDataModule(dataset="loveda", root=root, splits={"train": "train"}, batch_size=2, num_workers=2,
                      dataset_kwargs={"verify": "auto"})
    with pytest.raises(DataError, match=rf"{bad.name}") as e:
        dm.check()
    assert "Caught" not in str(e.value)  # a worker's error as the original one


@pytest.mark.slow
def test_truncated_jpeg_stops_the_run_with_exit_2_naming_it_with_workers(samples, tmp_path):
    root = tmp_path / "eurosat"
    shutil.copytree(samples("eurosat"), root)
    bad = _cut(_train_file(root, "2750", ".jpg"))
    args = ["dataset=eurosat", "backbone=resnet18", f"dataset.root={root}",
            *[a for a in TINY if not a.startswith("data.num_workers")], "data.num_workers=2"]
    before = run_rsbench(args, tmp_path, check=False)  # the default: a split this small is read in full first
    out = before.stdout + before.stderr
    assert before.returncode == 2 and f"{bad}: not a readable image" in out and "Traceback" not in out
    assert "Total params" not in out  # stopped before a model was built
    assert not list((tmp_path / "results").glob("runs/**/metrics.json"))

    during = run_rsbench([*args, "data.full_check_max_samples=0"], tmp_path, check=False)  # found when read
    out = during.stdout + during.stderr
    assert during.returncode == 2, out[-3000:]
    assert f"{bad}: not a readable image" in out and "Caught DataError" not in out and "Traceback" not in out
    rec = json.loads(next((tmp_path / "results").glob("runs/**/metrics.json")).read_text())
    assert rec["status"] == "failed" and rec["error"].startswith(f"DataError: {bad}: not a readable image")
