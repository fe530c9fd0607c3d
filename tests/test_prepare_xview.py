"""scripts/prepare_xview.py and the tiling behind it, against hand computations of MTP's rules."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsbench.data import build_dataset
from rsbench.data.datasets.xview import (
    GEOJSON,
    IMAGES,
    TYPE_IDS,
    load_xview_labels,
    prepare_xview,
    split_images,
    tile_image,
    tile_starts,
    write_fake_release,
)
from rsbench.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def test_tile_starts_by_hand():
    # W = 3000: end 2584, ceil(2584 / 416) = 7 → 8 starts 2584·i/7 truncated; neighbours overlap by ~47 px
    assert tile_starts(3000).tolist() == [0, 369, 738, 1107, 1476, 1845, 2214, 2584]
    assert tile_starts(500).tolist() == [0, 84]          # end 84 → ceil(0.2) + 1 = 2
    assert tile_starts(416).tolist() == [0]
    assert tile_starts(300).tolist() == [0]               # padded to 416 first
    assert tile_starts(832).tolist() == [0, 416]          # exactly two tiles, no overlap
    assert tile_starts(833).tolist() == [0, 208, 417]


def test_tile_image_centre_rule_clipping_padding_and_empty_tiles():
    H, W = 300, 500                                        # padded to 416 x 500 → windows x0 = 0, 84; y0 = 0
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    boxes = np.array([
        [40, 10, 60, 30],        # centre x 50: tile 0 only (50 < 84)
        [440, 10, 460, 30],      # centre x 450: tile 1 only (450 >= 416)
        [60, 50, 120, 70],       # centre x 90: both; x1 60 < 84 → clipped to 84 in tile 1
        [380, 100, 440, 120],    # centre x 410: both; x2 440 >= 416 → 415 in tile 0
        [200, 280, 220, 330],    # y2 330 beyond the image: clipped to 300 first (centre y 290)
        [10, 200, 30, 200],      # 0 px tall: still tiled (the training filter drops it)
    ], np.float64)
    labels = np.arange(6)
    tiles = tile_image(img, boxes, labels)
    assert [(t.k, t.y0, t.x0) for t in tiles] == [(0, 0, 0), (1, 0, 84)]
    t0, t1 = tiles
    assert t0.labels.tolist() == [0, 2, 3, 4, 5] and t1.labels.tolist() == [1, 2, 3, 4]
    assert t0.boxes.tolist() == [[40, 10, 60, 30], [60, 50, 120, 70], [380, 100, 415, 120], [200, 280, 220, 300],
                                 [10, 200, 30, 200]]
    assert t1.boxes.tolist() == [[356, 10, 376, 30], [0, 50, 36, 70], [296, 100, 356, 120], [116, 280, 136, 300]]
    for t in tiles:
        assert t.pixels.shape == (416, 416, 3)
        assert (t.pixels[H:] == 128).all()                                   # bottom padding
        assert np.array_equal(t.pixels[:H], img[:, t.x0:t.x0 + 416])
    # a wide image whose boxes all sit in the first window: the empty ones are not kept
    wide = np.zeros((416, 1300, 3), np.uint8)
    kept = tile_image(wide, np.array([[5, 5, 15, 15.0]]), np.array([7]))
    assert tile_starts(1300).tolist() == [0, 294, 589, 884] and [(t.k, t.x0) for t in kept] == [(0, 0)]
    # both sides under 416: one window, padded right and bottom
    small = tile_image(np.ones((200, 300, 3), np.uint8), np.array([[10, 20, 30, 40.0]]), np.array([1]))
    assert len(small) == 1 and (small[0].pixels[200:] == 128).all() and (small[0].pixels[:, 300:] == 128).all()
    assert small[0].boxes.tolist() == [[10, 20, 30, 40]]
    # MTP's de-normalisation by the padded size stretches the boxes of small images
    stretched = tile_image(np.ones((200, 300, 3), np.uint8), np.array([[10, 20, 30, 40.0]]), np.array([1]),
                           official_pad_rescale=True)
    assert np.allclose(stretched[0].boxes, [[10 * 416 / 300, 20 * 416 / 200, 30 * 416 / 300, 40 * 416 / 200]])


def test_tile_image_last_window_and_bottom_clip():
    # 3000 px wide: a box across the start of window 7 (x0 2584) and the end of window 6 (2214 + 416 = 2630)
    img = np.zeros((416, 3000, 3), np.uint8)
    tiles = tile_image(img, np.array([[2600, 400, 2640, 430]], np.float64), np.array([3]))
    # centre x 2620 lies in windows 6 [2214, 2630) and 7 [2584, 3000); y: 400..416 after the image clip
    assert [t.x0 for t in tiles] == [2214, 2584]
    assert tiles[0].boxes.tolist() == [[386, 400, 415, 415]]     # x2 2640 >= 2630 → 2629; y2 416 >= 416 → 415
    assert tiles[1].boxes.tolist() == [[16, 400, 56, 415]]


def _naive_tiles(image: np.ndarray, boxes: list, labels: list) -> list[tuple[int, int, list, list]]:
    """MTP's rules written out box by box (pad, linspace windows, centre in [start, start+416), clip to end - 1)."""
    H, W = image.shape[:2]
    Hp, Wp = max(H, 416), max(W, 416)

    def starts(n):
        end = n - 416
        cnt = math.ceil(end / 416) + 1
        return [int(end * i / (cnt - 1)) if cnt > 1 else 0 for i in range(cnt)]

    out = []
    for y0 in starts(Hp):
        for x0 in starts(Wp):
            bs, ls = [], []
            for (x1, y1, x2, y2), c in zip(boxes, labels):
                x1, x2 = min(max(x1, 0), W), min(max(x2, 0), W)
                y1, y2 = min(max(y1, 0), H), min(max(y2, 0), H)
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                if x0 <= cx < x0 + 416 and y0 <= cy < y0 + 416:
                    bx1, by1 = max(x1, x0), max(y1, y0)
                    bx2 = x0 + 415 if x2 >= x0 + 416 else x2
                    by2 = y0 + 415 if y2 >= y0 + 416 else y2
                    bs.append([bx1 - x0, by1 - y0, bx2 - x0, by2 - y0])
                    ls.append(c)
            if bs:
                out.append((y0, x0, bs, ls))
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("xview")
    src = write_fake_release(base / "release", seed=3)
    summary = prepare_xview(src, base / "tiles", seed=0, n_train=2, echo=None)
    return src, base / "tiles", summary


