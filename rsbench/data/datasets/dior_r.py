"""DIOR-R (Cheng et al., TGRS 2022): the 23,463 DIOR images (800×800 RGB JPEGs) with oriented boxes,
20 classes; official split train 5,862 / val 5,863 / test 11,738 images.

Layout: ``LAYOUT`` below (DIOR's JPEGImages-trainval, JPEGImages-test and ImageSets zips plus the
"Oriented Bounding Boxes" annotation folder, unpacked into ``root``; also accepted one level down in
``root/DIOR/`` or ``root/DIOR-R/``, and ``Annotations/Oriented_Bounding_Boxes`` with an underscore).

Annotations: one VOC-style XML per image; each ``<object>`` has ``<name>`` (mixed case, lower-cased
before the look-up as MMRotate's ``DIORDataset``) and ``<robndbox>`` with the corner tags
``x_left_top, y_left_top, x_right_top, y_right_top, x_right_bottom, y_right_bottom, x_left_bottom,
y_left_bottom`` — the polygon in that order (``<angle>`` beside it is ignored, as MMRotate does).
``<difficult>`` is read when present (default 0); MMRotate's loader ignores it (no object is ignored
in its metric), the flag is kept for the devkit-mode metric.

**Degenerate polygons** (two consecutive corners equal) are skipped — in every split, the test split
included, as MTP's ``DIORDataset`` (the loader behind the reported 71.29 mAP) does; that changes the
test ground-truth count. The count is in :attr:`num_degenerate` and the log.

Classes (ids) in MTP's / MMRotate's order — dam after the two expressway classes (as DIOR,
:mod:`rsbench.data.datasets.dior`).

Splits: ``train``, ``val`` (JPEGImages-trainval), ``test`` (JPEGImages-test) from
``ImageSets/Main/<split>.txt``; ``trainval`` = ``trainval.txt`` if present, else train then val (MTP
trains on the ConcatDataset of train and val and tests on test, locally).

Checks (at init): a listed image without its XML or JPEG, an unreadable XML, an object without
``<name>`` or ``<robndbox>`` (e.g. a horizontal-box file), an unknown class and a coordinate that is
not a number raise :class:`DataError` naming the file and object.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rsbench.data.datasets.dior import CLASS_INDEX, CLASSES, IMAGE_DIRS, RAW_NAMES, SPLITS, DIORLayout, xml_size
from rsbench.data.detection import require_split
from rsbench.data.io import image_header
from rsbench.data.registry import DATASETS
from rsbench.data.rotated import RotatedDetectionDataset, RotRecord, degenerate_polygons, empty_annotation
from rsbench.data.samples.synth import terrain
from rsbench.errors import DataError

log = logging.getLogger(__name__)

CORNER_TAGS = ("x_left_top", "y_left_top", "x_right_top", "y_right_top", "x_right_bottom", "y_right_bottom",
               "x_left_bottom", "y_left_bottom")
ANNOTATION_DIRS = ("Annotations/Oriented Bounding Boxes", "Annotations/Oriented_Bounding_Boxes")

LAYOUT = """\
  <root>/JPEGImages-trainval/00001.jpg ... 11725.jpg        (800x800 RGB)
  <root>/JPEGImages-test/11726.jpg ... 23463.jpg
  <root>/Annotations/Oriented Bounding Boxes/00001.xml ... 23463.xml   (robndbox corners; folder name with spaces)
  <root>/ImageSets/Main/train.txt  val.txt  test.txt  [trainval.txt]    (one 5-digit id per line)
