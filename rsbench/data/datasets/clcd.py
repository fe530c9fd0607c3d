"""CLCD (Liu et al., JSTARS 2022): 600 pairs of 512² Gaofen-2 RGB PNG (Guangdong, 2017 / 2019),
cropland change; 360 / 120 / 120 pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Pair, find_split_folders, write_triplet
from rsbench.data.registry import DATASETS

LAYOUT = """\
  <root>/{train,val,test}/{time1,time2,label}/<name>.png   (512x512 RGB, label 0/255; 360/120/120)
as unpacked from the CLCD release (github.com/liumency/CropLand-CD; a top folder CLCD/ is fine)."""


@DATASETS.register("clcd")
class CLCD(ChangeDataset):
    """CLCD; splits ``train``, ``val``, ``test``.

    Layout ``root/<split>/{time1,time2,label}/*.png`` (Open-CD's ``clcd.py``; the release is
    assumed to use the same folder names, UNCONFIRMED), also under ``root/CLCD/``; copies that
    renamed the date folders to ``A``/``B`` are accepted. Labels 0/255 (``binary255``). rsbench's
    config cuts the 512² images into four 256² tiles (``tile: 256``; 2,400 patches, as the
    ``CLCD_Cropped_256`` copy used by later benchmarks). Classes: unchanged, changed.
    """

    expected_layout = LAYOUT
    label_rule = "binary255"

    def _find_pairs(self, split: str) -> list[Pair]:
        bases = [self.root, self.root / "CLCD"]
        pairs = find_split_folders(self, bases, split, [("time1", "time2", "label"), ("A", "B", "label")])
        if pairs is None:
            raise self._layout_error([b / split / "time1" for b in bases], f"split {split!r}")
        return pairs

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: int = 128, counts: tuple[int, int, int] = (4, 2, 2)) -> Path:
        """``root/{train,val,test}/{time1,time2,label}/<n>.png`` (512² in the release, smaller here)."""
        rng = np.random.default_rng(seed)
        i = 0
        for split, n in zip(("train", "val", "test"), counts):
            for _ in range(n):
                i += 1
                write_triplet(rng, root / split / "time1", root / split / "time2", root / split / "label", str(i), size)
        return root
