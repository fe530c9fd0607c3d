"""Aggregate run records into ``results/leaderboard.csv`` and ``results/leaderboard.md``.

    python -m rsbench.leaderboard [--results-dir results] [--runs-dir results/runs] [--wandb]

Figures: ``leaderboard.png`` (each compared row's Δ vs the paper) and one ``leaderboard_<task>_<dataset>.png`` per
dataset (:func:`dataset_bars`, :func:`plot_dataset`: each row's IQM with its 95 % CI, the paper's value beside it),
embedded in the markdown with links to every run's ``curves.png``. ``--wandb`` also logs the tables as wandb
Tables (:func:`rsbench.tracking.log_leaderboard`, offline unless wandb is set up).

One row per task × dataset × backbone × pretrained weights × tag × protocol × precision × split
source × training regime (``finetune``: full | frozen encoder; ``labels``: the fraction of the train split;
the rows of a regime other than full finetuning on every label are a row group of their own in the
markdown, and never carry the paper's value): the headline metric as mean ± std over seeds (sample std, n−1), the number of runs and
seeds, mean training time and speed. A record gives a row for its local number (protocol
``train: <split>, scored: <split> (local)``) and one for each server score entered with
``python -m rsbench.scores add`` (``... (server)``). The paper's value from
``rsbench/paper_results.csv`` (shipped with the package) and the difference appear ONLY on rows
whose protocol is the paper's for the dataset (the record's ``paper_protocol``, from the dataset
config) and whose regime is the paper's (full finetuning, 100 % of the labels). A local number on a split the run trained on (LoveDA ``protocol=paper`` tests on Val,
part of trainval) and a submission still waiting for its server score are listed apart, as are
failed or unfinished runs; runs on generated sample data are kept out of the main table.

Beyond mean ± std, each row has GEO-Bench's statistics over its seeds: the interquartile mean (``iqm``,
:func:`iqm`) and a percentile-bootstrap 95 % interval of it (``ci95_low``/``ci95_high``,
:func:`bootstrap_ci`: :data:`BOOTSTRAP_RESAMPLES` resamples, numpy ``default_rng(BOOTSTRAP_SEED)``, so
reproducible), and the per-seed values (``values``: ``seed=value; ...``). GEO-Bench's normalised score
(:func:`backbone_scores`, ``leaderboard_backbones.csv`` and a markdown section): each run's value rescaled
by the min and max of every run of every backbone on its benchmark (task, dataset, metric, protocol,
split), then per backbone the IQM of its rescaled runs pooled over the benchmarks with a stratified
bootstrap CI; each row's own rescaled IQM is ``normalized``.

No record can break it: a ``metrics.json`` that is not valid JSON, not an object, or whose fields
have the wrong types (a non-numeric metric, a protocol that is not a mapping, ...) is listed under
"Unreadable records" with its path and the reason, logged as a warning, and skipped. Every output
is written through a temporary file of a unique name in the results folder (``os.replace``), so
runs finishing at the same time never race; a folder that cannot be written is one
:class:`~rsbench.errors.LeaderboardError` naming it.
"""

from __future__ import annotations

import argparse
import logging
import math
import numbers
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from rsbench.config import package_path
from rsbench.errors import LeaderboardError, first_line
from rsbench.protocol import ALL_LABELS, FULL, label, paper_regime, regime, same, server_protocol
from rsbench.results import atomic_write_bytes, atomic_write_text, read_record

log = logging.getLogger(__name__)

#: The numbers the paper reports (task, dataset, metric, backbone, pretrain, value, source).
PAPER_CSV = package_path("paper_results.csv")
WHO = ["task", "dataset", "backbone", "pretrain", "tag"]
#: what makes a row: runs differing in any of these are never averaged together (``finetune``: full | frozen
#: encoder; ``labels``: the train split's fraction, ``100%`` or ``10% (seed 0)``; rsbench.protocol.regime)
REGIME = ["finetune", "labels"]
KEYS = WHO + ["protocol", "precision", "split"] + REGIME
COLS = KEYS + ["metric", "mean", "std", "n_runs", "seeds", "paper", "paper_source", "diff", "paper_protocol",
               "scored_by_source", "train_time_h", "images_per_s", "epochs",
               "iqm", "ci95_low", "ci95_high", "values", "normalized", "also"]
