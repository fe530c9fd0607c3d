"""LEVIR-CD (Chen & Shi, Remote Sensing 2020): 637 pairs of 1024² RGB PNG (0.5 m, Google Earth,
Texas), building change; official split 445 / 64 / 128 pairs."""

from __future__ import annotations


from rsbench.data.change import ChangeDataset, Pair, find_flat, find_split_folders, index_folder, list_file_names, match_triplets
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
        pairs = find_split_folders(self, bases, split, [("A", "B", "label")])
        if pairs is not None:
            return pairs
        base = find_flat(bases, ("A", "B", "label"))
        if base is not None:
            given = list_file_names(self, split, [base / "list" / f"{split}.txt"])
            if given is None:  # TorchGeo: one folder for all splits, split = file-name prefix
                names = [s for s in index_folder(base / "A") if s.startswith(f"{split}_")]
                if not names:
                    raise self._layout_error([base / "A" / f"{split}_*.png", base / "list" / f"{split}.txt"],
                                             f"split {split!r}")
                given = (names, base / "A" / f"{split}_*")
            return match_triplets(base / "A", base / "B", base / "label", names=given[0], source=given[1])
        raise self._layout_error([b / split / "A" for b in bases] + [b / "A" for b in bases], f"split {split!r}")
