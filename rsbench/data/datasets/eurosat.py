"""EuroSAT (Helber et al., JSTARS 2019): 27,000 Sentinel-2 patches of 64×64 px, 10 classes.

Two releases, two classes: **EuroSAT RGB** (``EuroSAT.zip`` / ``EuroSAT_RGB.zip``: 8-bit JPEGs
rendered by the authors) and **EuroSAT MS** (``EuroSATallBands.zip`` / ``EuroSAT_MS.zip``: the
13 Sentinel-2 L1C bands as uint16 GeoTIFFs). A ``bands=`` argument on one class (TorchGeo's
``EuroSAT(bands=...)``) would not be honest here: TorchGeo reads only the MS release and selects
bands from it, whereas the RGB release is a different product (its own files, layout and an
8-bit rendering that is not B04/B03/B02 of the MS files), which is what the paper's RGB numbers
use. The classes share the classes, the split rule and the config (``eurosat_ms.yaml`` inherits
from ``eurosat.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.constants import SPLITS_DIR
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import class_image
from rsbench.data.scene import SceneFolderDataset, write_class_folders, write_split_lists

CLASSES = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)
#: Images per class in the release (27,000 in all).
COUNTS = (3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000)
SAMPLE_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
MS_DIR = "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"

LAYOUT_RGB = """\
  <root>/2750/<Class>/<Class>_<n>.jpg   (the original EuroSAT.zip; 64x64 RGB JPEG)
  or <root>/EuroSAT_RGB/<Class>/...     (Zenodo EuroSAT_RGB.zip) or <root>/<Class>/...
  10 class folders: AnnualCrop, Forest, HerbaceousVegetation, Highway, Industrial, Pasture,
  PermanentCrop, Residential, River, SeaLake; optional eurosat-{train,val,test}.txt beside them."""

LAYOUT_MS = f"""\
  <root>/{MS_DIR}/<Class>/<Class>_<n>.tif
      (the original EuroSATallBands.zip; 64x64, 13 bands uint16)
  or <root>/EuroSAT_MS/<Class>/... (Zenodo EuroSAT_MS.zip) or <root>/<Class>/...
  class folders and optional split files as for EuroSAT RGB."""


class EuroSATBase(SceneFolderDataset):
    """Classes and split rule shared by both releases.

    The paper's numbers use 16,200 train / 5,400 eval images: the train and val parts of the
    common 60/20/20 split (Neumann et al. 2019, TorchGeo's ``eurosat-{train,val,test}.txt``).
    When those files lie in the dataset root they are used; otherwise rsbench's own seeded
    stratified 60/20/20 split of the same sizes (``rsbench/splits/eurosat/``, made by
    ``scripts/make_splits.py``) is. ``split_dir`` points elsewhere.
    """

    classes = CLASSES

    def split_file(self, split: str, split_dir: str | Path | None) -> Path:
        if split_dir is not None:
            return Path(split_dir) / f"eurosat-{split}.txt"
        beside = self.root / f"eurosat-{split}.txt"
        if beside.is_file():
            return beside
        return SPLITS_DIR / "eurosat" / f"{split}.txt"


@DATASETS.register("eurosat")
class EuroSAT(EuroSATBase):
    """EuroSAT RGB: 64×64 8-bit JPEGs in one CamelCase folder per class under ``root``.

    Accepted layouts (the first that holds class folders wins): ``expected_layout``. Classes (ids
    in this order): AnnualCrop, Forest, HerbaceousVegetation, Highway, Industrial, Pasture,
    PermanentCrop, Residential, River, SeaLake. Splits: ``train``/``val``/``test`` (see
    :class:`EuroSATBase`); the paper evaluates on ``val``.
    """

    expected_layout = LAYOUT_RGB
    extensions = (".jpg", ".jpeg")
    layouts = ("2750", "EuroSAT_RGB", "EuroSAT", ".")

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, per_class: int = 10, size: int = 64) -> Path:
        """``root/2750/<Class>/<Class>_<n>.jpg`` plus TorchGeo-style ``eurosat-{train,val,test}.txt``."""
        rng = np.random.default_rng(seed)

        def save(path: Path, label: int) -> None:
            Image.fromarray(class_image(rng, label, 10, size)).save(path, quality=95)

        splits = write_class_folders(root / "2750", CLASSES, per_class, rng, SAMPLE_FRACTIONS,
                                     lambda c, n: f"{c}_{n}.jpg", save)
        write_split_lists(root, "eurosat-", splits)
        return root


@DATASETS.register("eurosat_ms")
class EuroSATMS(EuroSATBase):
    """EuroSAT MS: 64×64 13-band uint16 GeoTIFFs (Sentinel-2 L1C ×10000), one folder per class.

    Accepted layouts: ``expected_layout`` (also ``root/EuroSAT_MS/EuroSAT_MS/<Class>/`` and
    ``root/EuroSATallBands/<Class>/``). Band order in the files: B01, B02, B03, B04, B05, B06,
    B07, B08, B09, B10, B11, B12, B8A (B8A last, as TorchGeo established in torchgeo#2458).
    Samples give ``image`` as (13, 64, 64) int32 raw values. Classes and splits as :class:`EuroSAT`.
    """

    expected_layout = LAYOUT_MS
    extensions = (".tif", ".tiff")
    layouts = (MS_DIR, "EuroSAT_MS/EuroSAT_MS", "EuroSAT_MS", "EuroSATallBands", ".")
    num_bands = 13
    raster = True
    band_names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
    rgb_bands = (3, 2, 1)

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, per_class: int = 5, size: int = 64) -> Path:
        """``root/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``.

        13-band uint16 GeoTIFFs (pixel-interleaved, UTM 32N, 10 m pixels) like ``EuroSATallBands.zip``;
        split files list ``.jpg`` names exactly as TorchGeo's do.
        """
        import rasterio
        from rasterio.transform import from_origin

        rng = np.random.default_rng(seed)
        profile = dict(driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                       crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10), interleave="pixel")

        def save(path: Path, label: int) -> None:
            img = class_image(rng, label, 10, size, channels=13, dtype=np.uint16, scale=3000.0)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(img.transpose(2, 0, 1))

        splits = write_class_folders(root / MS_DIR, CLASSES, per_class, rng, SAMPLE_FRACTIONS,
                                     lambda c, n: f"{c}_{n}.tif", save, listed_name=lambda n: n.replace(".tif", ".jpg"))
        write_split_lists(root, "eurosat-", splits)
        return root
