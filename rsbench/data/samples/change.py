"""Sample writers for the change-detection datasets, each in its official on-disk layout.

The pixels come from :func:`rsbench.data.samples.synth.change_pair`: both dates show the same
terrain and buildings, date 2 adds bright new rectangles, and the label marks exactly those.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.data.gvlm import SITES as GVLM_SITES
from rsbench.data.oscd import BANDS13, IMAGES, LABELS
from rsbench.data.samples import SAMPLES
from rsbench.data.samples.synth import change_pair


def _save_triplet(rng: np.random.Generator, d1: Path, d2: Path, dl: Path, name: str, h: int, w: int | None = None,
                  *, img_ext: str = ".png", label_ext: str = ".png", season: bool = False) -> None:
    for d in (d1, d2, dl):
        d.mkdir(parents=True, exist_ok=True)
    a, b, m = change_pair(rng, h, w, season=season)
    kw = {"quality": 95} if img_ext == ".jpg" else {}
    Image.fromarray(a).save(d1 / f"{name}{img_ext}", **kw)
    Image.fromarray(b).save(d2 / f"{name}{img_ext}", **kw)
    Image.fromarray((m * 255).astype(np.uint8), mode="L").save(dl / f"{name}{label_ext}", **kw)


@SAMPLES.register("levir")
def levir(root: Path, *, seed: int = 0, size: int = 128, counts: tuple[int, int, int] = (4, 2, 2)) -> Path:
    """``root/{train,val,test}/{A,B,label}/<split>_<n>.png`` (the three official zips unpacked)."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "val", "test"), counts):
        for k in range(1, n + 1):
            _save_triplet(rng, root / split / "A", root / split / "B", root / split / "label", f"{split}_{k}", size)
    return root


@SAMPLES.register("cdd")
def cdd(root: Path, *, seed: int = 0, size: int = 64, counts: tuple[int, int, int] = (6, 3, 3)) -> Path:
    """``root/Real/subset/{train,val,test}/{A,B,OUT}/<nnnnn>.jpg`` (JPEG images and JPEG labels)."""
    rng = np.random.default_rng(seed)
    base = root / "Real" / "subset"
    i = 0
    for split, n in zip(("train", "val", "test"), counts):
        for _ in range(n):
            _save_triplet(rng, base / split / "A", base / split / "B", base / split / "OUT", f"{i:05d}", size,
                          img_ext=".jpg", label_ext=".jpg", season=True)
            i += 1
    return root


@SAMPLES.register("whu")
def whu(root: Path, *, seed: int = 0, size: int = 64, counts: tuple[int, int, int] = (6, 3, 3)) -> Path:
    """The community WHU-CD-256 layout: flat ``root/{A,B,label}/whu_<n>.png`` + ``root/list/<split>.txt``."""
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {}
    i = 0
    for split, n in zip(("train", "val", "test"), counts):
        lists[split] = []
        for _ in range(n):
            i += 1
            _save_triplet(rng, root / "A", root / "B", root / "label", f"whu_{i}", size)
            lists[split].append(f"whu_{i}.png")
    (root / "list").mkdir(exist_ok=True)
    for split, names in lists.items():
        (root / "list" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@SAMPLES.register("oscd")
@SAMPLES.register("oscd13")
def oscd(root: Path, *, seed: int = 0, size: tuple[int, int] = (100, 120),
         cities: tuple[tuple[str, ...], tuple[str, ...]] = (("aguasclaras", "berlin", "brasilia"), ("abudhabi", "beihai"))) -> Path:
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


@SAMPLES.register("gvlm")
def gvlm(root: Path, *, seed: int = 0, size: tuple[int, int] = (72, 80), sites: tuple[str, ...] = GVLM_SITES) -> Path:
    """``root/GVLM_Change_Detection/<Site_Country>/{im1,im2,ref}.png`` for all 17 official site names."""
    rng = np.random.default_rng(seed)
    for site in sites:
        d = root / "GVLM_Change_Detection" / site
        d.mkdir(parents=True, exist_ok=True)
        a, b, m = change_pair(rng, *size)
        Image.fromarray(a).save(d / "im1.png")
        Image.fromarray(b).save(d / "im2.png")
        Image.fromarray((m * 255).astype(np.uint8), mode="L").save(d / "ref.png")
    return root


@SAMPLES.register("clcd")
def clcd(root: Path, *, seed: int = 0, size: int = 128, counts: tuple[int, int, int] = (4, 2, 2)) -> Path:
    """``root/{train,val,test}/{time1,time2,label}/<n>.png`` (512² in the release, smaller here)."""
    rng = np.random.default_rng(seed)
    i = 0
    for split, n in zip(("train", "val", "test"), counts):
        for _ in range(n):
            i += 1
            _save_triplet(rng, root / split / "time1", root / split / "time2", root / split / "label", str(i), size)
    return root


@SAMPLES.register("egybcd")
def egybcd(root: Path, *, seed: int = 0, size: int = 64, n: int = 10) -> Path:
    """The release's flat ``root/{A,B,label}/<n>.png`` (no split files: rsbench's seeded split applies)."""
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        _save_triplet(rng, root / "A", root / "B", root / "label", f"{i:04d}", size)
    return root
