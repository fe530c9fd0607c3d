"""The leaderboard on a fixture of run records: means, std, paper difference, failed runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rsbench.leaderboard import write_leaderboard
from rsbench.results import atomic_write_json


def _rec(runs, task, dataset, backbone, seed, value=None, status="ok", pretrain="MAE+MTP", tag="default",
         metric="OA", sample=False, time_s=3600.0):
    d = runs / task / dataset / backbone / f"{tag}-s{seed}"
    rec = {"status": status, "task": task, "dataset": dataset, "backbone": backbone, "pretrain": pretrain,
           "tag": tag, "seed": seed, "metric": metric, "sample_data": sample, "run_dir": str(d)}
    if status == "ok":
        rec.update(metrics={metric: value}, train_time_s=time_s, train_images_per_s=100.0, epochs=100)
    elif status == "failed":
        rec.update(error="RuntimeError: CUDA out of memory")
    atomic_write_json(d / "metrics.json", rec)


@pytest.fixture
def board(tmp_path):
    runs = tmp_path / "runs"
    for seed, v in enumerate([98.0, 99.0, 97.0]):
        _rec(runs, "cls", "eurosat", "vitb_rvsa", seed, v)
    _rec(runs, "cls", "eurosat", "vitb_rvsa", 0, 50.0, tag="lr1e-3")
    _rec(runs, "cd", "levir", "vitl_rvsa", 0, 92.0, metric="F1", time_s=7200)
    _rec(runs, "cls", "eurosat", "resnet18", 0, 100.0, pretrain="none", tag="demo", sample=True)
    _rec(runs, "cls", "resisc45", "vitb_rvsa", 3, status="failed")
    _rec(runs, "cls", "resisc45", "vitb_rvsa", 4, status="running")
    paper = tmp_path / "paper.csv"
    paper.write_text("task,dataset,metric,backbone,pretrain,value,source\n"
                     "cls,eurosat,OA,vitb_rvsa,MAE+MTP,98.76,paper\n"
                     "cd,levir,F1,vitl_rvsa,MAE+MTP,92.67,paper\n")
    out = write_leaderboard(tmp_path, runs, paper)
    assert out["png"].stat().st_size > 0 and "![rsbench − paper](leaderboard.png)" in out["md"].read_text()
    return pd.read_csv(out["csv"]), out["md"].read_text()


def test_mean_std_and_paper_difference(board):
    df, _ = board
    row = df[(df.dataset == "eurosat") & (df.backbone == "vitb_rvsa") & (df.tag == "default")].iloc[0]
    assert row["n_runs"] == 3 and row["seeds"] == "0,1,2"
    assert row["mean"] == pytest.approx(98.0)
    assert row["std"] == pytest.approx(1.0)  # sample std of 97, 98, 99
    assert row["paper"] == pytest.approx(98.76)
    assert row["diff"] == pytest.approx(98.0 - 98.76)
    assert row["train_time_h"] == pytest.approx(1.0)


def test_tags_kept_apart_and_single_run_has_no_std(board):
    df, _ = board
    lr = df[df.tag == "lr1e-3"].iloc[0]
    assert lr["mean"] == 50.0 and lr["n_runs"] == 1 and math.isnan(lr["std"])
    levir = df[df.dataset == "levir"].iloc[0]
    assert levir["metric"] == "F1" and levir["diff"] == pytest.approx(92.0 - 92.67)


def test_sample_data_runs_are_separate(board):
    df, md = board
    assert set(df[df.backbone == "resnet18"]["data"]) == {"sample"}
    main, sample = md.split("## Runs on generated sample data")
    assert "resnet18" not in main and "resnet18" in sample.split("## Failed")[0]


def test_failed_and_unfinished_runs_listed_apart(board):
    df, md = board
    assert "resisc45" not in set(df["dataset"])
    failed = md.split("## Failed or unfinished runs")[1]
    assert "| cls | resisc45 | vitb_rvsa | default | 3 | failed | RuntimeError: CUDA out of memory |" in failed
    assert "| 4 | running |" in failed


def test_markdown_row_shows_mean_std_paper_and_delta(board):
    _, md = board
    assert "| cls | eurosat | vitb_rvsa | MAE+MTP | default | OA | 98.00 ± 1.00 | 98.76 | -0.76 | 3 (0,1,2) |" in md
