"""Change-detection loaders on sample data in every official layout, their variants, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsbench.constants import SPLITS_DIR
from rsbench.data import build_dataset
from rsbench.data.samples import write_sample
from rsbench.errors import DataError

# Known answers on the default sample data (the layouts, dtypes and every split of every dataset are
# checked in test_datasets.py): loader kwargs → samples per split.
SPLIT_SIZES = {
    "levir": ({"tile": 64}, {"train": 16, "val": 8, "test": 8}),        # 128² images → 4 tiles each
    "oscd": ({"tile": 96}, {"train": 12, "test": 8}),                    # 100×120 cities → 2×2 tiles (edge shifted back)
    "gvlm": ({"tile": 32}, {"train": 92, "val": 31, "test": 30}),        # 17 sites × 9 tiles, seeded 60/20/20
    "egybcd": ({}, {"train": 8, "val": 1, "test": 3}),                   # seeded 70/10/20 of 12 pairs (train even: no batch of one)
}


def _copy(samples, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(samples(name), dst)
    return dst


@pytest.mark.parametrize("name", sorted(SPLIT_SIZES))
def test_split_sizes_on_sample_data(samples, name):
    kw, counts = SPLIT_SIZES[name]
    seen: dict[str, set[str]] = {}
    for split, n in counts.items():
        ds = build_dataset(name, samples(name), split, **kw)
        assert len(ds) == n, (split, len(ds))
        if kw.get("tile"):
            assert ds[0]["mask"].shape == (kw["tile"], kw["tile"])
        seen[split] = {ds.sample_name(i) for i in range(len(ds))}
    parts = list(seen.values())
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            assert not parts[i] & parts[j], "splits overlap"


@pytest.mark.parametrize("bands,channels,dtype", [("rgb", 3, torch.uint8), ("all", 13, torch.int32)])
def test_oscd_band_sets(samples, bands, channels, dtype):
    ds = build_dataset("oscd", samples("oscd"), "test", tile=96, bands=bands)
    s = ds[0]
    assert s["image1"].shape == s["image2"].shape == (channels, 96, 96) and s["image1"].dtype == dtype
    assert ds.rgb_bands == ((0, 1, 2) if bands == "rgb" else (3, 2, 1))
    with pytest.raises(ValueError, match="bands must be rgb or all"):
        build_dataset("oscd", samples("oscd"), "test", bands="13")


def test_oscd_band_sets_do_not_share_cached_tiles(samples, tmp_path):
    rgb = build_dataset("oscd", samples("oscd"), "test", tile=96, tile_cache=tmp_path)[0]
    all13 = build_dataset("oscd", samples("oscd"), "test", tile=96, tile_cache=tmp_path, bands="all")[0]
    assert rgb["image1"].shape[0] == 3 and all13["image1"].shape[0] == 13


def test_changes_are_labelled_where_date2_differs(samples):
    ds = build_dataset("levir", samples("levir"), "train")
    s = ds[0]
    diff = (s["image1"].float() - s["image2"].float()).abs().mean(0)
    m = s["mask"].bool()
    assert m.any() and diff[m].mean() > 5 * diff[~m].mean()


def test_levir_tiles_are_row_major_sixteenths(samples):
    root = samples("levir")
    whole = build_dataset("levir", root, "train")
    tiled = build_dataset("levir", root, "train", tile=32)
    assert len(tiled) == 16 * len(whole)
    assert [tiled.sample_name(i) for i in range(3)] == ["train_1_1", "train_1_2", "train_1_3"]
    full = whole[0]
    t = tiled[5]  # row 1, column 1 of a 4×4 grid
    assert torch.equal(t["image1"], full["image1"][:, 32:64, 32:64])
    assert torch.equal(t["mask"], full["mask"][32:64, 32:64])


def test_tile_edges_shift_back_and_cache_gives_same_pixels(samples, tmp_path):
    root = samples("gvlm")  # 72×80 sites
    plain = build_dataset("gvlm", root, "test", tile=32)
    cached = build_dataset("gvlm", root, "test", tile=32, tile_cache=tmp_path / "cache")
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert a["image1"].shape == (3, 32, 32)
        for k in a:
            assert torch.equal(a[k], b[k])
    assert list((tmp_path / "cache").rglob("*.npy"))
    from rsbench.data.change import tile_origins
    assert tile_origins(72, 32) == [0, 32, 40] and tile_origins(64, 32) == [0, 32] and tile_origins(20, 32) == [0]


def test_levir_flat_variants(samples, tmp_path):
    """BIT's LEVIR-CD-256 (flat + list/*.txt) and TorchGeo's (flat, split by prefix)."""
    src = samples("levir")
    for variant in ("list", "prefix"):
        root = tmp_path / variant
        for split in ("train", "val", "test"):
            for d in ("A", "B", "label"):
                (root / d).mkdir(parents=True, exist_ok=True)
                for f in (src / split / d).iterdir():
                    shutil.copy(f, root / d / f.name)
        if variant == "list":
            (root / "list").mkdir()
            for split in ("train", "val", "test"):
                names = sorted(f.name for f in (src / split / "A").iterdir())
                (root / "list" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for split, n in (("train", 4), ("val", 2), ("test", 2)):
            assert len(build_dataset("levir", root, split)) == n


def test_cdd_mtp_label_folder_and_whu_split_folders(samples, tmp_path):
    cdd = _copy(samples, "cdd", tmp_path)
    for split in ("train", "val", "test"):
        (cdd / "Real/subset" / split / "OUT").rename(cdd / "Real/subset" / split / "label")
    assert len(build_dataset("cdd", cdd, "val")) == 3
    src = samples("whu")
    whu = tmp_path / "whu_mtp"
    for split in ("train", "val", "test"):
        for line in (src / "list" / f"{split}.txt").read_text().split():
            for d in ("A", "B", "label"):
                (whu / split / d).mkdir(parents=True, exist_ok=True)
                shutil.copy(src / d / line, whu / split / d / line)
    assert len(build_dataset("whu", whu, "train")) == 6


def test_whu_accepts_01_labels_but_levir_does_not(samples, tmp_path):
    whu = _copy(samples, "whu", tmp_path)
    f = next((whu / "label").iterdir())
    arr = np.asarray(Image.open(f))
    Image.fromarray((arr > 0).astype(np.uint8)).save(f)
    ds = build_dataset("whu", whu, "train", verify="full")
    assert any(ds[i]["mask"].any() for i in range(len(ds)))
    levir = _copy(samples, "levir", tmp_path)
    f = levir / "train/label/train_1.png"
    Image.fromarray((np.asarray(Image.open(f)) > 0).astype(np.uint8)).save(f)
    with pytest.raises(DataError, match=r"train_1\.png.*label values \{0, 1\}"):
        build_dataset("levir", levir, "train")[0]
    ds = build_dataset("levir", levir, "train", label_rule="binary01")  # the escape hatch names the rule
    assert ds[0]["mask"].any()


def test_oscd_variants(samples, tmp_path):
    root = _copy(samples, "oscd", tmp_path)
    # the change map as <city>-cm.tif (1 = no change, 2 = change) when cm.png is absent
    ref = build_dataset("oscd", root, "train")[0]["mask"]
    (root / "Onera Satellite Change Detection dataset - Train Labels/aguasclaras/cm/cm.png").unlink()
    assert torch.equal(build_dataset("oscd", root, "train")[0]["mask"], ref)
    # lowercase mirror names; no train.txt → the label folder's cities (TorchGeo's rule)
    for old, new in (("Images", "images"), ("Train Labels", "train_labels"), ("Test Labels", "test_labels")):
        (root / f"Onera Satellite Change Detection dataset - {old}").rename(root / new)
    (root / "images/train.txt").unlink()
    assert [p.name for p in build_dataset("oscd", root, "train").pairs] == ["aguasclaras", "berlin", "brasilia"]
    # 8-bit scaling: uint8 = clip(DN * 2.5 / 10000 * 255)
    import rasterio
    with rasterio.open(root / "images/berlin/imgs_1_rect/B04.tif") as src:
        dn = src.read(1)
    img = build_dataset("oscd", root, "train")[0 + 1]["image1"]  # berlin, whole city (no tile)
    assert torch.equal(img[0], torch.from_numpy(np.clip(np.round(dn * 2.5 / 10000 * 255), 0, 255).astype(np.uint8)))


def test_gvlm_site_split_and_split_dir(samples, tmp_path):
    root = samples("gvlm")
    sites = {s: {p.name for p in build_dataset("gvlm", root, s, tile=32, split_mode="site").pairs}
             for s in ("train", "val", "test")}
    assert [len(v) for v in sites.values()] == [11, 3, 3] and "Big Sur_United States" in sites["train"]
    d = tmp_path / "splits"
    d.mkdir()
    (d / "test.txt").write_text("Big Sur_United States_2\nShimen_China_9\n")
    ds = build_dataset("gvlm", root, "test", tile=32, split_dir=d)
    assert sorted(ds.sample_name(i) for i in range(len(ds))) == ["Big Sur_United States_2", "Shimen_China_9"]


def test_egybcd_list_files_override_seeded_split(samples, tmp_path):
    root = _copy(samples, "egybcd", tmp_path)
    (root / "list").mkdir()
    (root / "list" / "test.txt").write_text("0001.png\n0002.png\n0003.png\n")
    assert [p.name for p in build_dataset("egybcd", root, "test").pairs] == ["0001", "0002", "0003"]


# ------------------------------------------------------------------------------------ bad input


def test_wrong_layout_says_where_it_looked(tmp_path):
    (tmp_path / "clcd" / "stuff").mkdir(parents=True)
    with pytest.raises(DataError, match=r"(?s)Looked for:.*train/time1.*Expected layout"):
        build_dataset("clcd", tmp_path / "clcd", "train")


def test_dates_of_different_size(samples, tmp_path):
    root = _copy(samples, "levir", tmp_path)
    f = root / "train/B/train_2.png"
    Image.open(f).resize((100, 128)).save(f)
    with pytest.raises(DataError, match=r"train/A/train_2\.png is 128x128.*train/B/train_2\.png is 100x128"):
        build_dataset("levir", root, "train")


def test_label_of_different_size(samples, tmp_path):
    root = _copy(samples, "clcd", tmp_path)
    f = root / "val/label/5.png"
    Image.open(f).resize((64, 64)).save(f)
    with pytest.raises(DataError, match=r"val/label/5\.png is 64x64"):
        build_dataset("clcd", root, "val")


def test_dates_with_different_band_counts(samples, tmp_path):
    root = _copy(samples, "egybcd", tmp_path)
    f = root / "B" / "0004.png"
    Image.open(f).convert("L").save(f)
    with pytest.raises(DataError, match=r"A/0004\.png has 3 band\(s\) but .*B/0004\.png has 1"):
        for split in ("train", "val", "test"):
            build_dataset("egybcd", root, split)
    # also caught when reading without the header check
    ds = build_dataset("egybcd", root, "train", verify="none")
    with pytest.raises(DataError, match=r"0004\.png"):
        for i in range(len(ds)):
            ds[i]


@pytest.mark.parametrize("missing,message", [
    ("B/whu_2.png", r"A/whu_2\.png: date-1 image without its date-2 image .*B/whu_2\.png"),
    ("label/whu_2.png", r"A/whu_2\.png: image pair without its label in .*label"),
    ("A/whu_2.png", r"list/train\.txt: 1 of 6 names have no image in .*A \(e\.g\. whu_2\)"),
])
def test_whu_missing_partner(samples, tmp_path, missing, message):
    root = _copy(samples, "whu", tmp_path)
    (root / missing).unlink()
    with pytest.raises(DataError, match=message):
        build_dataset("whu", root, "train")


def test_date2_without_date1_in_split_folders(samples, tmp_path):
    root = _copy(samples, "cdd", tmp_path)
    (root / "Real/subset/test/A/00010.jpg").unlink()
    with pytest.raises(DataError, match=r"B/00010\.jpg: date-2 image without a date-1 image"):
        build_dataset("cdd", root, "test")


def test_bad_label_values(samples, tmp_path):
    root = _copy(samples, "levir", tmp_path)
    f = root / "test/label/test_2.png"
    arr = np.asarray(Image.open(f)).copy()
    arr[0, :5] = 128
    Image.fromarray(arr).save(f)
    with pytest.raises(DataError, match=r"test/label/test_2\.png: label values \{0, 128, 255\}; expected 0 \(unchanged\) and 255"):
        build_dataset("levir", root, "test", verify="full")
    ds = build_dataset("levir", root, "test", tile=64)  # header check passes; the read names the file
    with pytest.raises(DataError, match=r"test_2\.png: label values"):
        for i in range(len(ds)):
            ds[i]


def test_cdd_jpeg_labels_are_thresholded(samples):
    ds = build_dataset("cdd", samples("cdd"), "train", verify="full")
    raw = np.asarray(Image.open(ds.pairs[0].label).convert("L"))
    assert len(np.unique(raw)) > 2  # JPEG: not exactly 0/255 ...
    assert torch.equal(ds[0]["mask"], torch.from_numpy((raw >= 128).astype(np.int64)))  # ... so >= 128


@pytest.mark.parametrize("bands,band", [("rgb", "B03"), ("all", "B8A")])
def test_oscd_city_missing_a_band(samples, tmp_path, bands, band):
    root = _copy(samples, "oscd", tmp_path)
    (root / "Onera Satellite Change Detection dataset - Images/beihai/imgs_2_rect" / f"{band}.tif").unlink()
    with pytest.raises(DataError, match=rf"beihai/imgs_2_rect/{band}\.tif: band {band} of city 'beihai' \(date 2\) is missing"):
        build_dataset("oscd", root, "test", bands=bands)


def test_oscd_band_of_another_size(samples, tmp_path):
    import rasterio

    root = _copy(samples, "oscd", tmp_path)
    f = root / "Onera Satellite Change Detection dataset - Images/berlin/imgs_1_rect/B11.tif"
    with rasterio.open(f) as src:
        profile = src.profile
    profile.update(width=60, height=50)
    with rasterio.open(f, "w", **profile) as dst:
        dst.write(np.zeros((1, 50, 60), np.uint16))
    with pytest.raises(DataError, match=r"berlin/imgs_1_rect/B11\.tif is 60x50 \(WxH\) but .*B01\.tif is 120x100"):
        build_dataset("oscd", root, "train", bands="all")


def test_oscd_city_in_list_without_folder(samples, tmp_path):
    root = _copy(samples, "oscd", tmp_path)
    (root / "Onera Satellite Change Detection dataset - Images/test.txt").write_text("abudhabi,beihai,rio")
    with pytest.raises(DataError, match=r"test\.txt: city 'rio' has no folder"):
        build_dataset("oscd", root, "test")


def test_sample_writer_marks_its_output(tmp_path):
    from rsbench.data.samples import is_sample

    root = write_sample("egybcd", tmp_path / "e")
    assert is_sample(root) and (root / "A").is_dir()


def test_prepare_levir_script_matches_on_the_fly_tiles(samples, tmp_path):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location("prepare_levir", REPO / "scripts" / "prepare_levir.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = samples("levir")
    counts = mod.prepare(src, tmp_path / "patches", tile=64)
    assert counts == {"train": 16, "val": 8, "test": 8}
    assert (tmp_path / "patches/train/A/train_1_4.png").is_file()
    on_the_fly = build_dataset("levir", src, "val", tile=64)
    patched = build_dataset("levir", tmp_path / "patches", "val", tile=64)
    assert [patched.sample_name(i) for i in range(len(patched))] == [on_the_fly.sample_name(i) for i in range(len(on_the_fly))]
    for i in range(len(patched)):
        for k in ("image1", "image2", "mask"):
            assert torch.equal(patched[i][k], on_the_fly[i][k])


def test_gvlm_site_split_file_is_the_seeded_split():
    from rsbench.data.change import seeded_split
    from rsbench.data.datasets.gvlm import SITES

    parts = seeded_split(list(SITES), (11 / 17, 3 / 17, 3 / 17), seed=0)
    for split, part in zip(("train", "val", "test"), parts):
        assert (SPLITS_DIR / "gvlm" / f"{split}.txt").read_text().splitlines() == part
