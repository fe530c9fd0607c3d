"""Reading run records: every ``metrics.json`` under the runs folder, the malformed ones named, and each
finished record's leaderboard entries (its local number, its server scores)."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import pandas as pd

from rsbench.leaderboard.columns import ALSO, PAPER_CSV, PER_CLASS, UNREADABLE, WHO, _FIELDS, _NUMBERS, _SCALAR
from rsbench.protocol import label, paper_regime, regime, same, server_protocol
from rsbench.results import read_record


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


def is_number(v: Any) -> bool:
    return isinstance(v, numbers.Number) and not isinstance(v, bool)


def malformed(r: dict[str, Any]) -> str | None:
    """Why a record cannot be listed (a field of the wrong type, a missing key, a non-numeric metric), or None."""
    if not isinstance(r.get("status"), str):
        return "no 'status' (a string)" if "status" not in r else f"'status' is {r['status']!r}, not a string"
    for key, kind in _FIELDS.items():
        if r.get(key) is not None and not isinstance(r[key], kind):
            return f"'{key}' is {type(r[key]).__name__} {_short(r[key])}, not a {_kind(kind)}"
    for key in _NUMBERS:
        if r.get(key) is not None and not is_number(r[key]):
            return f"'{key}' is {_short(r[key])}, not a number"
    if r["status"] != "ok":
        return None
    if not r.get("metric"):
        return "a finished record ('status': 'ok') without 'metric'"
    if "metrics" not in r:
        return "a finished record ('status': 'ok') without 'metrics'"
    value = r["metrics"].get(r["metric"])
    if value is not None and not is_number(value):
        return f"metrics.{r['metric']} is {_short(value)}, not a number"
    score = (r.get("server_scores") or {}).get(r["metric"])
    if score is not None and not (isinstance(score, dict) and (score.get("value") is None or is_number(score["value"]))):
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
             "source": "rsbench", "also": {k: m[k] for k in ALSO.get(r.get("task"), ()) if is_number(m.get(k))},
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
    return {str(k): float(v) for k, v in table.items() if is_number(v) and not math.isnan(float(v))}


def unreadable_records(records: list[dict[str, Any]]) -> pd.DataFrame:
    """(path, reason) of every record :func:`collect` could not read."""
    rows = [{"path": r.get("path") or str(Path(r.get("run_dir") or ".") / "metrics.json"),
             "reason": r.get("reason") or r.get("error") or "unreadable"} for r in records
            if r.get("status") == "unreadable"]
    return pd.DataFrame(rows, columns=UNREADABLE)


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


def seed_order(seed: Any) -> tuple[int, float, str]:
    return (0, float(seed), "") if is_number(seed) else (1, 0.0, str(seed))
