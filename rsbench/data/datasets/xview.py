"""xView (Lam et al., arXiv 1802.07856): WorldView-3 RGB GeoTIFFs at 0.3 m, 60 classes of
horizontal boxes; only the 847 train images are labelled (one, ``1395.tif``, is missing), so
MTP splits them at random into 700 train / ~146 val images and reports AP50 on the val tiles.

The loader reads the **416² tiles** that ``scripts/prepare_xview.py`` cuts from the official
release (the MTP pipeline trains and tests on tiles), in MTP's own ``yolo_format_patch`` layout
(``LAYOUT`` below), so a folder prepared by MTP's ``scripts/prepare_xview_dataset.py`` reads too.
The preparation (:func:`prepare_xview`, the functions below):

1. ``xView_train.geojson`` → boxes per image: ``properties.bounds_imcoords`` ("x1,y1,x2,y2"
   pixels), ``image_id`` ("2355.tif"), ``type_id`` mapped through :data:`TYPE_IDS` (class k is
   ``TYPE_IDS[k]``); a feature without bounds, with unparsable bounds, with a type id outside the
   60 (e.g. 75, 82) or on an image that is not in ``train_images/`` is dropped and counted.
   Boxes are clipped to the image (``[0, W] × [0, H]``).
2. The images with at least one box are split by a **seeded** permutation (``seed``, default 0):
   ``n_train`` (700) train, the rest val. The authors' split is an unseeded ``np.random.shuffle``,
   so it cannot be reproduced; rsbench's is recorded in ``rsbench_xview_split.json``.
3. Each image is padded with 128 at the bottom/right to at least 416 px a side and cut into
   416² windows starting at ``linspace(0, L − 416, ceil((L − 416) / 416) + 1)`` truncated to
   integers (:func:`tile_starts`), so the last window ends at the border and neighbours overlap;
   a box goes to every window holding its centre ``((x1 + x2) / 2, (y1 + y2) / 2)`` (start ≤ c <
   start + 416) and is clipped to it (``x1 < x0 → x0``, ``x2 ≥ x0 + 416 → x0 + 415``, likewise
   in y); windows without a box are not written (train and val alike). Tiles are numbered
   ``<id>_<k>`` with k counting the kept windows row by row, as MTP names them.

Differences from MTP's script, all on purpose: the split is seeded; boxes stay in exact pixels
instead of passing through 6-decimal normalised YOLO text twice (≤ 0.003 px); COCO annotation
ids start at 1 (MTP's start at 0, which pycocotools counts as unmatched, cocoapi #664); and an
image smaller than 416 px keeps its boxes where they are, while MTP's script de-normalises them
by the *padded* size, stretching them (``official_pad_rescale=True`` reproduces that; real xView
images are typically 2,500 px a side or more, so it concerns few if any).

Classes: :data:`CLASSES` (MTP's ``XviewDataset`` order, category ids 0–59, names verbatim).
Splits: ``train``, ``val`` and ``test`` (= ``val``, as in the paper).
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsbench.data.detection import DetectionDataset, DetRecord, check_box_array, empty_boxes, require_split
from rsbench.data.io import image_header, read_json, read_raster
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import terrain
from rsbench.errors import DataError

#: xView ``type_id`` of class k (DIUx xview_class_labels.txt; MTP's ``xview_class2index``)
TYPE_IDS = (11, 12, 13, 15, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 40, 41, 42,
            44, 45, 47, 49, 50, 51, 52, 53, 54, 55, 56, 57, 59, 60, 61, 62, 63, 64, 65, 66, 71, 72, 73, 74, 76, 77, 79,
            83, 84, 86, 89, 91, 93, 94)
TYPE_TO_CLASS = {t: k for k, t in enumerate(TYPE_IDS)}
CLASSES = ("Fixed-wing Aircraft", "Small Aircraft", "Cargo Plane", "Helicopter", "Passenger Vehicle", "Small Car",
           "Bus", "Pickup Truck", "Utility Truck", "Truck", "Cargo Truck", "Truck w/Box", "Truck Tractor", "Trailer",
           "Truck w/Flatbed", "Truck w/Liquid", "Crane Truck", "Railway Vehicle", "Passenger Car", "Cargo Car",
           "Flat Car", "Tank car", "Locomotive", "Maritime Vessel", "Motorboat", "Sailboat", "Tugboat", "Barge",
           "Fishing Vessel", "Ferry", "Yacht", "Container Ship", "Oil Tanker", "Engineering Vehicle", "Tower crane",
           "Container Crane", "Reach Stacker", "Straddle Carrier", "Mobile Crane", "Dump Truck", "Haul Truck",
           "Scraper/Tractor", "Front loader/Bulldozer", "Excavator", "Cement Mixer", "Ground Grader", "Hut/Tent",
           "Shed", "Building", "Aircraft Hangar", "Damaged Building", "Facility", "Construction Site", "Vehicle Lot",
           "Helipad", "Storage Tank", "Shipping container lot", "Shipping Container", "Pylon", "Tower")
TILE = 416
PAD_VALUE = 128
SPLIT_FOLDERS = {"train": "train", "val": "val", "test": "val"}
SPLIT_RECORD = "rsbench_xview_split.json"
GEOJSON = "xView_train.geojson"
IMAGES = "train_images"

LAYOUT = """\
  <root>/xview_train_coco_format.json    <root>/train/images/<id>_<k>.png   (416x416 RGB tiles)
  <root>/xview_val_coco_format.json      <root>/val/images/<id>_<k>.png
