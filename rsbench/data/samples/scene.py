"""Sample writers for the scene-classification datasets (EuroSAT RGB/MS, NWPU-RESISC45)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.data.eurosat import CLASSES as EUROSAT_CLASSES
from rsbench.data.resisc45 import CLASSES as RESISC_CLASSES
from rsbench.data.samples import SAMPLES
from rsbench.data.samples.synth import class_image


def _split(names: list[str], rng: np.random.Generator, fractions: tuple[float, ...]) -> list[list[str]]:
    perm = [names[i] for i in rng.permutation(len(names))]
    cuts = np.cumsum([round(f * len(names)) for f in fractions[:-1]])
    return [list(p) for p in np.split(np.array(perm, dtype=object), cuts)]


@SAMPLES.register("eurosat")
def eurosat(root: Path, *, seed: int = 0, per_class: int = 10, size: int = 64) -> Path:
    """``root/2750/<Class>/<Class>_<n>.jpg`` plus TorchGeo-style ``eurosat-{train,val,test}.txt``."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, cls in enumerate(EUROSAT_CLASSES):
        d = root / "2750" / cls
        d.mkdir(parents=True, exist_ok=True)
        names = []
        for n in range(1, per_class + 1):
            Image.fromarray(class_image(rng, label, 10, size)).save(d / f"{cls}_{n}.jpg", quality=95)
            names.append(f"{cls}_{n}.jpg")
        for k, part in zip(splits, _split(names, rng, (0.6, 0.2, 0.2))):
            splits[k] += part
    for k, names in splits.items():
        (root / f"eurosat-{k}.txt").write_text("\n".join(sorted(names)) + "\n")
    return root


@SAMPLES.register("eurosat_ms")
def eurosat_ms(root: Path, *, seed: int = 0, per_class: int = 5, size: int = 64) -> Path:
    """``root/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``.

    13-band uint16 GeoTIFFs (pixel-interleaved, UTM 32N, 10 m pixels) like ``EuroSATallBands.zip``;
    split files list ``.jpg`` names exactly as TorchGeo's do.
    """
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    base = root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
    for label, cls in enumerate(EUROSAT_CLASSES):
        d = base / cls
        d.mkdir(parents=True, exist_ok=True)
        names = []
        for n in range(1, per_class + 1):
            img = class_image(rng, label, 10, size, channels=13, dtype=np.uint16, scale=3000.0)
            profile = dict(driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                           crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10), interleave="pixel")
            with rasterio.open(d / f"{cls}_{n}.tif", "w", **profile) as dst:
                dst.write(img.transpose(2, 0, 1))
            names.append(f"{cls}_{n}.jpg")
        for k, part in zip(splits, _split(names, rng, (0.6, 0.2, 0.2))):
            splits[k] += part
    for k, names in splits.items():
        (root / f"eurosat-{k}.txt").write_text("\n".join(sorted(names)) + "\n")
    return root


@SAMPLES.register("resisc45")
def resisc45(root: Path, *, seed: int = 0, per_class: int = 5, size: int = 64) -> Path:
    """``root/NWPU-RESISC45/<class>/<class>_<NNN>.jpg`` (all 45 classes, small images) plus
    split files ``root/splits/{train,test}.txt`` (20/80 per class) for ``dataset.split_dir``."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for label, cls in enumerate(RESISC_CLASSES):
        d = root / "NWPU-RESISC45" / cls
        d.mkdir(parents=True, exist_ok=True)
        names = []
        for n in range(1, per_class + 1):
            Image.fromarray(class_image(rng, label, 45, size)).save(d / f"{cls}_{n:03d}.jpg", quality=95)
            names.append(f"{cls}_{n:03d}.jpg")
        for k, part in zip(splits, _split(names, rng, (0.2, 0.8))):
            splits[k] += part
    (root / "splits").mkdir(exist_ok=True)
    for k, names in splits.items():
        (root / "splits" / f"{k}.txt").write_text("\n".join(sorted(names)) + "\n")
    return root
