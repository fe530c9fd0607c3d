"""The leaderboard's figures: Δ against the paper, and per dataset each row's IQM with its 95 % CI (no
pyplot state: many processes may draw at once; written atomically)."""

from __future__ import annotations

import logging

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rsbench.leaderboard.columns import DATASET_PNG, KEYS
from rsbench.leaderboard.records import is_number, local_rows
from rsbench.results import atomic_write_bytes

log = logging.getLogger(__name__)


def plot_vs_paper(main: pd.DataFrame, path: Path) -> Path | None:
    """Bar chart of Δ vs the paper (mean ± std over seeds) for every row that has a paper value."""
    rows = main[main["paper"].notna()] if len(main) else main
    if not len(rows):
        return None
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [f"{r.task}/{r.dataset}/{r.backbone} ({r.tag}, {r.precision})" for r in rows.itertuples()]
    fig = Figure(figsize=(8, 0.4 * len(rows) + 1.2))  # no pyplot: no global state shared between writers
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.barh(labels, rows["diff"], xerr=rows["std"].fillna(0), color=["tab:green" if d >= 0 else "tab:red" for d in rows["diff"]])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("rsbench − paper (metric points; error bar: std over seeds)")
    ax.invert_yaxis()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _finite(v: Any) -> bool:
    return is_number(v) and math.isfinite(float(v))


def _safe(name: Any) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name))


def dataset_bars(table: pd.DataFrame, prefix: str = "") -> list[dict[str, Any]]:
    """The data of the per-dataset figures: per task × dataset × metric, one bar per table row, in table order.

    Each bar: ``label`` (the backbone, and what else tells the dataset's rows apart), ``key`` (the row's
    :data:`KEYS` + metric), ``value`` (the row's IQM over seeds, its mean where it has no IQM), ``ci95_low`` /
    ``ci95_high`` (the row's bootstrap CI; None for one seed) and the error bar's lengths below and above the
    value (``err_low``, ``err_high``: 0 without an interval), ``paper`` (the paper's value where the row is
    compared with it, else None), ``n_runs``. Rows without a value are left out."""
    out = []
    if not len(table):
        return out
    for (task, dataset, metric), g in table.groupby(["task", "dataset", "metric"], sort=True, dropna=False):
        varying = [k for k in KEYS if k not in ("task", "dataset", "backbone") and g[k].astype(str).nunique() > 1]
        bars = []
        for _, r in g.iterrows():
            value = r["iqm"] if _finite(r["iqm"]) else r["mean"]
            if not _finite(value):
                continue
            value = float(value)
            has_ci = _finite(r["ci95_low"]) and _finite(r["ci95_high"])
            lo, hi = (float(r["ci95_low"]), float(r["ci95_high"])) if has_ci else (None, None)
            bars.append({
                "label": " · ".join([str(r["backbone"]), *(str(r[k]) for k in varying)]),
                "key": tuple(r[k] for k in KEYS + ["metric"]), "value": value, "ci95_low": lo, "ci95_high": hi,
                "err_low": max(0.0, value - lo) if has_ci else 0.0, "err_high": max(0.0, hi - value) if has_ci else 0.0,
                "paper": float(r["paper"]) if _finite(r["paper"]) else None, "n_runs": int(r["n_runs"])})
        if bars:
            out.append({"task": task, "dataset": dataset, "metric": metric, "bars": bars,
                        "file": DATASET_PNG.format(prefix=prefix, task=_safe(task), dataset=_safe(dataset))})
    return out


def plot_dataset(group: Mapping[str, Any], path: Path) -> Path:
    """One dataset's figure (:func:`dataset_bars`): horizontal bars of the rows' values with the 95 % CI as error
    bars, and a hatched bar of the paper's value beside each row compared with it; written atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    bars = group["bars"]
    papers = [b["paper"] for b in bars]
    two = any(p is not None for p in papers)
    h = 0.38 if two else 0.6
    ys = np.arange(len(bars), dtype=float)
    y_ours = [y - h / 2 if p is not None else y for y, p in zip(ys, papers)]
    fig = Figure(figsize=(8, 0.6 * len(bars) + 1.5), layout="constrained")  # no pyplot: no state shared between writers
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    values = [b["value"] for b in bars]
    ax.barh(y_ours, values, height=h, color="tab:blue", label="rsbench: IQM over seeds (error bar: 95 % CI)")
    ci = [i for i, b in enumerate(bars) if b["ci95_low"] is not None]  # one seed: no interval, no error bar
    if ci:
        ax.errorbar([values[i] for i in ci], [y_ours[i] for i in ci], fmt="none", ecolor="black", capsize=3,
                    xerr=[[bars[i]["err_low"] for i in ci], [bars[i]["err_high"] for i in ci]])
    if two:
        py = [y + h / 2 for y, p in zip(ys, papers) if p is not None]
        ax.barh(py, [p for p in papers if p is not None], height=h, color="white", edgecolor="0.35", hatch="///",
                label="paper")
    ends = [v for b in bars for v in (b["value"] - b["err_low"], b["value"] + b["err_high"])] + [p for p in papers if p is not None]
    lo, hi = min(ends), max(ends)
    span = max(hi - lo, 0.05 * max(abs(hi), 1.0))
    left = lo - 0.6 * span
    ax.set_xlim(max(0.0, left) if lo >= 0 else left, hi + 0.35 * span)
    for y, b in zip(y_ours, bars):
        ax.text(b["value"] + b["err_high"] + 0.02 * span, y, f"{b['value']:.2f}", va="center", fontsize=8)
    for y, p in zip(ys, papers):
        if p is not None:
            ax.text(p + 0.02 * span, y + h / 2, f"{p:.2f}", va="center", fontsize=8, color="0.3")
    ax.set_yticks(ys, [b["label"] for b in bars], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{group['metric']} (the axis starts at {ax.get_xlim()[0]:.4g})")
    ax.set_title(f"{group['task']} / {group['dataset']}: {group['metric']}")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(fontsize=8, loc="outside lower center", ncol=2, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def run_curves(records: list[dict[str, Any]], sample_data: bool) -> dict[tuple, list[tuple[Any, Path]]]:
    """Per row key (:data:`KEYS` + metric, as strings) the (seed, curves.png) of its runs that have one."""
    out: dict[tuple, list[tuple[Any, Path]]] = {}
    rows = local_rows(records, sample_data=sample_data)
    for _, e in rows.iterrows() if len(rows) else []:
        png = Path(str(e.get("run_dir") or "")) / "curves.png"
        if e.get("run_dir") and png.is_file():
            key = tuple(str(e.get(k)) for k in KEYS + ["metric"])
            if (e.get("seed"), png) not in out.setdefault(key, []):
                out[key].append((e.get("seed"), png))
    return out


def _draw_datasets(groups: list[dict[str, Any]], results_dir: Path) -> list[dict[str, Any]]:
    """Draw each dataset's figure (:func:`plot_dataset`); one that cannot be drawn is a warning and left out of
    the markdown (a folder that cannot be written is the leaderboard's error, as for every file)."""
    drawn = []
    for g in groups:
        try:
            plot_dataset(g, results_dir / g["file"])
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 — a figure never costs the leaderboard
            log.warning("leaderboard: no figure for %s/%s: %s: %s", g["task"], g["dataset"], type(e).__name__, e)
            continue
        drawn.append(g)
    return drawn