written from the official release (<xview>/xView_train.geojson, <xview>/train_images/*.tif) by
  python scripts/prepare_xview.py <xview> <root> --seed 0
(COCO JSON: images file_name/width/height, annotations bbox [x, y, w, h] px, category_id 0-59;
MTP's yolo_format_patch folder has the same layout)."""


# ------------------------------------------------------------------------------------------ labels


@dataclass
class XViewLabels:
    """Boxes of each labelled image (``image_id`` → (N, 4) float64 x1, y1, x2, y2 as in the file and
    (N,) class ids), and what was dropped."""

    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    features: int = 0
    no_bounds: int = 0
    bad_bounds: int = 0
    unknown_types: Counter = field(default_factory=Counter)
    missing_images: Counter = field(default_factory=Counter)

    @property
    def kept(self) -> int:
        return sum(len(v) for v in self.labels.values())

    def summary(self) -> str:
        unknown = ", ".join(f"{t}: {n}" for t, n in sorted(self.unknown_types.items(), key=lambda x: str(x[0])))
        missing = ", ".join(f"{i} ({n} boxes)" for i, n in sorted(self.missing_images.items()))
        return (f"{self.features} features: {self.kept} boxes kept on {len(self.labels)} images; dropped "
                f"{sum(self.unknown_types.values())} with a type id outside the 60 classes"
                + (f" ({unknown})" if unknown else "")
                + f", {self.no_bounds} without bounds_imcoords, {self.bad_bounds} with unparsable bounds, "
                f"{sum(self.missing_images.values())} on images not in {IMAGES}/" + (f" ({missing})" if missing else ""))


def parse_bounds(text: Any) -> list[int] | None:
    """``"x1,y1,x2,y2"`` → four ints (``int()`` of each part, as the official converter), else ``None``."""
    try:
        parts = [int(v) for v in str(text).split(",")]
    except ValueError:
        return None
    return parts if len(parts) == 4 else None


def load_xview_labels(geojson: Path, image_dir: Path | None = None) -> XViewLabels:
    """The official GeoJSON as boxes per image; features on images missing from ``image_dir`` are
    dropped and counted (when ``image_dir`` is given)."""
    data = read_json(geojson, "GeoJSON")
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise DataError(f"{geojson}: not a GeoJSON FeatureCollection (no 'features' list)")
    out = XViewLabels()
    boxes: dict[str, list[list[int]]] = {}
    labels: dict[str, list[int]] = {}
    exists: dict[str, bool] = {}
    for f in data["features"]:
        out.features += 1
        p = (f or {}).get("properties") or {}
        b = p.get("bounds_imcoords")
        if not b:
            out.no_bounds += 1
            continue
        image_id = str(p.get("image_id", ""))
        if image_dir is not None:
            if image_id not in exists:
                exists[image_id] = bool(image_id) and (image_dir / image_id).is_file()
            if not exists[image_id]:
                out.missing_images[image_id] += 1
                continue
        box = parse_bounds(b)
        if box is None:
            out.bad_bounds += 1
            continue
        try:
            type_id = int(p.get("type_id"))
        except (TypeError, ValueError):
            type_id = p.get("type_id")
        if type_id not in TYPE_TO_CLASS:
            out.unknown_types[type_id] += 1
            continue
        boxes.setdefault(image_id, []).append(box)
        labels.setdefault(image_id, []).append(TYPE_TO_CLASS[type_id])
    for k, b in boxes.items():
        out.boxes[k] = np.asarray(b, np.float64).reshape(-1, 4)
        out.labels[k] = np.asarray(labels[k], np.int64)
    return out


def image_sort_key(image_id: str) -> tuple[int, int | str]:
    stem = Path(image_id).stem
    return (0, int(stem)) if stem.isdigit() else (1, stem)


def split_images(image_ids: Iterable[str], n_train: int = 700, seed: int = 0) -> tuple[list[str], list[str]]:
    """rsbench's seeded split: a permutation (``np.random.default_rng(seed)``) of the ids sorted by
    number; its first ``n_train`` are train, the rest val (each returned sorted)."""
    ids = sorted(set(image_ids), key=image_sort_key)
    if not 0 < n_train < len(ids):
        raise ValueError(f"n_train={n_train} must leave images for both splits ({len(ids)} labelled images)")
    perm = np.random.default_rng(seed).permutation(len(ids))
    train = sorted((ids[i] for i in perm[:n_train]), key=image_sort_key)
    val = sorted((ids[i] for i in perm[n_train:]), key=image_sort_key)
    return train, val


# ------------------------------------------------------------------------------------------ tiling


def tile_starts(length: int, block: int = TILE) -> np.ndarray:
    """Window starts along a side of ``length`` px (padded to ``block`` first): the official
    ``np.linspace(0, L - block, ceil((L - block) / block) + 1).astype(int)`` (truncation)."""
    end = max(int(length), block) - block
    return np.linspace(0, end, math.ceil(end / block) + 1, endpoint=True).astype(int)


@dataclass
class Tile:
    k: int                 # index among the image's kept tiles (the name's suffix)
    y0: int
    x0: int
    pixels: np.ndarray     # (block, block, C)
    boxes: np.ndarray      # (M, 4) float64 x1, y1, x2, y2 in tile pixels
    labels: np.ndarray     # (M,) int64


def tile_image(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, *, block: int = TILE,
               pad_value: int = PAD_VALUE, official_pad_rescale: bool = False) -> list[Tile]:
    """The kept 416² tiles of one (H, W, C) image with its boxes (module docstring, step 3)."""
    H, W = image.shape[:2]
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    lab = np.asarray(labels, np.int64).reshape(-1)
    b[:, 0::2] = b[:, 0::2].clip(0, W)
    b[:, 1::2] = b[:, 1::2].clip(0, H)
    ph, pw = max(0, block - H), max(0, block - W)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)) + ((0, 0),) * (image.ndim - 2), constant_values=pad_value)
        if official_pad_rescale:  # MTP normalises by the image's size and de-normalises by the padded one
            b[:, 0::2] *= (W + pw) / W
            b[:, 1::2] *= (H + ph) / H
    Hp, Wp = image.shape[:2]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    tiles: list[Tile] = []
    for y0 in tile_starts(Hp, block):
        for x0 in tile_starts(Wp, block):
            y0, x0 = int(y0), int(x0)
            sel = (cx >= x0) & (cx < x0 + block) & (cy >= y0) & (cy < y0 + block)
            if not sel.any():
                continue
            t = b[sel].copy()
            t[:, 0] = np.maximum(t[:, 0], x0)
            t[:, 1] = np.maximum(t[:, 1], y0)
            t[:, 2] = np.where(t[:, 2] >= x0 + block, x0 + block - 1, t[:, 2])
            t[:, 3] = np.where(t[:, 3] >= y0 + block, y0 + block - 1, t[:, 3])
            t -= np.array([x0, y0, x0, y0], np.float64)
            tiles.append(Tile(len(tiles), y0, x0, image[y0:y0 + block, x0:x0 + block], t, lab[sel]))
    return tiles


def _tile_one(job: tuple[Path, np.ndarray, np.ndarray, Path, int, bool]) -> list[dict[str, Any]]:
    """Read one GeoTIFF, write its kept tiles as PNG into ``out_dir``; their records (worker function)."""
    path, boxes, labels, out_dir, block, pad_rescale = job
    arr = read_raster(path)
    if arr.dtype != np.uint8 or arr.shape[0] != 3:
        raise DataError(f"{path}: {arr.shape[0]} band(s) of {arr.dtype}; xView images are 3-band 8-bit RGB")
    image = np.ascontiguousarray(arr.transpose(1, 2, 0))
    out = []
    for t in tile_image(image, boxes, labels, block=block, official_pad_rescale=pad_rescale):
        name = f"{path.stem}_{t.k}.png"
        Image.fromarray(np.ascontiguousarray(t.pixels)).save(out_dir / name)
        out.append({"file_name": name, "width": int(t.pixels.shape[1]), "height": int(t.pixels.shape[0]),
                    "source_image": path.name, "tile_x0": t.x0, "tile_y0": t.y0,
                    "boxes": t.boxes.tolist(), "labels": t.labels.tolist()})
    return out


def coco_document(tiles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """COCO detection JSON of tile records (image ids from 0, annotation ids from 1)."""
    images, anns = [], []
    for i, t in enumerate(tiles):
        images.append({k: t[k] for k in ("file_name", "width", "height", "source_image", "tile_x0", "tile_y0")} | {"id": i})
        for (x1, y1, x2, y2), c in zip(t["boxes"], t["labels"]):
            w, h = x2 - x1, y2 - y1
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(c), "bbox": [x1, y1, w, h],
                         "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": k, "name": n} for k, n in enumerate(CLASSES)]}


def prepare_xview(src: str | Path, dst: str | Path, *, seed: int = 0, n_train: int = 700, block: int = TILE,
                  workers: int = 1, official_pad_rescale: bool = False, overwrite: bool = False,
                  echo: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Official release in ``src`` → the loader's tiles in ``dst`` (module docstring); returns a summary."""
    src, dst = Path(src), Path(dst)
    say = echo or (lambda _m: None)
    geojson, image_dir = src / GEOJSON, src / IMAGES
    if not image_dir.is_dir():
        raise DataError(f"{image_dir}: folder of the xView train GeoTIFFs not found (expected {src}/{IMAGES}/*.tif "
                        f"beside {src}/{GEOJSON})")
    say(f"reading {geojson} ...")
    labels = load_xview_labels(geojson, image_dir)
    say(labels.summary())
    train, val = split_images(labels.labels, n_train=n_train, seed=seed)
    say(f"split: {len(train)} train / {len(val)} val images, rsbench's seeded split (seed {seed}); the authors' "
        "700/146 split was an unseeded np.random.shuffle and cannot be reproduced")
    summary: dict[str, Any] = {"seed": seed, "n_train": n_train, "train": train, "val": val, "tile": block,
                               "official_pad_rescale": official_pad_rescale, "features": labels.features,
                               "boxes_kept": labels.kept, "dropped_unknown_type": {str(k): v for k, v in labels.unknown_types.items()},
                               "dropped_no_bounds": labels.no_bounds, "dropped_bad_bounds": labels.bad_bounds,
                               "dropped_missing_image": dict(labels.missing_images), "tiles": {}, "tile_boxes": {}}
    for split, ids in (("train", train), ("val", val)):
        out_dir = dst / split / "images"
        if out_dir.is_dir() and any(out_dir.iterdir()):
            if not overwrite:
                raise DataError(f"{out_dir} already holds files; pass overwrite=True (--overwrite) to replace them")
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        jobs = [(image_dir / i, labels.boxes[i], labels.labels[i], out_dir, block, official_pad_rescale) for i in ids]
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers) as ex:
                results = list(ex.map(_tile_one, jobs, chunksize=1))
        else:
            results = [_tile_one(j) for j in jobs]
        tiles = [t for r in results for t in r]
        doc = coco_document(tiles)
        (dst / f"xview_{split}_coco_format.json").write_text(json.dumps(doc))
        summary["tiles"][split], summary["tile_boxes"][split] = len(tiles), len(doc["annotations"])
        say(f"{split}: {len(tiles)} tiles with {len(doc['annotations'])} boxes → {out_dir}")
    (dst / SPLIT_RECORD).write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------ loader


def parse_coco(path: Path, image_dir: Path, num_classes: int = len(CLASSES)) -> list[DetRecord]:
    """Records of a COCO detection JSON whose ``file_name``s lie in ``image_dir`` (image order kept)."""
    doc = read_json(path, "COCO annotation JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise DataError(f"{path}: not a COCO detection file (no 'images' list)")
    records: list[DetRecord] = []
    by_id: dict[Any, int] = {}
    for im in doc["images"]:
        if not isinstance(im, dict) or "file_name" not in im or "id" not in im:
            raise DataError(f"{path}: an image entry without 'file_name' or 'id': {str(im)[:120]}")
        img = image_dir / str(im["file_name"])
        if not img.is_file():
            raise DataError(f"{img}: image not found for the annotation file {path} (image id {im['id']})")
        w, h = im.get("width"), im.get("height")
        by_id[im["id"]] = len(records)
        records.append(DetRecord(img, *empty_boxes(), (int(h), int(w)) if w and h else None, path))
    boxes: list[list[list[float]]] = [[] for _ in records]
    labels: list[list[int]] = [[] for _ in records]
    for a in doc.get("annotations") or []:
        aid = a.get("id") if isinstance(a, dict) else None
        if not isinstance(a, dict) or a.get("image_id") not in by_id:
            raise DataError(f"{path}: annotation {aid} refers to the unknown image id "
                            f"{a.get('image_id') if isinstance(a, dict) else a!r}")
        c = a.get("category_id")
        if not isinstance(c, int) or not 0 <= c < num_classes:
            raise DataError(f"{path}: annotation {aid} has category_id {c!r}; xView's are 0..{num_classes - 1}")
        bb = a.get("bbox")
        if not isinstance(bb, (list, tuple)) or len(bb) != 4 or not all(isinstance(v, (int, float)) for v in bb):
            raise DataError(f"{path}: annotation {aid} has an unparsable bbox {bb!r} (expected [x, y, w, h])")
        x, y, w, h = (float(v) for v in bb)
        boxes[by_id[a["image_id"]]].append([x, y, x + w, y + h])
        labels[by_id[a["image_id"]]].append(c)
    for r, b, lab in zip(records, boxes, labels):
        if b:
            r.boxes, r.labels = check_box_array(b, path), np.asarray(lab, np.int64)
    return records


@DATASETS.register("xview")
class XView(DetectionDataset):
    """xView 416² tiles written by ``scripts/prepare_xview.py`` (module docstring); splits train, val, test (= val)."""

    classes = CLASSES
    splits = tuple(SPLIT_FOLDERS)
    expected_layout = LAYOUT
    log_name = "xview"

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 verify: str = "header") -> None:
        require_split("xView", split, self.splits)
        self.check_verify(verify)
        self.root, self.split, self.transforms = Path(root), split, transforms
        folder = SPLIT_FOLDERS[split]
        ann = self.root / f"xview_{folder}_coco_format.json"
        if not ann.is_file():
            hint = (" (this looks like the official release: tile it first with scripts/prepare_xview.py)"
                    if (self.root / GEOJSON).is_file() else "")
            raise DataError(f"xView {split}: {ann} not found{hint}.\nExpected layout:\n{LAYOUT}")
        self.records = parse_coco(ann, self.root / folder / "images")
        if not self.records:
            raise DataError(f"xView {split}: {ann} lists no images")
        if verify != "none":
            for r in self.records:
                (h, w), _ = image_header(r.image, verify=verify == "full")
                if r.size is not None and r.size != (h, w):
                    raise DataError(f"{r.image}: image is {w}x{h} px (WxH) but {ann} says "
                                    f"{r.size[1]}x{r.size[0]}")
                r.size = (h, w)

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, n_train: int = 2) -> Path:
        """A fake official release in ``root/xView/`` (:func:`write_fake_release`: 4 small GeoTIFFs and
        their GeoJSON), tiled by :func:`prepare_xview` into the loader's layout in ``root``."""
        write_fake_release(root / "xView", seed=seed)
        prepare_xview(root / "xView", root, seed=seed, n_train=n_train, echo=None, overwrite=True)
        return root


# ------------------------------------------------------------------------------------------ sample

#: (W, H) of the fake release's images: wider and narrower than a tile, one smaller both ways
SAMPLE_SIZES = {"104.tif": (500, 300), "1036.tif": (300, 200), "2355.tif": (900, 450), "5.tif": (460, 420)}


def write_fake_release(root: Path, seed: int = 0, sizes: dict[str, tuple[int, int]] | None = None,
                       boxes_per_image: int = 6) -> Path:
    """``root/train_images/<id>.tif`` (3-band uint8 GeoTIFFs) and ``root/xView_train.geojson`` in the
    official format, with features the preparation must drop: type ids 75 and 82, an empty
    ``bounds_imcoords`` and boxes on the missing image ``1395.tif``; one box sticks out of its image."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    sizes = sizes or SAMPLE_SIZES
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    feats: list[dict[str, Any]] = []

    def feature(image_id: str, bounds: str, type_id: int) -> None:
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0, 1e-4], [1e-4, 1e-4], [0, 0]]]},
                      "properties": {"bounds_imcoords": bounds, "edited_by": "rsbench", "cat_id": "1040010028371A00",
                                     "type_id": type_id, "ingest_time": "2017/07/24 12:49:09.118+00",
                                     "index_right": 2356, "image_id": image_id, "point_geom": "", "feature_id": len(feats),
                                     "grid_file": "Grid2.shp"}})

    for n, (image_id, (w, h)) in enumerate(sizes.items()):
        img = terrain(rng, h, w)
        for _ in range(boxes_per_image):
            k = int(rng.integers(0, len(TYPE_IDS)))
            bw, bh = (int(v) for v in rng.integers(8, 40, size=2))
            x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            img[y1:y1 + bh, x1:x1 + bw] = [(np.sin(2.4 * k + p) + 1) / 2 for p in (0.0, 2.1, 4.2)]
            feature(image_id, f"{x1},{y1},{x1 + bw},{y1 + bh}", TYPE_IDS[k])
        if n == 0:
            feature(image_id, f"{w - 10},{h // 2},{w + 15},{h // 2 + 12}", 73)    # beyond the right edge: clipped
            feature(image_id, "5,5,25,25", 75)                                      # erroneous type ids
            feature(image_id, "30,5,50,25", 82)
            feature(image_id, "", 73)                                                # no bounds
        pixels = (np.clip(img, 0, 1) * 255).astype(np.uint8).transpose(2, 0, 1)
        with rasterio.open(root / IMAGES / image_id, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8",
                           crs="EPSG:4326", transform=from_origin(-122.0 + n, 37.0, 3e-6, 3e-6)) as dst:
            dst.write(pixels)
    feature("1395.tif", "10,10,30,30", 73)   # its image is missing, as in the release
    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
           "features": feats}
    (root / GEOJSON).write_text(json.dumps(doc))
    return root
