"""EuroSAT (Helber et al., JSTARS 2019): 27,000 Sentinel-2 patches of 64×64 px, 10 classes."""

from __future__ import annotations

from pathlib import Path

from rsbench.data.registry import DATASETS
from rsbench.data.scene import SPLITS_DIR, SceneFolderDataset

CLASSES = (
    "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial",
    "Pasture", "PermanentCrop", "Residential", "River", "SeaLake",
)
#: Images per class in the release (27,000 in all).
COUNTS = (3000, 3000, 3000, 2500, 2500, 2000, 2500, 3000, 2500, 3000)


class _EuroSATSplits:
    """Split rule shared by both releases.

    The paper's numbers use 16,200 train / 5,400 eval images: the train and val parts of the
    common 60/20/20 split (Neumann et al. 2019, TorchGeo's ``eurosat-{train,val,test}.txt``).
    When those files lie in the dataset root they are used; otherwise rsbench's own seeded
    stratified 60/20/20 split of the same sizes (``rsbench/splits/eurosat/``, made by
    ``scripts/make_splits.py``) is. ``split_dir`` points elsewhere.
    """

    def split_file(self, split: str, split_dir: str | Path | None) -> Path:
        if split_dir is not None:
            return Path(split_dir) / f"eurosat-{split}.txt"
        beside = self.root / f"eurosat-{split}.txt"
        if beside.is_file():
            return beside
        return SPLITS_DIR / "eurosat" / f"{split}.txt"


@DATASETS.register("eurosat")
class EuroSAT(_EuroSATSplits, SceneFolderDataset):
    """EuroSAT RGB: 64×64 8-bit JPEGs in one CamelCase folder per class under ``root``.

    Accepted layouts (the first that holds class folders wins):
    ``root/2750/<Class>/<Class>_<n>.jpg`` (the original ``EuroSAT.zip``),
    ``root/EuroSAT_RGB/<Class>/...`` (Zenodo ``EuroSAT_RGB.zip``) and ``root/<Class>/...``.
    Classes (ids in this order): AnnualCrop, Forest, HerbaceousVegetation, Highway, Industrial,
    Pasture, PermanentCrop, Residential, River, SeaLake. Splits: ``train``/``val``/``test``
    (see :class:`_EuroSATSplits`); the paper evaluates on ``val``.
    """

    classes = CLASSES
    extensions = (".jpg", ".jpeg")
    layouts = ("2750", "EuroSAT_RGB", "EuroSAT", ".")


@DATASETS.register("eurosat_ms")
class EuroSATMS(_EuroSATSplits, SceneFolderDataset):
    """EuroSAT MS: 64×64 13-band uint16 GeoTIFFs (Sentinel-2 L1C ×10000), one folder per class.

    Accepted layouts: ``root/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``
    (the original ``EuroSATallBands.zip``), ``root/EuroSAT_MS/EuroSAT_MS/<Class>/``,
    ``root/EuroSAT_MS/<Class>/`` (Zenodo) and ``root/<Class>/``. Band order in the files:
    B01, B02, B03, B04, B05, B06, B07, B08, B09, B10, B11, B12, B8A (B8A last, as TorchGeo
    established in torchgeo#2458). Samples give ``image`` as (13, 64, 64) int32 raw values.
    Classes and splits as :class:`EuroSAT`.
    """

    classes = CLASSES
    extensions = (".tif", ".tiff")
    layouts = (
        "ds/images/remote_sensing/otherDatasets/sentinel_2/tif",
        "EuroSAT_MS/EuroSAT_MS",
        "EuroSAT_MS",
        "EuroSATallBands",
        ".",
    )
    bands = 13
    raster = True
    band_names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")
    rgb_bands = (3, 2, 1)
