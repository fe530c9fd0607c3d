"""Rotated object detection (``task = "rotdet"``): the family base of DIOR-R, DOTA and FAIR1M-2.0.

A sample (``_load``) is::

    {"image": (3, H, W) uint8,            # grey images (DOTA's GF-2 / JL-1 PNGs) repeated to 3 bands
     "boxes": (N, 5) float32,             # (cx, cy, w, h, theta) in pixels, theta radians, le90
     "polygons": (N, 8) float32,          # the quadrilaterals as annotated (x1, y1, ..., x4, y4)
     "labels": (N,) int64,                # 0-based ids in ``classes`` order
     "difficult": (N,) bool}

``boxes`` are MMRotate 1.x's ``qbox2rbox`` of the polygons (``cv2.minAreaRect``, then the le90
regularisation; :func:`rsbench.models.ops.rbox.poly_to_rbox`): the same rotated boxes MMRotate's
pipeline (``LoadAnnotations(box_type='qbox')`` → ``ConvertBoxType(rbox)``) trains on. Its
coordinates are the pixel-edge convention (the image spans ``[0, W] × [0, H]``). Images are 8-bit.

A split without public labels (DOTA and FAIR1M ``test``, scored by a server) has
``has_annotations = False``; its samples hold empty ``boxes``/``polygons``/``labels``/``difficult``
and the task writes a submission for it.

Subclasses parse every annotation file at init into :attr:`RotatedDetectionDataset.records` (one
:class:`RotRecord` per image) and a bad file is a :class:`~rsbench.errors.DataError` naming the file
and line (or object). Degenerate polygons (two consecutive corners equal, MTP's DIOR-R / FAIR1M rule,
:func:`degenerate_polygons`) are skipped where the official loader skips them, counted in
:attr:`num_degenerate` and logged.

**Training view** (:meth:`RotatedDetectionDataset.training_view`): MMRotate's
``filter_cfg=dict(filter_empty_gt=True)``: images without any object are skipped in training (DOTA
patches without objects, most of them). Evaluation reads every image.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rsbench.data.base import RSDataset, safe_name
from rsbench.data.detection import PLOT_MAX_TEXT, PLOT_SCORE_THR
from rsbench.data.io import read_image, to_chw_tensor
from rsbench.errors import DataError
from rsbench.plotting import default_palette, figure, stretch_rgb, to_numpy

log = logging.getLogger(__name__)

__all__ = [
    "ClassLookup",
    "RotRecord",
    "RotatedDetectionDataset",
    "degenerate_polygons",
    "draw_polygons",
    "empty_annotation",
    "large_images",
    "parse_dota_lines",
    "parse_dota_txt",
    "polygons_to_rboxes",
]


@dataclass
class RotRecord:
    """One image and its annotation, as parsed at init."""

    image: Path
    polygons: np.ndarray       # (N, 8) float32
    labels: np.ndarray         # (N,) int64
    difficult: np.ndarray      # (N,) bool
    name: str                  # the sample name (file-name safe; DOTA patch names keep their form)
    source: Path | None = None           # the annotation file, for messages
    size: tuple[int, int] | None = None  # (H, W) when known


def empty_annotation() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.zeros((0, 8), np.float32), np.zeros((0,), np.int64), np.zeros((0,), bool)


def degenerate_polygons(polys: np.ndarray) -> np.ndarray:
    """(N,) bool: a polygon with two consecutive corners equal (1-2, 2-3, 3-4 or 4-1), the rule of
    MTP's DIOR-R and FAIR1M loaders (``(polygon[0:2] == polygon[2:4]).all() or ...``)."""
    p = np.asarray(polys, np.float32).reshape(-1, 4, 2)
    return (p == np.roll(p, -1, axis=1)).all(-1).any(-1)


def polygons_to_rboxes(polys: np.ndarray) -> torch.Tensor:
    """(N, 8) polygons → (N, 5) float32 le90 rboxes (:func:`rsbench.models.ops.rbox.poly_to_rbox`)."""
    from rsbench.models.ops.rbox import poly_to_rbox

    p = torch.from_numpy(np.ascontiguousarray(polys, np.float32).reshape(-1, 8))
    if len(p) == 0:
        return torch.zeros((0, 5), dtype=torch.float32)
    return poly_to_rbox(p, version="le90").to(torch.float32)


