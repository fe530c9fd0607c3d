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

The package, by responsibility: :mod:`~rsbench.leaderboard.columns` (what makes a row, a model, a benchmark),
:mod:`~rsbench.leaderboard.records` (reading the records), :mod:`~rsbench.leaderboard.table` (entries → rows),
:mod:`~rsbench.leaderboard.stats` (IQM, bootstrap, normalised score), :mod:`~rsbench.leaderboard.markdown` and
:mod:`~rsbench.leaderboard.figures` (the outputs); :func:`write_leaderboard` and :func:`main` here put them together.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from rsbench.errors import LeaderboardError
from rsbench.leaderboard.columns import (  # noqa: F401 — the package's API
    ALSO,
    ASIDE,
    BACKBONE_COLS,
    BENCH,
    COLS,
    DATASET_PNG,
    KEYS,
    MODEL,
    PAPER_CSV,
    PER_CLASS,
    PER_CLASS_COLS,
    REGIME,
    UNREADABLE,
    WHO,
)
from rsbench.leaderboard.stats import (  # noqa: F401 — the package's API
    backbone_scores,
    bootstrap_ci,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CI_LEVEL,
    iqm,
    IQM_CUT,
    normalized_column,
    parse_values,
)
from rsbench.leaderboard.records import (  # noqa: F401 — the package's API
    collect,
    entries,
    is_number,
    load_paper,
    local_rows,
    malformed,
    seed_order,
    unreadable_records,
)
from rsbench.leaderboard.table import (  # noqa: F401 — the package's API
    aggregate,
    per_class_table,
)
from rsbench.leaderboard.markdown import (  # noqa: F401 — the package's API
    regime_title,
    render_markdown,
    _dataset_md,
)
from rsbench.leaderboard.figures import (  # noqa: F401 — the package's API
    dataset_bars,
    plot_dataset,
    plot_vs_paper,
    run_curves,
    _draw_datasets,
)
from rsbench.results import atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["ALSO", "ASIDE", "BACKBONE_COLS", "BENCH", "BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "CI_LEVEL", "COLS", "DATASET_PNG", "IQM_CUT", "KEYS", "MODEL", "PAPER_CSV", "PER_CLASS", "PER_CLASS_COLS", "REGIME", "UNREADABLE", "WHO", "aggregate", "backbone_scores", "bootstrap_ci", "collect", "dataset_bars", "entries", "iqm", "is_number", "load_paper", "local_rows", "malformed", "normalized_column", "parse_values", "per_class_table", "plot_dataset", "plot_vs_paper", "regime_title", "render_markdown", "run_curves", "seed_order", "unreadable_records", "main", "write_leaderboard"]


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
