"""``python -m rsbench`` end to end on sample data: fit + test, records, sweeps, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import TINY, run_rsbench
from rsbench.app import datasets_by_task

pytestmark = pytest.mark.slow


def _record(tmp: Path, task: str, dataset: str, backbone: str, run_id: str) -> dict:
    return json.loads((tmp / "results" / "runs" / task / dataset / backbone / run_id / "metrics.json").read_text())


@pytest.mark.parametrize("dataset", datasets_by_task()["cls"])
def test_fit_and_test_each_dataset(tmp_path, dataset):
    root = tmp_path / "data" / dataset
    proc = run_rsbench(["task=cls", f"dataset={dataset}", "backbone=resnet18", f"dataset.root={root}",
                        "dataset.sample=true", *TINY], tmp_path)
    rec = _record(tmp_path, "cls", dataset, "resnet18", "default-s0")
    assert rec["status"] == "ok" and rec["metric"] == "OA"
    m = rec["metrics"]
    assert 0.0 <= m["OA"] <= 100.0
    import yaml

    from rsbench.data import DATASETS

    loader = yaml.safe_load((Path(rec["run_dir"]) / "config.yaml").read_text())["datamodule"]["dataset"]
    assert list(m["per_class"]["accuracy"]) == list(DATASETS.get(loader).classes)
    cm = m["confusion_matrix"]
    assert m["num_test_samples"] == sum(map(sum, cm)) > 0
    assert abs(sum(cm[i][i] for i in range(len(cm))) / m["num_test_samples"] * 100 - m["OA"]) < 1e-4
    assert rec["epochs"] == 1 and rec["train_images_per_s"] > 0 and rec["peak_memory_mb"] > 0
    assert rec["precision"] == "32-true" and rec["accelerator"] == "CPUAccelerator"
    run_dir = Path(rec["run_dir"])
    assert (run_dir / "config.yaml").is_file() and rec["checkpoint"] == str(run_dir / "checkpoints" / "model.pt")
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()  # checkpoint.keep=weights: no optimiser state kept
    import torch

    kept = torch.load(run_dir / "checkpoints" / "model.pt", weights_only=True)
    assert set(kept) == {"state_dict", "hyper_parameters"} and kept["hyper_parameters"]["num_classes"] == len(m["per_class"]["accuracy"])
    env = json.loads((run_dir / "env.json").read_text())
    assert env["packages"]["torch"] and "cpu_count" in env["hardware"]
    assert "leaderboard:" in proc.stdout
    if dataset == "eurosat_ms":
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["dataset"]["in_chans"] == 13


def test_task_follows_dataset_and_finished_run_is_skipped(tmp_path, samples):
    args = ["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}", *TINY]
    run_rsbench(args, tmp_path)  # no task=: the dataset implies cls
    again = run_rsbench(args, tmp_path)
    assert "already finished" in again.stdout
    changed = run_rsbench(args + ["optim.lr=1e-2"], tmp_path, check=False)
    assert changed.returncode == 2 and "different config" in changed.stdout + changed.stderr
    run_rsbench(args + ["optim.lr=1e-2", "tag=lr1e-2"], tmp_path)
    assert _record(tmp_path, "cls", "eurosat", "resnet18", "lr1e-2-s0")["status"] == "ok"


def test_multirun_two_seeds_and_a_failing_run(tmp_path, samples):
    root = samples("eurosat")
    proc = run_rsbench(["-m", "dataset=eurosat", "backbone=timm", "backbone.name=resnet18,not_a_timm_model", "seed=0,1",
                        f"dataset.root={root}", *TINY], tmp_path, check=False)
    # the two resnet18 runs finish although the other backbone fails
    assert proc.returncode == 1
    assert "2 run(s) did not finish" in proc.stderr and "unknown backbone 'not_a_timm_model'" in proc.stderr
    for seed in (0, 1):
        assert _record(tmp_path, "cls", "eurosat", "resnet18", f"default-s{seed}")["status"] == "ok"
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "| cls | eurosat | resnet18 | none | default | OA |" in board and "| 2 (0,1) |" in board
    import pandas as pd

    df = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    row = df[(df.backbone == "resnet18")].iloc[0]
    assert row["n_runs"] == 2 and not math.isnan(row["std"])  # std defined for 2 seeds


def test_crash_after_start_leaves_failed_record(tmp_path, samples):
    proc = run_rsbench(["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}", *TINY,
                        "+trainer.max_time=not-a-duration"], tmp_path, check=False)
    assert proc.returncode != 0
    rec = _record(tmp_path, "cls", "eurosat", "resnet18", "default-s0")
    assert rec["status"] == "failed" and "max_time" in rec["traceback"]
    board = run_rsbench_leaderboard(tmp_path)
    assert "## Failed or unfinished runs" in board


def run_rsbench_leaderboard(tmp: Path) -> str:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "rsbench.leaderboard", "--results-dir", str(tmp / "results")], check=True,
                   capture_output=True, text=True)
    return (tmp / "results" / "leaderboard.md").read_text()


def test_task_dataset_mismatch_names_the_tasks_datasets(tmp_path):
    proc = run_rsbench(["task=cls", "dataset=eurosat", "backbone=resnet18", "dataset.task=seg"], tmp_path, check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "task=cls takes: eurosat, eurosat_ms, resisc45" in out


def test_unknown_group_option_lists_valid_ones(tmp_path):
    proc = run_rsbench(["dataset=eurosatt"], tmp_path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "eurosatt" in out and "eurosat_ms" in out and "resisc45" in out


def test_missing_data_root_says_where(tmp_path):
    proc = run_rsbench(["dataset=eurosat", "backbone=resnet18"], tmp_path, check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert f"data root {tmp_path / 'data' / 'eurosat'} does not exist" in out
    assert "Traceback" not in out
    assert not list((tmp_path / "results").glob("runs/**/metrics.json"))


def test_missing_weights_file_says_where(tmp_path, samples):
    proc = run_rsbench(["dataset=eurosat", "backbone=resnet18", f"dataset.root={samples('eurosat')}",
                        "backbone.pretrained=resnet18_a1.pth", *TINY], tmp_path, check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "resnet18_a1.pth" in out and "no such file" in out and str(tmp_path / "weights") in out


def test_demo_runs_with_no_arguments(tmp_path):
    proc = run_rsbench([], tmp_path)
    out = proc.stdout
    assert "GENERATED SAMPLE DATA" in out
    assert "run record:" in out and "leaderboard:" in out
    rec = _record(tmp_path, "cls", "eurosat", "resnet18", "demo-s0")
    assert rec["sample_data"] is True and rec["status"] == "ok"
    assert "Runs on generated sample data" in (tmp_path / "results" / "leaderboard.md").read_text()


def test_csv_and_offline_wandb_loggers_get_the_resolved_config(tmp_path, samples):
    root = samples("eurosat")
    base = ["dataset=eurosat", "backbone=resnet18", f"dataset.root={root}",
            *[a for a in TINY if not a.startswith("logger=")]]
    run_rsbench(base, tmp_path)
    run_dir = tmp_path / "results/runs/cls/eurosat/resnet18/default-s0"
    import yaml

    hp = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    assert hp["dataset"]["name"] == "eurosat" and hp["optim"]["lr"] > 0
    assert (run_dir / "csv" / "metrics.csv").read_text().startswith(("epoch", "step", "lr", "train", "val"))
    run_rsbench(base + ["logger=wandb", "tag=wandb"], tmp_path, env={"WANDB_API_KEY": "", "WANDB_MODE": ""})
    offline = list((tmp_path / "results/runs/cls/eurosat/resnet18/wandb-s0/wandb").glob("offline-run-*"))
    assert offline, "wandb should write an offline run when no key is set"


def test_paper_command_without_data_or_weights_names_both(tmp_path):
    proc = run_rsbench(["task=cls", "dataset=eurosat", "backbone=vitb_rvsa"], tmp_path, check=False)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert f"data root {tmp_path / 'data' / 'eurosat'} does not exist" in out
    assert "last_vit_b_rvsa_ss_is_rd_pretrn_model_encoder.pth" in out and str(tmp_path / "weights") in out
    assert "pan.baidu.com" in out and "Traceback" not in out


def test_ddp_on_two_cpu_processes_counts_each_test_image_once(tmp_path, samples):
    """Two gloo processes: one record, written once, and test metrics over the whole split.

    The split has an odd size, so Lightning's default sampler would pad it with a repeat."""
    import shutil

    root = tmp_path / "eurosat"
    shutil.copytree(samples("eurosat"), root)
    val = (root / "eurosat-val.txt").read_text().split()[:19]
    (root / "eurosat-val.txt").write_text("\n".join(val) + "\n")
    run_rsbench(["dataset=eurosat", "backbone=resnet18", f"dataset.root={root}", *TINY,
                 "trainer.devices=2", "+trainer.strategy=ddp"], tmp_path)
    rec = _record(tmp_path, "cls", "eurosat", "resnet18", "default-s0")
    assert rec["world_size"] == 2 and rec["status"] == "ok"
    assert rec["metrics"]["num_test_samples"] == 19