#: one model in the normalised score: runs differing in any of these are different models
MODEL = ["backbone", "pretrain", "tag", "precision"] + REGIME
#: one benchmark of the normalised score: its values are rescaled together (a frozen-encoder or label-fraction
#: benchmark is its own, as GEO-Bench's partitions)
BENCH = ["task", "dataset", "metric", "protocol", "split"] + REGIME
BACKBONE_COLS = MODEL + ["score", "ci95_low", "ci95_high", "n_datasets", "n_runs", "datasets", "left_out"]
#: the interquartile mean cuts this fraction off each end of the sorted values (GEO-Bench's trim_mean(…, 0.25))
IQM_CUT = 0.25
#: the percentile bootstrap of the IQM over seeds: resamples, and the seed of numpy's default_rng (reproducible)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
CI_LEVEL = 0.95
#: metrics shown beside the headline one (means over seeds, column ``also``): COCO mAP@[.5:.95] and AP75 for
#: horizontal detection, the other segmentation / change-detection summaries
ALSO = {"det": ("mAP", "AP75"), "seg": ("mF1", "OA"), "cd": ("IoU", "Precision", "Recall")}
#: the per-class metric of each task's per-class table (``leaderboard_per_class.csv``, markdown section)
PER_CLASS = {"cls": "accuracy", "seg": "IoU", "cd": "F1", "det": "AP50", "rotdet": "AP"}
PER_CLASS_COLS = KEYS + ["metric", "class", "mean", "n_runs"]
ASIDE = WHO + ["seed", "protocol", "metric", "value", "why", "run_dir", "sample_data"]
UNREADABLE = ["path", "reason"]
#: record fields and what they must be (None is always allowed)
_SCALAR = (str, numbers.Number, bool)
_FIELDS = {**{k: _SCALAR for k in WHO}, "seed": _SCALAR, "status": str, "metric": str, "precision": str,
           "split_source": str, "run_dir": str, "error": str, "protocol": dict, "paper_protocol": dict,
           "metrics": dict, "server_scores": dict}
