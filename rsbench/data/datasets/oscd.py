"""OSCD, the Onera Satellite Change Detection dataset (Daudt et al., IGARSS 2018): 24 Sentinel-2
L1C pairs (14 train / 10 test cities), 13 bands, urban change.

One release, one class: ``bands="rgb"`` (the paper's setting, config ``oscd``) or ``bands="all"``
(config ``oscd13``, which inherits from ``oscd.yaml``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.data.change import ChangeDataset, Header, Pair
from rsbench.data.io import image_header, raster_header, read_mask, read_raster
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import change_pair
from rsbench.errors import DataError

IMAGES = ("Onera Satellite Change Detection dataset - Images", "images", "Images")
LABELS = {
    "train": ("Onera Satellite Change Detection dataset - Train Labels", "train_labels", "Train Labels"),
    "test": ("Onera Satellite Change Detection dataset - Test Labels", "test_labels", "Test Labels"),
}
#: band files of imgs_{1,2}_rect in TorchGeo's order (B8A after B08)
BANDS13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
RGB = ("B04", "B03", "B02")
#: ``bands=`` → the band files read, in this order
BAND_SETS = {"rgb": RGB, "all": BANDS13}
SAMPLE_CITIES = (("aguasclaras", "berlin", "brasilia"), ("abudhabi", "beihai"))

LAYOUT = """\
  <root>/Onera Satellite Change Detection dataset - Images/
      train.txt, test.txt                     (ONE line each: comma-separated city names)
      <city>/imgs_1_rect/B01.tif ... B12.tif, B8A.tif   (13 single-band GeoTIFFs on one 10 m grid)
      <city>/imgs_2_rect/...
  <root>/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/cm.png   (0/255)
  <root>/Onera Satellite Change Detection dataset - Test Labels/<city>/cm/cm.png
