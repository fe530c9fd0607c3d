"""Statistics over seeds as GEO-Bench computes them: the interquartile mean, a seeded percentile bootstrap
of it, and the normalised score per backbone across datasets."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from rsbench.leaderboard.columns import BACKBONE_COLS, BENCH, MODEL

#: the interquartile mean cuts this fraction off each end of the sorted values (GEO-Bench's trim_mean(…, 0.25))
IQM_CUT = 0.25


#: the percentile bootstrap of the IQM over seeds: resamples, and the seed of numpy's default_rng (reproducible)
BOOTSTRAP_RESAMPLES = 1000


BOOTSTRAP_SEED = 0


CI_LEVEL = 0.95


def iqm(values: Any) -> float:
    """Interquartile mean: the mean of the sorted values without the lowest and highest ``floor(n/4)``
    (``scipy.stats.trim_mean(values, 0.25)``, as GEO-Bench); NaN without values. Along the last axis."""
    a = np.sort(np.asarray(values, dtype=float), axis=-1)
    n = a.shape[-1]
    if n == 0:
        return math.nan
    cut = int(IQM_CUT * n)
    return a[..., cut:n - cut].mean(axis=-1)


def bootstrap_ci(groups: Any, *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                 level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap ``level`` interval of the IQM of ``groups`` pooled: each resample draws every
    group's values with replacement within the group (one group: the seeds of a row; several: GEO-Bench's
    stratified bootstrap, a backbone's runs per dataset), pools them and takes the IQM. numpy
    ``default_rng(seed)``, so the same values give the same interval. (NaN, NaN) for fewer than 2 values."""
    groups = [np.asarray(g, dtype=float) for g in groups]
    groups = [g for g in groups if g.size]
    if sum(g.size for g in groups) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([g[rng.integers(0, g.size, size=(resamples, g.size))] for g in groups], axis=1)
    stats = iqm(pooled)
    lo, hi = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def parse_values(text: Any) -> list[float]:
    """The per-seed values of a row's ``values`` cell (``0=98.0; 1=99.0``), in seed order."""
    if not isinstance(text, str) or not text:
        return []
    return [float(pair.rsplit("=", 1)[1]) for pair in text.split("; ")]


def _ranges(table: pd.DataFrame) -> dict[tuple, tuple[float, float]]:
    """(min, max) over every run of every model on each benchmark (:data:`BENCH`), where at least two models
    have runs and the values spread (GEO-Bench's ``make_normalizer``); the other benchmarks get none."""
    out = {}
    for key, g in table.groupby(BENCH, dropna=False, sort=True) if len(table) else []:
        vals = [v for cell in g["values"] for v in parse_values(cell)]
        if g.groupby(MODEL, dropna=False).ngroups >= 2 and vals and max(vals) > min(vals):
            out[key] = (min(vals), max(vals))
    return out


def normalized_column(table: pd.DataFrame) -> list[float]:
    """Each row's IQM rescaled by its benchmark's range (:func:`_ranges`), NaN where it has none."""
    ranges = _ranges(table)
    out = []
    for r in table.itertuples(index=False):
        lo_hi = ranges.get(tuple(getattr(r, k) for k in BENCH))
        out.append((r.iqm - lo_hi[0]) / (lo_hi[1] - lo_hi[0]) if lo_hi else math.nan)
    return out


def backbone_scores(table: pd.DataFrame) -> pd.DataFrame:
    """GEO-Bench's normalised score per model (:data:`MODEL`) across benchmarks: every run's value rescaled
    to [0, 1] by its benchmark's range (min → 0, max → 1, over all runs of all models there), then the IQM of
    the model's rescaled runs pooled over its benchmarks, with the stratified bootstrap CI
    (:func:`bootstrap_ci`). Benchmarks where only this model has runs (or all values are equal) cannot be
    rescaled: they are listed in ``left_out``."""
    ranges = _ranges(table)
    rows = []
    for key, g in table.groupby(MODEL, dropna=False, sort=True) if len(table) else []:
        groups, used, left = [], [], []
        for r in g.itertuples(index=False):
            bench = tuple(getattr(r, k) for k in BENCH)
            name = f"{r.task}/{r.dataset}" + ("" if r.protocol == r.paper_protocol else f" ({r.protocol})")
            if bench not in ranges:
                left.append(name)
                continue
            lo, hi = ranges[bench]
            groups.append([(v - lo) / (hi - lo) for v in parse_values(r.values)])
            used.append(name)
        pooled = [v for grp in groups for v in grp]
        lo, hi = bootstrap_ci(groups)
        rows.append({**dict(zip(MODEL, key)), "score": iqm(pooled) if pooled else math.nan, "ci95_low": lo,
                     "ci95_high": hi, "n_datasets": len(used), "n_runs": len(pooled), "datasets": ", ".join(used),
                     "left_out": ", ".join(left)})
    out = pd.DataFrame(rows, columns=BACKBONE_COLS)
    return out.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
