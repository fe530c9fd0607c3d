"""EGY-BCD (Holail et al., GRSL 2023): 6,091 pairs of 256² Google Earth RGB patches (0.25 m,
Egypt), building change."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Pair, find_ab_label, index_folder, seeded_split, write_triplet
from rsbench.data.registry import DATASETS

LAYOUT = """\
  <root>/{A,B,label}/<name>.png   (256x256 RGB, label 0/255; 6,091 pairs)
as unpacked from the EGY-BCD release (github.com/oshholail/EGY-BCD; a top folder EGY-BCD/ is fine)."""

#: the seeded split used when the copy has no split of its own (fractions of train / val / test)
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
SPLIT_SEED = 0


@DATASETS.register("egybcd")
class EGYBCD(ChangeDataset):
    """EGY-BCD; splits ``train``, ``val``, ``test``.

    The release is flat: ``root/{A,B,label}/*.png`` (also under ``root/EGY-BCD/``) with no
    published split (UNCONFIRMED; the README mentions name lists but shows none). rsbench uses, in
    order: ``split_dir/<split>.txt``; list files ``root/list/<split>.txt`` or ``root/<split>.txt``
    when the copy has them; split folders ``root/<split>/{A,B,label}/`` (how some users arrange
    it); otherwise its own seeded split of the sorted names, 70 / 10 / 20 % (numpy
    ``default_rng(0)`` permutation, :func:`rsbench.data.change.seeded_split`), the same on every
    machine for the same files. Labels 0/255 (``binary255``). Classes: unchanged, changed.
    """

    expected_layout = LAYOUT
    label_rule = "binary255"

    def _find_pairs(self, split: str) -> list[Pair]:
        bases = [self.root, self.root / "EGY-BCD"]
        pairs = find_ab_label(self, bases, split, list_files=("list/{split}.txt", "{split}.txt"),
                              fallback=lambda base: self._seeded(base, split))
        if pairs is None:
            raise self._layout_error([b / "A" for b in bases] + [b / split / "A" for b in bases], "the A/B/label folders")
        return pairs

    def _seeded(self, base: Path, split: str) -> tuple[list[str], str] | None:
        """rsbench's seeded split of the sorted names (class docstring); only for train/val/test."""
        if split not in ("train", "val", "test"):
            return None
        parts = dict(zip(("train", "val", "test"), seeded_split(list(index_folder(base / "A")), SPLIT_FRACTIONS, SPLIT_SEED)))
        return parts[split], f"rsbench's seeded split of {base / 'A'}"

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: int = 64, n: int = 12) -> Path:
        """The release's flat ``root/{A,B,label}/<n>.png`` (no split files: rsbench's seeded split applies)."""
        rng = np.random.default_rng(seed)
        for i in range(1, n + 1):
            write_triplet(rng, root / "A", root / "B", root / "label", f"{i:04d}", size)
        return root
