"""DIOR (Li et al., ISPRS J. P&RS 2020): 23,463 RGB 800×800 JPEGs (Google Earth), 20 classes,
192,472 horizontal boxes; official split train 5,862 / val 5,863 / test 11,738 images.

Layout: ``LAYOUT`` below (the release's JPEGImages-trainval, JPEGImages-test, Annotations and
ImageSets zips unpacked into ``root``). Also accepted: the same one level down in ``root/DIOR/``;
the HBB XMLs in ``Annotations/Horizontal_Bounding_Boxes/`` (underscores) or directly in
``Annotations/*.xml`` (the first of the three that exists; ``annotations=`` names another folder,
relative to the root or absolute); an image folder unpacked one level too deep
(``JPEGImages-trainval/JPEGImages-trainval/*.jpg``).

Annotations: one Pascal-VOC XML per image, ``<object><name>…</name><bndbox><xmin>…`` in integer
pixels (decimals are accepted); ``<size>`` is optional. Class names are lower-cased before the
look-up (the XMLs spell ``Expressway-Service-area``). Boxes are used as ``x1 = xmin, y1 = ymin,
x2 = xmax, y2 = ymax``, which is what MTP's ``scripts/dior_h_2_coco.py`` feeds mmdet
(``bbox = [xmin, ymin, xmax - xmin, ymax - ymin]``). Every box is kept; the training view drops
those under 1 px (:mod:`rsbench.data.detection`).

Classes (ids) in MTP's / mmrotate's order — **dam after the two expressway classes**:
0 airplane, 1 airport, 2 baseballfield, 3 basketballcourt, 4 bridge, 5 chimney,
6 expressway-service-area, 7 expressway-toll-station, 8 dam, 9 golffield, 10 groundtrackfield,
11 harbor, 12 overpass, 13 ship, 14 stadium, 15 storagetank, 16 tenniscourt, 17 trainstation,
18 vehicle, 19 windmill.

Splits: ``train``, ``val`` (images in JPEGImages-trainval), ``test`` (JPEGImages-test) from
``ImageSets/Main/<split>.txt``, and ``trainval`` (what MTP trains on): ``trainval.txt`` when the
copy has it (MTP's converter reads it), else ``train.txt`` followed by ``val.txt``.

Checks (at init): a listed image without its XML or its JPEG, an unreadable XML, an object
without ``<name>`` or ``<bndbox>`` (e.g. a DIOR-R oriented-box file), an unknown class name and
a coordinate that is not a number raise :class:`DataError` naming the file; ``verify='header'``
(default) also opens every JPEG's header (the size used by the training filter is the image's,
as MTP's converter reads it with ``cv2.imread``; ``verify='none'`` takes ``<size>`` instead),
``verify='full'`` decodes every image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.data.detection import DetectionDataset, DetRecord, check_box_array, empty_boxes, require_split
from rsbench.data.io import image_header, read_lines
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import terrain
from rsbench.errors import DataError

CLASSES = ("airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney",
           "expressway-service-area", "expressway-toll-station", "dam", "golffield", "groundtrackfield",
           "harbor", "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle",
           "windmill")
CLASS_INDEX = {c: i for i, c in enumerate(CLASSES)}
#: the spellings of the release's XMLs (mixed case), written by the sample
RAW_NAMES = tuple({"expressway-service-area": "Expressway-Service-area",
                   "expressway-toll-station": "Expressway-toll-station"}.get(c, c) for c in CLASSES)
SPLITS = ("train", "val", "trainval", "test")
IMAGE_DIRS = {"train": "JPEGImages-trainval", "val": "JPEGImages-trainval", "trainval": "JPEGImages-trainval",
              "test": "JPEGImages-test"}
ANNOTATION_DIRS = ("Annotations/Horizontal Bounding Boxes", "Annotations/Horizontal_Bounding_Boxes", "Annotations")

LAYOUT = """\
  <root>/JPEGImages-trainval/00001.jpg ... 11725.jpg        (800x800 RGB)
  <root>/JPEGImages-test/11726.jpg ... 23463.jpg
  <root>/Annotations/Horizontal Bounding Boxes/00001.xml ... 23463.xml   (VOC XML; folder name with spaces)
  <root>/ImageSets/Main/train.txt  val.txt  test.txt  [trainval.txt]    (one 5-digit id per line)
i.e. the DIOR zips of https://gcheng-nwpu.github.io/#Datasets unpacked into <root> (or <root>/DIOR/)."""