_NUMBERS = ("train_time_s", "train_images_per_s", "epochs")


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every record under ``runs_dir``; one that is malformed as ``status: unreadable`` with its path and reason."""
    recs = []
    for p in sorted(Path(runs_dir).glob("**/metrics.json")):
        r = read_record(p)
        if r is None:
            continue
        problem = malformed(r) if r.get("status") != "unreadable" else None
        if problem:
            r = {"status": "unreadable", "path": str(p), "reason": problem, "run_dir": str(p.parent)}
        r.setdefault("run_dir", str(p.parent))
        r.setdefault("path", str(p))
        recs.append(r)
    return recs


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def malformed(r: dict[str, Any]) -> str | None:
    """Why a record cannot be listed (a field of the wrong type, a missing key, a non-numeric metric), or None."""
    if not isinstance(r.get("status"), str):
        return "no 'status' (a string)" if "status" not in r else f"'status' is {r['status']!r}, not a string"
    for key, kind in _FIELDS.items():
        if r.get(key) is not None and not isinstance(r[key], kind):
            return f"'{key}' is {type(r[key]).__name__} {_short(r[key])}, not a {_kind(kind)}"
    for key in _NUMBERS:
        if r.get(key) is not None and not _is_number(r[key]):
            return f"'{key}' is {_short(r[key])}, not a number"
    if r["status"] != "ok":
        return None
    if not r.get("metric"):
        return "a finished record ('status': 'ok') without 'metric'"
    if "metrics" not in r:
        return "a finished record ('status': 'ok') without 'metrics'"
    value = r["metrics"].get(r["metric"])
    if value is not None and not _is_number(value):
        return f"metrics.{r['metric']} is {_short(value)}, not a number"
    score = (r.get("server_scores") or {}).get(r["metric"])
    if score is not None and not (isinstance(score, dict) and (score.get("value") is None or _is_number(score["value"]))):
        return f"server_scores.{r['metric']} is {_short(score)}, not {{'value': <number>, ...}}"
    return None


def _short(v: Any, n: int = 60) -> str:
    text = repr(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _kind(kind: Any) -> str:
    return "number or string" if kind is _SCALAR else {dict: "mapping", str: "string"}.get(kind, str(kind))


def load_paper(path: str | Path = PAPER_CSV) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=["task", "dataset", "metric", "backbone", "pretrain", "value", "source"])
    return pd.read_csv(path)


def entries(r: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """A finished record's leaderboard entries (its local number when held out, its server score of the
    headline metric), and its entry in the "not in the table" list when it gives no row."""
    metric = r.get("metric")
    proto, paper = r.get("protocol"), r.get("paper_protocol")
    finetune, labels = regime(r)
    as_paper = paper_regime(r)  # full finetuning on every label: the only regime the paper's numbers are for
    base = {**{k: r.get(k) for k in WHO}, "seed": r.get("seed"), "metric": metric, "finetune": finetune, "labels": labels,
            "sample_data": bool(r.get("sample_data")), "precision": r.get("precision") or "unknown",
            "split": r.get("split_source") or "unknown", "paper_protocol": label(paper),
            "train_time_s": r.get("train_time_s"), "images_per_s": r.get("train_images_per_s"),
            "epochs": r.get("epochs"), "run_dir": r.get("run_dir")}
    m = r.get("metrics") or {}
    local = {**base, "protocol": label(proto), "value": m.get(metric), "compared": as_paper and same(proto, paper),
             "source": "rsbench", "also": {k: m[k] for k in ALSO.get(r.get("task"), ()) if _is_number(m.get(k))},
             "per_class": _per_class(m, r.get("task"))}
    held_out = proto is None or proto.get("held_out", True)
    out = [local] if held_out else []
    served = server_protocol(proto or {})
    score = (r.get("server_scores") or {}).get(metric)
    if score and served:
        out.append({**base, "protocol": label(served), "value": score.get("value"),
                    "compared": as_paper and same(served, paper),
                    "source": f"{score.get('source')} ({score.get('date')})"})
    notes = [] if held_out or score else [f"'{proto.get('test')}' was trained on ({label(proto)}): not a held-out number"]
    if served and same(served, paper) and not score:
        sub = ((r.get("metrics") or {}).get("submission") or {}).get("dir", "<run>/submission")
        notes.append(f"submission `{sub}` awaits the server's score: `python -m rsbench.scores add {r.get('run_dir')} "
                     f"--metric {metric} --value <score> --source \"{(paper or {}).get('server', '<server>')}\"`")
    return out, ({**local, "why": "; ".join(notes)} if notes else None)


def _per_class(metrics: dict[str, Any], task: Any) -> dict[str, float] | None:
    """The record's per-class values of its task's :data:`PER_CLASS` metric (numbers only; a class without
    a value, e.g. no ground truth, is left out)."""
    table = (metrics.get("per_class") or {}).get(PER_CLASS.get(task, "")) if isinstance(metrics.get("per_class"), dict) \
        else None
    if not isinstance(table, dict):
        return None
    return {str(k): float(v) for k, v in table.items() if _is_number(v) and not math.isnan(float(v))}


def unreadable_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    """(path, reason) of every record :func:`collect` could not read."""
    rows = [{"path": r.get("path") or str(Path(r.get("run_dir") or ".") / "metrics.json"),
             "reason": r.get("reason") or r.get("error") or "unreadable"} for r in records
            if r.get("status") == "unreadable"]
    return pd.DataFrame(rows, columns=UNREADABLE)


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
        table["normalized"] = _normalized(table) if len(table) else []
        tables.append(table)
    return (tables[0], tables[1], pd.DataFrame(bad, columns=WHO + ["seed", "status", "error", "run_dir"]),
            pd.DataFrame(aside, columns=ASIDE))


def local_rows(records: list[dict[str, Any]], *, sample_data: bool | None = None) -> pd.DataFrame:
    """The entries (:func:`entries`) of the finished records, real or sample data, as one frame."""
    rows = []
    for r in records:
        if r.get("status") != "ok" or (sample_data is not None and bool(r.get("sample_data")) != sample_data):
            continue
        try:
            rows += entries(r)[0]
        except Exception:  # noqa: BLE001 — aggregate() lists it as unreadable
            continue
    return pd.DataFrame(rows)


def _row(key: tuple, g: pd.DataFrame, paper: pd.DataFrame) -> dict[str, Any]:
    used = [(s, v) for s, v in sorted(zip(g["seed"], g["value"]), key=lambda sv: _seed_order(sv[0]))
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


def _normalized(table: pd.DataFrame) -> list[float]:
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


def _seed_order(seed: Any) -> tuple[int, float, str]:
    return (0, float(seed), "") if _is_number(seed) else (1, 0.0, str(seed))


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


def _fmt(v: Any, nd: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _md_table(df: pd.DataFrame) -> list[str]:
    head = ("| task | dataset | backbone | pretrained | tag | metric | mean ± std | protocol | precision | split | "
            "paper | Δ vs paper | runs (seeds) | IQM [95 % CI] | train time (h) | train img/s | also |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for _, r in df.iterrows():
        ms = _fmt(r["mean"]) + (f" ± {_fmt(r['std'])}" if r["n_runs"] > 1 else "")
        diff = r["diff"]
        lines.append(
            f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['pretrain']} | {r['tag']} | {r['metric']} | {ms} | "
            f"{r['protocol']} | {r['precision']} | {r['split']} | "
            f"{_fmt(r['paper'])} | {('+' if isinstance(diff, float) and diff > 0 else '') + _fmt(diff)} | "
            f"{r['n_runs']} ({r['seeds']}) | {_iqm_cell(r)} | {_fmt(r['train_time_h'], 3)} | {_fmt(r['images_per_s'], 1)} | "
            f"{_cell(r.get('also') or '–')} |"
        )
    return lines


def _per_class_md(pc: pd.DataFrame, level: str = "##") -> list[str]:
    """Per dataset, the per-class values (classes as rows, one column per table row), folded."""
    if not len(pc):
        return []
    lines = ["", f"{level} Per-class results", "",
             "Mean over seeds of each class's value (`leaderboard_per_class.csv`): accuracy (cls), IoU (seg), F1 (cd), "
             "AP50 (det), AP at IoU 0.5 (rotdet). A class without ground truth in the scored split has none."]
    for (task, dataset, metric), g in pc.groupby(["task", "dataset", "metric"], sort=True):
        cols = g[["backbone", "tag", "protocol", "precision", "split", *REGIME]].drop_duplicates()
        names = [f"{c.backbone} ({c.tag}{_regime_note(c.finetune, c.labels)})" for c in cols.itertuples()]
        lines += ["", f"<details><summary>{task} / {dataset}: per-class {metric}</summary>", "",
                  "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for cls in dict.fromkeys(g["class"]):
            cells = []
            for c in cols.itertuples():
                v = g[(g["class"] == cls) & (g["backbone"] == c.backbone) & (g["tag"] == c.tag)
                      & (g["protocol"] == c.protocol) & (g["precision"] == c.precision) & (g["split"] == c.split)
                      & (g["finetune"] == c.finetune) & (g["labels"] == c.labels)]
                cells.append(_fmt(float(v["mean"].iloc[0])) if len(v) else "–")
            lines.append(f"| {_cell(cls)} | " + " | ".join(cells) + " |")
        lines += ["", "</details>"]
    return lines


def _iqm_cell(r: Any) -> str:
    """``98.00 [97.00, 99.00]``; the IQM alone where there is no interval (one seed)."""
    ci = "" if math.isnan(r["ci95_low"]) else f" [{_fmt(r['ci95_low'])}, {_fmt(r['ci95_high'])}]"
    return _fmt(r["iqm"]) + ci


def _stats_note() -> str:
    return (f"- **IQM [95 % CI]**: interquartile mean over the seeds (the mean without the lowest and highest "
            f"quarter, `scipy.stats.trim_mean(…, {IQM_CUT})`, as GEO-Bench; the plain mean up to 3 seeds) and a "
            f"percentile bootstrap of it: {BOOTSTRAP_RESAMPLES:,} resamples of the seeds with replacement, numpy "
            f"`default_rng({BOOTSTRAP_SEED})` (the same runs always give the same interval); none for one seed. "
            "The per-seed values are in `leaderboard.csv` (`values`).")


def _backbone_table(scores: pd.DataFrame, level: str = "##") -> list[str]:
    """The normalised score per backbone (:func:`backbone_scores`) as markdown; nothing when no backbone has one."""
    scores = scores[scores["n_datasets"] > 0] if len(scores) else scores
    if not len(scores):
        return []
    lines = ["", f"{level} Normalised score per backbone (GEO-Bench)", "",
             ("Each run's value is rescaled by the range of every run of every backbone on the same task, dataset, "
              "metric, protocol and split (lowest → 0, highest → 1); a backbone's score is the IQM of all its "
              "rescaled runs across datasets, its 95 % CI a stratified bootstrap (seeds resampled within each "
              f"dataset, {BOOTSTRAP_RESAMPLES:,} resamples, `default_rng({BOOTSTRAP_SEED})`). A dataset where only one "
              "backbone has runs cannot be rescaled and is left out. The score ranks the backbones of this table "
              "against each other: adding a backbone changes the ranges. `leaderboard_backbones.csv` holds it."), "",
             "| backbone | pretrained | tag | precision | score [95 % CI] | datasets | runs | left out |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in scores.iterrows():
        ci = "" if math.isnan(r["ci95_low"]) else f" [{_fmt(r['ci95_low'], 3)}, {_fmt(r['ci95_high'], 3)}]"
        lines.append(f"| {r['backbone']} | {r['pretrain']} | {r['tag']}{_regime_note(r['finetune'], r['labels'])} | "
                     f"{r['precision']} | {_fmt(r['score'], 3)}{ci} | "
                     f"{r['n_datasets']}: {r['datasets']} | {r['n_runs']} | {r['left_out'] or '–'} |")
    return lines


def _regime_note(finetune: Any, labels: Any) -> str:
    """``, frozen, 10% (seed 0)`` beside a tag: the training regime where it is not the paper's (full, 100%)."""
    parts = [str(finetune)] if finetune != FULL else []
    parts += [str(labels)] if labels != ALL_LABELS else []
    return "".join(f", {p}" for p in parts)


