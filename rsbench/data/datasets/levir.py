"""LEVIR-CD (Chen & Shi, Remote Sensing 2020): 637 pairs of 1024² RGB PNG (0.5 m, Google Earth,
Texas), building change; official split 445 / 64 / 128 pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsbench.data.change import ChangeDataset, Pair, find_ab_label, index_folder, write_triplet
from rsbench.data.registry import DATASETS

LAYOUT = """\
  <root>/train/{A,B,label}/train_<n>.png   (445 each; 1024x1024 RGB, label 0/255)
  <root>/val/{A,B,label}/val_<n>.png       (64)
  <root>/test/{A,B,label}/test_<n>.png     (128)
i.e. train.zip, val.zip and test.zip of https://justchenhao.github.io/LEVIR/ each unpacked into its
own folder (an extra top folder LEVIR-CD/ is fine)."""


@DATASETS.register("levir")
class LEVIRCD(ChangeDataset):
    """LEVIR-CD in one of these layouts under ``root`` (or ``root/LEVIR-CD``); splits ``train``, ``val``, ``test``.

    * split folders ``{train,val,test}/{A,B,label}/*.png`` — the three official zips unpacked
      (the community layout read by Open-CD and MTP), and also the MTP ``levir_patch_dataset`` or
      the 256² patches that ``scripts/prepare_levir.py`` writes, in the same folders;
    * flat ``{A,B,label}/`` plus ``list/{train,val,test}.txt`` (file names) — BIT/ChangeFormer's
      LEVIR-CD-256;
    * flat ``{A,B,label}/`` without lists — TorchGeo's layout, split by the file-name prefix
      (``train_*.png`` ...).

    Labels are 0 / 255 PNG (``label_rule=binary255``). The paper trains and tests on the 16
    non-overlapping 256² tiles of each image (7,120 / 1,024 / 2,048 patches): rsbench's config
    sets ``tile: 256``, which cuts them on the fly, row-major, named ``<stem>_<k>`` with k = 1..16
    as in LEVIR-CD-256 (and leaves already-cut 256² patches whole).
    Classes: unchanged, changed.
    """

    expected_layout = LAYOUT
    label_rule = "binary255"

    def _find_pairs(self, split: str) -> list[Pair]:
        bases = [self.root, self.root / "LEVIR-CD"]
        pairs = find_ab_label(self, bases, split, fallback=lambda base: self._by_prefix(base, split))
        if pairs is None:
            raise self._layout_error([b / split / "A" for b in bases] + [b / "A" for b in bases], f"split {split!r}")
        return pairs

    def _by_prefix(self, base: Path, split: str) -> tuple[list[str], Path]:
        """TorchGeo's layout: one folder for all splits, the split is the file-name prefix."""
        names = [s for s in index_folder(base / "A") if s.startswith(f"{split}_")]
        if not names:
            raise self._layout_error([base / "A" / f"{split}_*.png", base / "list" / f"{split}.txt"], f"split {split!r}")
        return names, base / "A" / f"{split}_*"

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, size: int = 128, counts: tuple[int, int, int] = (4, 2, 2)) -> Path:
        """``root/{train,val,test}/{A,B,label}/<split>_<n>.png`` (the three official zips unpacked)."""
        rng = np.random.default_rng(seed)
        for split, n in zip(("train", "val", "test"), counts):
            for k in range(1, n + 1):
                write_triplet(rng, root / split / "A", root / split / "B", root / split / "label", f"{split}_{k}", size)
        return root
