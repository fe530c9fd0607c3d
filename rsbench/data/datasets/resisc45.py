"""NWPU-RESISC45 (Cheng et al., Proc. IEEE 2017): 31,500 RGB scenes of 256×256 px, 45 classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsbench.constants import SPLITS_DIR
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import class_image
from rsbench.data.scene import SceneFolderDataset, write_class_folders, write_split_lists

CLASSES = (
    "airplane", "airport", "baseball_diamond", "basketball_court", "beach", "bridge", "chaparral",
    "church", "circular_farmland", "cloud", "commercial_area", "dense_residential", "desert",
    "forest", "freeway", "golf_course", "ground_track_field", "harbor", "industrial_area",
    "intersection", "island", "lake", "meadow", "medium_residential", "mobile_home_park",
    "mountain", "overpass", "palace", "parking_lot", "railway", "railway_station",
    "rectangular_farmland", "river", "roundabout", "runway", "sea_ice", "ship", "snowberg",
    "sparse_residential", "stadium", "storage_tank", "tennis_court", "terrace",
    "thermal_power_station", "wetland",
)
PER_CLASS = 700

LAYOUT = """\
  <root>/NWPU-RESISC45/<class>/<class>_<NNN>.jpg   (or <root>/<class>/...; 45 lowercase class
      folders such as airplane/, baseball_diamond/ of 700 256x256 JPEGs each, NNN = 001..700)
as unpacked from NWPU-RESISC45.rar."""


@DATASETS.register("resisc45")
class RESISC45(SceneFolderDataset):
    """NWPU-RESISC45: ``root/NWPU-RESISC45/<class>/<class>_<NNN>.jpg`` (or ``root/<class>/...``).

    45 lowercase snake_case class folders of 700 JPEGs each, ``NNN`` zero-padded 001..700;
    class ids are the alphabetical order of the folder names (airplane=0 … wetland=44).
    Splits follow the paper's protocol, 20% train / 80% test (6,300 / 25,200), stratified and
    seeded: ``rsbench/splits/resisc45/{train,test}.txt`` (``scripts/make_splits.py``); ``val``
    is the same list as ``test``. ``split_dir`` may point at other ``{split}.txt`` files.
    TorchGeo's ``resisc45-*.txt`` (a 60/20/20 split) are deliberately not picked up.
    """

    classes = CLASSES
    expected_layout = LAYOUT
    extensions = (".jpg", ".jpeg")
    layouts = ("NWPU-RESISC45", ".")

    def split_file(self, split: str, split_dir: str | Path | None) -> Path:
        base = Path(split_dir) if split_dir is not None else SPLITS_DIR / "resisc45"
        name = "test" if split == "val" else split
        return base / f"{name}.txt"

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, per_class: int = 5, size: int = 64) -> Path:
        """``root/NWPU-RESISC45/<class>/<class>_<NNN>.jpg`` (all 45 classes, small images) plus
        split files ``root/splits/{train,test}.txt`` (20/80 per class) for ``dataset.kwargs.split_dir``."""
        rng = np.random.default_rng(seed)

        def save(path: Path, label: int) -> None:
            Image.fromarray(class_image(rng, label, 45, size)).save(path, quality=95)

        splits = write_class_folders(root / "NWPU-RESISC45", CLASSES, per_class, rng, {"train": 0.2, "test": 0.8},
                                     lambda c, n: f"{c}_{n:03d}.jpg", save)
        write_split_lists(root / "splits", "", splits)
        return root

    @classmethod
    def sample_loader_kwargs(cls, root: Path) -> dict[str, Any]:
        """The sample's own split lists: the shipped split names all 31,500 files of the release."""
        return {"split_dir": Path(root) / "splits"}
