"""The built wheel is a complete rsbench: installed into a bare folder, away from the source tree, it
finds its configs and the paper's numbers, runs the demo and writes ``./results/`` where it is started.

One test on purpose: building and installing the wheel is most of its cost, and under ``pytest -n``
a shared fixture would be built again on every worker that gets a piece of the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from conftest import ONE_THREAD, REPO, TINY

#: What a wheel is built from (pyproject.toml's `readme` is part of the metadata).
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "rsbench", "conf")
#: Python 3.11+: keep the working folder off sys.path (the probe below checks it either way).
SAFE_PATH = ["-P"] if sys.version_info >= (3, 11) else []


def _sh(cmd: list[str], *, cwd: Path, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode} in {cwd}\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _setuptools_major() -> int:
    """The environment's setuptools major version (0 when absent): new enough, it builds offline."""
    try:
        return int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


def _build_wheel(tmp: Path) -> Path:
    """``pip wheel`` on a copy of the build inputs, so no build/ or egg-info lands in the checkout."""
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    isolation = ["--no-build-isolation"] if _setuptools_major() >= 77 else []  # else pip fetches one (PyPI)
    _sh([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", *isolation, "-w", str(tmp / "dist")],
        cwd=tmp, timeout=300)
    (wheel,) = (tmp / "dist").glob("rsbench-*.whl")
    return wheel


def _check_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    want = {f"rsbench/_conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    want |= {f"rsbench/{p.relative_to(REPO / 'rsbench').as_posix()}" for p in (REPO / "rsbench").rglob("*.txt")
             if "splits" in p.parts}
    want.add("rsbench/paper_results.csv")
    assert "rsbench/_conf/config.yaml" in want and any("/splits/" in n for n in want)
    missing = sorted(want - names)
    assert not missing, f"{wheel.name} lacks {len(missing)} shipped file(s), e.g. {missing[:5]}"
    stray = [n for n in names if n.startswith(("conf/", "results/", "tests/"))]
    assert not stray, f"top-level data folders in the wheel: {stray[:5]}"


def _env(site: Path) -> dict[str, str]:
    """Only the installed copy is importable: PYTHONPATH is the install folder, PYTHONSAFEPATH keeps the
    working folder off sys.path, and no RSBENCH_* variable points anywhere, so every default is used."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RSBENCH_")}
    env.update(PYTHONPATH=str(site), PYTHONSAFEPATH="1", PYTHONWARNINGS="ignore", HYDRA_FULL_ERROR="1",
               WANDB_MODE="offline", **ONE_THREAD)
    return env


PROBE = """
import json, rsbench, rsbench.config as c, rsbench.leaderboard as lb
print(json.dumps({"pkg": rsbench.__file__, "conf": str(c.CONF_DIR), "paper": str(lb.PAPER_CSV),
                  "paper_rows": len(lb.load_paper())}))
"""


def _check_installed_files(site: Path, work: Path, env: dict) -> None:
    out = _sh([sys.executable, *SAFE_PATH, "-c", PROBE], cwd=work, env=env).stdout
    found = json.loads(out.strip().splitlines()[-1])
    for key in ("pkg", "conf", "paper"):
        assert Path(found[key]).resolve().is_relative_to(site.resolve()), f"{key} outside the installed copy: {found}"
    assert (Path(found["conf"]) / "config.yaml").is_file() and found["paper_rows"] > 0, found


@pytest.mark.slow
def test_wheel_installed_in_a_bare_folder_runs_the_demo(tmp_path):
    wheel = _build_wheel(tmp_path)
    _check_wheel_contents(wheel)
    site, work = tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    _sh([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], cwd=tmp_path)
    env = _env(site)
    _check_installed_files(site, work, env)

    demo = ["experiment=demo", *TINY, "dataset.sample_kwargs.per_class=8"]
    _sh([sys.executable, *SAFE_PATH, "-m", "rsbench", *demo], cwd=work, env=env, timeout=300)
    rec = json.loads((work / "results/runs/cls/eurosat/resnet18/demo-s0/metrics.json").read_text())
    assert rec["status"] == "ok" and rec["sample_data"] is True
    board = (work / "results/leaderboard.md").read_text()
    assert "| paper |" in board and "Runs on generated sample data" in board

    # A finished run on real data (a record written by hand) gets the paper's value beside it.
    real = work / "results/runs/cls/eurosat/vitb_rvsa/default-s0/metrics.json"
    real.parent.mkdir(parents=True)
    real.write_text(json.dumps({"status": "ok", "task": "cls", "dataset": "eurosat", "backbone": "vitb_rvsa",
                                "pretrain": "MAE+MTP", "tag": "default", "seed": 0, "metric": "OA",
                                "metrics": {"OA": 98.0}, "sample_data": False,
                                "protocol": {"train": "train", "test": "val", "scored_by": "local", "predict": None,
                                             "held_out": True},
                                "paper_protocol": {"train": "train", "test": "val", "scored_by": "local"},
                                "precision": "32-true", "split_source": "rsbench seeded"}))
    _sh([sys.executable, *SAFE_PATH, "-m", "rsbench.leaderboard"], cwd=work, env=env)
    row = next(line for line in (work / "results/leaderboard.md").read_text().splitlines() if "vitb_rvsa" in line)
    assert "98.76" in row and "-0.76" in row, row
