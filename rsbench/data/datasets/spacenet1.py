"""SpaceNet 1 — Building Detection v1, AOI_1_Rio (CosmiQ Works / DigitalGlobe, CC-BY-SA-4.0):
6,940 labelled WorldView-2 pan-sharpened RGB tiles of Rio de Janeiro, ~406×438 px at ~0.5 m,
with building footprints as GeoJSON polygons in lon/lat.

Layout: ``LAYOUT`` below (the train tarballs
``SN1_buildings_train_AOI_1_Rio_{3band,geojson_buildings}.tar.gz`` unpacked).
``root`` may also be ``SN1_buildings`` (holding ``train/``) or ``SN1_buildings/train`` itself
(holding ``3band/``). Tiles and GeoJSONs are paired by ``img<N>``. The test tarballs have no
labels, so SpaceNet 1 is evaluated on a held-out part of the labelled train tiles (as MTP did).

Images: 3-band uint8 GeoTIFFs in EPSG:4326, read as (3, H, W) uint8. Tile sizes differ by a
pixel (406/407 × 438/439); nothing is resampled. Masks: 0 background, 1 building (classes
``background``, ``building``), rasterised from the tile's GeoJSON with the tile's own
geotransform (``rasterio.features.rasterize``, burn 1, fill 0, ``all_touched=False``: a pixel
is building when its centre lies in a footprint). Vertices are ``[lon, lat(, z)]``; z is
dropped. GeoJSONs are assumed to be in lon/lat (CRS84/EPSG:4326); a tile in another CRS gets the
footprints reprojected. A GeoJSON with no features, or an empty (0-byte) file, gives an
all-background mask; an unreadable one is a :class:`DataError` naming the file.

Prepared masks: ``scripts/prepare_spacenet1.py`` writes the rasterised masks once as
``<train>/rsbench_masks/3band_AOI_1_RIO_img<N>.png`` (uint8 0/1; ``mask_dir=`` for elsewhere).
With ``masks='auto'`` (default) a tile's prepared mask is read when present and its GeoJSON is
rasterised otherwise; ``'prepared'`` requires them, ``'rasterize'`` ignores them.

Splits: ``train`` / ``val`` (MTP's own split is not published; rsbench ships a seeded one,
``rsbench/splits/spacenet1/{train,val}.txt``: 5,000 / 1,940 of ``img1..img6940``, seed 0, made
by ``scripts/prepare_spacenet1.py --make-repo-split``) and ``all``. Split files list one
``img<N>`` per line; ``split_dir=`` or ``<root>/spacenet1-{split}.txt`` (e.g. written by
``scripts/prepare_spacenet1.py --split-from-files``) take precedence over the shipped ones.
UNCONFIRMED: that the 6,940 tiles are numbered 1..6940 without gaps; if yours differ, the
shipped split names missing tiles and the error says how to write one from your files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rsbench.constants import SPLITS_DIR
from rsbench.data.io import read_georaster, read_json, read_lines, read_mask
from rsbench.data.registry import DATASETS
from rsbench.data.segmentation import SegmentationDataset
from rsbench.errors import DataError

CLASSES = ("background", "building")
PALETTE = ((0, 0, 0), (255, 255, 255))
LAYOUT = """\
  <root>/SN1_buildings/train/3band/3band_AOI_1_RIO_img<N>.tif      (3-band uint8 GeoTIFF tiles)
  <root>/SN1_buildings/train/geojson/Geo_AOI_1_RIO_img<N>.geojson  (building footprints, lon/lat)
