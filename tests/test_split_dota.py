"""scripts/split_dota.py (MMRotate img_split's rules) against hand computations, and the patch merge."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsbench.data import build_dataset
from rsbench.data.dota_split import (
    PAD_RGB,
    main,
    merge_patch_detections,
    parse_patch_name,
    patch_name,
    poly_window_iof,
    rate_windows,
    sliding_windows,
    split_image,
)
from rsbench.errors import DataError


def test_windows_2500x1800_at_1024_gap_200_by_hand():
    # step 824; x: ceil((2500-1024)/824 + 1) = 3 starts 0, 824, 1648 → last moved to 2500-1024 = 1476;
    # y: ceil((1800-1024)/824 + 1) = 2 starts 0, 824 → last moved to 1800-1024 = 776; x outer, y inner
    w = sliding_windows(2500, 1800, [1024], [200])
    starts = [(0, 0), (0, 776), (824, 0), (824, 776), (1476, 0), (1476, 776)]
    assert w.tolist() == [[x, y, x + 1024, y + 1024] for x, y in starts]
    # a side that fits exactly: one window; a small image: its single padded window survives the rate rule
    assert sliding_windows(1024, 1024, [1024], [200]).tolist() == [[0, 0, 1024, 1024]]
    assert sliding_windows(500, 300, [1024], [200]).tolist() == [[0, 0, 1024, 1024]]
    # 1024 + 1 px: two windows, the second aligned to the end
    assert sliding_windows(1025, 100, [1024], [200])[:, 0].tolist() == [0, 1]


def test_rates_change_the_window_not_the_pixels():
    assert rate_windows([1024], [500], [0.5, 1.0, 1.5]) == ([2048, 1024, 682], [1000, 500, 333])
    assert rate_windows([1024], [200], [1.0]) == ([1024], [200])
    w = sliding_windows(3000, 3000, *rate_windows([1024], [500], [0.5, 1.0, 1.5]))
    assert {int(x2 - x1) for x1, _, x2, _ in w} == {2048, 1024, 682}
    with pytest.raises(ValueError):
        rate_windows([1024, 512], [200, 100], [0.5, 1.0])


def test_patch_names():
    assert patch_name("P0001", (0, 776, 1024, 1800)) == "P0001__1024__0___776"
    assert patch_name("P0001", (1476, 0, 3524, 2048)) == "P0001__2048__1476___0"      # rate 0.5: window 2048
    assert parse_patch_name("P0001__682__341___0") == ("P0001", "682", 341, 0)
    assert parse_patch_name("P0706__0.5__0___824") == ("P0706", "0.5", 0, 824)        # the devkit's form
    assert parse_patch_name("part1_12__1024__0___0")[0] == "part1_12"
    with pytest.raises(ValueError):
        parse_patch_name("P0001_1024_0_0")


def test_iof_by_hand():
    win = np.array([[0, 0, 100, 100]])
    rect = lambda x1, y1, x2, y2: [x1, y1, x2, y1, x2, y2, x1, y2]
    polys = np.array([rect(10, 10, 30, 30),          # inside: 1
                      rect(90, 10, 110, 30),         # half: 0.5
                      rect(80, 0, 105, 20),          # 20/25 = 0.8
                      [96, 40, 106, 50, 96, 60, 86, 50],   # diamond, 4 px across the edge: 1 - 36/200 = 0.82
                      rect(200, 200, 210, 210)], np.float32)
    iof = poly_window_iof(polys, win)[:, 0]
    assert np.allclose(iof, [1.0, 0.5, 0.8, 0.82, 0.0], atol=1e-6)


def test_split_image_keeps_iof_07_translates_unclipped_marks_truncated_and_pads():
    img = np.random.default_rng(0).integers(0, 255, (80, 150, 3), dtype=np.uint8)   # H 80, W 150
    polys = np.array([[10, 10, 30, 10, 30, 30, 10, 30],        # in window x 0..100 only (and wholly)
                      [85, 10, 105, 10, 105, 30, 85, 30],      # 75 % in window 0, wholly in window 1 (x 50..150)
                      [92, 40, 112, 40, 112, 60, 92, 60]],     # 40 % in window 0 → not there
                     np.float32)
    patches = split_image(img, "P0042", polys, ["plane", "ship", "harbor"], np.array([0, 1, 0]),
                          sizes=[100], gaps=[50])
    names = [p.name for p in patches]
    assert names == ["P0042__100__0___0", "P0042__100__50___0"]
    p0, p1 = patches
    assert p0.lines == ["10.0 10.0 30.0 10.0 30.0 30.0 10.0 30.0 plane 0",
                        "85.0 10.0 105.0 10.0 105.0 30.0 85.0 30.0 ship 2"]        # unclipped, truncated → 2
    assert p1.lines == ["35.0 10.0 55.0 10.0 55.0 30.0 35.0 30.0 ship 1",
                        "42.0 40.0 62.0 40.0 62.0 60.0 42.0 60.0 harbor 0"]
    # pixels: the crop, padded at the bottom with MMRotate's value (BGR 104,116,124 = RGB 124,116,104)
    assert p0.pixels.shape == (100, 100, 3) and np.array_equal(p0.pixels[:80], img[:, :100])
    assert (p0.pixels[80:] == np.array(PAD_RGB, np.uint8)).all()
    nopad = split_image(img, "P0042", polys, ["plane", "ship", "harbor"], np.zeros(3), sizes=[100], gaps=[50],
                        no_padding=True)
    assert nopad[0].pixels.shape == (80, 100, 3)


def test_cli_splits_the_release_and_the_loader_reads_it(samples, tmp_path):
    src = samples("dota")
    out = tmp_path / "split"
    res = main(["--src", str(src), "--out", str(out), "--sizes", "128", "--gaps", "32", "--rates", "1.0"])
    assert res["trainval"]["images"] == 4 and res["test"]["images"] == 2
    assert not (out / "test" / "annfiles").exists()
    # P0002 (300×260): x starts 0, 96, 172; y starts 0, 96, 132 → 9 patches
    big = sorted(p.stem for p in (out / "trainval" / "images").glob("P0002__*"))
    assert len(big) == 9 and "P0002__128__172___132" in big
    ds = build_dataset("dota", out, "trainval")
    assert ds.layout == "patches" and len(ds) == res["trainval"]["patches"]
    assert all(":" not in ln for f in (out / "trainval" / "annfiles").glob("*.txt") for ln in f.read_text().splitlines())
    with pytest.raises(DataError, match="already exists"):
        main(["--src", str(src), "--out", str(out), "--splits", "trainval"])
    ms = main(["--src", str(src), "--out", str(tmp_path / "ms"), "--splits", "trainval", "--sizes", "128",
               "--gaps", "64", "--rates", "0.5", "1.0", "1.5"])
    sizes = {parse_patch_name(p.stem)[1] for p in (tmp_path / "ms" / "trainval" / "images").iterdir()}
    assert sizes == {"256", "128", "85"} and ms["trainval"]["images"] == 4


def test_merge_maps_back_and_nms_merges_duplicates():
    box = torch.tensor([[10.0, 20.0, 8.0, 4.0, 0.1]])
    dets = [("P0007__128__96___0", {"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([2])}),
            # the same object seen by the neighbouring patch (x start 0): a duplicate of class 2 and a class-5 twin
            ("P0007__128__0___0", {"boxes": torch.tensor([[106.0, 20.0, 8.0, 4.0, 0.1], [106.0, 20.0, 8.0, 4.0, 0.1]]),
                                   "scores": torch.tensor([0.8, 0.7]), "labels": torch.tensor([2, 5])}),
            ("P0008__128__0___96", {"boxes": box, "scores": torch.tensor([0.5]), "labels": torch.tensor([0])})]
    m = merge_patch_detections(dets)
    assert set(m) == {"P0007", "P0008"}
    assert m["P0007"]["labels"].tolist() == [2, 5] and m["P0007"]["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert torch.allclose(m["P0007"]["boxes"], torch.tensor([[106.0, 20.0, 8.0, 4.0, 0.1]] * 2))
    assert torch.allclose(m["P0008"]["boxes"], torch.tensor([[10.0, 116.0, 8.0, 4.0, 0.1]]))
    # devkit names: the image was resized by the rate before cutting → (p + offset) / rate
    d = merge_patch_detections([("P0001__0.5__100___50", {"boxes": box, "scores": torch.tensor([1.0]),
                                                          "labels": torch.tensor([0])})], naming="devkit")
    assert torch.allclose(d["P0001"]["boxes"], torch.tensor([[220.0, 140.0, 16.0, 8.0, 0.1]]))


def test_split_then_merge_reproduces_boxes_inside_one_patch(samples, tmp_path):
    from rsbench.data.rotated import polygons_to_rboxes

    src = samples("dota")
    out = tmp_path / "split"
    main(["--src", str(src), "--out", str(out), "--splits", "trainval", "--sizes", "128", "--gaps", "32"])
    orig = build_dataset("dota", src, "train").records[[r.name for r in build_dataset("dota", src, "train").records]
                                                      .index("P0002")]
    patches = build_dataset("dota", out, "trainval")
    dets = []
    for r in patches.records:
        if r.name.startswith("P0002__"):
            # ground truth as detections (score 1), without the truncated ones (difficult 2 in the file)
            keep = np.array([ln.split()[-1] != "2" for ln in r.source.read_text().splitlines()], bool)
            dets.append((r.name, {"boxes": polygons_to_rboxes(r.polygons[keep]), "scores": torch.ones(int(keep.sum())),
                                  "labels": torch.as_tensor(r.labels[keep])}))
    merged = merge_patch_detections(dets)["P0002"]
    wins = sliding_windows(300, 260, [128], [32])
    inside = [i for i, p in enumerate(orig.polygons.reshape(-1, 4, 2))
              if any((p[:, 0] >= x1).all() and (p[:, 0] <= x2).all() and (p[:, 1] >= y1).all() and (p[:, 1] <= y2).all()
                     for x1, y1, x2, y2 in wins)]
    assert inside and len(merged["boxes"]) == len(inside)
    expect = polygons_to_rboxes(orig.polygons[inside])
    order_m = torch.argsort(merged["boxes"][:, 0] * 1000 + merged["boxes"][:, 1])
    order_e = torch.argsort(expect[:, 0] * 1000 + expect[:, 1])
    assert torch.allclose(merged["boxes"][order_m], expect[order_e], atol=1e-3)
    assert sorted(merged["labels"].tolist()) == sorted(orig.labels[inside].tolist())
    assert math.isfinite(float(merged["scores"].sum()))