i.e. the DIOR images and ImageSets plus DIOR-R's oriented annotations (https://gcheng-nwpu.github.io/#Datasets)
unpacked into <root> (or <root>/DIOR/)."""


def parse_obb_xml(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int] | None]:
    """(polygons (N, 8) float32, labels (N,) int64, difficult (N,) bool, degenerate (N,) bool, (H, W) or None)
    of a DIOR-R XML (every object; the caller drops the degenerate ones)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation XML not found") from None
    except (ET.ParseError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable XML annotation ({e}); the file may be truncated or corrupt") from None
    polys, labels, diffs = [], [], []
    for i, obj in enumerate(root.iter("object"), start=1):
        raw = (obj.findtext("name") or "").strip()
        if not raw:
            raise DataError(f"{path}: object {i} has no <name>")
        if raw.lower() not in CLASS_INDEX:
            raise DataError(f"{path}: object {i} has the unknown class name {raw!r}; DIOR-R's classes "
                            f"(lower-cased) are {', '.join(CLASSES)}")
        bb = obj.find("robndbox")
        if bb is None:
            hint = " (a horizontal <bndbox>: this is a DIOR HBB file)" if obj.find("bndbox") is not None else ""
            raise DataError(f"{path}: object {i} ({raw}) has no <robndbox>{hint}")
        coords = []
        for tag in CORNER_TAGS:
            text = bb.findtext(tag)
            try:
                v = float(text)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(f"{path}: object {i} ({raw}): <{tag}> is {text!r}, not a number") from None
            if not np.isfinite(v):
                raise DataError(f"{path}: object {i} ({raw}): <{tag}> is {text!r}")
            coords.append(v)
        d = (obj.findtext("difficult") or "0").strip()
        try:
            diffs.append(int(float(d)) > 0)
        except ValueError:
            raise DataError(f"{path}: object {i} ({raw}): <difficult> is {d!r}, not 0 or 1") from None
        polys.append(coords)
        labels.append(CLASS_INDEX[raw.lower()])
    size = xml_size(root)
    if not polys:
        p, lab, dif = empty_annotation()
        return p, lab, dif, np.zeros((0,), bool), size
    p = np.asarray(polys, np.float32)
    return p, np.asarray(labels, np.int64), np.asarray(diffs, bool), degenerate_polygons(p), size


@DATASETS.register("dior_r")
class DIORR(DIORLayout, RotatedDetectionDataset):
    """DIOR-R oriented boxes in the official layout (module docstring); splits train, val, trainval, test."""

    classes = CLASSES
    splits = SPLITS
    expected_layout = LAYOUT
    log_name = "dior_r"
    display_name = "DIOR-R"
    base_names = ("DIOR", "DIOR-R")
    annotation_dirs = ANNOTATION_DIRS
    box_kind = "oriented-box"

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 verify: str = "header", annotations: str | Path | None = None) -> None:
        require_split("DIOR-R", split, SPLITS)
        self.check_verify(verify)
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.base = self._find_base()
        self.ann_dir = self._find_annotations(annotations)
        self.image_dir = self._image_dir(IMAGE_DIRS[split])
        names, source = self._split_names(split)
        self.records: list[RotRecord] = []
        self.num_degenerate = 0
        for name in names:
            xml, img = self.ann_dir / f"{name}.xml", self.image_dir / f"{name}.jpg"
            if not xml.is_file():
                raise DataError(f"{xml}: annotation XML not found for image {name!r} of {source}")
            polys, labels, diffs, degenerate, size = parse_obb_xml(xml)
            if not img.is_file():
                raise DataError(f"{img}: image not found for the annotation {xml} ({name!r} is listed in {source})")
            if degenerate.any():
                self.num_degenerate += int(degenerate.sum())
                keep = ~degenerate
                polys, labels, diffs = polys[keep], labels[keep], diffs[keep]
            if verify != "none":
                size, _ = image_header(img)
            self.records.append(RotRecord(img, polys, labels, diffs, name, xml, size))
        if not self.records:
            raise DataError(f"DIOR-R {split}: {source} lists no images")
        self.log_degenerate()
        if verify == "full":
            for i in range(len(self)):
                self._load(i)

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, sizes: tuple[int, ...] = (96, 128, 64, 112, 80, 128, 96, 64)
                     ) -> Path:
        """The official layout with ``len(sizes)`` square JPEGs (real ones are 800² px): ids 00001–00005 in
        JPEGImages-trainval (train.txt 00001–00003, val.txt 00004–00005; no trainval.txt), the rest in
        JPEGImages-test. 00002 has no objects; 00001 (train) and 00006 (test) each hold one degenerate
        polygon (two equal corners); 00003's first object is ``<difficult>1``; mixed-case class names as the
        release spells them."""
        rng = np.random.default_rng(seed)
        ann, ids, n_trainval = cls._write_sample_skeleton(root, "Annotations/Oriented Bounding Boxes", len(sizes))
        for k, (name, size) in enumerate(zip(ids, sizes)):
            folder = "JPEGImages-trainval" if k < n_trainval else "JPEGImages-test"
            img = (np.clip(terrain(rng, size, size), 0, 1) * 255).astype(np.uint8)
            objects = [] if name == "00002" else sample_rotated_objects(rng, size, 1 + k % 3, len(CLASSES))
            for c, poly in objects:
                cv2.fillPoly(img, [np.round(poly.reshape(4, 2)).astype(np.int32)], sample_colour(c, len(CLASSES)))
            objs = [(c, poly, int(name == "00003" and j == 0)) for j, (c, poly) in enumerate(objects)]
            if name in ("00001", "00006"):  # a degenerate polygon, as a few DIOR-R annotations are
                x, y = int(rng.integers(4, size - 12)), int(rng.integers(4, size - 12))
                objs.append((CLASS_INDEX["vehicle"], np.array([x, y, x + 6, y, x + 6, y, x, y + 5], np.float32), 0))
            Image.fromarray(img).save(root / folder / f"{name}.jpg", quality=95)
            (ann / f"{name}.xml").write_text(obb_xml(f"{name}.jpg", size, size, objs))
        return root