i.e. SN1_buildings_train_AOI_1_Rio_3band.tar.gz and ..._geojson_buildings.tar.gz from
s3://spacenet-dataset/spacenet/SN1_buildings/tarballs/ unpacked (<root> may also be
SN1_buildings/ or SN1_buildings/train/ itself)."""
TILE_RE = re.compile(r"_img(\d+)\.tiff?$", re.IGNORECASE)
GEOJSON_RE = re.compile(r"_img(\d+)\.geojson$", re.IGNORECASE)
MASK_DIR = "rsbench_masks"


def find_train_dir(root: Path) -> Path:
    """The folder holding ``3band/`` (and ``geojson/``): root/SN1_buildings/train, root/train or root."""
    for cand in (root / "SN1_buildings" / "train", root / "train", root):
        if (cand / "3band").is_dir():
            return cand
    raise DataError(
        f"SpaceNet 1: no 3band/ folder under {root / 'SN1_buildings' / 'train'}, {root / 'train'} or {root}. "
        "Unpack SN1_buildings_train_AOI_1_Rio_3band.tar.gz and ..._geojson_buildings.tar.gz "
        "(s3://spacenet-dataset/spacenet/SN1_buildings/tarballs/) so that "
        "<root>/SN1_buildings/train/3band/3band_AOI_1_RIO_img<N>.tif exists, or point dataset.root=... there."
    )


def index_tiles(train_dir: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """``{N: 3band tif}`` and ``{N: geojson}`` of a train folder."""
    tiles = {int(m.group(1)): p for p in (train_dir / "3band").iterdir() if (m := TILE_RE.search(p.name))}
    gdir = train_dir / "geojson"
    geo = {int(m.group(1)): p for p in gdir.iterdir() if (m := GEOJSON_RE.search(p.name))} if gdir.is_dir() else {}
    return tiles, geo


def read_footprints(path: str | Path) -> list[dict[str, Any]]:
    """The polygon geometries of a GeoJSON file as 2-D GeoJSON dicts; [] for 0-byte or empty files."""
    path = Path(path)
    obj = read_json(path, "GeoJSON")
    if obj is None:
        return []
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a GeoJSON object (top level is {type(obj).__name__})")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        feats = obj.get("features")
        if feats is None:
            return []
        if not isinstance(feats, list):
            raise DataError(f"{path}: 'features' is not a list")
        geoms = [f.get("geometry") if isinstance(f, dict) else f for f in feats]
    elif kind == "Feature":
        geoms = [obj.get("geometry")]
    elif kind in ("Polygon", "MultiPolygon", "GeometryCollection"):
        geoms = [obj]
    else:
        raise DataError(f"{path}: GeoJSON type {kind!r}; expected a FeatureCollection of building polygons")
    out = []
    try:
        for g in geoms:
            out += _polygons(g)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"{path}: malformed geometry ({e})") from e
    return out


def _polygons(g: Any) -> list[dict[str, Any]]:
    if g is None:
        return []
    if not isinstance(g, dict):
        raise TypeError(f"geometry is a {type(g).__name__}, not an object")
    t = g.get("type")
    if t == "Polygon":
        return [{"type": "Polygon", "coordinates": [_ring(r) for r in g["coordinates"]]}] if g["coordinates"] else []
    if t == "MultiPolygon":
        return [{"type": "Polygon", "coordinates": [_ring(r) for r in poly]} for poly in g["coordinates"] if poly]
    if t == "GeometryCollection":
        return [p for sub in g.get("geometries", []) for p in _polygons(sub)]
    return []  # points/lines are not footprints


def _ring(ring: Any) -> list[tuple[float, float]]:
    pts = [(float(p[0]), float(p[1])) for p in ring]
    if len(pts) < 3:
        raise ValueError(f"a ring with {len(pts)} vertices")
    return pts


def rasterize_footprints(geoms: list[dict[str, Any]], shape: tuple[int, int], transform: Any,
                         crs: Any = None, *, source: str | Path = "<geometries>") -> np.ndarray:
    """(H, W) uint8 mask: 1 where a pixel centre lies in a footprint (lon/lat), 0 elsewhere."""
    from rasterio import features
    from rasterio.crs import CRS

    if not geoms:
        return np.zeros(shape, np.uint8)
    if crs is not None and CRS.from_user_input(crs) != CRS.from_epsg(4326):
        from rasterio.warp import transform_geom

        geoms = [transform_geom("EPSG:4326", crs, g) for g in geoms]
    try:
        return features.rasterize(((g, 1) for g in geoms), out_shape=shape, transform=transform, fill=0,
                                  all_touched=False, dtype="uint8")
    except (ValueError, TypeError) as e:
        raise DataError(f"{source}: footprints cannot be rasterised ({e})") from e


def read_tile(path: Path) -> tuple[np.ndarray, Any, Any]:
    """(3, H, W) uint8 pixels, the affine geotransform and the CRS of a 3band tile."""
    arr, transform, crs = read_georaster(path)
    if arr.shape[0] != 3 or arr.dtype != np.uint8:
        raise DataError(f"{path}: {arr.shape[0]} band(s) of {arr.dtype}; a 3band tile has 3 bands of uint8")
    return arr, transform, crs


def tile_mask(tile: Path, geojson: Path, shape: tuple[int, int] | None = None, transform: Any = None,
              crs: Any = None) -> np.ndarray:
    """The rasterised mask of one tile (reads the tile's geotransform when not given)."""
    if transform is None or shape is None:
        arr, transform, crs = read_tile(tile)
        shape = arr.shape[1:]
    return rasterize_footprints(read_footprints(geojson), shape, transform, crs, source=geojson)


def prepared_mask_name(tile: Path) -> str:
    return tile.with_suffix(".png").name


@DATASETS.register("spacenet1")
class SpaceNet1(SegmentationDataset):
    """SpaceNet 1 (AOI_1_Rio) buildings, 3band tiles + GeoJSON footprints (module docstring)."""

    classes = CLASSES
    palette = PALETTE
    splits = ("train", "val", "all")
    expected_layout = LAYOUT

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None,
                 split_dir: str | Path | None = None, mask_dir: str | Path | None = None,
                 masks: str = "auto", verify: str = "header") -> None:
        if masks not in ("auto", "prepared", "rasterize"):
            raise ValueError(f"masks must be auto|prepared|rasterize, got {masks!r}")
        self.check_verify(verify)
        self.root, self.split, self.transforms, self.masks = Path(root), split, transforms, masks
        self.train_dir = find_train_dir(self.root)
        self.mask_dir = Path(mask_dir) if mask_dir else self.train_dir / MASK_DIR
        tiles, geo = index_tiles(self.train_dir)
        if not tiles:
            raise DataError(f"{self.train_dir / '3band'}: no 3band_AOI_1_RIO_img<N>.tif tiles")
        ids = sorted(tiles) if split == "all" else self._split_ids(split, split_dir, tiles)
        self.ids = ids
        self.image_paths = [tiles[i] for i in ids]
        self.geojson_paths: list[Path] = []
        missing: list[tuple[Path, Path]] = []
        for i in ids:
            p = geo.get(i, self.train_dir / "geojson" / f"Geo_AOI_1_RIO_img{i}.geojson")
            self.geojson_paths.append(p)
            if i not in geo and (masks == "rasterize" or not self._prepared(tiles[i]).is_file()):
                missing.append((tiles[i], p))
        if missing and masks != "prepared":
            tile, p = missing[0]
            raise DataError(f"{p}: footprint GeoJSON not found for tile {tile} ({len(missing)} of {len(ids)} "
                            f"tiles of split {split!r} have none; unpack "
                            "SN1_buildings_train_AOI_1_Rio_geojson_buildings.tar.gz into the train folder)")
        if masks == "prepared":
            absent = [self._prepared(t) for t in self.image_paths if not self._prepared(t).is_file()]
            if absent:
                raise DataError(f"{absent[0]}: prepared mask not found ({len(absent)} of {len(ids)} missing); "
                                "run scripts/prepare_spacenet1.py or use masks=auto")
        if verify == "full":
            for k in range(len(self)):
                self._load(k)

    def _prepared(self, tile: Path) -> Path:
        return self.mask_dir / prepared_mask_name(tile)

    def split_file(self, split: str, split_dir: str | Path | None) -> Path:
        if split_dir is not None:
            return Path(split_dir) / f"{split}.txt"
        for beside in (self.root / f"spacenet1-{split}.txt", self.train_dir / f"spacenet1-{split}.txt"):
            if beside.is_file():
                return beside
        return SPLITS_DIR / "spacenet1" / f"{split}.txt"

    def _split_ids(self, split: str, split_dir: str | Path | None, tiles: dict[int, Path]) -> list[int]:
        path = self.split_file(split, split_dir)
        if not path.is_file():
            raise DataError(f"{path}: split file of SpaceNet 1 split {split!r} not found (splits: train, val, all)")
        names = read_lines(path)
        ids = []
        for n in names:
            m = re.search(r"img(\d+)", n)
            if not m:
                raise DataError(f"{path}: line {n!r} names no tile (expected img<N>)")
            ids.append(int(m.group(1)))
        if not ids:
            raise DataError(f"{path}: split {split!r} is empty")
        absent = [i for i in ids if i not in tiles]
        if absent:
            raise DataError(
                f"{path}: {len(absent)} of {len(ids)} tiles of split {split!r} are not in "
                f"{self.train_dir / '3band'} (e.g. img{', img'.join(map(str, absent[:3]))}). The data is "
                "incomplete, or its tiles are numbered differently: write a split of your tiles with "
                f"`python scripts/prepare_spacenet1.py {self.root} --split-from-files` (or pass dataset.kwargs.split_dir=...)."
            )
        return ids

    def _load(self, k: int) -> dict[str, torch.Tensor]:
        tile = self.image_paths[k]
        arr, transform, crs = read_tile(tile)
        shape = arr.shape[1:]
        prepared = self._prepared(tile)
        if self.masks != "rasterize" and prepared.is_file():
            mask = read_mask(prepared)
            if mask.shape != shape:
                raise DataError(f"{prepared}: mask is {mask.shape[0]}×{mask.shape[1]} px but its tile {tile} "
                                f"is {shape[0]}×{shape[1]} px")
            if mask.size and int(mask.max()) > 1:
                bad = np.unique(mask[mask > 1])[:10].tolist()
                raise DataError(f"{prepared}: mask values {bad} outside 0 (background) / 1 (building); "
                                "MTP's 0/255 masks must be converted (255 → 1) first")
        else:
            mask = rasterize_footprints(read_footprints(self.geojson_paths[k]), shape, transform, crs,
                                        source=self.geojson_paths[k])
        return {"image": torch.from_numpy(np.ascontiguousarray(arr)), "mask": torch.from_numpy(mask.astype(np.int64))}

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, n_tiles: int = 8, height: int = 406, width: int = 438,
                     n_val: int | None = None) -> Path:
        """``root/SN1_buildings/train/{3band,geojson}/`` (+ ``test/3band``) and split files
        ``root/spacenet1-{train,val}.txt``.

        Tiles are ``height``/``width`` or one pixel more (alternating, as the real chips vary),
        EPSG:4326 with a ≈0.5 m geotransform near Rio, laid out side by side. Footprints are
        rectangles written as lon/lat polygons with 3-D vertices. Every third tile has no
        buildings: the first such GeoJSON is an empty FeatureCollection, later ones 0-byte files.
        """
        rng = np.random.default_rng(seed)
        train = root / "SN1_buildings" / "train"
        for d in ("3band", "geojson"):
            (train / d).mkdir(parents=True, exist_ok=True)
        (root / "SN1_buildings" / "test" / "3band").mkdir(parents=True, exist_ok=True)
        col = empties = 0
        for i in range(1, n_tiles + 1):
            h, w = height + (i % 2), width + (i % 2)
            tile = train / "3band" / f"3band_AOI_1_RIO_img{i}.tif"
            rings = _write_sample_tile(rng, tile, h, w, sn1_transform(col), buildings=i % 3 != 0)
            col += w
            geo = train / "geojson" / f"Geo_AOI_1_RIO_img{i}.geojson"
            if rings or not empties:  # the first tile without buildings: an empty FeatureCollection
                geo.write_text(json.dumps(footprint_collection(rings)))
            else:  # later ones: 0-byte files
                geo.write_bytes(b"")
            empties += not rings
        for i in range(1, 3):  # unlabelled test tiles, as in the test tarball
            write_sn1_tile(root / "SN1_buildings" / "test" / "3band" / f"3band_AOI_1_RIO_img{i}.tif",
                           rng.integers(0, 255, (3, height, width), dtype=np.uint8), sn1_transform(i * width, height * 4))
        ids = [f"img{i}" for i in rng.permutation(np.arange(1, n_tiles + 1))]
        n_val = n_val if n_val is not None else max(1, n_tiles // 4)
        (root / "spacenet1-train.txt").write_text("\n".join(sorted(ids[n_val:], key=lambda s: int(s[3:]))) + "\n")
        (root / "spacenet1-val.txt").write_text("\n".join(sorted(ids[:n_val], key=lambda s: int(s[3:]))) + "\n")
        return root


# -------------------------------------------------------------------------------- sample writing

#: SpaceNet 1 tile geometry: ≈4.49e-6° pixels (≈0.5 m) near Rio (TorchGeo fixture / real tile).
SN1_PIXEL_DEG = 4.4915764205976e-06
SN1_ORIGIN = (-43.7732, -22.9215)  # lon, lat of the first tile's upper-left corner


def sn1_transform(col_off: int, row_off: int = 0):
    """The affine geotransform of a sample tile whose upper-left pixel is (row_off, col_off) in a grid."""
    from rasterio.transform import from_origin

    lon0, lat0 = SN1_ORIGIN
    return from_origin(lon0 + col_off * SN1_PIXEL_DEG, lat0 - row_off * SN1_PIXEL_DEG, SN1_PIXEL_DEG, SN1_PIXEL_DEG)


def pixel_box_to_lonlat(transform, y1: float, x1: float, y2: float, x2: float) -> list[list[float]]:
    """A closed ring ``[[lon, lat, 0.0], ...]`` around the pixel box [y1, y2) × [x1, x2) (pixel edges)."""
    ring = []
    for y, x in ((y1, x1), (y1, x2), (y2, x2), (y2, x1), (y1, x1)):
        lon, lat = transform @ (x, y)
        ring.append([lon, lat, 0.0])
    return ring


def write_sn1_tile(path: Path, pixels: np.ndarray, transform) -> None:
    """A 3band tile as distributed: 3 × uint8, pixel-interleaved, uncompressed, EPSG:4326."""
    import rasterio

    c, h, w = pixels.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype="uint8", crs="EPSG:4326",
                       transform=transform, interleave="pixel") as dst:
        dst.write(pixels)


def footprint_collection(rings: list[list[list[float]]]) -> dict:
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {"type": "Feature", "properties": {"BuildingId": k + 1},
             "geometry": {"type": "Polygon", "coordinates": [ring]}}
            for k, ring in enumerate(rings)
        ],
    }


def _write_sample_tile(rng: np.random.Generator, path: Path, h: int, w: int, transform, *,
                       buildings: bool) -> list[list[list[float]]]:
    """One sample tile with 2–5 bright rectangular buildings (or none); returns their lon/lat rings."""
    mask = np.zeros((h, w), bool)
    rings = []
    for _ in range(int(rng.integers(2, 6)) if buildings else 0):
        bh, bw = rng.integers(max(2, h // 12), max(3, h // 4), size=2)
        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
        mask[y:y + bh, x:x + bw] = True
        rings.append(pixel_box_to_lonlat(transform, y, x, y + bh, x + bw))
    base = np.stack([np.full((h, w), v) for v in rng.integers(60, 120, size=3)])
    pixels = base + rng.normal(0, 10, (3, h, w)) + mask[None] * np.array([90, 80, 60])[:, None, None]
    write_sn1_tile(path, np.clip(pixels, 0, 255).astype(np.uint8), transform)
    return rings
