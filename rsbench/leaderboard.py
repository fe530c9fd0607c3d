"""Aggregate run records into ``results/leaderboard.csv`` and ``results/leaderboard.md``.

    python -m rsbench.leaderboard [--results-dir results] [--runs-dir results/runs]

One row per task × dataset × backbone × pretrained weights × tag × protocol × precision × split
source: the headline metric as mean ± std over seeds (sample std, n−1), the number of runs and
seeds, mean training time and speed. A record gives a row for its local number (protocol
``train: <split>, scored: <split> (local)``) and one for each server score entered with
``python -m rsbench.scores add`` (``... (server)``). The paper's value from
``rsbench/paper_results.csv`` (shipped with the package) and the difference appear ONLY on rows
whose protocol is the paper's for the dataset (the record's ``paper_protocol``, from the dataset
config). A local number on a split the run trained on (LoveDA ``protocol=paper`` tests on Val,
part of trainval) and a submission still waiting for its server score are listed apart, as are
failed or unfinished runs; runs on generated sample data are kept out of the main table.

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
from typing import Any

import pandas as pd

from rsbench.config import package_path
from rsbench.errors import LeaderboardError, first_line
from rsbench.protocol import label, same, server_protocol
from rsbench.results import atomic_write_bytes, atomic_write_text, read_record

log = logging.getLogger(__name__)

#: The numbers the paper reports (task, dataset, metric, backbone, pretrain, value, source).
PAPER_CSV = package_path("paper_results.csv")
WHO = ["task", "dataset", "backbone", "pretrain", "tag"]
#: what makes a row: runs differing in any of these are never averaged together
KEYS = WHO + ["protocol", "precision", "split"]
COLS = KEYS + ["metric", "mean", "std", "n_runs", "seeds", "paper", "paper_source", "diff", "paper_protocol",
               "scored_by_source", "train_time_h", "images_per_s", "epochs"]
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
    base = {**{k: r.get(k) for k in WHO}, "seed": r.get("seed"), "metric": metric,
            "sample_data": bool(r.get("sample_data")), "precision": r.get("precision") or "unknown",
            "split": r.get("split_source") or "unknown", "paper_protocol": label(paper),
            "train_time_s": r.get("train_time_s"), "images_per_s": r.get("train_images_per_s"),
            "epochs": r.get("epochs"), "run_dir": r.get("run_dir")}
    local = {**base, "protocol": label(proto), "value": (r.get("metrics") or {}).get(metric),
             "compared": same(proto, paper), "source": "rsbench"}
    held_out = proto is None or proto.get("held_out", True)
    out = [local] if held_out else []
    served = server_protocol(proto or {})
    score = (r.get("server_scores") or {}).get(metric)
    if score and served:
        out.append({**base, "protocol": label(served), "value": score.get("value"), "compared": same(served, paper),
                    "source": f"{score.get('source')} ({score.get('date')})"})
    notes = [] if held_out or score else [f"'{proto.get('test')}' was trained on ({label(proto)}): not a held-out number"]
    if served and same(served, paper) and not score:
        sub = ((r.get("metrics") or {}).get("submission") or {}).get("dir", "<run>/submission")
        notes.append(f"submission `{sub}` awaits the server's score: `python -m rsbench.scores add {r.get('run_dir')} "
                     f"--metric {metric} --value <score> --source \"{(paper or {}).get('server', '<server>')}\"`")
    return out, ({**local, "why": "; ".join(notes)} if notes else None)


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
        tables.append(pd.DataFrame(rows, columns=COLS))
    return (tables[0], tables[1], pd.DataFrame(bad, columns=WHO + ["seed", "status", "error", "run_dir"]),
            pd.DataFrame(aside, columns=ASIDE))


def _row(key: tuple, g: pd.DataFrame, paper: pd.DataFrame) -> dict[str, Any]:
    vals = [v for v in g["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
    mean = sum(vals) / len(vals) if vals else math.nan
    std = pd.Series(vals).std(ddof=1) if len(vals) > 1 else math.nan
    row = dict(zip(KEYS + ["metric"], key))
    pv, src = _paper_value(paper, row) if bool(g["compared"].all()) else (None, None)
    row.update(mean=mean, std=std, n_runs=len(g), seeds=",".join(str(s) for s in sorted(g["seed"].dropna().unique())),
               paper=pv, paper_source=src, diff=(mean - pv) if pv is not None else math.nan,
               paper_protocol=g["paper_protocol"].iloc[0], scored_by_source="; ".join(sorted(set(g["source"]))),
               train_time_h=_mean(g["train_time_s"]) / 3600, images_per_s=_mean(g["images_per_s"]),
               epochs=_mean(g["epochs"]))
    return row


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
            "paper | Δ vs paper | runs (seeds) | train time (h) | train img/s |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for _, r in df.iterrows():
        ms = _fmt(r["mean"]) + (f" ± {_fmt(r['std'])}" if r["n_runs"] > 1 else "")
        diff = r["diff"]
        lines.append(
            f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['pretrain']} | {r['tag']} | {r['metric']} | {ms} | "
            f"{r['protocol']} | {r['precision']} | {r['split']} | "
            f"{_fmt(r['paper'])} | {('+' if isinstance(diff, float) and diff > 0 else '') + _fmt(diff)} | "
            f"{r['n_runs']} ({r['seeds']}) | {_fmt(r['train_time_h'], 3)} | {_fmt(r['images_per_s'], 1)} |"
        )
    return lines


def _notes(df: pd.DataFrame) -> list[str]:
    """What a reader needs beside the table: why a row has no paper value, where a split came from,
    which server scored a row."""
    out = []
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
                    aside: pd.DataFrame | None = None, unread: pd.DataFrame | None = None) -> str:
    out = ["# rsbench leaderboard", "",
           ("Generated by `python -m rsbench.leaderboard` from the run records under `results/runs/`; "
            "paper values from `rsbench/paper_results.csv`. Mean ± sample std over seeds; Δ = mean − paper, "
            "only on rows whose protocol (train split, scored split, local or server) is the paper's."), ""]
    if len(main):
        out += _md_table(main) + _notes(main)
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
        out += _md_table(sample) if len(sample) else []
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
    main_csv = pd.concat([main.assign(data="real"), sample.assign(data="sample")], ignore_index=True) if len(sample) else main.assign(data="real")
    md = render_markdown(main, sample, bad, aside, unread)
    try:
        atomic_write_text(csv_path, main_csv.to_csv(index=False))
        png = plot_vs_paper(main, results_dir / "leaderboard.png")
        if png is not None:
            md = md.replace("\n\n", "\n\n![rsbench − paper](leaderboard.png)\n\n", 1)
        atomic_write_text(md_path, md)
    except OSError as e:
        raise LeaderboardError(f"cannot write the leaderboard into {results_dir}: {e.strerror or e} "
                               f"({e.filename or results_dir}); make the folder writable or set paths.results_dir=... "
                               "(env RSBENCH_RESULTS), then rerun python -m rsbench.leaderboard") from e
    out = {"csv": csv_path, "md": md_path}
    if png is not None:
        out["png"] = png
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rsbench.leaderboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=os.environ.get("RSBENCH_RESULTS", "results"),
                   help="default: $RSBENCH_RESULTS, else ./results (as python -m rsbench writes them)")
    p.add_argument("--runs-dir", default=None, help="default: <results-dir>/runs")
    p.add_argument("--paper", default=str(PAPER_CSV))
    a = p.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = write_leaderboard(a.results_dir, a.runs_dir, a.paper)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"leaderboard: {out['md']}\n             {out['csv']}")


if __name__ == "__main__":
    main()
