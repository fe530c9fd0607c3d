"""Horizontal object detection (``task = "det"``): the family base of DIOR and xView.

A sample is ``{"image": (C, H, W) uint8, "boxes": (N, 4) float32, "labels": (N,) int64}``: boxes
``x1, y1, x2, y2`` in pixels of the image (the edges, so a box over pixel columns 3..5 is
``x1 = 3, x2 = 6`` in COCO's convention; DIOR's VOC integers are used as they are, as MTP's
COCO converter does), labels are 0-based class ids in :attr:`RSDataset.classes` order.

Subclasses parse every annotation at init (XML / JSON are small) into :attr:`records`, one
:class:`DetRecord` per image, and a bad file is a :class:`~rsbench.errors.DataError` naming it.
Every box of the annotation file is kept, degenerate ones (width or height under 1 px) included:
mmdet's evaluation reads the full annotation file, so the val/test splits hold them.

**Training view** (:meth:`DetectionDataset.training_view`): the dataset as mmdet 3.x trains on
it (``CocoDataset.parse_data_info`` + ``filter_data`` with MTP's
``filter_cfg=dict(filter_empty_gt=True, min_size=32)``):

* a box is dropped when its width or height is under 1 px, its area is not positive, or it
  does not overlap the image (``inter_w * inter_h == 0``);
* an image without any annotation in the file is skipped (``filter_empty_gt``), and so is one
  whose shorter side is under ``min_size`` (32) px;
* an image whose annotations were *all* dropped is **kept**, with no boxes: mmdet decides
  ``filter_empty_gt`` on the raw annotation file (``cat_img_map``), before dropping boxes, and
  trains such an image as background. ``drop_emptied=True`` skips those as well.

The counts are logged once (``dior trainval: dropped K boxes under 1 px, skipped M images
without objects``) and kept on the view (:attr:`DetectionDataset.filter_stats`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from rsbench.data.base import RSDataset, safe_name
from rsbench.data.io import read_image, to_chw_tensor
from rsbench.errors import DataError
from rsbench.plotting import default_palette, figure, stretch_rgb, to_numpy

log = logging.getLogger(__name__)

#: predictions below this score are not drawn by :meth:`DetectionDataset.plot`
PLOT_SCORE_THR = 0.3
#: boxes of one panel beyond which their class names are not written on the image
PLOT_MAX_TEXT = 40


@dataclass
class DetRecord:
    """One image and its annotation, as parsed at init."""

    image: Path
    boxes: np.ndarray          # (N, 4) float32 x1, y1, x2, y2 in pixels
    labels: np.ndarray         # (N,) int64 class ids
    size: tuple[int, int] | None = None   # (H, W) when known (annotation or image header)
    source: Path | None = None            # the annotation file (error messages)
    name: str | None = None               # sample name (default: the image's stem)


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)


def valid_box_mask(boxes: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """mmdet's per-box rule in training (see module docstring): width and height >= 1 px and,
    where the image size ``(H, W)`` is known, a non-empty overlap with the image."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    ok = (w >= 1) & (h >= 1) & (w * h > 0)
    if size is not None:
        H, W = size
        inter_w = np.maximum(0.0, np.minimum(b[:, 2], W) - np.maximum(b[:, 0], 0.0))
        inter_h = np.maximum(0.0, np.minimum(b[:, 3], H) - np.maximum(b[:, 1], 0.0))
        ok &= inter_w * inter_h > 0
    return ok