def test_prepare_matches_the_hand_computation(prepared):
    import rasterio

    src, out, summary = prepared
    geo = json.loads((src / GEOJSON).read_text())
    per_image: dict[str, tuple[list, list]] = {}
    for f in geo["features"]:
        p = f["properties"]
        if not p["bounds_imcoords"] or p["type_id"] not in TYPE_IDS or not (src / IMAGES / p["image_id"]).is_file():
            continue
        bs, ls = per_image.setdefault(p["image_id"], ([], []))
        bs.append([int(v) for v in p["bounds_imcoords"].split(",")])
        ls.append(TYPE_IDS.index(p["type_id"]))
    assert sorted(summary["train"] + summary["val"]) == sorted(per_image)
    for split in ("train", "val"):
        doc = json.loads((out / f"xview_{split}_coco_format.json").read_text())
        assert [c["id"] for c in doc["categories"]] == list(range(60))
        expected = []
        for image_id in summary[split]:
            with rasterio.open(src / IMAGES / image_id) as r:
                img = r.read().transpose(1, 2, 0)
            for k, (y0, x0, bs, ls) in enumerate(_naive_tiles(img, *per_image[image_id])):
                expected.append((f"{Path(image_id).stem}_{k}.png", y0, x0, bs, ls))
                tile = np.asarray(Image.open(out / split / "images" / f"{Path(image_id).stem}_{k}.png"))
                want = np.full((416, 416, 3), 128, np.uint8)
                part = img[y0:y0 + 416, x0:x0 + 416]
                want[:part.shape[0], :part.shape[1]] = part
                assert np.array_equal(tile, want), (image_id, k)
        got = []
        for im in doc["images"]:
            anns = [a for a in doc["annotations"] if a["image_id"] == im["id"]]
            got.append((im["file_name"], im["tile_y0"], im["tile_x0"],
                        [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                         for a in anns], [a["category_id"] for a in anns]))
        assert got == expected
        assert sorted(p.name for p in (out / split / "images").iterdir()) == sorted(e[0] for e in expected)
        assert [a["id"] for a in doc["annotations"]] == list(range(1, len(doc["annotations"]) + 1))
    ds = build_dataset("xview", out, "train")
    assert len(ds) == summary["tiles"]["train"]