def regime_title(finetune: Any, labels: Any) -> str:
    """A row group's heading: ``Frozen encoder, 10% of the train labels (seed 0)``."""
    what = "Frozen encoder (linear probe for cls)" if finetune == "frozen" else (
        "Full finetuning" if finetune == FULL else f"finetune={finetune}")
    return f"{what}, {'all' if labels == ALL_LABELS else labels} of the train labels"


def _regime_tables(df: pd.DataFrame, level: str = "##") -> list[str]:
    """The rows of the paper's regime (full finetuning, every label) as one table, then one headed table per
    other regime (``finetune``, ``labels``): those rows never carry the paper's value (README "Protocols")."""
    if not len(df):
        return []
    paper = (df["finetune"] == FULL) & (df["labels"] == ALL_LABELS)
    out = _md_table(df[paper]) if paper.any() else []
    others = df[~paper]
    for (finetune, labels), g in others.groupby(REGIME, sort=True) if len(others) else []:
        out += ([""] if out else []) + [f"{level} {regime_title(finetune, labels)}", "",
                f"`finetune={finetune}`, `labels {labels}`: not the paper's regime (full finetuning on every label), so "
                "no paper value or Δ.", ""]
        out += _md_table(g)
    return out


def _notes(df: pd.DataFrame) -> list[str]:
    """What a reader needs beside the table: why a row has no paper value, where a split came from,
    which server scored a row."""
    out = [_stats_note()] if len(df) else []
    off = df[df["paper"].isna() & (df["protocol"] != df["paper_protocol"])]
    if len(off):
        theirs = sorted({f"{r.dataset}: {r.paper_protocol}" for r in off.itertuples()})
        out.append("- **paper** and **Δ** only where the row's protocol is the paper's; the paper's protocol: "
                   + "; ".join(theirs) + ".")
    if len(df) and (df["split"] != "official").any():
        out.append("- **split** other than `official`: the paper's split is unpublished or made differently "
                   "(README \"Data\", docs/protocols.md §1 \"Splits\"), so a Δ there is no reproduction test "
                   "to a fraction of a point.")
    for r in df[df["protocol"].str.endswith("(server)")].itertuples() if len(df) else []:
        out.append(f"- {r.task}/{r.dataset}/{r.backbone} {r.tag}, {r.protocol}: {r.scored_by_source}.")
    return [""] + out if out else []


