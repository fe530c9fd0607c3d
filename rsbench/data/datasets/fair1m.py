"""FAIR1M-2.0 (Sun et al., ISPRS J. P&RS 2022): fine-grained oriented objects in 0.3–0.8 m Gaofen-2 /
Google Earth images of 1,000–10,000 px (8-bit RGB TIFFs), 37 classes; test labels withheld (server).

Two layouts (``layout="auto"`` picks the one it finds):

* ``official`` — the release: ``<root>/train/part*/images/<n>.tif`` + ``<root>/train/part*/labelXml/<n>.xml``,
  ``<root>/validation/{images,labelXml}``, ``<root>/test/images`` (no labels). Splits ``train`` (every
  part), ``val`` (validation), ``trainval`` (both; MTP's training set), ``test``. Image ids repeat across
  parts and splits, so the sample name is ``<part>_<n>`` (``part1_12``, ``validation_3``), and ``<n>``
  in ``test`` (the name of the submission XML).
* ``patches`` — ``<root>/<split>/images/*.png`` + ``<root>/<split>/annfiles/*.txt`` (DOTA-style lines with
  hyphenated class names; MTP trains on such a clip, ``fair1m20_clip/trainval``, whose tool and patch
  size are not published — ``scripts/split_dota.py --dataset fair1m`` writes one with img_split's rules).

XML (``annotation/objects/object``): class in ``possibleresult/name`` (spaces, e.g. ``Small Car``; the
``other-*`` names hyphenated), ``points/point`` texts ``"x,y"`` — five points, the fifth repeating the
first (dropped; four are accepted too). No difficult flag (all false). Class names are matched
case-insensitively with spaces as hyphens.

Classes (ids), MTP's ``FAIR1Mv2Dataset`` order = case-insensitive alphabetical, so the ``other-*``
classes sit between Motorboat and Passenger-Ship: 0 A220, 1 A321, 2 A330, 3 A350, 4 ARJ21,
5 Baseball-Field, 6 Basketball-Court, 7 Boeing737, 8 Boeing747, 9 Boeing777, 10 Boeing787, 11 Bridge,
12 Bus, 13 C919, 14 Cargo-Truck, 15 Dry-Cargo-Ship, 16 Dump-Truck, 17 Engineering-Ship, 18 Excavator,
19 Fishing-Boat, 20 Football-Field, 21 Intersection, 22 Liquid-Cargo-Ship, 23 Motorboat, 24 other-airplane,
25 other-ship, 26 other-vehicle, 27 Passenger-Ship, 28 Roundabout, 29 Small-Car, 30 Tennis-Court,
31 Tractor, 32 Trailer, 33 Truck-Tractor, 34 Tugboat, 35 Van, 36 Warship. :data:`OFFICIAL_NAMES` gives
the release's spelling of each (``Small Car``), which a submission XML uses.

Degenerate polygons (two equal consecutive corners) are skipped and counted, in both layouts, as MTP's
``FAIR1Mv2Dataset`` does on its patches. TIFFs are read with PIL (8-bit RGB), else with rasterio.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rsbench.data.datasets.dior_r import sample_colour, sample_rotated_objects
from rsbench.data.detection import require_split
from rsbench.data.dota_split import Source
from rsbench.data.io import image_header, raster_header, read_image, read_raster
from rsbench.data.registry import DATASETS
from rsbench.data.rotated import (
    ClassLookup,
    RotatedDetectionDataset,
    RotRecord,
    degenerate_polygons,
    empty_annotation,
    large_images,
    parse_dota_txt,
)
from rsbench.data.samples.synth import terrain
from rsbench.errors import DataError

CLASSES = ("A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737", "Boeing747",
           "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck", "Dry-Cargo-Ship", "Dump-Truck",
           "Engineering-Ship", "Excavator", "Fishing-Boat", "Football-Field", "Intersection", "Liquid-Cargo-Ship",
           "Motorboat", "other-airplane", "other-ship", "other-vehicle", "Passenger-Ship", "Roundabout", "Small-Car",
           "Tennis-Court", "Tractor", "Trailer", "Truck-Tractor", "Tugboat", "Van", "Warship")
#: the release's spelling (spaces; the ``other-*`` names keep their hyphen)
OFFICIAL_NAMES = tuple(c if c.startswith("other-") else c.replace("-", " ") for c in CLASSES)
SPLITS = ("train", "val", "trainval", "test")
LOOKUP = ClassLookup(CLASSES, fold=True)

LAYOUT = """\
  official (the release):  <root>/train/part1/images/0.tif ...   <root>/train/part1/labelXml/0.xml ...
                           <root>/train/part2/{images,labelXml}/   <root>/validation/{images,labelXml}/
                           <root>/test/images/*.tif              (no labels: the server scores test)
  patches (python scripts/split_dota.py --dataset fair1m --src <release> --out <root>):
                           <root>/trainval/images/*.png  <root>/trainval/annfiles/*.txt   <root>/test/images/*.png"""


def parse_fair1m_xml(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(polygons (N, 8) float32, labels (N,) int64) of a FAIR1M XML (every object)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation XML not found") from None
    except (ET.ParseError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable XML annotation ({e}); the file may be truncated or corrupt") from None
    polys, labels = [], []
    objects = root.find("objects")
    for i, obj in enumerate(objects.findall("object") if objects is not None else [], start=1):
        raw = (obj.findtext("possibleresult/name") or "").strip()
        if not raw:
            raise DataError(f"{path}: object {i} has no <possibleresult><name>")
        label = LOOKUP.get(raw)
        if label is None:
            raise DataError(f"{path}: object {i} has the unknown class name {raw!r}; FAIR1M-2.0's classes are "
                            f"{', '.join(OFFICIAL_NAMES)}")
        pts = []
        for text in (p.text or "" for p in obj.findall("points/point")):
            m = re.fullmatch(r"\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*", text)
            try:
                pts.append((float(m[1]), float(m[2])))  # type: ignore[index]
            except (TypeError, ValueError):
                raise DataError(f"{path}: object {i} ({raw}): point {text!r} is not 'x,y'") from None
        if len(pts) == 5 and pts[4] == pts[0]:
            pts = pts[:4]
        if len(pts) != 4:
            raise DataError(f"{path}: object {i} ({raw}) has {len(pts)} points; expected 5 (the 5th repeating the "
                            "1st) or 4")
        if not np.isfinite(pts).all():
            raise DataError(f"{path}: object {i} ({raw}): non-finite coordinates")
        polys.append([v for p in pts for v in p])
        labels.append(label)
    if not polys:
        p, lab, _ = empty_annotation()
        return p, lab
    return np.asarray(polys, np.float32), np.asarray(labels, np.int64)


def read_tif(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of a FAIR1M TIFF: PIL for 8-bit RGB / grey, rasterio for what PIL cannot open."""
    try:
        with large_images():
            return read_image(path, bands=3, strict=False)
    except DataError as pil_error:
        if not path.is_file():
            raise
        try:
            arr = read_raster(path)
        except DataError:
            raise pil_error from None
    if arr.dtype != np.uint8:
        raise DataError(f"{path}: {arr.dtype} pixels; FAIR1M images are 8-bit")
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    if arr.shape[0] < 3:
        raise DataError(f"{path}: has {arr.shape[0]} bands, expected 3 (RGB)")
    return np.ascontiguousarray(arr[:3].transpose(1, 2, 0))


def _official_folders(root: Path, split: str) -> list[tuple[Path, Path | None, str]]:
    """(image folder, label folder or None, name prefix) of ``split`` in the release."""
    out: list[tuple[Path, Path | None, str]] = []
    if split in ("train", "trainval"):
        parts = sorted((p for p in (root / "train").glob("part*") if p.is_dir()), key=lambda p: _num_key(p.name))
        if not parts:
            raise DataError(f"FAIR1M {split}: no {root / 'train' / 'part*'} folders.\nExpected layout:\n{LAYOUT}")
        out += [(p / "images", p / "labelXml", p.name) for p in parts]
    if split in ("val", "trainval"):
        out.append((root / "validation" / "images", root / "validation" / "labelXml", "validation"))
    if split == "test":
        out.append((root / "test" / "images", None, ""))
    for img_dir, ann_dir, _ in out:
        if not img_dir.is_dir():
            raise DataError(f"FAIR1M {split}: image folder {img_dir} not found.\nExpected layout:\n{LAYOUT}")
        if ann_dir is not None and not ann_dir.is_dir():
            raise DataError(f"FAIR1M {split}: label folder {ann_dir} not found beside {img_dir}")
    return out


def _num_key(s: str) -> tuple[int, int | str]:
    digits = re.sub(r"\D", "", s)
    return (0, int(digits)) if digits and s.rstrip("0123456789") + digits == s else (1, s)


def _images(folder: Path, exts: tuple[str, ...] = (".tif", ".tiff")) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in exts]
    return sorted(files, key=lambda p: _num_key(p.stem))


@DATASETS.register("fair1m")
class FAIR1M(RotatedDetectionDataset):
    """FAIR1M-2.0 in the official or the patch layout (module docstring)."""

    classes = CLASSES
    splits = SPLITS
    expected_layout = LAYOUT
    log_name = "fair1m"

    def __init__(self, root: str | Path, split: str = "trainval", transforms: Callable | None = None, *,
                 layout: str = "auto", verify: str = "header") -> None:
        require_split("FAIR1M", split, SPLITS)
        self.check_verify(verify)
        if layout not in ("auto", "official", "patches"):
            raise DataError(f"FAIR1M layout {layout!r}: expected auto, official or patches")
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.layout = layout if layout != "auto" else self._pick_layout()
        self.records: list[RotRecord] = []
        self.num_degenerate = 0
        self.has_annotations = split != "test"
        if self.layout == "patches":
            self._read_patches()
        else:
            for img_dir, ann_dir, prefix in _official_folders(self.root, split):
                for img in _images(img_dir):
                    name = f"{prefix}_{img.stem}" if prefix else img.stem
                    if ann_dir is None:
                        p, lab, d = empty_annotation()
                        self.records.append(RotRecord(img, p, lab, d, name))
                        continue
                    xml = ann_dir / f"{img.stem}.xml"
                    if not xml.is_file():
                        raise DataError(f"{xml}: annotation XML not found for the image {img}")
                    polys, labels = parse_fair1m_xml(xml)
                    self._add(img, polys, labels, np.zeros(len(labels), bool), name, xml)
        if not self.records:
            raise DataError(f"FAIR1M {split}: no images found ({self.layout} layout under {self.root}).\n"
                            f"Expected layout:\n{LAYOUT}")
        self.log_degenerate()
        if verify != "none":
            for r in self.records:
                r.size = self._header(r.image)
        if verify == "full":
            for i in range(len(self)):
                self._load(i)

    def write_submission(self, merged, out_dir: Path) -> dict:
        """One XML per test image + zip, as MTP's converter (:func:`write_fair1m_xml`; the release's
        class spellings)."""
        from rsbench.data.rotated_submission import write_fair1m_xml

        ids = self.original_ids()
        return write_fair1m_xml(merged, OFFICIAL_NAMES, self.original_sizes(ids), out_dir, order=ids)

    def original_sizes(self, ids: list[str]) -> dict[str, dict[str, object]]:
        """Each original image's file name and size: from the release's TIFF headers (official layout) or the
        ``sources.json`` that ``scripts/split_dota.py`` writes beside the patches; without it, the extent the
        patches cover (a padded window can reach past the image: a warning says so)."""
        import logging

        from rsbench.data.dota_split import PATCH_NAME, read_sources

        if self.layout == "official":
            out = {}
            for r in self.records:
                h, w = r.size or self._header(r.image)
                out[r.name] = {"file": r.image.name, "width": w, "height": h, "depth": 3}
            return out
        known = read_sources(self.root / self.split) or {}
        missing = [i for i in ids if i not in known]
        if missing:
            logging.getLogger(__name__).warning(
                "FAIR1M %s: %s has no size for %d image(s) (e.g. %s); the submission XMLs state the extent "
                "their patches cover, which padding can make larger than the image", self.split,
                self.root / self.split / "sources.json", len(missing), missing[0])
            extent: dict[str, list[int]] = {}
            for r in self.records:
                m = PATCH_NAME.match(r.name)
                if m is None:
                    continue
                h, w = r.size or self._header(r.image)
                e = extent.setdefault(m["id"], [0, 0])
                e[0], e[1] = max(e[0], int(m["x"]) + w), max(e[1], int(m["y"]) + h)
            for i in missing:
                w, h = extent.get(i, (0, 0))
                known[i] = {"file": f"{i}.tif", "width": w, "height": h, "depth": 3}
        return known

    def _pick_layout(self) -> str:
        if (self.root / self.split / "annfiles").is_dir() or (
                self.split == "test" and (self.root / "test" / "images").is_dir()
                and any((self.root / "test" / "images").glob("*.png"))):
            return "patches"
        return "official"

    def _add(self, img: Path, polys: np.ndarray, labels: np.ndarray, diffs: np.ndarray, name: str,
             source: Path | None) -> None:
        bad = degenerate_polygons(polys)
        if bad.any():
            self.num_degenerate += int(bad.sum())
            polys, labels, diffs = polys[~bad], labels[~bad], diffs[~bad]
        self.records.append(RotRecord(img, polys, labels, diffs, name, source))

    def _read_patches(self) -> None:
        img_dir, ann_dir = self.root / self.split / "images", self.root / self.split / "annfiles"
        if not img_dir.is_dir():
            raise DataError(f"FAIR1M {self.split}: image folder {img_dir} not found.\nExpected layout:\n{LAYOUT}")
        if not self.has_annotations or not ann_dir.is_dir():
            self.has_annotations = False
            p, lab, d = empty_annotation()
            images = _images(img_dir, (".png",))
            self.records += [RotRecord(img, p, lab, d, img.stem) for img in images]
            return
        txts = sorted(ann_dir.glob("*.txt"))
        if not txts:
            raise DataError(f"{ann_dir}: no label files (*.txt)")
        for txt in txts:
            img = img_dir / f"{txt.stem}.png"
            if not img.is_file():
                raise DataError(f"{img}: image not found for the label file {txt}")
            polys, labels, diffs, _ = parse_dota_txt(txt, LOOKUP, dataset="FAIR1M-2.0")
            self._add(img, polys, labels, diffs, txt.stem, txt)

    @staticmethod
    def _header(path: Path) -> tuple[int, int]:
        try:
            with large_images():
                return image_header(path)[0]
        except DataError:
            if not path.is_file():
                raise
            return raster_header(path)[0]

    def read_pixels(self, path: Path) -> np.ndarray:
        return read_tif(path) if path.suffix.lower() in (".tif", ".tiff") else super().read_pixels(path)

    # -- sample data ----------------------------------------------------------------------------
    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, patches: bool = False, patch_size: int = 128,
                     gap: int = 32) -> Path:
        """The release's layout: ``train/part1`` (0.tif 96², 1.tif 128×100), ``train/part2`` (0.tif 112², the
        same id as part1's), ``validation`` (0.tif 80²), ``test/images`` (0.tif, 1.tif; no labels). Each
        XML uses the release's spellings (``Small Car``) and five points; part1/0 holds an ``other-airplane``
        and part2/0 one degenerate polygon. ``patches=True``: the release goes to ``root/release/`` and
        ``root`` receives its split (``{train,val,trainval}/{images,annfiles}``, ``test/images``)."""
        src = root / "release" if patches else root
        rng = np.random.default_rng(seed)
        specs = [("train/part1", "0", (96, 96)), ("train/part1", "1", (128, 100)), ("train/part2", "0", (112, 112)),
                 ("validation", "0", (80, 80)), ("test", "0", (90, 90)), ("test", "1", (72, 64))]
        for folder, stem, (w, h) in specs:
            (src / folder / "images").mkdir(parents=True, exist_ok=True)
            img = (np.clip(terrain(rng, h, w), 0, 1) * 255).astype(np.uint8)
            objects = sample_rotated_objects(rng, h, 2 + (w > 100), len(CLASSES), width=w)
            if folder == "train/part1" and stem == "0":
                objects[0] = (CLASSES.index("other-airplane"), objects[0][1])
            for c, poly in objects:
                cv2.fillPoly(img, [np.round(poly.reshape(4, 2)).astype(np.int32)], sample_colour(c, len(CLASSES)))
            Image.fromarray(img).save(src / folder / "images" / f"{stem}.tif")
            if folder == "test":
                continue
            if folder == "train/part2":
                objects.append((CLASSES.index("Small-Car"), np.array([5, 5, 15, 5, 15, 5, 5, 12], np.float32)))
            (src / folder / "labelXml").mkdir(parents=True, exist_ok=True)
            (src / folder / "labelXml" / f"{stem}.xml").write_text(fair1m_xml(f"{stem}.tif", w, h, objects))
        if patches:
            from rsbench.data.dota_split import split_images

            for split in ("train", "val", "trainval", "test"):
                sources, labelled = split_sources(src, split)
                split_images(sources, root / split, sizes=[patch_size], gaps=[gap], rates=[1.0],
                             write_labels=labelled)
        return root


def fair1m_xml(filename: str, width: int, height: int, objects: list[tuple[int, np.ndarray]],
               scores: list[float] | None = None) -> str:
    """A FAIR1M-2.0 XML (``objects``: class id and 8 coordinates; five points, the 5th closing the ring)."""
    objs = []
    for k, (c, poly) in enumerate(objects):
        p = np.asarray(poly, np.float64).reshape(4, 2)
        pts = "".join(f"<point>{x:.6f},{y:.6f}</point>" for x, y in [*p, p[0]])
        prob = f"<probability>{scores[k]:.6f}</probability>" if scores is not None else ""
        objs.append(f"<object><coordinate>pixel</coordinate><type>rectangle</type><description>None</description>"
                    f"<possibleresult><name>{OFFICIAL_NAMES[c]}</name>{prob}</possibleresult>"
                    f"<points>{pts}</points></object>")
    return ('<?xml version="1.0" encoding="utf-8"?>\n<annotation><source><filename>'
            f"{filename}</filename><origin>GF2/GF3</origin></source><research><version>2.0</version>"
            "<provider>FAIR1M</provider><author>rsbench sample</author><pluginname>FAIR1M</pluginname>"
            "<pluginclass>object detection</pluginclass><time>2021-03</time></research>"
            f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            f"<objects>{''.join(objs)}</objects></annotation>\n")


def _xml_reader(ann_dir: Path | None):
    def read(img: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
        if ann_dir is None:
            return np.zeros((0, 8), np.float32), [], np.zeros((0,), np.int64)
        polys, labels = parse_fair1m_xml(ann_dir / f"{img.stem}.xml")
        return polys, [CLASSES[i] for i in labels], np.zeros(len(labels), np.int64)
    return read


def split_sources(src: Path, split: str) -> tuple[list[Source], bool]:
    """The release folders of ``split`` for :mod:`rsbench.data.dota_split` (patch ids ``<part>_<n>``;
    ``<n>`` in test); class names written hyphenated (``Small-Car``) as MTP's patch files."""
    require_split("FAIR1M", split, SPLITS)
    out = []
    for img_dir, ann_dir, prefix in _official_folders(Path(src), split):
        out.append(Source(img_dir, _xml_reader(ann_dir), (lambda p, pre=prefix: f"{pre}_{p.stem}") if prefix else None))
    return out, split != "test"