def test_dropped_features_are_counted(prepared, tmp_path):
    src, _, summary = prepared
    assert summary["dropped_unknown_type"] == {"75": 1, "82": 1}
    assert summary["dropped_no_bounds"] == 1 and summary["dropped_missing_image"] == {"1395.tif": 1}
    geo = json.loads((src / GEOJSON).read_text())
    geo["features"][0]["properties"]["bounds_imcoords"] = "1,2,3"
    geo["features"][1]["properties"]["type_id"] = 100
    (tmp_path / GEOJSON).write_text(json.dumps(geo))
    labels = load_xview_labels(tmp_path / GEOJSON, src / IMAGES)
    assert labels.bad_bounds == 1 and labels.unknown_types == {75: 1, 82: 1, 100: 1}
    assert "1395.tif (1 boxes)" in labels.summary()
    (tmp_path / GEOJSON).write_text('{"type": "FeatureCollection"}')
    with pytest.raises(DataError, match="not a GeoJSON FeatureCollection"):
        load_xview_labels(tmp_path / GEOJSON)


def test_seeded_split_is_reproducible():
    ids = [f"{i}.tif" for i in range(1, 847)]
    a, b = split_images(ids, 700, seed=0), split_images(list(reversed(ids)), 700, seed=0)
    assert a == b and len(a[0]) == 700 and len(a[1]) == 146
    assert sorted(a[0] + a[1], key=lambda s: int(s[:-4])) == ids and not set(a[0]) & set(a[1])
    assert split_images(ids, 700, seed=1) != a
    with pytest.raises(ValueError, match="both splits"):
        split_images(ids[:3], 3)


def test_script_prints_the_seeded_split_and_is_repeatable(prepared, tmp_path, capsys):
    src, out, summary = prepared
    cmd = [sys.executable, str(REPO / "scripts" / "prepare_xview.py"), str(src), str(tmp_path / "a"), "--n-train", "2",
           "--seed", "0"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "unseeded" in proc.stdout and f"train images (2): {' '.join(summary['train'])}" in proc.stdout
    record = json.loads((tmp_path / "a" / "rsbench_xview_split.json").read_text())
    assert (record["train"], record["val"]) == (summary["train"], summary["val"])
    for split in ("train", "val"):
        assert (tmp_path / "a" / f"xview_{split}_coco_format.json").read_text() == \
            (out / f"xview_{split}_coco_format.json").read_text()
    sys.path.insert(0, str(REPO / "scripts"))  # the same main() in-process (a second interpreter costs ~10 s)
    try:
        from prepare_xview import main
    finally:
        sys.path.pop(0)
    assert main(cmd[2:]) == 1 and "already holds files" in capsys.readouterr().err
    assert main(cmd[2:] + ["--overwrite", "--workers", "2"]) == 0
    assert (tmp_path / "a" / "xview_val_coco_format.json").read_text() == (out / "xview_val_coco_format.json").read_text()