def _aside_table(aside: pd.DataFrame, level: str = "##") -> list[str]:
    lines = ["", f"{level} Finished runs without a row", "",
             "Their local number is not a held-out result, or their submission awaits its server score.", "",
             "| task | dataset | backbone | tag | seed | protocol | local value | why |", "|---|---|---|---|---|---|---|---|"]
    for _, r in aside.iterrows():
        lines.append(f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['tag']} | {r['seed']} | {r['protocol']} | "
                     f"{_fmt(r['value'])} | {r['why']} |")
    return lines


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_markdown(main: pd.DataFrame, sample: pd.DataFrame, bad: pd.DataFrame,
                    aside: pd.DataFrame | None = None, unread: pd.DataFrame | None = None,
                    per_class: pd.DataFrame | None = None, per_dataset: list[str] | None = None,
                    per_dataset_sample: list[str] | None = None) -> str:
    """The markdown leaderboard; ``per_dataset`` (``per_dataset_sample``): the lines of the per-dataset figures
    and curves (:func:`_dataset_md`) under the real (sample) table."""
    out = ["# rsbench leaderboard", "",
           ("Generated by `python -m rsbench.leaderboard` from the run records under `results/runs/`; "
            "paper values from `rsbench/paper_results.csv`. Mean ± sample std over seeds; Δ = mean − paper, "
            "only on rows whose protocol (train split, scored split, local or server) is the paper's, for full "
            "finetuning on every label (frozen-encoder and label-fraction rows are grouped apart)."), ""]
    if len(main):
        out += _regime_tables(main) + _notes(main) + (per_dataset or []) + _backbone_table(backbone_scores(main))
        out += _per_class_md(per_class) if per_class is not None else []
    else:
        out.append("_No finished runs on real data yet._")
    aside = aside if aside is not None else pd.DataFrame(columns=ASIDE)
    fake = aside["sample_data"].astype(bool)
    if (~fake).any():
        out += _aside_table(aside[~fake])
    if len(sample) or fake.any():
        out += ["", "## Runs on generated sample data", "",
                ("Synthetic pixels in the official layout (the demo and tests): they show the pipeline works, "
                 "not how good a model is, and are never compared with the paper."), ""]
        out += _regime_tables(sample, "###") + (per_dataset_sample or []) + _backbone_table(backbone_scores(sample), "###") \
            if len(sample) else []
        out += _aside_table(aside[fake], "###") if fake.any() else []
    if len(bad):
        out += ["", "## Failed or unfinished runs", "", "| task | dataset | backbone | tag | seed | status | error | run folder |",
                "|---|---|---|---|---|---|---|---|"]
        for _, r in bad.iterrows():
            out.append(f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['tag']} | {r['seed']} | {r['status']} | "
                       f"{_cell(r['error'])} | `{r['run_dir']}` |")
    if unread is not None and len(unread):
        out += ["", "## Unreadable records", "", "Skipped: fix or delete the file (a rerun of the run rewrites it).", "",
                "| record | reason |", "|---|---|"]
        out += [f"| `{_cell(r['path'])}` | {_cell(r['reason'])} |" for _, r in unread.iterrows()]
    return "\n".join(out) + "\n"


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


