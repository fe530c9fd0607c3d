"""Semantic segmentation (``task = "seg"``): the family base of LoveDA, SpaceNet 1, ...

Samples are ``{"image": (C, H, W) uint8, "mask": (H, W) int64}`` with class ids 0..K-1 and
255 (:data:`rsbench.constants.IGNORE_INDEX`) for pixels no loss or metric counts; a split
without labels (LoveDA test) has no ``mask``. Subclasses fill ``image_paths`` (one file per
sample, whose stem names it) and implement ``_load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from rsbench.constants import IGNORE_INDEX
from rsbench.data.base import RSDataset, safe_name
from rsbench.plotting import colorize, default_palette, figure, spare_colour, stretch_rgb


class SegmentationDataset(RSDataset):
    """Base class: ``image_paths`` (set by the subclass), ``sample_name`` and ``plot``."""

    task = "seg"
    ignore_index = IGNORE_INDEX
    image_paths: list[Path]

    def __len__(self) -> int:
        return len(self.image_paths)

    def sample_name(self, idx: int) -> str:
        """The image file's stem (LoveDA ``4191``, SpaceNet 1 ``3band_AOI_1_RIO_img12``): a submission
        names its prediction files so."""
        return safe_name(self.image_paths[idx].stem)

    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):
        """image | label | prediction (those present), maps in ``palette``, ignored pixels in a spare colour."""
        palette = self.palette or default_palette(len(self.classes))
        maps = [(sample[k], title) for k, title in (("mask", "label"), ("prediction", "prediction")) if k in sample]
        size = tuple(maps[0][0].shape[-2:]) if maps else None
        panels = [(stretch_rgb(sample["image"], self.rgb_bands, size=size), "image")]
        panels += [(colorize(m, palette), title) for m, title in maps]
        legend = [*zip(self.classes, palette), ("ignored", spare_colour(palette))]
        return figure(panels, suptitle=suptitle, legend=legend)
