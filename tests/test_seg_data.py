"""Segmentation data: LoveDA and SpaceNet 1 loaders, footprint rasterisation, bad input, transforms."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsbench.data import build_dataset
from rsbench.data.datasets.spacenet1 import footprint_collection, pixel_box_to_lonlat, sn1_transform, write_sn1_tile
from rsbench.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def _copy(samples, name: str, tmp_path: Path, **kw) -> Path:
    dst = tmp_path / name
    shutil.copytree(samples(name, **kw), dst)
    return dst


# -- LoveDA -----------------------------------------------------------------------------------

def test_loveda_splits_scenes_and_label_mapping(samples):
    root = samples("loveda", size=48)
    n = {s: len(build_dataset("loveda", root, s)) for s in ("train", "val", "trainval", "test")}
    assert n == {"train": 4, "val": 4, "trainval": 8, "test": 4}
    assert len(build_dataset("loveda", root, "train", scene="urban")) == 2
    ds = build_dataset("loveda", root, "train", scene="rural")
    assert ds.classes[0] == "background" and len(ds.classes) == 7
    s = ds[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 48, 48)
    assert s["mask"].dtype == torch.long and s["mask"].shape == (48, 48)
    raw = np.asarray(Image.open(ds.mask_paths[0]))
    # reduce_zero_label: 0 → 255, v → v - 1
    expect = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    assert np.array_equal(s["mask"].numpy(), expect)
    assert set(np.unique(s["mask"].numpy())) <= set(range(7)) | {255}
    test = build_dataset("loveda", root, "test")
    assert "mask" not in test[0] and all(p.parent.name == "images_png" for p in test.image_paths)


def test_loveda_accepts_lowercase_and_nested_layouts(samples, tmp_path):
    src = samples("loveda", size=32)
    nested = tmp_path / "data" / "LoveDA"
    shutil.copytree(src, nested)
    for p in sorted(nested.rglob("*"), key=lambda p: -len(p.parts)):
        if p.is_dir() and p.name in ("Train", "Urban", "Rural"):
            p.rename(p.with_name(p.name.lower()))
    ds = build_dataset("loveda", tmp_path / "data", "trainval")
    assert len(ds) == 8


def test_loveda_bad_input(samples, tmp_path):
    root = _copy(samples, "loveda", tmp_path, size=32)
    masks = root / "Train" / "Urban" / "masks_png"
    first = sorted(masks.iterdir())[0]
    # values outside 0..7
    bad = np.asarray(Image.open(first)).copy()
    bad[0, 0] = 9
    Image.fromarray(bad).save(first)
    ds = build_dataset("loveda", root, "train", scene="urban")
    with pytest.raises(DataError, match=rf"{first.name}.*outside LoveDA's 0..7"):
        ds[[p.name for p in ds.image_paths].index(first.name)]
    # a mask whose size differs from its image: found up front
    Image.fromarray(np.ones((16, 32), np.uint8)).save(first)
    with pytest.raises(DataError, match=rf"{first.name}: mask is 16×32 px but its image"):
        build_dataset("loveda", root, "train", scene="urban")
    ds = build_dataset("loveda", root, "train", scene="urban", verify="none")
    with pytest.raises(DataError, match=rf"{first.name}: mask is 16×32"):
        ds[[p.name for p in ds.image_paths].index(first.name)]
    # a missing mask
    first.unlink()
    with pytest.raises(DataError, match=rf"have no mask.*{first.name}"):
        build_dataset("loveda", root, "train", scene="urban")
    # a truncated image
    img = sorted((root / "Val" / "Rural" / "images_png").iterdir())[0]
    img.write_bytes(img.read_bytes()[:40])
    with pytest.raises(DataError, match=img.name):
        build_dataset("loveda", root, "val", scene="rural")
    with pytest.raises(DataError, match="no Train/, Val/ or Test/"):
        build_dataset("loveda", tmp_path, "train")


# -- SpaceNet 1 -------------------------------------------------------------------------------

def _one_tile(root: Path, n: int, geo: dict | bytes | str, h: int = 60, w: int = 70, transform=None) -> Path:
    train = root / "SN1_buildings" / "train"
    (train / "3band").mkdir(parents=True, exist_ok=True)
    (train / "geojson").mkdir(parents=True, exist_ok=True)
    transform = transform or sn1_transform(0)
    write_sn1_tile(train / "3band" / f"3band_AOI_1_RIO_img{n}.tif", np.full((3, h, w), 100, np.uint8), transform)
    g = train / "geojson" / f"Geo_AOI_1_RIO_img{n}.geojson"
    if isinstance(geo, dict):
        g.write_text(json.dumps(geo))
    elif isinstance(geo, bytes):
        g.write_bytes(geo)
    else:
        g.write_text(geo)
    return g


def test_spacenet1_footprint_lands_on_its_pixels(tmp_path):
    t = sn1_transform(0)
    box = pixel_box_to_lonlat(t, 10, 5, 20, 15)             # rows 10..19, cols 5..14
    tri = [[*(t @ (x, y)), 0.0] for y, x in ((30, 30), (30, 50), (50, 30), (30, 30))]
    _one_tile(tmp_path, 1, footprint_collection([box, tri]))
    s = build_dataset("spacenet1", tmp_path, "all")[0]
    m = s["mask"].numpy()
    assert s["image"].shape == (3, 60, 70) and m.shape == (60, 70) and m.dtype == np.int64
    assert m[10:20, 5:15].all() and m[10:20, 5:15].sum() == 100
    for y, x in ((9, 10), (20, 10), (15, 4), (15, 15), (0, 0)):
        assert m[y, x] == 0, (y, x)
    assert m[31, 31] == 1 and m[45, 33] == 1 and m[48, 48] == 0 and m[40, 45] == 0
    assert m.sum() == 100 + m[25:, 25:].sum()


def test_spacenet1_tile_in_utm_gets_reprojected_footprints(tmp_path):
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp

    t = from_origin(683000.0, 7465000.0, 0.5, 0.5)           # UTM 23S near Rio, 0.5 m pixels
    xs, ys = [], []
    for y, x in ((10, 10), (10, 30), (30, 30), (30, 10), (10, 10)):
        ex, ny = t @ (x, y)
        xs.append(ex)
        ys.append(ny)
    lon, lat = warp("EPSG:32723", "EPSG:4326", xs, ys)
    geo = footprint_collection([[[a, b, 0.0] for a, b in zip(lon, lat)]])
    train = tmp_path / "SN1_buildings" / "train"
    (train / "3band").mkdir(parents=True)
    (train / "geojson").mkdir()
    import rasterio

    with rasterio.open(train / "3band" / "3band_AOI_1_RIO_img1.tif", "w", driver="GTiff", width=40, height=40, count=3,
                       dtype="uint8", crs="EPSG:32723", transform=t) as dst:
        dst.write(np.zeros((3, 40, 40), np.uint8))
    (train / "geojson" / "Geo_AOI_1_RIO_img1.geojson").write_text(json.dumps(geo))
    m = build_dataset("spacenet1", tmp_path, "all")[0]["mask"].numpy()
    assert m[11:29, 11:29].all() and m[:9].sum() == 0 and m[31:].sum() == 0


def test_spacenet1_empty_and_zero_byte_geojson_give_background(tmp_path):
    _one_tile(tmp_path, 1, footprint_collection([]))
    _one_tile(tmp_path, 2, b"")
    _one_tile(tmp_path, 3, b"  \n")
    _one_tile(tmp_path, 4, {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]})
    ds = build_dataset("spacenet1", tmp_path, "all")
    assert ds.ids == [1, 2, 3, 4]
    for i in range(4):
        assert int(ds[i]["mask"].sum()) == 0


def test_spacenet1_samples_roots_splits_and_sizes(samples):
    root = samples("spacenet1")
    train, val = build_dataset("spacenet1", root, "train"), build_dataset("spacenet1", root, "val")
    assert len(train) == 6 and len(val) == 2 and not set(train.ids) & set(val.ids)
    sizes = {tuple(build_dataset("spacenet1", root, "all")[i]["image"].shape[1:]) for i in range(3)}
    assert sizes == {(406, 438), (407, 439)}  # chips differ by a pixel
    geo_dir = root / "SN1_buildings" / "train" / "geojson"
    sizes_on_disk = sorted(p.stat().st_size for p in geo_dir.iterdir())
    assert sizes_on_disk[0] == 0  # a 0-byte GeoJSON is among the samples
    # the root may be SN1_buildings/train or its parent; split files in the root are then absent
    for r in (root / "SN1_buildings", root / "SN1_buildings" / "train"):
        assert len(build_dataset("spacenet1", r, "all")) == 8
    with pytest.raises(DataError, match="are not in"):
        build_dataset("spacenet1", root / "SN1_buildings", "train")  # the repo split names 6,940 tiles
    assert build_dataset("spacenet1", root, "all").ids == list(range(1, 9))


def test_spacenet1_repo_split_is_the_documented_seeded_split():
    sp = REPO / "rsbench" / "splits" / "spacenet1"
    train = [int(x[3:]) for x in (sp / "train.txt").read_text().split()]
    val = [int(x[3:]) for x in (sp / "val.txt").read_text().split()]
    assert len(train) == 5000 and len(val) == 1940
    assert sorted(train + val) == list(range(1, 6941))
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from prepare_spacenet1 import seeded_split
    finally:
        sys.path.pop(0)
    assert seeded_split(list(range(1, 6941)), 1940, 0) == (train, val)


def test_spacenet1_bad_input(samples, tmp_path):
    root = _copy(samples, "spacenet1", tmp_path)
    geo = root / "SN1_buildings" / "train" / "geojson"
    # an unreadable GeoJSON: named when the tile is read
    g1 = geo / "Geo_AOI_1_RIO_img1.geojson"
    g1.write_text('{"type": "FeatureCollection", "features": [')
    ds = build_dataset("spacenet1", root, "all")
    with pytest.raises(DataError, match=rf"{g1.name}: not a readable GeoJSON"):
        ds[0]
    with pytest.raises(DataError, match=g1.name):
        build_dataset("spacenet1", root, "all", verify="full")
    g1.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {
        "type": "Polygon", "coordinates": [[[-43.7, -22.9]]]}}]}))
    with pytest.raises(DataError, match=rf"{g1.name}: malformed geometry"):
        ds[0]
    # a tile without its GeoJSON: named up front
    (geo / "Geo_AOI_1_RIO_img2.geojson").unlink()
    with pytest.raises(DataError, match=r"Geo_AOI_1_RIO_img2.geojson: footprint GeoJSON not found for tile .*img2.tif"):
        build_dataset("spacenet1", root, "all")
    # prepared masks of the wrong size or with values outside 0/1
    md = root / "SN1_buildings" / "train" / "rsbench_masks"
    md.mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(md / "3band_AOI_1_RIO_img4.png")
    ds = build_dataset("spacenet1", root, "train")
    k = ds.ids.index(4)
    with pytest.raises(DataError, match=r"3band_AOI_1_RIO_img4.png: mask is 10×10 px but its tile"):
        ds[k]
    h, w = ds[ds.ids.index(5)]["image"].shape[1:]
    Image.fromarray(np.full((h, w), 255, np.uint8)).save(md / "3band_AOI_1_RIO_img5.png")
    with pytest.raises(DataError, match=r"img5.png: mask values \[255\] outside 0 \(background\) / 1"):
        ds[ds.ids.index(5)]
    with pytest.raises(DataError, match="prepared mask not found"):
        build_dataset("spacenet1", root, "train", masks="prepared")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no 3band/ folder"):
        build_dataset("spacenet1", tmp_path / "empty", "all")


def test_prepare_spacenet1_masks_match_on_the_fly_rasterisation(samples, tmp_path):
    root = _copy(samples, "spacenet1", tmp_path)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "prepare_spacenet1.py"), str(root), "--workers", "1",
                           "--split-from-files"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 8 masks" in proc.stdout
    masks = sorted((root / "SN1_buildings" / "train" / "rsbench_masks").iterdir())
    assert len(masks) == 8 and {np.asarray(Image.open(m)).dtype for m in masks} == {np.dtype(np.uint8)}
    a = build_dataset("spacenet1", root, "all", masks="prepared")
    b = build_dataset("spacenet1", root, "all", masks="rasterize")
    for i in range(len(a)):
        assert torch.equal(a[i]["mask"], b[i]["mask"])
    tr, va = (root / "spacenet1-train.txt").read_text().split(), (root / "spacenet1-val.txt").read_text().split()
    assert len(tr) + len(va) == 8 and len(va) == 2
