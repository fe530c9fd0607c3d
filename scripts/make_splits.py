"""Write rsbench's seeded, stratified split files for datasets that ship without an official split.

    python scripts/make_splits.py          # rewrites rsbench/splits/{eurosat,resisc45}/*.txt

EuroSAT: 60/20/20 per class (16,200 / 5,400 / 5,400), the sizes of the common split the paper
used. RESISC45: 20/80 per class (6,300 train / 25,200 test), the paper's protocol. The file
names follow each release's naming, so the lists are made from the class names and counts
alone, with no copy of the data needed. Seed 0, numpy's default_rng.
"""

from __future__ import annotations

import numpy as np

from rsbench.constants import SPLITS_DIR
from rsbench.data.datasets.eurosat import CLASSES as EUROSAT_CLASSES, COUNTS as EUROSAT_COUNTS
from rsbench.data.datasets.resisc45 import CLASSES as RESISC_CLASSES, PER_CLASS

OUT = SPLITS_DIR


def stratified(names_by_class: list[list[str]], fractions: dict[str, float], seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {k: [] for k in fractions}
    for names in names_by_class:
        perm = [names[i] for i in rng.permutation(len(names))]
        start = 0
        for k, frac in fractions.items():
            n = round(frac * len(names))
            out[k].extend(perm[start:start + n])
            start += n
        assert start == len(names), "fractions must split every class exactly"
    return {k: sorted(v) for k, v in out.items()}


def write(name: str, splits: dict[str, list[str]]) -> None:
    d = OUT / name
    d.mkdir(parents=True, exist_ok=True)
    for split, names in splits.items():
        (d / f"{split}.txt").write_text("\n".join(names) + "\n")
        print(f"{d / split}.txt: {len(names)}")


def main() -> None:
    eurosat = [[f"{c}_{i}.jpg" for i in range(1, n + 1)] for c, n in zip(EUROSAT_CLASSES, EUROSAT_COUNTS)]
    write("eurosat", stratified(eurosat, {"train": 0.6, "val": 0.2, "test": 0.2}))
    resisc = [[f"{c}_{i:03d}.jpg" for i in range(1, PER_CLASS + 1)] for c in RESISC_CLASSES]
    write("resisc45", stratified(resisc, {"train": 0.2, "test": 0.8}))


if __name__ == "__main__":
    main()
