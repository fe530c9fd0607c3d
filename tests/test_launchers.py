"""Sweeps on the engines users already have: Hydra's submitit launcher, locally (real jobs in their own
processes) and on SLURM (the sbatch script it would submit, with stand-ins for sbatch/srun/sacct)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ONE_THREAD, run_rsbench

pytestmark = pytest.mark.slow

TINY = ["dataset=eurosat", "dataset.sample=true", "backbone=resnet18", "backbone.pretrained=none", "trainer=cpu",
        "trainer.max_epochs=1", "data.batch_size=4", "data.img_size=32", "data.num_workers=0", "logger=none",
        "trainer.enable_progress_bar=false", "sched.warmup_epochs=0", "callbacks.plots.num=0"]


def test_local_submitit_sweep_runs_every_member(tmp_path):
    """``hydra/launcher=local``: both members run as submitit jobs at the same time (writing the one sample
    dataset together, which the atomic sample write allows), each leaves an ok record, and the leaderboard
    lists both seeds."""
    run_rsbench(["-m", "hydra/launcher=local", *TINY, "seed=0,1"], tmp_path)
    for seed in (0, 1):
        rec = json.loads((tmp_path / f"results/runs/cls/eurosat/resnet18/default-s{seed}/metrics.json").read_text())
        assert rec["status"] == "ok", rec.get("error")
    assert list((tmp_path / "results/runs/.submitit").iterdir())  # the jobs' own logs
    board = (tmp_path / "results/leaderboard.csv").read_text()
    assert "cls,eurosat,resnet18" in board and "0,1" in board


def test_slurm_launcher_renders_one_task_per_gpu(tmp_path):
    """``hydra/launcher=slurm trainer=ddp trainer.devices=8 trainer.num_nodes=2``: the sbatch script asks for
    2 nodes x 8 GPUs with 8 tasks per node (Lightning's SLURM environment), the partition, the time limit and
    the signal before it; ``trainer.devices=auto`` is refused (a job must say how many GPUs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/bash\ncp "${@: -1}" "$CAPTURE/submitted.sh"\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/bash\nexit 0\n")
    (bin_dir / "sacct").write_text('#!/bin/bash\necho "JobID|State|NodeList"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, **ONE_THREAD, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "CAPTURE": str(tmp_path),
           "RSBENCH_RESULTS": str(tmp_path / "results"), "RSBENCH_DATA": str(tmp_path / "data"), "HYDRA_FULL_ERROR": "0"}
    args = [sys.executable, "-m", "rsbench", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=600", "trainer=ddp", "trainer.devices=8", "trainer.num_nodes=2",
            "dataset=levir", "backbone=vitb_rvsa"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    script = tmp_path / "submitted.sh"
    try:
        deadline = time.monotonic() + 120
        while not script.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert script.is_file(), out
    text = script.read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --time=600", "#SBATCH --job-name=rsbench"):
        assert line in text, text
    assert "#SBATCH --signal=" in text and "@120" in text
    assert f"{Path(sys.executable)} -u -m submitit.core._submit" in text
    (tmp_path / "auto").mkdir()
    refused = run_rsbench(["-m", "hydra/launcher=slurm", "trainer=ddp", "trainer.devices=auto", "dataset=levir",
                           "backbone=vitb_rvsa"], tmp_path / "auto", check=False, env={"PATH": env["PATH"]})
    assert refused.returncode != 0
    assert "a cluster job needs the number of GPUs per node, e.g. trainer.devices=8" in refused.stdout + refused.stderr