def obb_xml(filename: str, width: int, height: int, objects: list[tuple[int, np.ndarray, int]]) -> str:
    """A DIOR-R-style XML (``objects``: class id, 8 corner coordinates, difficult)."""
    parts = []
    for c, poly, diff in objects:
        corners = "".join(f"      <{t}>{round(float(v))}</{t}>\n" for t, v in zip(CORNER_TAGS, poly))
        parts.append(f"  <object>\n    <type>robndbox</type>\n    <name>{RAW_NAMES[c]}</name>\n    <pose>Unspecified</pose>\n"
                     f"    <truncated>0</truncated>\n    <difficult>{diff}</difficult>\n    <robndbox>\n{corners}"
                     f"    </robndbox>\n    <angle>0</angle>\n  </object>\n")
    return (f"<annotation>\n  <filename>{filename}</filename>\n  <source>\n    <database>DIOR</database>\n  </source>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <segmented>0</segmented>\n{''.join(parts)}</annotation>\n")


def sample_colour(c: int, n: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class for the samples' objects (so a detector can learn them)."""
    return tuple(int(255 * (np.sin(2.4 * c * 20 / max(n, 1) + p) + 1) / 2) for p in (0.0, 2.1, 4.2))  # type: ignore


def sample_rotated_objects(rng: np.random.Generator, size: int, n: int, num_classes: int,
                           width: int | None = None) -> list[tuple[int, np.ndarray]]:
    """``n`` (class id, (8,) float32 polygon) rotated rectangles inside a ``width`` × ``size`` image, integer
    corners, clockwise on screen starting near the top-left (DIOR-R / DOTA order)."""
    width = width or size
    out: list[tuple[int, np.ndarray]] = []
    boxes: list[np.ndarray] = []
    for _ in range(n):
        for _try in range(50):  # objects do not overlap (their horizontal boxes are apart)
            w = float(rng.uniform(10, max(12, min(size, width) / 3)))
            h = float(rng.uniform(6, max(8, min(size, width) / 5)))
            r = 0.5 * np.hypot(w, h)
            cx, cy = float(rng.uniform(r + 1, width - r - 1)), float(rng.uniform(r + 1, size - r - 1))
            t = float(rng.uniform(-np.pi / 2, np.pi / 2))
            u = np.array([np.cos(t), np.sin(t)]) * w / 2
            v = np.array([-np.sin(t), np.cos(t)]) * h / 2
            c = np.array([cx, cy])
            pts = np.round(np.stack([c - u - v, c + u - v, c + u + v, c - u + v]))
            hb = np.concatenate([pts.min(0) - 1, pts.max(0) + 1])
            if all(hb[0] >= b[2] or hb[2] <= b[0] or hb[1] >= b[3] or hb[3] <= b[1] for b in boxes):
                break
        else:
            break
        boxes.append(hb)
        out.append((int(rng.integers(num_classes)), pts.reshape(8).astype(np.float32)))
    return out
