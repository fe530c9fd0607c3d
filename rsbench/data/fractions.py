"""Label fractions (``data.label_fraction``): a seeded subset of the train split, as GEO-Bench's
``0.01x_train`` … ``1.00x_train`` partitions and PANGAEA's ``limited_label_train``.

:func:`label_subset` picks ``n = max(1, round(fraction × N))`` of the ``N`` samples training reads, with
numpy ``default_rng(seed)``:

* **stratified per class** when the dataset exposes its labels without reading a sample (``targets``:
  scene classification, where the class is the file's folder): each class gets its share of ``n`` by the
  largest-remainder rule (so the total is exactly ``n``; every class keeps at least one sample when
  ``n`` ≥ the number of classes), and its samples are the first of one seeded permutation of that class;
* **plain** otherwise (segmentation, change detection, detection: one image holds many classes): the
  first ``n`` of one seeded permutation of all samples.

Prefixes of one permutation per seed make the fractions nested (1 % ⊂ 10 % ⊂ 100 % for a seed, up to the
rounding of the per-class shares). The subset is kept in the split's order. :func:`write_subset_file`
saves it as a split file (one sample name per line under a comment header with no date, so the same
dataset, fraction and seed always give a byte-identical file); :func:`read_subset_file` reads it back,
which is what a resumed run trains on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rsbench.errors import ConfigError, DataError


def subset_size(n_total: int, fraction: float) -> int:
    """``max(1, round(fraction × n_total))``, halves rounded up (not Python's banker's rounding)."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"data.label_fraction must be in (0, 1], got {fraction!r}")
    if n_total <= 0:
        return 0
    return min(n_total, max(1, math.floor(float(fraction) * n_total + 0.5)))


def class_quotas(counts: Sequence[int], n: int) -> list[int]:
    """``n`` split over classes of ``counts`` samples in proportion (largest remainder; ties to the lower class
    id), then every class with samples given at least one when ``n`` allows, taken from the largest share."""
    total = sum(counts)
    quotas = [n * c // total for c in counts]
    rest = sorted(range(len(counts)), key=lambda i: (-(n * counts[i] % total), i))
    for i in rest[: n - sum(quotas)]:
        quotas[i] += 1
    if n >= sum(1 for c in counts if c):
        for i, c in enumerate(counts):
            if c and not quotas[i]:
                j = max(range(len(quotas)), key=lambda k: (quotas[k], -k))
                quotas[j] -= 1
                quotas[i] = 1
    return quotas


def labels_of(ds: Any) -> list[int] | None:
    """The class of every sample without reading one (a dataset's ``targets``), or None."""
    targets = getattr(ds, "targets", None)
    if targets is None:
        return None
    targets = [int(t) for t in targets]
    return targets if len(targets) == len(ds) else None


def label_subset(ds: Any, fraction: float, seed: int = 0) -> tuple[list[int], bool]:
    """(sorted indices of the subset, whether it is stratified per class) of ``ds`` (module docstring)."""
    n_total = len(ds)
    n = subset_size(n_total, fraction)
    rng = np.random.default_rng(int(seed))
    labels = labels_of(ds)
    if labels is None:
        return sorted(int(i) for i in rng.permutation(n_total)[:n]), False
    classes = sorted(set(labels))
    members = {c: [i for i, t in enumerate(labels) if t == c] for c in classes}
    quotas = class_quotas([len(members[c]) for c in classes], n)
    picked: list[int] = []
    for c, q in zip(classes, quotas):
        order = rng.permutation(len(members[c]))  # one permutation per class, drawn for every class in class order
        picked += [members[c][int(k)] for k in order[:q]]
    return sorted(picked), True


def subset_file_name(split: str, fraction: float, seed: int) -> str:
    return f"{split}-frac{float(fraction):g}-seed{int(seed)}.txt"


def _header(dataset: str, split: str, fraction: float, seed: int, n: int, of: int, stratified: bool) -> str:
    how = "stratified per class" if stratified else "plain"
    return (f"# rsbench label fraction {float(fraction):g} of {dataset} {split}: {n} of {of} samples, seed {int(seed)}, "
            f"{how} (numpy default_rng; rsbench/data/fractions.py). One sample name per line.\n")


def write_subset_file(path: Path, names: Sequence[str], *, dataset: str, split: str, fraction: float, seed: int,
                      of: int, stratified: bool) -> Path:
    from rsbench.results import atomic_write_text

    text = _header(dataset, split, fraction, seed, len(names), of, stratified) + "".join(f"{n}\n" for n in names)
    atomic_write_text(path, text)
    return path


def read_subset_file(path: Path, names: Sequence[str]) -> list[int]:
    """The indices (in ``names``, the samples training reads) of the names listed in ``path``; a
    :class:`DataError` naming the file when it lists a sample the split does not hold."""
    index = {n: i for i, n in enumerate(names)}
    listed = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    missing = [n for n in listed if n not in index]
    if missing or not listed:
        what = f"lists {len(missing)} sample(s) the train split does not hold (e.g. {missing[0]!r})" if missing \
            else "lists no sample"
        raise DataError(f"{path} {what}: the data changed since this run chose its subset. Delete the file and "
                        f"rerun with force=true to start the run over on a new subset.")
    return sorted(index[n] for n in listed)
