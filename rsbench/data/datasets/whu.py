"""WHU-CD (Ji et al., TGRS 2019): one 32507×15354 aerial RGB pair of Christchurch (2012 / 2016),
building change, used as 256² tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Pair, find_ab_label, write_triplet
from rsbench.data.registry import DATASETS

LAYOUT = """\
  <root>/{A,B,label}/<name>.png + <root>/list/{train,val,test}.txt   (the community WHU-CD-256 release:
      256x256 RGB tiles, label 0/255, list lines are file names such as whu_123.png)
or MTP's split folders <root>/{train,val,test}/{A,B,label}/<name>.png. The official 32507x15354
GeoTIFFs (https://study.rsgis.whu.edu.cn/pages/download/building_dataset.html) must be cut into
256x256 tiles first."""


@DATASETS.register("whu")
class WHUCD(ChangeDataset):
    """WHU-CD as 256² tiles; splits ``train``, ``val``, ``test``.

    Accepted (under ``root`` or ``root/WHU-CD-256``):

    * the community ``WHU-CD-256`` release (Bandara's, Open-CD's default): flat ``A/``, ``B/``,
      ``label/`` with ``list/{train,val,test}.txt`` holding file names with extension (6,096 / 762
      / 762 tiles in the usual copy);
    * MTP's ``whu_cd_patch_dataset``: ``{train,val,test}/{A,B,label}/`` (its split, inferred as a
      7:1:2 random split of the same tiles, is not published; bring the folders).

    The official whole-image GeoTIFFs are not read directly. Labels: 0/255 in the 256² release,
    0/1 in the official raster, so both are accepted (``label_rule=either``). Classes: unchanged,
    changed.
    """

    expected_layout = LAYOUT
    label_rule = "either"

    def _find_pairs(self, split: str) -> list[Pair]:
        bases = [self.root, self.root / "WHU-CD-256"]
        pairs = find_ab_label(self, bases, split)
        if pairs is None:
            raise self._layout_error([b / "list" / f"{split}.txt" for b in bases] + [b / split / "A" for b in bases],
                                     f"split {split!r}")
        return pairs

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: int = 64, counts: tuple[int, int, int] = (6, 3, 3)) -> Path:
        """The community WHU-CD-256 layout: flat ``root/{A,B,label}/whu_<n>.png`` + ``root/list/<split>.txt``."""
        rng = np.random.default_rng(seed)
        (root / "list").mkdir(parents=True, exist_ok=True)
        i = 0
        for split, n in zip(("train", "val", "test"), counts):
            names = []
            for _ in range(n):
                i += 1
                write_triplet(rng, root / "A", root / "B", root / "label", f"whu_{i}", size)
                names.append(f"whu_{i}.png")
            (root / "list" / f"{split}.txt").write_text("\n".join(names) + "\n")
        return root
