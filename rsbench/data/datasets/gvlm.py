"""GVLM-CD (Zhang et al., ISPRS J. 2023): 17 bi-temporal Google Earth RGB site pairs (0.59 m)
with landslide masks, one folder per site; no official split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rsbench.constants import SPLITS_DIR
from rsbench.data.change import ChangeDataset, Pair, seeded_split
from rsbench.data.io import read_lines
from rsbench.data.registry import DATASETS
from rsbench.data.samples.synth import change_pair
from rsbench.errors import DataError

SITES = (
    "A Luoi_Vietnam", "Asakura_Japan", "Askja_Iceland", "Big Sur_United States", "Chimanimani_Zimbabwe",
    "Jiuzhaigou_China", "Kaikoura_New Zealand", "Kodagu_India", "Kupang_Indonesia", "Kurucasile_Turkey",
    "Los Lagos_Chile", "Osh_Kyrgyzstan", "Santa Catarina_Brazil", "Shimen_China", "Taitung_China",
    "Tbilisi_Georgia", "Tenejapa_Mexico",
)
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test, the official splitter script's ratios
SPLIT_SEED = 0

LAYOUT = """\
  <root>/GVLM_Change_Detection/<Site_Country>/im1.png, im2.png, ref.png   (17 site folders, names with
      spaces such as "Big Sur_United States"; RGB PNG; ref = landslide mask 0/255)
as unpacked from the GVLM release (github.com/zxk688/GVLM)."""


@DATASETS.register("gvlm")
class GVLM(ChangeDataset):
    """GVLM-CD; splits ``train``, ``val``, ``test``.

    Layout ``root/GVLM_Change_Detection/<Site_Country>/{im1,im2,ref}.png`` (or the site folders
    directly under ``root``). There is no official split: the authors' scripts cut 256² patches
    (``1GVLM_Img_clip.py``: no overlap, last row/column shifted back to the edge) and split them
    60 / 20 / 20 at random without a seed. rsbench does the same, reproducibly:

    * ``split_mode: patch`` (default): the tiles of all sites (``tile``, 256 in the config; named
      ``<site>_<k>``) sorted by name and split 60 / 20 / 20 by a numpy ``default_rng(0)``
      permutation (:func:`rsbench.data.change.seeded_split`). Neighbouring tiles of one site can
      fall into different splits, as in the official recipe.
    * ``split_mode: site``: whole sites, from ``rsbench/splits/gvlm/{train,val,test}.txt`` (11 / 3 /
      3 sites: ``seeded_split(SITES, (11/17, 3/17, 3/17), seed=0)``) — a harder cross-site protocol.
    * ``split_dir``: ``<split>.txt`` listing site names or tile names ``<site>_<k>``.

    ``ref.png`` values are taken as 0/255 or 0/1 (``either``; UNCONFIRMED which the release uses).
    Classes: unchanged, changed (landslide).
    """

    expected_layout = LAYOUT
    label_rule = "either"

    def __init__(self, *args, split_mode: str = "patch", split_seed: int = SPLIT_SEED, **kw) -> None:
        if split_mode not in ("patch", "site"):
            raise ValueError(f"split_mode must be patch or site, got {split_mode!r}")
        self.split_mode, self.split_seed = split_mode, int(split_seed)
        super().__init__(*args, **kw)

    def _site_dirs(self) -> list[Path]:
        for base in (self.root / "GVLM_Change_Detection", self.root):
            if base.is_dir():
                sites = sorted(d for d in base.iterdir() if d.is_dir() and any(
                    (d / f"{n}.png").is_file() for n in ("im1", "im2", "ref")))
                if sites:
                    return sites
        raise self._layout_error([self.root / "GVLM_Change_Detection" / "<Site_Country>" / "im1.png",
                                  self.root / "<Site_Country>" / "im1.png"], "site folders")

    def _find_pairs(self, split: str) -> list[Pair]:
        if split not in ("train", "val", "test"):
            raise DataError(f"GVLM has the splits train, val and test (rsbench's), not {split!r}")
        pairs = []
        for d in self._site_dirs():
            files = [d / f"{n}.png" for n in ("im1", "im2", "ref")]
            for f in files:
                if not f.is_file():
                    raise DataError(f"{f}: missing in site folder {d} (each site holds im1.png, im2.png, ref.png)")
            pairs.append(Pair(d.name, files[0], files[1], files[2]))
        given = self._split_names(split)
        if given is None and self.split_mode == "site":
            path = SPLITS_DIR / "gvlm" / f"{split}.txt"
            given = (read_lines(path), path)
        self._tile_names, self._by_site = None, False
        if given is not None:
            names, sites = set(given[0]), {p.name for p in pairs}
            if names <= sites:
                pairs = [p for p in pairs if p.name in names]
                self._by_site = True
            elif self.split_mode == "site" or (names & sites):
                raise DataError(f"{given[1]}: sites not found under {self.root}: {', '.join(sorted(names - sites))}")
            else:
                self._tile_names = given  # tile names, applied in _select_items
        return pairs

    def _select_items(self, items: list) -> list:
        if self._tile_names is not None:  # tile names from split_dir
            keep = set(self._tile_names[0])
            out = [it for it in items if it[2] in keep]
            missing = keep - {it[2] for it in out}
            if missing:
                raise DataError(f"{self._tile_names[1]}: {len(missing)} names are neither sites nor tiles of this "
                                f"copy (tile={self.tile}), e.g. {', '.join(sorted(missing)[:3])}")
            return out
        if self._by_site:
            return items
        parts = dict(zip(("train", "val", "test"), seeded_split([it[2] for it in items], SPLIT_FRACTIONS,
                                                               self.split_seed)))
        keep = set(parts[self.split])
        return [it for it in items if it[2] in keep]

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: tuple[int, int] = (72, 80),
                     sites: tuple[str, ...] = SITES) -> Path:
        """``root/GVLM_Change_Detection/<Site_Country>/{im1,im2,ref}.png`` for all 17 official site names."""
        rng = np.random.default_rng(seed)
        for site in sites:
            d = root / "GVLM_Change_Detection" / site
            d.mkdir(parents=True, exist_ok=True)
            a, b, m = change_pair(rng, *size)
            Image.fromarray(a).save(d / "im1.png")
            Image.fromarray(b).save(d / "im2.png")
            Image.fromarray((m * 255).astype(np.uint8), mode="L").save(d / "ref.png")
        return root