#: the per-dataset figures' file names: leaderboard_<task>_<dataset>.png (sample data: leaderboard_sample_...)
DATASET_PNG = "leaderboard_{prefix}{task}_{dataset}.png"


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(float(v))


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


def _link(path: Path, results_dir: Path) -> str:
    return Path(os.path.relpath(path, results_dir)).as_posix().replace(" ", "%20")


def _dataset_md(groups: list[dict[str, Any]], curves: dict[tuple, list[tuple[Any, Path]]], results_dir: Path,
                level: str = "##") -> list[str]:
    """The per-dataset section: each drawn figure, and per row the links to its runs' training curves."""
    if not groups:
        return []
    lines = ["", f"{level} Per dataset", "",
             ("Each bar is a row's IQM over its seeds (the mean up to 3 seeds) with its 95 % bootstrap CI as the error bar "
              "(none for one seed); hatched beside it, the paper's value where the row is compared with the paper. "
              "Under each figure, every run's training curves (`curves.png` in the run folder: train loss, learning "
              "rates of the backbone's first group and of the head, validation metric).")]
    for g in groups:
        lines += ["", f"{level}# {g['task']} / {g['dataset']} ({g['metric']})", "",
                  f"![{g['task']} / {g['dataset']}]({g['file']})"]
        runs = []
        for b in g["bars"]:
            found = sorted(curves.get(tuple(str(v) for v in b["key"]), []), key=lambda sp: _seed_order(sp[0]))
            if found:
                links = ", ".join(f"[seed {s}]({_link(p, results_dir)})" for s, p in found)
                runs.append(f"- {_cell(b['label'])}: curves {links}")
        lines += [""] + runs if runs else []
    return lines


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


