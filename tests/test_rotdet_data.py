"""Rotated detection data: DIOR-R, DOTA and FAIR1M-2.0 loaders on their official layouts, bad input, transforms."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsbench.data import build_dataset
from rsbench.data.rotated import parse_dota_txt, polygons_to_rboxes
from rsbench.data.rotdet_transforms import (
    RotDetTransform,
    build_rotdet_transforms,
    rescale_rboxes,
    rotate_rboxes,
)
from rsbench.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def _copy(samples, name: str, tmp_path: Path, **kw) -> Path:
    dst = tmp_path / name
    shutil.copytree(samples(name, **kw), dst)
    return dst


# -- DIOR-R -----------------------------------------------------------------------------------

def test_dior_r_splits_classes_degenerate_and_difficult(samples):
    root = samples("dior_r")
    n = {s: len(build_dataset("dior_r", root, s)) for s in ("train", "val", "trainval", "test")}
    assert n == {"train": 3, "val": 2, "trainval": 5, "test": 3}
    train = build_dataset("dior_r", root, "train")
    assert train.task == "rotdet" and len(train.classes) == 20 and train.classes[8] == "dam"
    assert train.classes[6] == "expressway-service-area"
    assert train.num_degenerate == 1                     # 00001's polygon with two equal corners
    assert build_dataset("dior_r", root, "test").num_degenerate == 1   # skipped at test time too
    xml = (root / "Annotations" / "Oriented Bounding Boxes" / "00001.xml").read_text()
    assert xml.count("<object>") == len(train.records[0].labels) + 1
    # difficult from the XML: 00003's first object
    rec = {r.name: r for r in train.records}
    assert rec["00003"].difficult[0] and not rec["00003"].difficult[1:].any()
    s = train[0]
    assert s["image"].dtype == torch.uint8 and s["image"].shape == (3, 96, 96)
    assert s["boxes"].dtype == torch.float32 and s["boxes"].shape[1] == 5
    assert s["polygons"].shape == (len(s["labels"]), 8) and s["labels"].dtype == torch.int64
    assert s["difficult"].dtype == torch.bool
    assert torch.allclose(s["boxes"], polygons_to_rboxes(s["polygons"].numpy()))
    w, h = s["boxes"][:, 2], s["boxes"][:, 3]
    assert (w >= h).all() and (s["boxes"][:, 4] >= -math.pi / 2).all() and (s["boxes"][:, 4] < math.pi / 2).all()
    view = train.training_view()                         # 00002 has no objects
    assert len(view) == 2 and "00002" not in [view.sample_name(i) for i in range(len(view))]


def test_dior_r_mixed_case_names_and_bad_input(samples, tmp_path):
    root = _copy(samples, "dior_r", tmp_path)
    ann = root / "Annotations" / "Oriented Bounding Boxes"
    xml = ann / "00004.xml"
    text = xml.read_text()
    # the release's capitalisation is looked up lower-cased
    import re

    first = re.search(r"<name>([^<]+)</name>", text)[1]
    xml.write_text(text.replace(f"<name>{first}</name>", "<name>Expressway-Service-area</name>", 1))
    assert build_dataset("dior_r", root, "val").records[0].labels[0] == 6
    xml.write_text(text.replace(f"<name>{first}</name>", "<name>spaceship</name>", 1))
    with pytest.raises(DataError, match=r"00004\.xml: object 1 has the unknown class name 'spaceship'"):
        build_dataset("dior_r", root, "val")
    xml.write_text(text.replace("<x_left_top>", "<x_left_top>abc", 1))
    with pytest.raises(DataError, match=r"00004\.xml: object 1 .*<x_left_top> is 'abc"):
        build_dataset("dior_r", root, "val")
    xml.write_text(text[:50])
    with pytest.raises(DataError, match=r"00004\.xml: not a readable XML"):
        build_dataset("dior_r", root, "val")


# -- DOTA -------------------------------------------------------------------------------------

def test_dota_headers_crlf_grey_and_test_without_labels(samples):
    root = samples("dota")
    raw = (root / "train" / "labelTxt" / "P0000.txt").read_bytes()
    assert raw.startswith(b"imagesource:GoogleEarth\r\ngsd:") and b"\r\n" in raw
    ds = build_dataset("dota", root, "train")
    assert ds.layout == "official" and len(ds.classes) == 15 and ds.classes[9] == "storage-tank"
    lines = [ln for ln in raw.decode().splitlines() if ln and ":" not in ln]
    rec = {r.name: r for r in ds.records}
    assert len(rec["P0000"].labels) == len(lines)
    assert np.array_equal(rec["P0000"].polygons[0], np.array(lines[0].split()[:8], np.float32))
    assert rec["P0000"].labels[0] == ds.classes.index(lines[0].split()[8])
    # grey PNG → 3 equal bands
    assert Image.open(root / "train" / "images" / "P0001.png").mode == "L"
    s = ds[[r.name for r in ds.records].index("P0001")]
    assert s["image"].shape[0] == 3 and torch.equal(s["image"][0], s["image"][2])
    assert not rec["P0001"].difficult.any()              # its first line has 9 fields: difficult 0
    val = build_dataset("dota", root, "val")
    assert val.records[0].difficult[0] and not val.records[0].difficult[1:].any()
    test = build_dataset("dota", root, "test")
    assert not test.has_annotations and len(test) == 2
    assert test[0]["boxes"].shape == (0, 5) and test[0]["labels"].shape == (0,)
    with pytest.raises(DataError, match="no labels"):
        test.training_view()
    assert len(build_dataset("dota", root, "trainval")) == 4


def test_dota_v2_classes_and_patch_layout(samples):
    root = samples("dota", version="2.0")
    ds = build_dataset("dota", root, "train", version="2.0")
    assert len(ds.classes) == 18 and ds.classes[-1] == "helipad"
    assert 17 in {int(c) for r in ds.records for c in r.labels}
    with pytest.raises(DataError, match=r"P0000\.txt, line \d+: unknown class 'helipad'"):
        build_dataset("dota", root, "train", version="1.0")
    proot = samples("dota", patches=True)
    tv = build_dataset("dota", proot, "trainval")
    assert tv.layout == "patches" and all("__128__" in r.name for r in tv.records)
    assert len(tv.training_view()) <= len(tv)
    te = build_dataset("dota", proot, "test")
    assert te.layout == "patches" and not te.has_annotations


def test_dota_bad_lines_name_file_and_line(tmp_path):
    from rsbench.data.rotated import ClassLookup

    lk = ClassLookup(("plane", "ship"))
    f = tmp_path / "P0009.txt"
    f.write_bytes(b"imagesource:GF2\r\ngsd:null\r\n1 1 5 1 5 5 1 5 plane 0\r\n1 2 3 4 5 6 7 ship 1\r\n")
    with pytest.raises(DataError, match=r"P0009\.txt, line 4: expected .* got 7 coordinates in 9 fields"):
        parse_dota_txt(f, lk)
    f.write_bytes(b"1 1 5 1 5 5 1 5 plane 0\n1 1 5 1 5 x 1 5 ship 1\n")
    with pytest.raises(DataError, match=r"P0009\.txt, line 2: expected .* got 5 coordinates"):
        parse_dota_txt(f, lk)
    f.write_bytes(b"1 1 5 1 5 5 1 5 plane\n\n2.5 1 5 1 5 5 1 5 ship 2\n")
    polys, labels, diff, header = parse_dota_txt(f, lk)
    assert polys.shape == (2, 8) and polys[1, 0] == 2.5 and labels.tolist() == [0, 1] and diff.tolist() == [False, True]
    f.write_bytes(b"imagesource:GoogleEarth\ngsd:0.5\n")
    polys, labels, diff, header = parse_dota_txt(f, lk)
    assert polys.shape == (0, 8) and header == {"imagesource": "GoogleEarth", "gsd": "0.5"}


# -- FAIR1M -----------------------------------------------------------------------------------

def test_fair1m_official_layout_five_points_and_classes(samples):
    root = samples("fair1m")
    ds = build_dataset("fair1m", root, "train")
    assert len(ds.classes) == 37 and ds.classes[23:28] == ("Motorboat", "other-airplane", "other-ship",
                                                           "other-vehicle", "Passenger-Ship")
    assert [r.name for r in ds.records] == ["part1_0", "part1_1", "part2_0"]   # ids repeat across parts
    assert ds.num_degenerate == 1
    import xml.etree.ElementTree as ET

    xml = root / "train" / "part1" / "labelXml" / "0.xml"
    objs = ET.parse(xml).getroot().findall("objects/object")
    pts = [[float(v) for v in p.text.split(",")] for p in objs[0].findall("points/point")]
    assert len(pts) == 5 and pts[4] == pts[0]
    rec = ds.records[0]
    assert np.allclose(rec.polygons[0], np.array(pts[:4], np.float32).reshape(8))
    assert objs[0].findtext("possibleresult/name") == "other-airplane" and rec.labels[0] == 24
    names = {o.findtext("possibleresult/name") for f in root.rglob("*.xml") for o in ET.parse(f).getroot().iter("object")}
    assert "Small Car" in names                          # the release's spelling (spaces) is read
    s = ds[0]
    assert s["image"].shape == (3, 96, 96) and s["image"].dtype == torch.uint8 and not s["difficult"].any()
    test = build_dataset("fair1m", root, "test")
    assert not test.has_annotations and [r.name for r in test.records] == ["0", "1"]
    assert len(build_dataset("fair1m", root, "trainval")) == 4


def test_fair1m_bad_input(samples, tmp_path):
    root = _copy(samples, "fair1m", tmp_path)
    xml = root / "validation" / "labelXml" / "0.xml"
    text = xml.read_text()
    import re

    name = re.search(r"<name>([^<]+)</name>", text)[1]
    xml.write_text(text.replace(f"<name>{name}</name>", "<name>Small car</name>", 1))
    assert build_dataset("fair1m", root, "val").records[0].labels[0] == 29       # case-insensitive, space = hyphen
    xml.write_text(text.replace(f"<name>{name}</name>", "<name>Zeppelin</name>", 1))
    with pytest.raises(DataError, match=r"0\.xml: object 1 has the unknown class name 'Zeppelin'"):
        build_dataset("fair1m", root, "val")
    xml.write_text(re.sub(r"<point>[^<]*</point>", "", text, count=2))
    with pytest.raises(DataError, match=r"0\.xml: object 1 .* has 3 points"):
        build_dataset("fair1m", root, "val")
    img = root / "validation" / "images" / "0.tif"
    xml.write_text(text)
    img.write_bytes(img.read_bytes()[:30])
    with pytest.raises(DataError, match=r"0\.tif"):
        build_dataset("fair1m", root, "val")


# -- transforms -------------------------------------------------------------------------------

def _norm():
    from rsbench.data.augment import Normalize

    return Normalize([0, 0, 0], [1, 1, 1], 1.0, 3)


def _sample(h=60, w=100):
    img = torch.zeros(3, h, w, dtype=torch.uint8)
    img[0, 15:25, 20:40] = 200                                      # a bright block left of centre
    return {"image": img, "boxes": torch.tensor([[30.0, 20.0, 40.0, 10.0, 0.3]]),
            "polygons": torch.tensor([[10.0, 15, 50, 15, 50, 25, 10, 25]]),
            "labels": torch.tensor([3]), "difficult": torch.tensor([False])}


@pytest.mark.parametrize("direction,expect", [("horizontal", (70.0, 20.0, -0.3)), ("vertical", (30.0, 40.0, -0.3)),
                                              ("diagonal", (70.0, 40.0, 0.3))])
def test_flip_of_asymmetric_rbox_by_hand(direction, expect):
    t = RotDetTransform(100, _norm(), train=True, flip_prob=1.0, flip_directions=(direction,))
    out = t(_sample())
    cx, cy, th = expect
    assert torch.allclose(out["boxes"], torch.tensor([[cx, cy, 40.0, 10.0, th]]), atol=1e-5)
    img = out["image"][0]
    if direction == "horizontal":
        assert img[15:25, 60:80].min() == 200 and img[15:25, 20:40].max() == 0
    elif direction == "vertical":
        assert img[35:45, 20:40].min() == 200
    else:
        assert img[35:45, 60:80].min() == 200
    assert "polygons" not in out and out["scale_factor"].tolist() == [1.0, 1.0]


def test_rotation_by_90_degrees_by_hand():
    b = torch.tensor([[30.0, 20.0, 40.0, 10.0, 0.3]])
    r = rotate_rboxes(b, 100, 100, 90)                    # clockwise about (50, 50): (-20, -30) → (30, -20)
    assert torch.allclose(r, torch.tensor([[80.0, 30.0, 40.0, 10.0, 0.3 + math.pi / 2]]), atol=1e-5)
    from rsbench.models.ops.rbox import rbox_to_poly

    # the rotated box's corners are the original corners rotated
    p = rbox_to_poly(b.double()).reshape(4, 2)
    rot = torch.stack([50 - (p[:, 1] - 50), 50 + (p[:, 0] - 50)], 1)
    q = rbox_to_poly(r.double()).reshape(4, 2)
    assert torch.allclose(q, rot, atol=1e-4)


def test_random_rotate_with_rect_classes_uses_right_angles_and_drops_outside():
    from rsbench.data.augment import imrotate

    sample = _sample()
    sample["boxes"] = torch.tensor([[30.0, 20.0, 40.0, 10.0, 0.3], [95.0, 5.0, 6.0, 4.0, 0.0]])
    sample["labels"] = torch.tensor([3, 1])
    sample["difficult"] = torch.tensor([False, True])
    t = RotDetTransform(100, _norm(), train=True, rotate_prob=1.0, rect_labels=(3,))
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out = t(dict(sample))
        match = None
        for angle in (90, 180, -90, -180):
            exp = rotate_rboxes(sample["boxes"], 100, 60, angle)
            inside = (exp[:, 0] >= 0) & (exp[:, 0] <= 100) & (exp[:, 1] >= 0) & (exp[:, 1] <= 60)
            img = imrotate(sample["image"].permute(1, 2, 0).numpy(), angle)
            if len(out["boxes"]) == int(inside.sum()) and torch.allclose(out["boxes"], exp[inside], atol=1e-4) \
                    and np.array_equal(out["image"].permute(1, 2, 0).numpy(), img.astype(np.float32)):
                match = angle
                assert out["labels"].tolist() == sample["labels"][inside].tolist()
        assert match is not None
        seen.add(match)
    assert len(seen) >= 2                                   # the angle is drawn, not fixed
    # ±90 on a 100×60 image moves the box at (95, 5) out: dropped
    exp = rotate_rboxes(sample["boxes"], 100, 60, 90)
    assert exp[1, 1] > 60 or exp[1, 0] < 0


def test_resize_eval_keeps_polygons_and_rescale_formula():
    t = build_rotdet_transforms(img_size=200, mean=[0, 0, 0], std=[1, 1, 1], scale_to_unit=1.0)
    out = t["eval"](_sample())
    assert out["image"].shape == (3, 120, 200) and out["scale_factor"].tolist() == [2.0, 2.0]
    assert torch.allclose(out["boxes"], torch.tensor([[60.0, 40.0, 80.0, 20.0, 0.3]]), atol=1e-5)
    assert torch.allclose(out["polygons"], torch.tensor([[20.0, 30, 100, 30, 100, 50, 20, 50]]))
    assert "polygons" not in t["train"](_sample())
    # anisotropic rescale as MMRotate's RotatedBoxes.rescale_
    r = rescale_rboxes(torch.tensor([[10.0, 10.0, 4.0, 2.0, 0.0]]), 2.0, 1.0)
    assert torch.allclose(r, torch.tensor([[20.0, 10.0, 8.0, 2.0, 0.0]]))


def test_rect_class_names_map_to_ids_and_configs_match_loaders():
    from omegaconf import OmegaConf

    from rsbench.data.datasets.dota import CLASSES_V1, CLASSES_V2
    from rsbench.data.datasets.fair1m import CLASSES as FAIR

    t = build_rotdet_transforms(img_size=64, rotate_prob=0.5, rect_classes=["storage-tank", "roundabout"],
                                classes=CLASSES_V1)
    assert t["train"].rect_labels == (9, 11)
    assert build_rotdet_transforms(img_size=64, rect_classes=["Boeing777", "Bridge"], classes=FAIR)["train"].rect_labels \
        == (9, 11)                                         # the FAIR1M 0.3.4 quirk: DOTA's ids are these classes
    with pytest.raises(ConfigError, match="not one of"):
        build_rotdet_transforms(img_size=64, rect_classes=["tank"], classes=CLASSES_V1)
    conf = REPO / "conf"
    for name, classes in (("dota10", CLASSES_V1), ("dota20", CLASSES_V2), ("fair1m", FAIR)):
        d = OmegaConf.load(conf / "dataset" / f"{name}.yaml")
        assert tuple(d.class_names) == classes and d.num_classes == len(classes)
    assert OmegaConf.load(conf / "dataset" / "dior_r.yaml").num_classes == 20
    rec = OmegaConf.load(conf / "recipe" / "dota10.yaml")
    assert list(rec.data.transform_kwargs.rect_classes) == ["storage-tank", "roundabout"]
    assert OmegaConf.load(conf / "recipe" / "dota20.yaml").sched.milestones == [24, 32, 38]


def test_plot_draws_polygons_and_predictions(samples):
    ds = build_dataset("dota", samples("dota"), "train")
    s = ds[0]
    s["prediction"] = {"boxes": s["boxes"], "scores": torch.tensor([0.9, 0.1][: len(s["boxes"])]),
                       "labels": s["labels"]}
    fig = ds.plot(s, suptitle=ds.sample_name(0))
    assert len([ax for ax in fig.axes if ax.get_images()]) == 2
    assert len(fig.axes[0].patches) == len(s["labels"]) and len(fig.axes[1].patches) == 1