i.e. the three zips of https://rcdaudt.github.io/oscd/ unpacked side by side (the lowercase
mirror names images/, train_labels/, test_labels/ work too)."""


@DATASETS.register("oscd")
class OSCD(ChangeDataset):
    """OSCD; splits ``train`` and ``test`` (the paper validates on test).

    Reads the official layout (``expected_layout``): cities from ``train.txt``/``test.txt`` in
    the image folder (one comma-separated line; TorchGeo's rule, the label folder's city folders,
    when they are absent), bands from ``imgs_{1,2}_rect/<band>.tif`` with rasterio (every band of
    a city on one grid; plain ``B04.tif`` names, or names ending ``_B04.tif``), the change map
    from ``cm/cm.png`` (0/255, or 0/1; ``<city>-cm.tif`` with 1/2 as a fallback).

    ``bands="rgb"`` (default, as the paper used it): B04, B03, B02 scaled to 8 bits, (3, H, W)
    uint8. **8-bit scaling** (the MTP code has none; its PNGs were made by an unpublished script):
    ``uint8 = clip(round(DN × rgb_gain / 10000 × 255), 0, 255)`` with ``rgb_gain = 2.5``, the
    usual Sentinel-2 true-colour rendering (reflectance 0–0.4 → 0–255), the same for both dates so
    no change is invented by per-image stretching. The paper cut 96² patches and resized them to
    224: rsbench's config sets ``tile: 96`` (non-overlapping, last row/column shifted to the edge)
    and the recipe resizes to 224.

    ``bands="all"``: the 13 bands as stored (uint16 DN, read as int32), (13, H, W) in TorchGeo's
    order B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, B11, B12 (``rgb_gain`` unused).
    Not a paper setting (MTP used RGB only); the model takes 13 input channels and rsbench
    normalises with the train split's per-band statistics. Classes: unchanged, changed.
    """

    expected_layout = LAYOUT
    label_rule = "either"
    splits = tuple(LABELS)

    def __init__(self, *args, bands: str = "rgb", rgb_gain: float = 2.5, **kw) -> None:
        if bands not in BAND_SETS:
            raise ValueError(f"OSCD bands must be {' or '.join(BAND_SETS)}, got {bands!r}")
        self.band_set, self.band_names = bands, BAND_SETS[bands]
        self.num_bands = len(self.band_names)
        self.rgb_bands = (0, 1, 2) if bands == "rgb" else (3, 2, 1)
        self.rgb_gain = float(rgb_gain)
        super().__init__(*args, **kw)

    def _dir(self, names: tuple[str, ...], what: str) -> Path:
        for n in names:
            if (self.root / n).is_dir():
                return self.root / n
        raise self._layout_error([self.root / n for n in names], what)

    def _cities(self, images: Path, labels: Path, split: str) -> tuple[list[str], str]:
        given = self._split_names(split)
        if given:
            return [c for line in given[0] for c in re.split(r"[,\s]+", line) if c], str(given[1])
        txt = images / f"{split}.txt"
        if txt.is_file():
            cities = [c for c in re.split(r"[,\s]+", txt.read_text()) if c]
            if not cities:
                raise DataError(f"{txt}: no city names (expected one comma-separated line)")
            return cities, str(txt)
        cities = sorted(d.name for d in labels.iterdir() if d.is_dir())  # TorchGeo's rule
        if not cities:
            raise DataError(f"{labels}: no city folders and no {txt.name} beside {images}")
        return cities, str(labels)

    def _find_pairs(self, split: str) -> list[Pair]:
        if split not in LABELS:
            raise DataError(f"OSCD has the splits train and test (the paper validates on test), not {split!r}")
        images = self._dir(IMAGES, "the image folder")
        labels = self._dir(LABELS[split], f"the {split} label folder")
        cities, source = self._cities(images, labels, split)
        pairs = []
        for city in cities:
            cdir = images / city
            if not cdir.is_dir():
                raise DataError(f"{source}: city {city!r} has no folder {cdir}")
            dates = tuple(self._band_files(cdir, d, city) for d in (1, 2))
            label = labels / city / "cm" / "cm.png"
            if not label.is_file():
                tif = labels / city / "cm" / f"{city}-cm.tif"
                if not tif.is_file():
                    raise DataError(f"{label}: change map of city {city!r} not found (nor {tif.name})")
                label = tif
            pairs.append(Pair(city, dates[0], dates[1], label))
        return pairs

    def _band_files(self, cdir: Path, date: int, city: str) -> tuple[Path, ...]:
        d = cdir / f"imgs_{date}_rect"
        if not d.is_dir():
            hint = f" ({cdir / f'imgs_{date}'} holds bands at native resolution; rsbench reads the co-registered _rect copies)" \
                if (cdir / f"imgs_{date}").is_dir() else ""
            raise DataError(f"{d}: folder not found for city {city!r}{hint}")
        out = []
        for b in self.band_names:
            f = d / f"{b}.tif"
            if not f.is_file():
                alt = sorted(d.glob(f"*_{b}.tif"))
                if not alt:
                    raise DataError(f"{f}: band {b} of city {city!r} (date {date}) is missing; "
                                    f"{type(self).__name__} needs {', '.join(self.band_names)} in {d}")
                f = alt[0]
            out.append(f)
        return tuple(out)

    def _raster_size(self, files: tuple[Path, ...]) -> tuple[int, int]:
        size = None
        for f in files:
            s, count = raster_header(f)
            if count != 1:
                raise DataError(f"{f}: has {count} bands, expected 1 (one file per band)")
            if size is None:
                size, first = s, f
            elif s != size:
                raise DataError(f"{f} is {s[1]}x{s[0]} (WxH) but {first} is {size[1]}x{size[0]}: the _rect bands "
                                "of a city must share one 10 m grid")
        assert size is not None
        return size

    def _header(self, pair: Pair) -> Header:
        s1 = self._raster_size(pair.image1)  # type: ignore[arg-type]
        s2 = self._raster_size(pair.image2)  # type: ignore[arg-type]
        if pair.label.suffix.lower() == ".tif":
            sl = self._raster_size((pair.label,))
        else:
            sl, _ = image_header(pair.label)
        return Header(s1, s2, sl, len(pair.image1), len(pair.image2))  # type: ignore[arg-type]

    def _stack(self, files: tuple[Path, ...]) -> np.ndarray:
        bands = [read_raster(f, bands=1)[0] for f in files]
        shapes = {b.shape for b in bands}
        if len(shapes) > 1:
            raise DataError(f"{files[0].parent}: band files of different sizes {sorted(shapes)}")
        return np.stack(bands, axis=-1)

    def _read_label(self, pair: Pair) -> np.ndarray:
        if pair.label.suffix.lower() == ".tif":  # <city>-cm.tif: 1 = no change, 2 = change
            raw = read_raster(pair.label, bands=1)[0]
            return np.where(raw == 1, 0, np.where(raw == 2, 255, raw)).astype(np.uint8)
        return read_mask(pair.label)

    def _read_images(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for files in (pair.image1, pair.image2):
            dn = self._stack(files)  # type: ignore[arg-type]
            if self.band_set == "rgb":
                dn = np.clip(np.round(dn.astype(np.float32) * (self.rgb_gain / 10000.0 * 255.0)), 0, 255).astype(np.uint8)
            out.append(dn)
        return out[0], out[1]

    def _cache_tag(self) -> str:
        return f"bands={self.band_set}|rgb_gain={self.rgb_gain if self.band_set == 'rgb' else None}"

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: tuple[int, int] = (100, 120),
                     cities: tuple[tuple[str, ...], tuple[str, ...]] = SAMPLE_CITIES) -> Path:
        """The three official zips unpacked: ``Onera Satellite Change Detection dataset - Images/<city>/
        imgs_{1,2}_rect/<band>.tif`` (13 single-band uint16 GeoTIFFs, UTM, 10 m), ``dates.txt``,
        ``train.txt``/``test.txt`` (one comma-separated line), and ``... - {Train,Test} Labels/<city>/cm/
        cm.png`` (0/255) plus ``<city>-cm.tif`` (1/2)."""
        import rasterio
        from rasterio.transform import Affine

        rng = np.random.default_rng(seed)
        h, w = size
        images = root / IMAGES[0]
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint16", crs="EPSG:32631",
                       transform=Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5400000.0))
        for split, names in zip(("train", "test"), cities):
            images.mkdir(parents=True, exist_ok=True)
            (images / f"{split}.txt").write_text(",".join(names))
            for city in names:
                a, b, m = change_pair(rng, h, w, channels=len(BANDS13), dtype=np.uint16, scale=3000.0)
                for date, img in ((1, a), (2, b)):
                    d = images / city / f"imgs_{date}_rect"
                    d.mkdir(parents=True, exist_ok=True)
                    for k, band in enumerate(BANDS13):
                        with rasterio.open(d / f"{band}.tif", "w", **profile) as dst:
                            dst.write(img[:, :, k], 1)
                (images / city / "dates.txt").write_text("date_1: 20150820\ndate_2: 20180318\n")
                cm = root / LABELS[split][0] / city / "cm"
                cm.mkdir(parents=True, exist_ok=True)
                Image.fromarray((m * 255).astype(np.uint8), mode="L").save(cm / "cm.png")
                with rasterio.open(cm / f"{city}-cm.tif", "w", **{**profile, "dtype": "uint8"}) as dst:
                    dst.write((m + 1).astype(np.uint8), 1)
        return root
