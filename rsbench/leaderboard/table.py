"""Entries → rows: one per task × dataset × backbone × ... (:data:`~rsbench.leaderboard.columns.KEYS`), with
mean ± std, the paper's value where the protocol is the paper's, the IQM and CI, the secondary metrics; the
per-class table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from rsbench.errors import first_line
from rsbench.leaderboard.columns import ASIDE, COLS, KEYS, PER_CLASS, PER_CLASS_COLS, WHO
from rsbench.leaderboard.records import entries, seed_order
from rsbench.leaderboard.stats import bootstrap_ci, iqm, normalized_column


def aggregate(records: list[dict[str, Any]], paper: pd.DataFrame
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(main table, sample-data table, failed/incomplete runs, finished runs that give no row); unreadable
    records are left out (:func:`unreadable_records` lists them)."""
    ok, bad, aside = [], [], []
    for r in records:
        if r.get("status") == "unreadable":
            continue
        if r.get("status") == "ok":
            try:
                rows, away = entries(r)
            except Exception as e:  # noqa: BLE001 — malformed in a way malformed() does not know: listed, never fatal
                r.update(status="unreadable", reason=f"{type(e).__name__}: {e}")
                continue
            ok += rows
            aside += [away] if away else []
        else:
            error = first_line(r.get("error"))
            bad.append({**{k: r.get(k) for k in WHO}, "seed": r.get("seed"), "status": r.get("status"),
                        "error": error if len(error) <= 300 else error[:299] + "…", "run_dir": r.get("run_dir")})
    tables = []
    df = pd.DataFrame(ok)
    for sample in (False, True):
        part = df[df["sample_data"] == sample] if len(df) else df
        rows = [_row(key, g, paper) for key, g in part.groupby(KEYS + ["metric"], dropna=False, sort=True)] if len(part) else []
        table = pd.DataFrame(rows, columns=COLS)
        table["normalized"] = normalized_column(table) if len(table) else []
        tables.append(table)
    return (tables[0], tables[1], pd.DataFrame(bad, columns=WHO + ["seed", "status", "error", "run_dir"]),
            pd.DataFrame(aside, columns=ASIDE))


def _row(key: tuple, g: pd.DataFrame, paper: pd.DataFrame) -> dict[str, Any]:
    used = [(s, v) for s, v in sorted(zip(g["seed"], g["value"]), key=lambda sv: seed_order(sv[0]))
            if v is not None and not (isinstance(v, float) and math.isnan(v))]
    vals = [v for _, v in used]
    mean = sum(vals) / len(vals) if vals else math.nan
    lo, hi = bootstrap_ci([vals])
    std = pd.Series(vals).std(ddof=1) if len(vals) > 1 else math.nan
    row = dict(zip(KEYS + ["metric"], key))
    pv, src = _paper_value(paper, row) if bool(g["compared"].all()) else (None, None)
    row.update(mean=mean, std=std, n_runs=len(g), seeds=",".join(str(s) for s in sorted(g["seed"].dropna().unique())),
               paper=pv, paper_source=src, diff=(mean - pv) if pv is not None else math.nan,
               paper_protocol=g["paper_protocol"].iloc[0], scored_by_source="; ".join(sorted(set(g["source"]))),
               train_time_h=_mean(g["train_time_s"]) / 3600, images_per_s=_mean(g["images_per_s"]),
               epochs=_mean(g["epochs"]), iqm=iqm(vals) if vals else math.nan, ci95_low=lo, ci95_high=hi,
               values="; ".join(f"{s}={float(v)!r}" for s, v in used), also=_also(g))
    return row


def _also(g: pd.DataFrame) -> str:
    """``mAP=45.12; AP75=48.30``: each secondary metric's mean over the runs that report it."""
    if "also" not in g:
        return ""
    found: dict[str, list[float]] = {}
    for also in g["also"]:
        for k, v in (also if isinstance(also, dict) else {}).items():
            found.setdefault(k, []).append(float(v))
    return "; ".join(f"{k}={sum(v) / len(v):.2f}" for k, v in found.items())


def per_class_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per table row (:data:`KEYS` + metric) and class: the per-class value's mean over seeds."""
    out = []
    if not len(rows) or "per_class" not in rows:
        return pd.DataFrame(out, columns=PER_CLASS_COLS)
    for key, g in rows.groupby(KEYS + ["metric"], dropna=False, sort=True):
        found: dict[str, list[float]] = {}
        for table in g["per_class"]:
            for c, v in (table if isinstance(table, dict) else {}).items():
                found.setdefault(c, []).append(v)
        task = key[0]
        for c, v in found.items():
            out.append({**dict(zip(KEYS + ["metric"], key)), "metric": PER_CLASS.get(task, ""), "class": c,
                        "mean": sum(v) / len(v), "n_runs": len(v)})
    return pd.DataFrame(out, columns=PER_CLASS_COLS)


def _mean(s: pd.Series) -> float:
    v = pd.to_numeric(s, errors="coerce").dropna()
    return float(v.mean()) if len(v) else math.nan


def _paper_value(paper: pd.DataFrame, row: dict[str, Any]) -> tuple[float | None, str | None]:
    if paper.empty:
        return None, None
    m = paper[(paper["task"] == row["task"]) & (paper["dataset"] == row["dataset"])
              & (paper["backbone"] == row["backbone"]) & (paper["metric"] == row["metric"])
              & (paper["pretrain"] == row["pretrain"])]
    if m.empty:
        return None, None
    return float(m["value"].iloc[0]), str(m["source"].iloc[0])