class ClassLookup:
    """Class name → id. ``exact`` names first; then, when ``fold`` is set, a normalised spelling
    (lower case, spaces and underscores as hyphens: ``Small Car`` → ``small-car``)."""

    def __init__(self, classes: Sequence[str], *, fold: bool = False) -> None:
        self.classes = tuple(classes)
        self.exact = {c: i for i, c in enumerate(self.classes)}
        self.fold = fold
        self.folded = {self.normalise(c): i for i, c in enumerate(self.classes)} if fold else {}

    @staticmethod
    def normalise(name: str) -> str:
        return "-".join(name.strip().replace("_", " ").replace("-", " ").split()).lower()

    def get(self, name: str) -> int | None:
        i = self.exact.get(name)
        if i is None and self.fold:
            i = self.folded.get(self.normalise(name))
        return i


def parse_dota_lines(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, list[int], dict[str, str]]:
    """(polygons (N, 8) float32, class names as written, difficult values (N,) int64, line numbers, header)
    of a DOTA-style label file, classes not checked (:func:`parse_dota_txt` checks them).

    Lines ``x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`` separated by whitespace (CRLF or LF);
    ``key:value`` header lines (``imagesource:GoogleEarth``, ``gsd:0.25``, ``gsd:null``; returned in
    ``header``) and blank lines are skipped wherever they are. A missing difficult field means 0 (the
    devkit's ``parse_dota_poly``; MMRotate's splitter likewise); split patches carry ``2`` for objects
    cut by the window. Any other line (wrong field count, a coordinate that is not a number) is a
    :class:`DataError` naming the file and line.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: label file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable label file ({e})") from None
    polys, names, diffs, linenos = [], [], [], []
    header: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if ":" in tokens[0] and len(tokens) < 9:  # imagesource:GoogleEarth, gsd:0.146, gsd:null
            key, _, value = line.strip().partition(":")
            header[key.strip()] = value.strip()
            continue
        n_num = next((k for k, t in enumerate(tokens) if not _is_number(t)), len(tokens))
        if n_num != 8 or len(tokens) not in (9, 10):
            raise DataError(f"{path}, line {lineno}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 class difficult' "
                            f"(8 coordinates, a class, a difficult flag), got {n_num} coordinates in "
                            f"{len(tokens)} fields: {line.strip()!r}")
        try:
            coords = [float(t) for t in tokens[:8]]
        except ValueError:
            raise DataError(f"{path}, line {lineno}: a coordinate is not a number: {line.strip()!r}") from None
        if not np.isfinite(coords).all():
            raise DataError(f"{path}, line {lineno}: non-finite coordinate: {line.strip()!r}")
        diff = 0
        if len(tokens) == 10:
            try:
                diff = int(tokens[9])
            except ValueError:
                raise DataError(f"{path}, line {lineno}: difficult flag {tokens[9]!r} is not an integer") from None
        polys.append(coords)
        names.append(tokens[8])
        diffs.append(diff)
        linenos.append(lineno)
    arr = np.asarray(polys, np.float32).reshape(-1, 8)
    return arr, names, np.asarray(diffs, np.int64).reshape(-1), linenos, header


def _is_number(t: str) -> bool:
    try:
        float(t)
    except ValueError:
        return False
    return True


def parse_dota_txt(path: Path, lookup: ClassLookup, *, dataset: str = "DOTA"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """(polygons (N, 8) float32, labels (N,) int64, difficult (N,) bool, header) of a DOTA-style label
    file (:func:`parse_dota_lines`); an unknown class is a :class:`DataError` naming the file and line.
    Difficult is ``value > 0`` (1, or 2 for a truncated patch object)."""
    polys, names, diffs, linenos, header = parse_dota_lines(path)
    labels = []
    for name, lineno in zip(names, linenos):
        label = lookup.get(name)
        if label is None:
            raise DataError(f"{path}, line {lineno}: unknown class {name!r}; {dataset}'s classes are "
                            f"{', '.join(lookup.classes)}")
        labels.append(label)
    return polys, np.asarray(labels, np.int64).reshape(-1), diffs > 0, header


@contextmanager
def large_images() -> Iterator[None]:
    """PIL's decompression-bomb limit lifted while reading (DOTA-v2.0 holds 20,000² px images)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


