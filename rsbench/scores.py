"""Scores from an evaluation server, added to a run's record.

    python -m rsbench.scores add <run folder | metrics.json | run id> --metric mIoU --value 52.4 \\
        --source "LoveDA Codabench 13030" [--date 2025-01-31] [--replace]
    python -m rsbench.scores list [<run> ...]

A dataset whose test labels are private (LoveDA; later FAIR1M and DOTA) is scored by its server
from the submission a run wrote (``<run>/submission/``). ``add`` puts that score into the run's
``metrics.json`` under ``server_scores.<metric>`` — apart from ``metrics``, which rsbench computed
itself — with the split it scores, the date of the evaluation (``--date``, default today), where
it came from (``--source``) and when it was entered, written atomically; then it rewrites the
leaderboard, where the run gets a row ``train: <split>, scored: <split> (server)`` with the
paper's value and Δ. A score for a run whose protocol is not the paper's (e.g. LoveDA trained on
Train only) is refused, with what to run instead (``protocol=paper``). A run id is a suffix of
the run folder's path under the runs folder (``paper-s0``, ``loveda/vitb_rvsa/paper-s0``) that
names exactly one run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
from pathlib import Path
from typing import Any

from rsbench.errors import RsbenchError
from rsbench.protocol import label, server_protocol, server_score_refusal
from rsbench.results import atomic_write_json, read_record


class ScoreError(RsbenchError):
    """A server score that cannot be entered (unknown run, wrong protocol, bad value)."""


def find_run(spec: str | Path, runs_dir: str | Path) -> Path:
    """The ``metrics.json`` of a run folder, a ``metrics.json`` path, or a run id under ``runs_dir``."""
    p = Path(spec)
    if p.is_file() and p.name == "metrics.json":
        return p
    if (p / "metrics.json").is_file():
        return p / "metrics.json"
    runs = Path(runs_dir)
    parts = Path(str(spec).strip("/")).parts
    hits = sorted(m for m in runs.glob("**/metrics.json") if m.parent.parts[-len(parts):] == parts) if parts else []
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ScoreError(f"no run {str(spec)!r}: neither a run folder with a metrics.json nor a run id under {runs} "
                         f"(e.g. seg/loveda/vitb_rvsa/paper-s0)")
    raise ScoreError(f"run id {str(spec)!r} names {len(hits)} runs under {runs}: "
                     + ", ".join(str(h.parent.relative_to(runs)) for h in hits) + "; give more of the path")


def _date(text: str | None) -> str:
    if text is None:
        return dt.date.today().isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ScoreError(f"--date {text!r}: expected YYYY-MM-DD (the day the server scored the submission)") from None


def add_score(metrics_path: str | Path, *, metric: str, value: float, source: str, date: str | None = None,
              replace: bool = False) -> dict[str, Any]:
    """Add one server score to the record at ``metrics_path`` (module docstring); returns the new record."""
    path = Path(metrics_path)
    rec = read_record(path)
    if rec is None or rec.get("status") == "unreadable":
        raise ScoreError(f"{path}: no readable run record")
    refusal = server_score_refusal(rec)
    if refusal:
        raise ScoreError(f"{path}: {refusal}")
    if not source or not source.strip():
        raise ScoreError("--source is required: where the score came from (e.g. \"LoveDA Codabench 13030\")")
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ScoreError(f"--value {value}: rsbench's metrics are percentages in 0..100 (52.4, not 0.524)")
    scores = dict(rec.get("server_scores") or {})
    if metric in scores and not replace:
        old = scores[metric]
        raise ScoreError(f"{path} already has a server {metric} = {old.get('value')} ({old.get('source')}, "
                         f"{old.get('date')}); --replace overwrites it")
    served = server_protocol(rec["protocol"])
    scores[metric] = {"value": value, "split": served["test"], "train": served["train"],
                      "source": source.strip(), "date": _date(date),
                      "entered": dt.datetime.now().isoformat(timespec="seconds"),
                      "submission": ((rec.get("metrics") or {}).get("submission") or {}).get("dir")}
    rec["server_scores"] = scores
    atomic_write_json(path, rec)
    return rec


def _list(paths: list[Path]) -> None:
    for p in paths:
        rec = read_record(p) or {}
        for metric, s in (rec.get("server_scores") or {}).items():
            print(f"{p.parent}: {metric} = {s.get('value')}  {label(server_protocol(rec.get('protocol') or {}))}  "
                  f"{s.get('source')} ({s.get('date')}, entered {s.get('entered')})")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rsbench.scores", description=__doc__.split("\n\n")[0])
    p.add_argument("--results-dir", default=os.environ.get("RSBENCH_RESULTS", "results"),
                   help="default: $RSBENCH_RESULTS, else ./results")
    sub = p.add_subparsers(dest="command", required=True)
    a_add = sub.add_parser("add", help="add a server's score to a run's record")
    a_add.add_argument("run", help="run folder, its metrics.json, or a run id (e.g. loveda/vitb_rvsa/paper-s0)")
    a_add.add_argument("--metric", default=None, help="default: the run's headline metric")
    a_add.add_argument("--value", type=float, required=True, help="the server's number, in percent")
    a_add.add_argument("--source", required=True, help='where it came from, e.g. "LoveDA Codabench 13030"')
    a_add.add_argument("--date", default=None, help="YYYY-MM-DD of the evaluation (default: today)")
    a_add.add_argument("--replace", action="store_true", help="overwrite a score already entered")
    a_add.add_argument("--no-leaderboard", action="store_true", help="do not rewrite the leaderboard")
    a_list = sub.add_parser("list", help="the server scores entered")
    a_list.add_argument("runs", nargs="*")
    a = p.parse_args(argv)
    results, runs_dir = Path(a.results_dir), Path(a.results_dir) / "runs"
    try:
        if a.command == "list":
            _list([find_run(r, runs_dir) for r in a.runs] or sorted(runs_dir.glob("**/metrics.json")))
            return
        path = find_run(a.run, runs_dir)
        metric = a.metric or (read_record(path) or {}).get("metric")
        rec = add_score(path, metric=metric, value=a.value, source=a.source, date=a.date, replace=a.replace)
    except RsbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    s = rec["server_scores"][metric]
    print(f"{path}: server {metric} = {s['value']} on {s['split']} ({s['source']}, {s['date']})")
    if not a.no_leaderboard and path.resolve().is_relative_to(runs_dir.resolve()):
        from rsbench.leaderboard import write_leaderboard

        print(f"leaderboard: {write_leaderboard(results, runs_dir)['md']}")


if __name__ == "__main__":
    main()
