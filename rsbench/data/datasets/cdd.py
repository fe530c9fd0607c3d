"""CDD / SVCD (Lebedev et al., ISPRS Archives 2018): season-varying Google Earth pairs cut into 256²
RGB JPEG patches, 10,000 / 3,000 / 3,000 (train / val / test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Pair, find_split_folders, write_triplet
from rsbench.data.registry import DATASETS

LAYOUT = """\
  <root>/Real/subset/{train,val,test}/{A,B,OUT}/<name>.jpg   (256x256 RGB JPEG; OUT = change mask)
as unpacked from the authors' ChangeDetectionDataset archive (a top folder ChangeDetectionDataset/
is fine); the copies of Open-CD (<root>/{train,val,test}/{A,B,OUT}) and MTP (OUT renamed label)
work too."""


@DATASETS.register("cdd")
class CDD(ChangeDataset):
    """CDD (SVCD), the "Real/subset" part; splits ``train``, ``val``, ``test``.

    Accepted: ``root/Real/subset/<split>/{A,B,OUT}/*.jpg`` (the release, also under
    ``root/ChangeDetectionDataset/``), ``root/subset/<split>/...`` and ``root/<split>/...`` (Open-CD's
    ``data/SVCD``), each with the label folder ``OUT`` or MTP's renamed ``label``. The synthetic
    ``Model/`` part is not read. Labels are JPEG, so not exactly 0/255: ``label_rule=threshold``
    maps values >= 128 to changed, as Open-CD's ``to_binary`` and the Lebedev loaders (> 127) do.
    Classes: unchanged, changed.
    """

    expected_layout = LAYOUT
    label_rule = "threshold"

    def _find_pairs(self, split: str) -> list[Pair]:
        bases = [self.root / "Real" / "subset", self.root / "ChangeDetectionDataset" / "Real" / "subset",
                 self.root / "subset", self.root]
        pairs = find_split_folders(self, bases, split, [("A", "B", "OUT"), ("A", "B", "label")])
        if pairs is None:
            raise self._layout_error([b / split / "A" for b in bases], f"split {split!r}")
        return pairs

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: int = 64, counts: tuple[int, int, int] = (6, 3, 3)) -> Path:
        """``root/Real/subset/{train,val,test}/{A,B,OUT}/<nnnnn>.jpg`` (JPEG images and JPEG labels)."""
        rng = np.random.default_rng(seed)
        base = root / "Real" / "subset"
        i = 0
        for split, n in zip(("train", "val", "test"), counts):
            for _ in range(n):
                write_triplet(rng, base / split / "A", base / split / "B", base / split / "OUT", f"{i:05d}", size,
                              img_ext=".jpg", label_ext=".jpg", season=True)
                i += 1
        return root
