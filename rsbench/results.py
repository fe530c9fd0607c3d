"""The run record: ``metrics.json``, ``config.yaml`` and ``env.json`` in the run folder.

Files are written atomically (temporary file + ``os.replace``), so a reader never sees half a
file. ``metrics.json`` says ``status: running`` from the start; a run that dies without
finishing keeps that status (the leaderboard lists it as incomplete), one that raises is marked
``failed`` with the error, one that ends is ``ok`` with its metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "timm", "lightning", "hydra-core", "omegaconf", "torchmetrics",
            "rasterio", "albumentations", "pandas", "wandb", "numpy", "pillow")
# Keys that do not change what a run computes, left out of the config hash.
VOLATILE = ("paths", "hydra", "force", "leaderboard", "data.num_workers", "trainer.enable_progress_bar",
            "logger", "callbacks.plots", "callbacks.checkpoint.dirpath", "callbacks.submission.dirpath",
            "dataset.root", "datamodule.root", "datamodule.num_workers", "datamodule.cache_dir",
            "backbone.weights_dir", "dataset.kwargs.tile_cache", "datamodule.dataset_kwargs.tile_cache")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def config_hash(cfg: Mapping[str, Any]) -> str:
    d = json.loads(json.dumps(cfg, default=str))
    for key in VOLATILE:
        parts = key.split(".")
        node = d
        for p in parts[:-1]:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def git_commit() -> dict[str, Any]:
    """The checkout's commit; none for an installed package (its parent folder is not rsbench's repository)."""
    if not (REPO_ROOT / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def environment() -> dict[str, Any]:
    import torch

    pkgs = {}
    for p in PACKAGES:
        try:
            pkgs[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pkgs[p] = None
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": pkgs,
        "git": git_commit(),
        "hardware": {"cpu": cpu, "cpu_count": os.cpu_count(), "ram_gb": mem_gb, "gpus": gpus,
                     "cuda": torch.version.cuda if torch.cuda.is_available() else None},
        "argv": sys.argv,
    }


class RunRecord:
    """The record of one run folder; :meth:`execute` is the one place that decides whether a run is
    skipped (finished with the same config), resumed (unfinished, with a checkpoint) or started,
    and that marks it ``ok`` or ``failed``."""

    def __init__(self, run_dir: str | Path, config: Mapping[str, Any], identity: Mapping[str, Any],
                 write: bool = True) -> None:
        self.write = write  # only one process of a multi-process (DDP) run writes the record
        self.run_dir = Path(run_dir)
        self.config = dict(config)
        self.identity = dict(identity)
        self.hash = config_hash(self.config)
        self.started = time.time()

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"

    def existing(self) -> dict[str, Any] | None:
        return read_record(self.metrics_path)

    def _base(self, status: str) -> dict[str, Any]:
        return {"status": status, **self.identity, "config_hash": self.hash,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
                "run_dir": str(self.run_dir)}

    def execute(self, fn: Callable[[str | None], tuple[Mapping[str, Any], Mapping[str, Any]]], *,
                checkpoint: Path, force: bool = False,
                progress: Callable[[], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Run ``fn(resume_from)`` → (metrics, stats) under this record (class docstring).

        ``checkpoint`` is where an unfinished run left its last state; ``progress`` gives the
        stats recorded with a failure.
        """
        import shutil

        from rsbench.errors import ConfigError

        prev = self.existing()
        resume = None
        if prev and prev.get("status") not in (None, "unreadable") and not force:
            if prev.get("config_hash") != self.hash:
                raise ConfigError(
                    f"{self.run_dir} holds a run of this task/dataset/backbone/tag/seed with a different config. "
                    f"Give this one its own tag=... (e.g. tag=lr1e-4) or overwrite with force=true.")
            if prev["status"] == "ok":
                return {**prev, "skipped": True}
            if checkpoint.is_file():
                resume = str(checkpoint)
        elif force and self.write and checkpoint.parent.exists():
            shutil.rmtree(checkpoint.parent)
        self.start()
        try:
            metrics, stats = fn(resume)
        except BaseException as e:
            self.fail(e, progress() if progress else None)
            raise
        return self.finish(metrics, {**stats, "resumed_from": resume})

    def start(self) -> None:
        import yaml

        if not self.write:
            return
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        atomic_write_json(self.run_dir / "env.json", environment())
        atomic_write_json(self.metrics_path, self._base("running"))

    def finish(self, metrics: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
        rec = {**self._base("ok"), "wall_time_s": round(time.time() - self.started, 2), **stats, "metrics": dict(metrics)}
        if self.write:
            atomic_write_json(self.metrics_path, rec)
        return rec

    def fail(self, exc: BaseException, stats: Mapping[str, Any] | None = None) -> dict[str, Any]:
        rec = {**self._base("failed"), "wall_time_s": round(time.time() - self.started, 2), **(stats or {}),
               "error": f"{type(exc).__name__}: {exc}",
               "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-4000:]}
        if self.write:
            atomic_write_json(self.metrics_path, rec)
        return rec


def read_record(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError) as e:
        return {"status": "unreadable", "error": f"{path}: {e}", "run_dir": str(path.parent)}
