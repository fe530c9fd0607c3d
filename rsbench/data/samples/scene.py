"""Sample writers for the scene-classification datasets (EuroSAT RGB/MS, NWPU-RESISC45)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

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


def _write_scene(base: Path, classes: tuple[str, ...], per_class: int, rng: np.random.Generator,
                 fractions: dict[str, float], file_name: Callable[[str, int], str],
                 save: Callable[[Path, int], None], listed_name: Callable[[str], str] = lambda n: n) -> dict[str, list[str]]:
    """One folder per class under ``base``; returns a per-class stratified split of the names."""
    splits: dict[str, list[str]] = {k: [] for k in fractions}
    for label, cls in enumerate(classes):
        (base / cls).mkdir(parents=True, exist_ok=True)
        names = []
        for n in range(1, per_class + 1):
            name = file_name(cls, n)
            save(base / cls / name, label)
            names.append(listed_name(name))
        for k, part in zip(splits, _split(names, rng, tuple(fractions.values()))):
            splits[k] += part
    return splits


def _write_lists(folder: Path, prefix: str, splits: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, names in splits.items():
        (folder / f"{prefix}{k}.txt").write_text("\n".join(sorted(names)) + "\n")


EUROSAT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


@SAMPLES.register("eurosat")
def eurosat(root: Path, *, seed: int = 0, per_class: int = 10, size: int = 64) -> Path:
    """``root/2750/<Class>/<Class>_<n>.jpg`` plus TorchGeo-style ``eurosat-{train,val,test}.txt``."""
    rng = np.random.default_rng(seed)

    def save(path: Path, label: int) -> None:
        Image.fromarray(class_image(rng, label, 10, size)).save(path, quality=95)

    splits = _write_scene(root / "2750", EUROSAT_CLASSES, per_class, rng, EUROSAT_FRACTIONS,
                          lambda c, n: f"{c}_{n}.jpg", save)
    _write_lists(root, "eurosat-", splits)
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
    profile = dict(driver="GTiff", width=size, height=size, count=13, dtype="uint16",
                   crs="EPSG:32632", transform=from_origin(500000, 5000000, 10, 10), interleave="pixel")

    def save(path: Path, label: int) -> None:
        img = class_image(rng, label, 10, size, channels=13, dtype=np.uint16, scale=3000.0)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(img.transpose(2, 0, 1))

    splits = _write_scene(root / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif", EUROSAT_CLASSES,
                          per_class, rng, EUROSAT_FRACTIONS, lambda c, n: f"{c}_{n}.tif", save,
                          listed_name=lambda n: n.replace(".tif", ".jpg"))
    _write_lists(root, "eurosat-", splits)
    return root


@SAMPLES.register("resisc45")
def resisc45(root: Path, *, seed: int = 0, per_class: int = 5, size: int = 64) -> Path:
    """``root/NWPU-RESISC45/<class>/<class>_<NNN>.jpg`` (all 45 classes, small images) plus
    split files ``root/splits/{train,test}.txt`` (20/80 per class) for ``dataset.split_dir``."""
    rng = np.random.default_rng(seed)

    def save(path: Path, label: int) -> None:
        Image.fromarray(class_image(rng, label, 45, size)).save(path, quality=95)

    splits = _write_scene(root / "NWPU-RESISC45", RESISC_CLASSES, per_class, rng, {"train": 0.2, "test": 0.8},
                          lambda c, n: f"{c}_{n:03d}.jpg", save)
    _write_lists(root / "splits", "", splits)
    return root
