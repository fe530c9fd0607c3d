"""OSCD, the Onera Satellite Change Detection dataset (Daudt et al., IGARSS 2018): 24 Sentinel-2
L1C pairs (14 train / 10 test cities), 13 bands, urban change."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Header, Pair, pil_header
from rsbench.data.io import read_mask, read_raster
from rsbench.data.registry import DATASETS
from rsbench.errors import DataError

IMAGES = ("Onera Satellite Change Detection dataset - Images", "images", "Images")
LABELS = {
    "train": ("Onera Satellite Change Detection dataset - Train Labels", "train_labels", "Train Labels"),
    "test": ("Onera Satellite Change Detection dataset - Test Labels", "test_labels", "Test Labels"),
}
#: band files of imgs_{1,2}_rect in TorchGeo's order (B8A after B08)
BANDS13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
RGB = ("B04", "B03", "B02")

LAYOUT = """\
  <root>/Onera Satellite Change Detection dataset - Images/
      train.txt, test.txt                     (ONE line each: comma-separated city names)
      <city>/imgs_1_rect/B01.tif ... B12.tif, B8A.tif   (13 single-band GeoTIFFs on one 10 m grid)
      <city>/imgs_2_rect/...
  <root>/Onera Satellite Change Detection dataset - Train Labels/<city>/cm/cm.png   (0/255)
  <root>/Onera Satellite Change Detection dataset - Test Labels/<city>/cm/cm.png
i.e. the three zips of https://rcdaudt.github.io/oscd/ unpacked side by side (the lowercase
mirror names images/, train_labels/, test_labels/ work too)."""


class _OSCDBase(ChangeDataset):
    """Shared reading of the official OSCD layout (see :class:`OSCD`)."""

    expected_layout = LAYOUT
    label_rule = "either"
    band_names: tuple[str, ...] = BANDS13

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
        import rasterio
        from rasterio.errors import RasterioIOError

        size = None
        for f in files:
            try:
                with rasterio.open(f) as src:
                    s, count = (src.height, src.width), src.count
            except (RasterioIOError, OSError) as e:
                raise DataError(f"{f}: not a readable GeoTIFF ({e})") from e
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
            sl, _ = pil_header(pair.label)
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


@DATASETS.register("oscd")
class OSCD(_OSCDBase):
    """OSCD as the paper used it: RGB (B04, B03, B02) scaled to 8 bits; splits ``train`` and ``test``.

    Reads the official layout (``expected_layout``): cities from ``train.txt``/``test.txt`` in
    the image folder (one comma-separated line; TorchGeo's rule, the label folder's city folders,
    when they are absent), bands from ``imgs_{1,2}_rect/<band>.tif`` with rasterio (every band of
    a city on one grid; plain ``B04.tif`` names, or names ending ``_B04.tif``), the change map
    from ``cm/cm.png`` (0/255, or 0/1; ``<city>-cm.tif`` with 1/2 as a fallback).

    **8-bit scaling** (the MTP code has none; its PNGs were made by an unpublished script):
    ``uint8 = clip(round(DN × rgb_gain / 10000 × 255), 0, 255)`` with ``rgb_gain = 2.5``, the
    usual Sentinel-2 true-colour rendering (reflectance 0–0.4 → 0–255), the same for both dates so
    no change is invented by per-image stretching. The paper cut 96² patches and resized them to
    224: rsbench's config sets ``tile: 96`` (non-overlapping, last row/column shifted to the edge)
    and the recipe resizes to 224. Classes: unchanged, changed.
    """

    band_names = RGB
    bands = 3

    def __init__(self, *args, rgb_gain: float = 2.5, **kw) -> None:
        self.rgb_gain = float(rgb_gain)
        super().__init__(*args, **kw)

    def _read_images(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        out = []
        for files in (pair.image1, pair.image2):
            dn = self._stack(files).astype(np.float32)  # type: ignore[arg-type]
            out.append(np.clip(np.round(dn * (self.rgb_gain / 10000.0 * 255.0)), 0, 255).astype(np.uint8))
        return out[0], out[1]

    def _cache_files(self, i: int) -> list[Path]:
        self.pairs[i].extra["rgb_gain"] = self.rgb_gain
        return super()._cache_files(i)


@DATASETS.register("oscd13")
class OSCD13(_OSCDBase):
    """OSCD with all 13 Sentinel-2 bands as stored (uint16 DN, read as int32); splits ``train``/``test``.

    Same files and rules as :class:`OSCD`; the bands come in the order B01, B02, B03, B04, B05,
    B06, B07, B08, B8A, B09, B10, B11, B12 (TorchGeo's). Not a paper setting (MTP used RGB only);
    the model takes 13 input channels and rsbench normalises with the train split's per-band
    statistics. Classes: unchanged, changed.
    """

    band_names = BANDS13
    bands = 13
    rgb_bands = (3, 2, 1)

    def _read_images(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        return self._stack(pair.image1), self._stack(pair.image2)  # type: ignore[arg-type]
