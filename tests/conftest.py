"""Shared fixtures: sample datasets in official layouts, and running ``python -m rsbench``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine extra threads make
# them many times slower (oversubscription). Every test, and every run it starts, uses one thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    """Write each registered sample dataset once per session; returns name → root."""
    from rsbench.data.samples import write_sample

    base = tmp_path_factory.mktemp("samples")
    cache: dict[str, Path] = {}

    def get(name: str, **kw) -> Path:
        key = name + repr(sorted(kw.items()))
        if key not in cache:
            cache[key] = write_sample(name, base / f"{name}-{len(cache)}", **kw)
        return cache[key]

    return get


def run_rsbench(args: list[str], tmp: Path, *, check: bool = True, timeout: int = 300,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point in a subprocess, with every output path under ``tmp``."""
    full_env = {**os.environ, "RSBENCH_RESULTS": str(tmp / "results"), "RSBENCH_CACHE": str(tmp / "cache"),
                "RSBENCH_DATA": str(tmp / "data"), "RSBENCH_WEIGHTS": str(tmp / "weights"),
                "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore", "WANDB_MODE": "offline", **ONE_THREAD}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "rsbench", *args], cwd=tmp, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"rsbench {' '.join(args)} exited {proc.returncode}\n"
                             f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


#: Overrides that make any run tiny: small images, one short epoch, no workers, no progress bar.
TINY = ["trainer=cpu", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "data.batch_size=8",
        "data.num_workers=0", "data.img_size=32", "logger=none", "sched.warmup_epochs=0"]


def compose_config(overrides: list[str], *, resolve: bool = True):
    """The composed run config as ``python -m rsbench <overrides>`` builds it (no run), with Hydra's
    own node set so ``${hydra:...}`` interpolations resolve; a plain dict when ``resolve``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    from rsbench.config import CONF_DIR, register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["paths.root_dir=/tmp/rsbench-compose", *overrides], return_hydra_config=True)
        with read_write(cfg.hydra), open_dict(cfg.hydra):
            cfg.hydra.runtime.output_dir = "/tmp/rsbench-compose/run"
        HydraConfig.instance().set_config(cfg)
        out = OmegaConf.to_container(cfg, resolve=True) if resolve else cfg
        if resolve:
            out.pop("hydra")
        return out
