"""Aggregate run records into ``results/leaderboard.csv`` and ``results/leaderboard.md``.

    python -m rsbench.leaderboard [--results-dir results] [--runs-dir results/runs]

One row per task × dataset × backbone × pretrained weights × tag: the headline metric as mean ±
std over seeds (sample std, n−1), the paper's value from ``rsbench/paper_results.csv`` (shipped with
the package) and the difference, the number of runs and seeds, mean training time and speed. Runs
that failed or never finished are listed apart; runs on generated sample data are kept out of the
main table.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from rsbench.config import package_path
from rsbench.results import atomic_write_text, read_record

#: The numbers the paper reports (task, dataset, metric, backbone, pretrain, value, source).
PAPER_CSV = package_path("paper_results.csv")
KEYS = ["task", "dataset", "backbone", "pretrain", "tag"]


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    recs = []
    for p in sorted(Path(runs_dir).glob("**/metrics.json")):
        r = read_record(p)
        if r is not None:
            r.setdefault("run_dir", str(p.parent))
            recs.append(r)
    return recs


def load_paper(path: str | Path = PAPER_CSV) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=["task", "dataset", "metric", "backbone", "pretrain", "value", "source"])
    return pd.read_csv(path)


def aggregate(records: list[dict[str, Any]], paper: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(main table, sample-data table, failed/incomplete runs)."""
    ok, bad = [], []
    for r in records:
        if r.get("status") == "ok":
            metric = r.get("metric")
            value = (r.get("metrics") or {}).get(metric)
            ok.append({**{k: r.get(k) for k in KEYS}, "seed": r.get("seed"), "metric": metric,
                       "value": value, "sample_data": bool(r.get("sample_data")),
                       "train_time_s": r.get("train_time_s"), "images_per_s": r.get("train_images_per_s"),
                       "epochs": r.get("epochs")})
        else:
            bad.append({**{k: r.get(k) for k in KEYS}, "seed": r.get("seed"), "status": r.get("status"),
                        "error": (r.get("error") or "")[:200], "run_dir": r.get("run_dir")})
    cols = KEYS + ["metric", "mean", "std", "n_runs", "seeds", "paper", "paper_source", "diff",
                   "train_time_h", "images_per_s", "epochs"]
    tables = []
    df = pd.DataFrame(ok)
    for sample in (False, True):
        part = df[df["sample_data"] == sample] if len(df) else df
        rows = []
        if len(part):
            for key, g in part.groupby(KEYS + ["metric"], dropna=False, sort=True):
                vals = [v for v in g["value"] if v is not None and not (isinstance(v, float) and math.isnan(v))]
                mean = sum(vals) / len(vals) if vals else math.nan
                std = pd.Series(vals).std(ddof=1) if len(vals) > 1 else math.nan
                row = dict(zip(KEYS + ["metric"], key))
                pv, src = _paper_value(paper, row)
                row.update(mean=mean, std=std, n_runs=len(g), seeds=",".join(str(s) for s in sorted(g["seed"].dropna().unique())),
                           paper=pv, paper_source=src, diff=(mean - pv) if pv is not None else math.nan,
                           train_time_h=_mean(g["train_time_s"]) / 3600,
                           images_per_s=_mean(g["images_per_s"]), epochs=_mean(g["epochs"]))
                rows.append(row)
        tables.append(pd.DataFrame(rows, columns=cols))
    return tables[0], tables[1], pd.DataFrame(bad, columns=KEYS + ["seed", "status", "error", "run_dir"])


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
    head = "| task | dataset | backbone | pretrained | tag | metric | mean ± std | paper | Δ vs paper | runs (seeds) | train time (h) | train img/s |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for _, r in df.iterrows():
        ms = _fmt(r["mean"]) + (f" ± {_fmt(r['std'])}" if r["n_runs"] > 1 else "")
        diff = r["diff"]
        lines.append(
            f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['pretrain']} | {r['tag']} | {r['metric']} | {ms} | "
            f"{_fmt(r['paper'])} | {('+' if isinstance(diff, float) and diff > 0 else '') + _fmt(diff)} | "
            f"{r['n_runs']} ({r['seeds']}) | {_fmt(r['train_time_h'], 3)} | {_fmt(r['images_per_s'], 1)} |"
        )
    return lines


def render_markdown(main: pd.DataFrame, sample: pd.DataFrame, bad: pd.DataFrame) -> str:
    out = ["# rsbench leaderboard", "",
           ("Generated by `python -m rsbench.leaderboard` from the run records under `results/runs/`; "
            "paper values from `rsbench/paper_results.csv`. Mean ± sample std over seeds; Δ = mean − paper."), ""]
    if len(main):
        out += _md_table(main)
    else:
        out.append("_No finished runs on real data yet._")
    if len(sample):
        out += ["", "## Runs on generated sample data", "",
                ("Synthetic pixels in the official layout (the demo and tests): they show the pipeline works, "
                 "not how good a model is, and are never compared with the paper."), ""]
        out += _md_table(sample)
    if len(bad):
        out += ["", "## Failed or unfinished runs", "", "| task | dataset | backbone | tag | seed | status | error | run folder |",
                "|---|---|---|---|---|---|---|---|"]
        for _, r in bad.iterrows():
            err = str(r["error"]).replace("|", "\\|").replace("\n", " ")
            out.append(f"| {r['task']} | {r['dataset']} | {r['backbone']} | {r['tag']} | {r['seed']} | {r['status']} | {err} | `{r['run_dir']}` |")
    return "\n".join(out) + "\n"


def plot_vs_paper(main: pd.DataFrame, path: Path) -> Path | None:
    """Bar chart of Δ vs the paper (mean ± std over seeds) for every row that has a paper value."""
    rows = main[main["paper"].notna()] if len(main) else main
    if not len(rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.task}/{r.dataset}/{r.backbone} ({r.tag})" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    ax.barh(labels, rows["diff"], xerr=rows["std"].fillna(0), color=["tab:green" if d >= 0 else "tab:red" for d in rows["diff"]])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("rsbench − paper (metric points; error bar: std over seeds)")
    ax.invert_yaxis()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_leaderboard(results_dir: str | Path, runs_dir: str | Path | None = None,
                      paper_csv: str | Path = PAPER_CSV) -> dict[str, Path]:
    results_dir = Path(results_dir)
    runs_dir = Path(runs_dir) if runs_dir else results_dir / "runs"
    main, sample, bad = aggregate(collect(runs_dir), load_paper(paper_csv))
    csv_path, md_path = results_dir / "leaderboard.csv", results_dir / "leaderboard.md"
    main_csv = pd.concat([main.assign(data="real"), sample.assign(data="sample")], ignore_index=True) if len(sample) else main.assign(data="real")
    atomic_write_text(csv_path, main_csv.to_csv(index=False))
    md = render_markdown(main, sample, bad)
    png = plot_vs_paper(main, results_dir / "leaderboard.png")
    if png is not None:
        md = md.replace("\n\n", "\n\n![rsbench − paper](leaderboard.png)\n\n", 1)
    atomic_write_text(md_path, md)
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
    out = write_leaderboard(a.results_dir, a.runs_dir, a.paper)
    print(f"leaderboard: {out['md']}\n             {out['csv']}")


if __name__ == "__main__":
    main()
