"""The markdown leaderboard: the main table, notes, the backbone scores, the regimes, the per-class and
per-dataset sections, the runs listed apart."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from rsbench.leaderboard.columns import ASIDE, REGIME
from rsbench.leaderboard.records import seed_order
from rsbench.leaderboard.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, IQM_CUT, backbone_scores
from rsbench.protocol import ALL_LABELS, FULL


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
            found = sorted(curves.get(tuple(str(v) for v in b["key"]), []), key=lambda sp: seed_order(sp[0]))
            if found:
                links = ", ".join(f"[seed {s}]({_link(p, results_dir)})" for s, p in found)
                runs.append(f"- {_cell(b['label'])}: curves {links}")
        lines += [""] + runs if runs else []
    return lines
