"""DOTA v1.0 (Xia et al., CVPR 2018; 2,806 images, 15 classes) and v2.0 (Ding et al., TPAMI 2021; 11,268
images, 18 classes): aerial images of 800–20,000 px with oriented quadrilaterals; RGB and grey PNGs.

Two layouts (``layout="auto"`` picks the one it finds):

* ``official`` — the release: ``<root>/{train,val}/images/P*.png`` + ``labelTxt/P*.txt`` (also the
  OpenDataLab nesting ``labelTxt-v1.0/labelTxt``, or ``label_dir=``), ``<root>/test/images`` (no labels).
  Splits train, val, trainval (= both), test.
* ``patches`` — **what training reads**: the output of ``scripts/split_dota.py``
  (:mod:`rsbench.data.dota_split`, MMRotate's ``img_split``): ``<root>/<split>/images/<patch>.png`` +
  ``<root>/<split>/annfiles/<patch>.txt`` (no header lines; difficult ``2`` = truncated by the window),
  ``<root>/test/images`` without ``annfiles``. Patch names ``P0001__1024__0___824`` are the sample names; a
  submission merges them back by name (:func:`rsbench.data.dota_split.merge_patch_detections`). MTP reads
  ``split_ms_dotav1`` (v1.0, multi-scale) and ``split_ss_dotav2`` (v2.0, single-scale) this way.

Label lines ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (CRLF or LF; 9 fields = difficult 0), optional
header lines (``imagesource:``, ``gsd:``) anywhere; see :func:`rsbench.data.rotated.parse_dota_txt`.
As MMRotate's ``DOTADataset``: no polygon is skipped (degenerate ones included), difficult objects are
kept (``diff_thr=100``; the ``difficult`` flag, value > 0, is there for the devkit-mode metric), images
are ``<stem>.png``. Grey PNGs are read as 3 equal bands.

``test`` (either layout) has no labels (the evaluation server scores it): ``has_annotations`` is
false, samples hold no objects, and the task writes the Task-1 submission.

Classes (ids): v1.0 0 plane, 1 baseball-diamond, 2 bridge, 3 ground-track-field, 4 small-vehicle,
5 large-vehicle, 6 ship, 7 tennis-court, 8 basketball-court, 9 storage-tank, 10 soccer-ball-field,
11 roundabout, 12 harbor, 13 swimming-pool, 14 helicopter; v1.5 adds 15 container-crane; v2.0 adds
16 airport, 17 helipad (MMRotate's ``DOTADataset`` / ``DOTAv2Dataset`` order).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from rsbench.data.datasets.dior_r import sample_colour, sample_rotated_objects
from rsbench.data.detection import require_split
from rsbench.data.dota_split import Source, dota_reader
from rsbench.data.io import image_header
from rsbench.data.registry import DATASETS
from rsbench.data.rotated import (
    ClassLookup,
    RotatedDetectionDataset,
    RotRecord,
    empty_annotation,
    large_images,
    parse_dota_txt,
)
from rsbench.data.samples.synth import terrain
from rsbench.errors import DataError

CLASSES_V1 = ("plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle", "ship",
              "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout", "harbor",
              "swimming-pool", "helicopter")
CLASSES_V15 = CLASSES_V1 + ("container-crane",)
CLASSES_V2 = CLASSES_V15 + ("airport", "helipad")
VERSIONS = {"1.0": CLASSES_V1, "1.5": CLASSES_V15, "2.0": CLASSES_V2}
SPLITS = ("train", "val", "trainval", "test")
OFFICIAL_PARTS = {"train": ("train",), "val": ("val",), "trainval": ("train", "val"), "test": ("test",)}

LAYOUT = """\
  official (the release):  <root>/train/images/P0000.png ...   <root>/train/labelTxt/P0000.txt ...
                           <root>/val/images/ ...  <root>/val/labelTxt/ ...   <root>/test/images/ (no labels)
  patches (for training; python scripts/split_dota.py --src <release> --out <root> --preset ss|ms):
                           <root>/trainval/images/P0000__1024__0___0.png   <root>/trainval/annfiles/P0000__1024__0___0.txt
                           <root>/test/images/P0006__1024__0___0.png       (no annfiles: the server scores test)"""


def normalise_version(version: str | float) -> str:
    v = str(version).lower().lstrip("v")
    v = {"1": "1.0", "2": "2.0", "10": "1.0", "15": "1.5", "20": "2.0"}.get(v, v)
    if v not in VERSIONS:
        raise DataError(f"DOTA version {version!r}: expected 1.0, 1.5 or 2.0")
    return v


def label_dir_candidates(split_dir: Path, version: str, given: str | None) -> list[Path]:
    if given:
        return [split_dir / given]
    return [split_dir / "labelTxt", split_dir / f"labelTxt-v{version}" / "labelTxt", split_dir / f"labelTxt-v{version}"]


@DATASETS.register("dota")
class DOTA(RotatedDetectionDataset):
    """DOTA v1.0 / v1.5 / v2.0 (``version``) in the official or the split-patch layout (module docstring)."""

    classes = CLASSES_V1
    splits = SPLITS
    expected_layout = LAYOUT
    log_name = "dota"

    def __init__(self, root: str | Path, split: str = "trainval", transforms: Callable | None = None, *,
                 version: str | float = "1.0", layout: str = "auto", label_dir: str | None = None,
                 verify: str = "header") -> None:
        require_split("DOTA", split, SPLITS)
        self.check_verify(verify)
        if layout not in ("auto", "official", "patches"):
            raise DataError(f"DOTA layout {layout!r}: expected auto, official or patches")
        self.root, self.split, self.transforms = Path(root), split, transforms
        self.version = normalise_version(version)
        self.classes = VERSIONS[self.version]
        self.log_name = f"dota{self.version.replace('.', '')}"
        self.lookup = ClassLookup(self.classes)
        self.layout = self._pick_layout(layout)
        self.records: list[RotRecord] = []
        self.has_annotations = split != "test"
        if self.layout == "patches":
            self._read_patches()
        else:
            for part in OFFICIAL_PARTS[split]:
                self._read_official(part, label_dir)
        if not self.records:
            raise DataError(f"DOTA {split}: no images found under {self.root / split} ({self.layout} layout)")
        if verify != "none":
            with large_images():
                for r in self.records:
                    r.size, _ = image_header(r.image)
        if verify == "full":
            for i in range(len(self)):
                self._load(i)

    def write_submission(self, merged, out_dir: Path) -> dict:
        """``Task1_<class>.txt`` per class + zip, as MMRotate's ``DOTAMetric`` (:func:`write_dota_task1`)."""
        from rsbench.data.rotated_submission import write_dota_task1

        return write_dota_task1(merged, self.classes, out_dir, order=self.original_ids())

    def _pick_layout(self, layout: str) -> str:
        if layout != "auto":
            return layout
        if (self.root / self.split / "annfiles").is_dir():
            return "patches"
        if self.split == "test" and (self.root / "test" / "images").is_dir():
            return "patches" if _looks_split(self.root / "test" / "images") else "official"
        if all((self.root / p / "images").is_dir() for p in OFFICIAL_PARTS[self.split]):
            return "official"
        raise DataError(f"DOTA {self.split}: neither {self.root / self.split / 'annfiles'} (split patches) nor "
                        f"{', '.join(str(self.root / p / 'images') for p in OFFICIAL_PARTS[self.split])} "
                        f"(the release) found.\nExpected layout:\n{LAYOUT}")

    def _read_patches(self) -> None:
        img_dir, ann_dir = self.root / self.split / "images", self.root / self.split / "annfiles"
        if not img_dir.is_dir():
            raise DataError(f"DOTA {self.split}: image folder {img_dir} not found.\nExpected layout:\n{LAYOUT}")
        if not self.has_annotations or not ann_dir.is_dir():
            self.has_annotations = False
            self._add_unlabelled(img_dir)
            return
        txts = sorted(ann_dir.glob("*.txt"))
        if not txts:
            raise DataError(f"{ann_dir}: no label files (*.txt)")
        for txt in txts:
            img = img_dir / f"{txt.stem}.png"
            if not img.is_file():
                raise DataError(f"{img}: image not found for the label file {txt}")
            polys, labels, diffs, _ = parse_dota_txt(txt, self.lookup, dataset=f"DOTA-v{self.version}")
            self.records.append(RotRecord(img, polys, labels, diffs, txt.stem, txt))

    def _read_official(self, part: str, label_dir: str | None) -> None:
        img_dir = self.root / part / "images"
        if not img_dir.is_dir():
            raise DataError(f"DOTA {self.split}: image folder {img_dir} not found.\nExpected layout:\n{LAYOUT}")
        if part == "test":
            self.has_annotations = False
            self._add_unlabelled(img_dir)
            return
        cands = label_dir_candidates(self.root / part, self.version, label_dir)
        ann_dir = next((c for c in cands if c.is_dir() and any(c.glob("*.txt"))), None)
        if ann_dir is None:
            raise DataError(f"DOTA {self.split}: no label folder for {img_dir}; looked for "
                            f"{', '.join(str(c) for c in cands)}.\nExpected layout:\n{LAYOUT}")
        images = sorted(img_dir.glob("*.png"))
        if not images:
            raise DataError(f"{img_dir}: no PNG images")
        for img in images:
            txt = ann_dir / f"{img.stem}.txt"
            if not txt.is_file():
                raise DataError(f"{txt}: label file not found for the image {img}")
            polys, labels, diffs, _ = parse_dota_txt(txt, self.lookup, dataset=f"DOTA-v{self.version}")
            self.records.append(RotRecord(img, polys, labels, diffs, img.stem, txt))

    def _add_unlabelled(self, img_dir: Path) -> None:
        images = sorted(img_dir.glob("*.png"))
        if not images:
            raise DataError(f"{img_dir}: no PNG images")
        p, lab, d = empty_annotation()
        self.records += [RotRecord(img, p, lab, d, img.stem, None) for img in images]

    # -- sample data ----------------------------------------------------------------------------
    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, version: str | float = "1.0", patches: bool = False,
                     patch_size: int = 128, gap: int = 32, big: tuple[int, int] = (300, 260)) -> Path:
        """The release's layout: train P0000 (96², RGB, header lines, CRLF), P0001 (grey 120×80, LF, no
        header, one 9-field line), P0002 (RGB ``big`` = W×H, larger than ``patch_size``); val P0003 (RGB 112²,
        a difficult object); test P0004 (RGB), P0005 (grey), no labels. Class names of ``version``.

        ``patches=True``: the release goes to ``root/release/`` and ``root`` receives its split
        (``scripts/split_dota.py`` with ``patch_size``/``gap``, rate 1): ``{train,val,trainval}/{images,annfiles}``,
        ``test/images`` — the layout training reads."""
        version = normalise_version(version)
        classes = VERSIONS[version]
        src = root / "release" if patches else root
        rng = np.random.default_rng(seed)
        specs = [("train", "P0000", (96, 96), False, "crlf"), ("train", "P0001", (120, 80), True, "lf9"),
                 ("train", "P0002", big, False, "lf"), ("val", "P0003", (112, 112), False, "crlf"),
                 ("test", "P0004", (100, 90), False, None), ("test", "P0005", (64, 72), True, None)]
        for part, name, (w, h), grey, style in specs:
            (src / part / "images").mkdir(parents=True, exist_ok=True)
            img = (np.clip(terrain(rng, h, w), 0, 1) * 255).astype(np.uint8)
            n = 2 + (w * h > 20000) * 4
            objects = sample_rotated_objects(rng, h, n, len(classes), width=w)
            if part == "train" and name == "P0000" and version == "2.0":
                objects[0] = (classes.index("helipad"), objects[0][1])
            for c, poly in objects:
                cv2.fillPoly(img, [np.round(poly.reshape(4, 2)).astype(np.int32)], sample_colour(c, len(classes)))
            pil = Image.fromarray(img).convert("L") if grey else Image.fromarray(img)
            pil.save(src / part / "images" / f"{name}.png")
            if style is None:
                continue
            (src / part / "labelTxt").mkdir(parents=True, exist_ok=True)
            lines = ["imagesource:GoogleEarth", "gsd:0.146343590398"] if style == "crlf" else []
            for j, (c, poly) in enumerate(objects):
                coords = " ".join(str(int(v)) for v in poly)
                diff = int(part == "val" and j == 0)
                lines.append(f"{coords} {classes[c]}" if style == "lf9" and j == 0 else f"{coords} {classes[c]} {diff}")
            eol = "\r\n" if style == "crlf" else "\n"
            (src / part / "labelTxt" / f"{name}.txt").write_bytes("".join(ln + eol for ln in lines).encode())
        if patches:
            from rsbench.data.dota_split import split_images

            for split in ("train", "val", "trainval", "test"):
                sources, labelled = split_sources(src, split)
                split_images(sources, root / split, sizes=[patch_size], gaps=[gap], rates=[1.0],
                             write_labels=labelled)
        return root

    @classmethod
    def sample_loader_kwargs(cls, root: Path) -> dict:
        return {}


def _looks_split(img_dir: Path) -> bool:
    from rsbench.data.dota_split import PATCH_NAME

    first = next(iter(sorted(img_dir.glob("*.png"))), None)
    return first is not None and PATCH_NAME.match(first.stem) is not None


def split_sources(src: Path, split: str, *, label_dir: str | None = None, version: str = "1.0"
                  ) -> tuple[list[Source], bool]:
    """The source folders of ``split`` in the release (for :mod:`rsbench.data.dota_split`): (sources, labelled)."""
    require_split("DOTA", split, SPLITS)
    version = normalise_version(version)
    out = []
    for part in OFFICIAL_PARTS[split]:
        img_dir = Path(src) / part / "images"
        if not img_dir.is_dir():
            raise DataError(f"DOTA {split}: image folder {img_dir} not found.\nExpected layout:\n{LAYOUT}")
        ann = None
        if part != "test":
            cands = label_dir_candidates(Path(src) / part, version, label_dir)
            ann = next((c for c in cands if c.is_dir()), None)
            if ann is None:
                raise DataError(f"DOTA {split}: no label folder for {img_dir}; looked for "
                                f"{', '.join(str(c) for c in cands)}")
        out.append(Source(img_dir, dota_reader(ann)))
    return out, split != "test"