def parse_voc_xml(path: Path, class_index: dict[str, int] = CLASS_INDEX
                  ) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """(boxes (N, 4) float32 xyxy, labels (N,) int64, (H, W) from ``<size>`` or ``None``) of a VOC XML."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DataError(f"{path}: annotation XML not found") from None
    except (ET.ParseError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable XML annotation ({e}); the file may be truncated or corrupt") from None
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object"), start=1):
        raw = obj.findtext("name")
        if raw is None or not raw.strip():
            raise DataError(f"{path}: object {i} has no <name>")
        key = raw.strip().lower()
        if key not in class_index:
            raise DataError(f"{path}: object {i} has the unknown class name {raw.strip()!r}; DIOR's classes "
                            f"(lower-cased) are {', '.join(class_index)}")
        bb = obj.find("bndbox")
        if bb is None:
            hint = " (an oriented-box <robndbox>: this is a DIOR-R file)" if obj.find("robndbox") is not None else ""
            raise DataError(f"{path}: object {i} ({raw.strip()}) has no <bndbox>{hint}")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            text = bb.findtext(tag)
            try:
                coords.append(float(text))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(f"{path}: object {i} ({raw.strip()}): <{tag}> is {text!r}, not a number") from None
        boxes.append(coords)
        labels.append(class_index[key])
    size = xml_size(root)
    if not boxes:
        b, lab = empty_boxes()
        return b, lab, size
    return check_box_array(boxes, path), np.asarray(labels, np.int64), size


def xml_size(root: ET.Element) -> tuple[int, int] | None:
    """``(H, W)`` from a VOC ``<size>`` element, or None when absent or not positive."""
    s = root.find("size")
    if s is None:
        return None
    try:
        w, h = int(float(s.findtext("width") or 0)), int(float(s.findtext("height") or 0))
    except ValueError:
        return None
    return (h, w) if w > 0 and h > 0 else None


class DIORLayout:
    """Where the files of the DIOR release are (shared by DIOR and DIOR-R): the base folder, the annotation
    folder of the dataset's box kind, the image folder of a split, and the ImageSets split lists."""

    display_name = "DIOR"
    base_names: tuple[str, ...] = ("DIOR",)
    annotation_dirs: tuple[str, ...] = ANNOTATION_DIRS
    box_kind = "horizontal-box"
    expected_layout = LAYOUT
    root: Path
    base: Path
    split: str

    def _find_base(self) -> Path:
        for cand in (self.root, *(self.root / n for n in self.base_names)):
            if (cand / "ImageSets").is_dir() or (cand / "Annotations").is_dir():
                return cand
        raise DataError(f"{self.display_name}: no ImageSets/ or Annotations/ folder under {self.root} "
                        f"(nor {self.root / self.base_names[0]}).\nExpected layout:\n{self.expected_layout}")

    def _find_annotations(self, given: str | Path | None) -> Path:
        if given is not None:
            p = Path(given)
            p = p if p.is_absolute() else self.base / p
            if not p.is_dir():
                raise DataError(f"{self.display_name}: annotation folder {p} (dataset.kwargs.annotations) not found")
            return p
        for rel in self.annotation_dirs:
            p = self.base / rel
            if p.is_dir() and (rel != "Annotations" or any(p.glob("*.xml"))):  # the bare folder only with XMLs in it
                return p
        tried = "\n  ".join(str(self.base / r) for r in self.annotation_dirs)
        raise DataError(f"{self.display_name}: no folder of {self.box_kind} XMLs; looked for:\n  {tried}\n"
                        f"Expected layout:\n{self.expected_layout}")

    def _image_dir(self, folder: str) -> Path:
        d = self.base / folder
        if (d / folder).is_dir():  # unpacked one level too deep
            d = d / folder
        if not d.is_dir():
            raise DataError(f"{self.display_name} {self.split}: image folder {d} not found.\n"
                            f"Expected layout:\n{self.expected_layout}")
        return d

    @staticmethod
    def _write_sample_skeleton(root: Path, annotations: str, n: int) -> tuple[Path, list[str], int]:
        """The sample's folders and split lists (ids 00001..n; train 00001-00003, val 00004-00005, no
        trainval.txt, test the rest): (annotation folder, ids, number of trainval images)."""
        main, ann = root / "ImageSets" / "Main", root / annotations
        for d in (main, ann, root / "JPEGImages-trainval", root / "JPEGImages-test"):
            d.mkdir(parents=True, exist_ok=True)
        ids = [f"{i:05d}" for i in range(1, n + 1)]
        n_trainval = 5
        for split, names in {"train": ids[:3], "val": ids[3:n_trainval], "test": ids[n_trainval:]}.items():
            (main / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
        return ann, ids, n_trainval

    def _split_names(self, split: str) -> tuple[list[str], str]:
        main = self.base / "ImageSets" / "Main"
        if split == "trainval" and not (main / "trainval.txt").is_file():
            a, sa = self._split_names("train")
            b, sb = self._split_names("val")
            return list(dict.fromkeys(a + b)), f"{sa} + {sb}"
        path = main / f"{split}.txt"
        if not path.is_file():
            raise DataError(f"{path}: split file not found.\nExpected layout:\n{self.expected_layout}")
        names = [n[:-4] if n.lower().endswith((".jpg", ".xml")) else n for n in read_lines(path)]
        return names, str(path)


@DATASETS.register("dior")
class DIOR(DIORLayout, DetectionDataset):
    """DIOR horizontal boxes in the official layout (module docstring); splits train, val, trainval, test."""

    classes = CLASSES
    splits = SPLITS
    expected_layout = LAYOUT
    log_name = "dior"

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 verify: str = "header", annotations: str | Path | None = None) -> None:
        require_split("DIOR", split, SPLITS)
        self.check_verify(verify)
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.base = self._find_base()
        self.ann_dir = self._find_annotations(annotations)
        self.image_dir = self._image_dir(IMAGE_DIRS[split])
        names, source = self._split_names(split)
        self.records: list[DetRecord] = []
        for name in names:
            xml, img = self.ann_dir / f"{name}.xml", self.image_dir / f"{name}.jpg"
            if not xml.is_file():
                raise DataError(f"{xml}: annotation XML not found for image {name!r} of {source}")
            boxes, labels, size = parse_voc_xml(xml)
            if not img.is_file():
                raise DataError(f"{img}: image not found for the annotation {xml} ({name!r} is listed in {source})")
            if verify != "none":
                size, _ = image_header(img)
            self.records.append(DetRecord(img, boxes, labels, size, xml))
        if not self.records:
            raise DataError(f"DIOR {split}: {source} lists no images")
        if verify == "full":
            for i in range(len(self)):
                self._load(i)

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, sizes: tuple[int, ...] = (96, 128, 64, 112, 80, 128, 96, 64)
                     ) -> Path:
        """The official layout with ``len(sizes)`` square JPEGs (real ones are 800² px): ids 00001–00005 in
        JPEGImages-trainval (train.txt 00001–00003, val.txt 00004–00005; no trainval.txt, so ``trainval``
        is the union), the rest in JPEGImages-test. Train holds one image without objects (00002) and
        one box 0 px wide (in 00001); class names are written in the release's mixed case."""
        rng = np.random.default_rng(seed)
        ann, ids, n_trainval = cls._write_sample_skeleton(root, "Annotations/Horizontal Bounding Boxes", len(sizes))
        for k, (name, size) in enumerate(zip(ids, sizes)):
            folder = "JPEGImages-trainval" if k < n_trainval else "JPEGImages-test"
            img = terrain(rng, size, size)
            objects = [] if name == "00002" else _sample_objects(rng, size, 1 + k % 3)
            for c, (x1, y1, x2, y2) in objects:
                img[y1:y2, x1:x2] = _SAMPLE_COLOURS[c]
            if name == "00001":  # a degenerate box (xmin == xmax), as a few DIOR annotations are
                x = int(rng.integers(4, size - 8))
                objects.append((CLASS_INDEX["vehicle"], (x, 5, x, 12)))
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / folder / f"{name}.jpg", quality=95)
            (ann / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", size, size, objects))
        return root


def voc_xml(filename: str, width: int, height: int, objects: list[tuple[int, tuple[int, int, int, int]]]) -> str:
    """A DIOR-style VOC XML (``objects``: class id and xmin, ymin, xmax, ymax)."""
    objs = "".join(
        f"  <object>\n    <name>{RAW_NAMES[c]}</name>\n    <pose>Unspecified</pose>\n    <bndbox>\n"
        f"      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n"
        f"    </bndbox>\n  </object>\n" for c, (x1, y1, x2, y2) in objects)
    return (f"<annotation>\n  <filename>{filename}</filename>\n  <source>\n    <database>DIOR</database>\n  </source>\n"
            f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <segmented>0</segmented>\n{objs}</annotation>\n")


#: a distinct colour per class for the sample's objects (so a detector can learn them)
_SAMPLE_COLOURS = np.array([[(np.sin(2.4 * c + p) + 1) / 2 for p in (0.0, 2.1, 4.2)] for c in range(len(CLASSES))],
                           np.float32)


def _sample_objects(rng: np.random.Generator, size: int, n: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(size // 8, size // 3, size=2))
        x1, y1 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        out.append((int(rng.integers(0, len(CLASSES))), (x1, y1, x1 + w, y1 + h)))
    return out