class DetectionDataset(RSDataset):
    """Base class: :attr:`records` (set by the subclass), ``_load``, ``sample_name``, ``plot`` and
    :meth:`training_view`."""

    task = "det"
    #: the name in log lines (the registry name)
    log_name: ClassVar[str] = ""
    records: list[DetRecord]
    split: str = ""
    #: set on a training view: what the filter did (counts)
    filter_stats: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def sample_name(self, idx: int) -> str:
        """The image file's stem (DIOR ``00001``, xView tile ``2355_3``)."""
        r = self.records[idx]
        return safe_name(r.name or r.image.stem)

    def _load(self, idx: int) -> dict[str, torch.Tensor]:
        r = self.records[idx]
        image = read_image(r.image, bands=3, strict=False)
        return {"image": to_chw_tensor(image), "boxes": torch.from_numpy(np.array(r.boxes, np.float32).reshape(-1, 4)),
                "labels": torch.from_numpy(np.array(r.labels, np.int64).reshape(-1))}

    # -- what mmdet trains on ---------------------------------------------------------------
    def training_view(self, *, min_size: int = 32, drop_emptied: bool = False) -> DetectionDataset:
        """This dataset as mmdet trains on it (module docstring); computed and logged once."""
        key = (int(min_size), bool(drop_emptied))
        cache = self.__dict__.setdefault("_training_views", {})
        if key in cache:
            return cache[key]
        kept: list[DetRecord] = []
        stats = {"images": len(self.records), "boxes": 0, "dropped_boxes": 0, "dropped_outside": 0,
                 "skipped_empty": 0, "skipped_small": 0, "emptied": 0}
        for r in self.records:
            n = len(r.boxes)
            stats["boxes"] += n
            if n == 0:
                stats["skipped_empty"] += 1
                continue
            if r.size is not None and min(r.size) < min_size:
                stats["skipped_small"] += 1
                continue
            ok = valid_box_mask(r.boxes, r.size)
            if not ok.all():
                small = valid_box_mask(r.boxes, None)
                stats["dropped_boxes"] += int((~ok).sum())
                stats["dropped_outside"] += int((small & ~ok).sum())
                if not ok.any():
                    stats["emptied"] += 1
                    if drop_emptied:
                        continue
                r = replace(r, boxes=r.boxes[ok], labels=r.labels[ok])
            kept.append(r)
        view = copy.copy(self)
        view.__dict__["_training_views"] = {key: view}
        view.records = kept
        view.filter_stats = stats
        name = f"{self.log_name or type(self).__name__.lower()} {self.split}".strip()
        msg = f"{name}: dropped {stats['dropped_boxes']} boxes under 1 px"
        if stats["dropped_outside"]:
            msg += f" ({stats['dropped_outside']} of them outside the image)"
        msg += f", skipped {stats['skipped_empty']} images without objects"
        if stats["skipped_small"]:
            msg += f" and {stats['skipped_small']} under {min_size} px"
        if stats["emptied"]:
            msg += (f"; {stats['emptied']} images lost all their boxes and are "
                    + ("skipped" if drop_emptied else "kept as background (as mmdet does)"))
        log.info("%s (%d of %d images left)", msg, len(kept), len(self.records))
        cache[key] = view
        return view

    # -- plotting -----------------------------------------------------------------------------
    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):
        """image with its ground-truth boxes | prediction (boxes scoring >= 0.3) when the sample holds
        ``prediction`` (a dict of ``boxes``, ``scores``, ``labels``); class colours in the legend."""
        palette = default_palette(len(self.classes))
        img = stretch_rgb(sample["image"], self.rgb_bands)
        layers: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, str]] = []
        if "boxes" in sample:
            b, lab = _boxes_labels(sample.get("boxes"), sample.get("labels"))
            layers.append((b, lab, None, f"ground truth ({len(b)})"))
        pred = sample.get("prediction")
        if pred is not None:
            b, lab = _boxes_labels(pred.get("boxes"), pred.get("labels"))
            scores = to_numpy(pred["scores"]).astype(np.float64).reshape(-1) if pred.get("scores") is not None \
                else np.ones(len(b))
            keep = scores >= PLOT_SCORE_THR
            layers.append((b[keep], lab[keep], scores[keep], f"prediction (score ≥ {PLOT_SCORE_THR:g}, {int(keep.sum())})"))
        panels = [(img, title) for *_, title in layers] or [(img, "image")]
        present = sorted({int(c) for _, lab, _, _ in layers for c in lab})
        legend = [(self._class_name(c), palette[c] if 0 <= c < len(palette) else (255, 255, 255)) for c in present]
        fig = figure(panels, suptitle=suptitle, legend=legend)
        axes = [ax for ax in fig.axes if ax.get_images()]
        for ax, (b, lab, scores, _) in zip(axes, layers):
            draw_boxes(ax, b, lab, palette, self.classes, scores=scores, text=len(b) <= PLOT_MAX_TEXT)
        return fig

    def _class_name(self, c: int) -> str:
        return self.classes[c] if 0 <= c < len(self.classes) else f"class {c}"


def _boxes_labels(boxes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    b = np.zeros((0, 4)) if boxes is None else to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    lab = np.zeros(len(b), np.int64) if labels is None else to_numpy(labels).astype(np.int64).reshape(-1)
    return b, lab


def draw_boxes(ax, boxes: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]],
               classes: Sequence[str], *, scores: np.ndarray | None = None, text: bool = True) -> None:
    """Outline each ``x1, y1, x2, y2`` pixel box on an ``imshow`` axes (pixel centres at integers, so a
    box edge at x lies at x − 0.5), in its class colour, with its class name (and score) when ``text``."""
    from matplotlib.patches import Rectangle

    lw = 1.2 if len(boxes) < 100 else 0.6
    for i, ((x1, y1, x2, y2), c) in enumerate(zip(boxes, labels)):
        colour = np.asarray(palette[c] if 0 <= c < len(palette) else (255, 255, 255)) / 255.0
        ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=lw,
                               linestyle="-" if scores is None else "--"))
        if text:
            name = classes[c] if 0 <= c < len(classes) else str(c)
            label = name if scores is None else f"{name} {scores[i]:.2f}"
            ax.text(x1 - 0.5, y1 - 1.5, label, fontsize=5, color="white", va="bottom", ha="left",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 0.5, "alpha": 0.8}, clip_on=True)


def check_box_array(boxes: Any, source: Path | str, what: str = "box") -> np.ndarray:
    """(N, 4) float32 of finite numbers, or a :class:`DataError` naming ``source``."""
    try:
        arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as e:
        raise DataError(f"{source}: unparsable {what} coordinates ({e})") from None
    if not np.isfinite(arr).all():
        bad = int(np.where(~np.isfinite(arr).all(1))[0][0])
        raise DataError(f"{source}: {what} {bad + 1} has non-finite coordinates {arr[bad].tolist()}")
    return arr.astype(np.float32)


def require_split(name: str, split: str, splits: Sequence[str]) -> None:
    if split not in splits:
        raise DataError(f"{name} split {split!r}: expected one of {', '.join(splits)}")