def write_leaderboard(results_dir: str | Path, runs_dir: str | Path | None = None,
                      paper_csv: str | Path = PAPER_CSV) -> dict[str, Path]:
    """Write ``leaderboard.{csv,md,png}`` into ``results_dir``; a :class:`LeaderboardError` when it cannot be written."""
    results_dir = Path(results_dir)
    runs_dir = Path(runs_dir) if runs_dir else results_dir / "runs"
    records = collect(runs_dir)
    main, sample, bad, aside = aggregate(records, load_paper(paper_csv))
    unread = unreadable_records(records)
    for r in unread.itertuples():
        log.warning("leaderboard: skipped the unreadable record %s: %s", r.path, r.reason)
    csv_path, md_path = results_dir / "leaderboard.csv", results_dir / "leaderboard.md"
    bb_path = results_dir / "leaderboard_backbones.csv"
    by_backbone = pd.concat([backbone_scores(main).assign(data="real"), backbone_scores(sample).assign(data="sample")],
                            ignore_index=True)
    main_csv = pd.concat([main.assign(data="real"), sample.assign(data="sample")], ignore_index=True) if len(sample) else main.assign(data="real")
    pc = per_class_table(local_rows(records, sample_data=False))
    pc_path = results_dir / "leaderboard_per_class.csv"
    try:
        atomic_write_text(csv_path, main_csv.to_csv(index=False))
        atomic_write_text(bb_path, by_backbone.to_csv(index=False))
        atomic_write_text(pc_path, pc.to_csv(index=False))
        figures = {prefix: _draw_datasets(dataset_bars(table, prefix), results_dir)
                   for prefix, table in (("", main), ("sample_", sample))}
        md = render_markdown(main, sample, bad, aside, unread, pc,
                             _dataset_md(figures[""], run_curves(records, False), results_dir),
                             _dataset_md(figures["sample_"], run_curves(records, True), results_dir, "###"))
        png = plot_vs_paper(main, results_dir / "leaderboard.png")
        if png is not None:
            md = md.replace("\n\n", "\n\n![rsbench − paper](leaderboard.png)\n\n", 1)
        atomic_write_text(md_path, md)
    except OSError as e:
        raise LeaderboardError(f"cannot write the leaderboard into {results_dir}: {e.strerror or e} "
                               f"({e.filename or results_dir}); make the folder writable or set paths.results_dir=... "
                               "(env RSBENCH_RESULTS), then rerun python -m rsbench.leaderboard") from e
    out = {"csv": csv_path, "md": md_path, "backbones_csv": bb_path, "per_class_csv": pc_path,
           "dataset_pngs": [results_dir / g["file"] for fs in figures.values() for g in fs]}
    if png is not None:
        out["png"] = png
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rsbench.leaderboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=os.environ.get("RSBENCH_RESULTS", "results"),
                   help="default: $RSBENCH_RESULTS, else ./results (as python -m rsbench writes them)")
    p.add_argument("--runs-dir", default=None, help="default: <results-dir>/runs")
    p.add_argument("--paper", default=str(PAPER_CSV))
    p.add_argument("--wandb", action="store_true",
                   help="also log the leaderboard as wandb Tables (and its figures as images) into <results-dir>/wandb; "
                        "offline unless WANDB_MODE=online or a wandb API key is set up")
    p.add_argument("--wandb-project", default=None, help="default: $WANDB_PROJECT, else rsbench")
    a = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = write_leaderboard(a.results_dir, a.runs_dir, a.paper)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"leaderboard: {out['md']}\n             {out['csv']}")
    if a.wandb:
        from rsbench.tracking import log_leaderboard

        try:
            folder = log_leaderboard(a.results_dir, project=a.wandb_project)
        except Exception as e:  # noqa: BLE001 — wandb missing or failing: one line, exit 2
            print(f"error: the leaderboard was not logged to wandb: {type(e).__name__}: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"wandb:       {folder}")


if __name__ == "__main__":
    main()