class RotatedDetectionDataset(RSDataset):
    """Base class: :attr:`records` (set by the subclass), ``_load``, ``sample_name``, ``plot``,
    :meth:`training_view` (module docstring)."""

    task = "rotdet"
    #: the name in log lines
    log_name: ClassVar[str] = ""
    records: list[RotRecord]
    split: str = ""
    #: False for a split without labels (server-scored test sets): the task writes a submission
    has_annotations: bool = True
    #: degenerate polygons skipped while parsing (those loaders that skip them)
    num_degenerate: int = 0
    #: set on a training view: what the filter did
    filter_stats: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def sample_name(self, idx: int) -> str:
        """The image's name: DIOR-R ``00001``, DOTA ``P0001`` or the patch ``P0001__1024__0___824``,
        FAIR1M ``<stem>`` (test) or ``<part>_<stem>``."""
        return safe_name(self.records[idx].name)

    def read_pixels(self, path: Path) -> np.ndarray:
        """(H, W, 3) uint8 of an image file (grey repeated to RGB); subclasses with other formats override."""
        with large_images():
            return read_image(path, bands=3, strict=False)

    def _load(self, idx: int) -> dict[str, torch.Tensor]:
        r = self.records[idx]
        image = self.read_pixels(r.image)
        polys = np.ascontiguousarray(r.polygons, np.float32).reshape(-1, 8)
        return {"image": to_chw_tensor(image), "boxes": polygons_to_rboxes(polys),
                "polygons": torch.from_numpy(polys.copy()),
                "labels": torch.from_numpy(np.asarray(r.labels, np.int64).reshape(-1).copy()),
                "difficult": torch.from_numpy(np.asarray(r.difficult, bool).reshape(-1).copy())}

    def log_degenerate(self) -> None:
        if self.num_degenerate:
            log.info("%s %s: skipped %d degenerate polygon(s) (two equal consecutive corners), as the official "
                     "loader does", self.log_name or type(self).__name__, self.split, self.num_degenerate)

    # -- what MMRotate trains on -------------------------------------------------------------
    def training_view(self) -> RotatedDetectionDataset:
        """This dataset without the images that hold no object (``filter_empty_gt=True``); logged once."""
        cached = self.__dict__.get("_training_view")
        if cached is not None:
            return cached
        if not self.has_annotations:
            raise DataError(f"{self.log_name or type(self).__name__} {self.split}: this split has no labels "
                            "(server-scored); it cannot be trained on")
        kept = [r for r in self.records if len(r.labels)]
        view = copy.copy(self)
        view.records = kept
        view.filter_stats = {"images": len(self.records), "skipped_empty": len(self.records) - len(kept)}
        view.__dict__["_training_view"] = view
        log.info("%s %s: skipped %d images without objects in training (%d of %d left)",
                 self.log_name or type(self).__name__, self.split, len(self.records) - len(kept), len(kept),
                 len(self.records))
        self.__dict__["_training_view"] = view
        return view

    # -- server submission ------------------------------------------------------------------
    def original_ids(self) -> list[str]:
        """The original images this split's samples come from, in order of first appearance (a patch
        ``P0001__1024__0___824`` → ``P0001``; an unsplit image is its own)."""
        from rsbench.data.dota_split import PATCH_NAME

        ids: dict[str, None] = {}
        for i in range(len(self)):
            name = self.sample_name(i)
            m = PATCH_NAME.match(name)
            ids[m["id"] if m else name] = None
        return list(ids)

    def write_submission(self, merged: Mapping[str, Mapping[str, torch.Tensor]], out_dir: Path) -> dict[str, Any]:
        """Write the server's files from detections merged per original image (:mod:`rsbench.data.rotated_submission`)."""
        raise DataError(f"{self.log_name or type(self).__name__} has no evaluation server: it writes no submission")

    # -- plotting -----------------------------------------------------------------------------
    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):
        """image with its ground-truth polygons | prediction (rotated boxes scoring >= 0.3) when the
        sample holds ``prediction`` (a dict of ``boxes`` (N, 5), ``scores``, ``labels``); class colours
        in the legend. The ground truth is drawn from ``polygons`` when present, else from ``boxes``."""
        from rsbench.models.ops.rbox import rbox_to_poly

        palette = default_palette(len(self.classes))
        img = stretch_rgb(sample["image"], self.rgb_bands)
        layers: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]] = []
        if sample.get("polygons") is not None or sample.get("boxes") is not None:
            if sample.get("polygons") is not None:
                polys = to_numpy(sample["polygons"]).astype(np.float64).reshape(-1, 8)
            else:
                polys = to_numpy(rbox_to_poly(torch.as_tensor(to_numpy(sample["boxes"]),
                                                              dtype=torch.float64).reshape(-1, 5))).reshape(-1, 8)
            lab = _labels(sample.get("labels"), len(polys))
            layers.append((polys, lab, None, f"ground truth ({len(polys)})"))
        pred = sample.get("prediction")
        if pred is not None:
            boxes = torch.as_tensor(to_numpy(pred["boxes"]), dtype=torch.float64).reshape(-1, 5)
            polys = to_numpy(rbox_to_poly(boxes)).reshape(-1, 8)
            lab = _labels(pred.get("labels"), len(polys))
            scores = to_numpy(pred["scores"]).astype(np.float64).reshape(-1) if pred.get("scores") is not None \
                else np.ones(len(polys))
            keep = scores >= PLOT_SCORE_THR
            layers.append((polys[keep], lab[keep], scores[keep],
                           f"prediction (score ≥ {PLOT_SCORE_THR:g}, {int(keep.sum())})"))
        panels = [(img, title) for *_, title in layers] or [(img, "image")]
        present = sorted({int(c) for _, lab, _, _ in layers for c in lab})
        legend = [(self._class_name(c), palette[c] if 0 <= c < len(palette) else (255, 255, 255)) for c in present]
        fig = figure(panels, suptitle=suptitle, legend=legend)
        axes = [ax for ax in fig.axes if ax.get_images()]
        for ax, (polys, lab, scores, _) in zip(axes, layers):
            draw_polygons(ax, polys, lab, palette, self.classes, scores=scores, text=len(polys) <= PLOT_MAX_TEXT)
        return fig

    def _class_name(self, c: int) -> str:
        return self.classes[c] if 0 <= c < len(self.classes) else f"class {c}"


