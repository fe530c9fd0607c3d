"""Iteration-based recipes (segmentation: trainer.max_steps, a checkpoint every N steps): a run killed mid-epoch,
relaunched with the same command, resumes from the last step checkpoint at the next batch of the same epoch and
ends with the metrics of the run that was not interrupted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from conftest import run_rsbench
from killer import logged_steps

pytestmark = pytest.mark.slow

TESTS = str(Path(__file__).resolve().parent)
ENV = {"PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
RUN_DIR = "results/runs/seg/spacenet1/resnet18/default-s0"


def _args(root: Path) -> list[str]:
    # 6 train tiles at batch 2: 3 steps an epoch; 5 steps, a checkpoint every 2; killed after step 3 (epoch 0,
    # batch 2), so the relaunch resumes from step 2 with one batch of epoch 0 left
    return ["task=seg", "dataset=spacenet1", f"dataset.root={root}", "dataset.sample=true",
            "+dataset.sample_kwargs.n_tiles=8", "+dataset.sample_kwargs.height=64", "+dataset.sample_kwargs.width=64",
            "+dataset.sample_kwargs.n_val=2", "trainer=cpu", "trainer.max_steps=5", "trainer.enable_progress_bar=false",
            "data.batch_size=2", "data.num_workers=0", "data.img_size=32", "task.module.inference.mode=whole",
            "task.module.head.channels=16", "backbone=resnet18", "logger=none", "sched.warmup_steps=1",
            "callbacks.plots.num=0", "callbacks.checkpoint.every_n_train_steps=2", "+callbacks.steps._target_=killer.StepLog",
            "+callbacks.kill._target_=killer.KillAt", "+callbacks.kill.epoch=0", "+callbacks.kill.batch=2"]


def _record(tmp: Path) -> dict:
    return json.loads((tmp / RUN_DIR / "metrics.json").read_text())


def test_sigkill_mid_epoch_then_relaunch_ends_as_the_uninterrupted_run(tmp_path):
    whole_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    whole_dir.mkdir(), cut_dir.mkdir()
    run_rsbench(_args(whole_dir / "data"), whole_dir, env=ENV)
    whole = _record(whole_dir)

    args = _args(cut_dir / "data")
    killed = run_rsbench(args, cut_dir, check=False, env={**ENV, "RSBENCH_TEST_KILL": "1"})
    assert killed.returncode == -9 and _record(cut_dir)["status"] == "running"
    ckpt = cut_dir / RUN_DIR / "checkpoints/last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["global_step"]) == (0, 2)  # mid-epoch: 2 of the epoch's 3 batches done
    loader = state["RSDataModule"]["train_loader"]
    assert loader["batches_done"] == 2 and loader["num_batches"] == 3 and loader["rng_saved"] is not None

    steps = cut_dir / "steps.txt"
    again = run_rsbench(args, cut_dir, env={**ENV, "RSBENCH_TEST_STEPLOG": str(steps)})
    assert logged_steps(steps) == [2, 3, 4]  # on from the checkpoint's step 2 (from scratch would be 0..4)
    assert "resuming the unfinished run" in again.stdout + again.stderr
    assert "not resumable" not in again.stdout + again.stderr  # Lightning's warning for a loader without a state
    rec = _record(cut_dir)
    assert rec["status"] == "ok" and rec["resumed_from"] == str(ckpt)
    m, w = rec["metrics"], whole["metrics"]
    assert m["confusion_matrix"] == w["confusion_matrix"]
    assert m["mIoU"] == w["mIoU"] and m["per_class"] == w["per_class"]
