"""Sample writers for the segmentation datasets (LoveDA, SpaceNet 1), in their official layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.data.samples import SAMPLES

#: Mean colour of each raw LoveDA mask value 0..7 (0 = no-data is black, as in the real images).
_LOVEDA_COLOURS = np.array([
    (0, 0, 0), (200, 200, 190), (180, 60, 50), (120, 120, 120), (40, 70, 160),
    (170, 150, 110), (40, 110, 40), (150, 170, 70),
], dtype=np.float32)


def _loveda_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) uint8 raw labels 1..7 in blocks of random shapes, with a no-data (0) strip at times."""
    m = np.full((size, size), rng.integers(1, 8), np.uint8)
    for _ in range(6):
        h, w = rng.integers(size // 8, size // 2 + 1, size=2)
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        m[y:y + h, x:x + w] = rng.integers(1, 8)
    if rng.random() < 0.5:  # no-data border, as along the edge of real tiles
        m[:, : max(1, size // 10)] = 0
    return m


def _loveda_image(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    img = _LOVEDA_COLOURS[mask] + rng.normal(0, 12, mask.shape + (3,))
    return np.clip(img, 0, 255).astype(np.uint8)


@SAMPLES.register("loveda")
def loveda(root: Path, *, seed: int = 0, per_folder: int = 2, size: int = 128) -> Path:
    """``root/{Train,Val}/{Urban,Rural}/{images_png,masks_png}/<id>.png`` and
    ``root/Test/{Urban,Rural}/images_png/<id>.png`` (real images are 1024² px; ``size`` here).

    Masks hold the raw values 0..7 (0 no-data); ids are integers, unique over the whole
    dataset, numbered split by split as in the release (Train/Rural first).
    """
    rng = np.random.default_rng(seed)
    n = 0
    for split in ("Train", "Val", "Test"):
        for scene in ("Rural", "Urban"):
            img_dir = root / split / scene / "images_png"
            img_dir.mkdir(parents=True, exist_ok=True)
            if split != "Test":
                (root / split / scene / "masks_png").mkdir(parents=True, exist_ok=True)
            for _ in range(per_folder):
                mask = _loveda_mask(rng, size)
                Image.fromarray(_loveda_image(rng, mask)).save(img_dir / f"{n}.png")
                if split != "Test":
                    Image.fromarray(mask).save(root / split / scene / "masks_png" / f"{n}.png")
                n += 1
    return root


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


@SAMPLES.register("spacenet1")
def spacenet1(root: Path, *, seed: int = 0, n_tiles: int = 8, height: int = 406, width: int = 438,
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
    col = 0
    empty_written = 0
    for i in range(1, n_tiles + 1):
        h, w = height + (i % 2), width + (i % 2)
        transform = sn1_transform(col)
        col += w
        mask = np.zeros((h, w), bool)
        rings = []
        if i % 3 != 0:
            for _ in range(int(rng.integers(2, 6))):
                bh, bw = rng.integers(max(2, h // 12), max(3, h // 4), size=2)
                y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                mask[y:y + bh, x:x + bw] = True
                rings.append(pixel_box_to_lonlat(transform, y, x, y + bh, x + bw))
        base = np.stack([np.full((h, w), v) for v in rng.integers(60, 120, size=3)])
        pixels = base + rng.normal(0, 10, (3, h, w)) + mask[None] * np.array([90, 80, 60])[:, None, None]
        write_sn1_tile(train / "3band" / f"3band_AOI_1_RIO_img{i}.tif", np.clip(pixels, 0, 255).astype(np.uint8), transform)
        geo = train / "geojson" / f"Geo_AOI_1_RIO_img{i}.geojson"
        if rings:
            geo.write_text(json.dumps(footprint_collection(rings)))
        elif empty_written == 0:
            geo.write_text(json.dumps(footprint_collection([])))
            empty_written += 1
        else:
            geo.write_bytes(b"")
            empty_written += 1
    for i in range(1, 3):  # unlabelled test tiles, as in the test tarball
        write_sn1_tile(root / "SN1_buildings" / "test" / "3band" / f"3band_AOI_1_RIO_img{i}.tif",
                       rng.integers(0, 255, (3, height, width), dtype=np.uint8), sn1_transform(i * width, height * 4))
    ids = [f"img{i}" for i in rng.permutation(np.arange(1, n_tiles + 1))]
    n_val = n_val if n_val is not None else max(1, n_tiles // 4)
    (root / "spacenet1-train.txt").write_text("\n".join(sorted(ids[n_val:], key=lambda s: int(s[3:]))) + "\n")
    (root / "spacenet1-val.txt").write_text("\n".join(sorted(ids[:n_val], key=lambda s: int(s[3:]))) + "\n")
    return root