def _labels(labels: Any, n: int) -> np.ndarray:
    return np.zeros(n, np.int64) if labels is None else to_numpy(labels).astype(np.int64).reshape(-1)


def draw_polygons(ax, polys: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]],
                  classes: Sequence[str], *, scores: np.ndarray | None = None, text: bool = True) -> None:
    """Outline each quadrilateral ``(x1, y1, ..., x4, y4)`` (pixel-edge coordinates, so drawn at −0.5 on
    an ``imshow`` axes) in its class colour, its first corner marked (DOTA's "head" vertex), with its class
    name (and score) when ``text``; predictions dashed."""
    from matplotlib.patches import Polygon

    lw = 1.2 if len(polys) < 100 else 0.6
    for i, (p, c) in enumerate(zip(np.asarray(polys, np.float64).reshape(-1, 4, 2), labels)):
        colour = np.asarray(palette[c] if 0 <= c < len(palette) else (255, 255, 255)) / 255.0
        xy = p - 0.5
        ax.add_patch(Polygon(xy, closed=True, fill=False, edgecolor=colour, linewidth=lw,
                             linestyle="-" if scores is None else "--"))
        if scores is None:
            ax.plot([xy[0, 0]], [xy[0, 1]], marker="o", markersize=1.5, color=colour)
        if text:
            name = classes[c] if 0 <= c < len(classes) else str(c)
            label = name if scores is None else f"{name} {scores[i]:.2f}"
            top = int(np.argmin(xy[:, 1]))
            ax.text(xy[top, 0], xy[top, 1] - 1.0, label, fontsize=5, color="white", va="bottom", ha="left",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.5, "alpha": 0.8}, clip_on=True)
