"""Training curves of one run: ``<run>/curves.png``, the train loss, the learning rates and the validation metric.

The series are read from the run's CSV log (``logger=csv``, the default: ``<run>/csv/metrics.csv``), which
holds them at the trainer's ``log_every_n_steps``: ``train/loss``, ``lr/backbone`` (the backbone's first
optimiser group: the embeddings, the most decayed rate under layer-wise decay), ``lr/head`` (the group of the
task's head) and ``val/<metric>``. A run without a CSV log (``logger=wandb``, ``logger=none``) draws the same
series from what :class:`rsbench.callbacks.TrainingCurves` recorded at the same cadence (kept in the resume
checkpoint, so a resumed run's curves start at its first step).

:func:`curve_series` returns the data the figure shows (the tests read it); :func:`plot_curves` draws it on a
plain Agg figure (no pyplot state) written atomically. Nothing here may fail a run: the callback turns any
error into a warning.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

#: the columns of each series in the CSV log (the first present is used)
LOSS_COLUMNS = ("train/loss", "train/loss_step")
LR_COLUMNS = {"lr_backbone": "lr/backbone", "lr_head": "lr/head"}

Series = dict[str, tuple[np.ndarray, np.ndarray]]


def _pairs(xs: Any, ys: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def series_from_csv(path: str | Path, metric: str) -> Series:
    """``{loss, lr_backbone, lr_head: (step, value), val: (step, epoch, value)}`` of a Lightning CSV log (the
    series it holds; a resumed run's log holds each step once per try: the last value of a step wins)."""
    import pandas as pd

    df = pd.read_csv(path)
    if "step" not in df:
        return {}
    out: Series = {}
    wanted = {"loss": next((c for c in LOSS_COLUMNS if c in df), None), **LR_COLUMNS}
    for name, col in wanted.items():
        if col and col in df:
            d = df[["step", col]].dropna().drop_duplicates("step", keep="last").sort_values("step")
            if len(d):
                out[name] = _pairs(d["step"], d[col])
    col = f"val/{metric}"
    if col in df:
        cols = ["step", "epoch", col] if "epoch" in df else ["step", col]
        d = df[cols].dropna().drop_duplicates("step", keep="last").sort_values("step")
        if len(d):
            epoch = d["epoch"] if "epoch" in d else pd.Series([math.nan] * len(d))
            out["val"] = (np.asarray(d["step"], float), np.asarray(epoch, float), np.asarray(d[col], float))
    return out


def series_from_record(record: Mapping[str, list]) -> Series:
    """The same series from :class:`~rsbench.callbacks.TrainingCurves`'s own record."""
    out: Series = {}
    for name in ("loss", *LR_COLUMNS):
        pts = dict((p[0], p[1]) for p in record.get(name) or [])  # a step recorded twice (a resumed run): the last
        if pts:
            steps = sorted(pts)
            out[name] = _pairs(steps, [pts[k] for k in steps])
    val = {p[0]: p for p in record.get("val") or []}
    if val:
        rows = [val[k] for k in sorted(val)]
        out["val"] = tuple(np.asarray([p[i] for p in rows], float) for i in range(3))  # type: ignore[assignment]
    return out


def curve_series(csv_log: str | Path | None, metric: str, record: Mapping[str, list] | None = None) -> tuple[Series, str]:
    """(series, where they came from): the CSV log when there is one with any series, else ``record``."""
    if csv_log is not None and Path(csv_log).is_file():
        s = series_from_csv(csv_log, metric)
        if s:
            return s, f"CSV log {Path(csv_log).name}"
    return (series_from_record(record), "recorded by the TrainingCurves callback") if record else ({}, "none")


def plot_curves(series: Series, path: str | Path, *, title: str, metric: str, source: str = "") -> Path | None:
    """Three panels (train loss, learning rates against the step; the validation metric against the epoch, or
    the step for an iteration-based run) written to ``path`` atomically; None when there is nothing to draw."""
    if not series:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rsbench.results import atomic_write_bytes

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_lr, ax_val = fig.subplots(1, 3)
    if "loss" in series:
        ax_loss.plot(*series["loss"], color="tab:blue", lw=1)
    ax_loss.set(title="train loss", xlabel="step")
    for name, colour, text in (("lr_backbone", "tab:orange", "backbone, first group"), ("lr_head", "tab:green", "head")):
        if name in series:
            ax_lr.plot(*series[name], color=colour, lw=1.2, label=text)
    ax_lr.set(title="learning rate", xlabel="step")
    if ax_lr.lines:
        ax_lr.legend(fontsize=8)
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if "val" in series:
        step, epoch, value = series["val"]
        by_epoch = len(epoch) and np.isfinite(epoch).all() and (len(epoch) == 1 or (np.diff(epoch) > 0).all())
        x = epoch + 1 if by_epoch else step
        ax_val.plot(x, value, marker="o", color="tab:red", lw=1)
        ax_val.set_xlabel("epochs trained" if by_epoch else "step")
    ax_val.set_title(f"val {metric}")
    for ax in (ax_loss, ax_lr, ax_val):
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.5")
    fig.suptitle(title + (f"   [{source}]" if source else ""), fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
