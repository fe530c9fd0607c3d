"""The run record: ``metrics.json``, ``config.yaml`` and ``env.json`` in the run folder.

Files are written atomically (temporary file + ``os.replace``), so a reader never sees half a
file. ``metrics.json`` says ``status: running`` from the start; a run that dies without
finishing keeps that status (the leaderboard lists it as incomplete), one that raises is marked
``failed`` with the error, one that ends is ``ok`` with its metrics. A sweep member that fails before its
run starts gets a ``failed`` record with ``stage: before training`` (when the folder holds no other run),
which a later run in the folder replaces as if it were not there.

The data belongs to a run's identity by the name of its root folder (``dataset.root``'s last path
component, beside ``dataset.name``): a sweep over ``dataset.root=/d/levir_v1,/d/levir_v2`` is two runs,
while moving the same folder (``/data/levir`` → ``/scratch/levir``) keeps its finished runs valid.

Hydra writes ``.hydra/{config,hydra,overrides}.yaml`` into the run folder before rsbench starts, also
for a job that is then skipped or refused; a run that starts keeps a copy in ``.hydra/run/``, and
:func:`restore_hydra_files` puts it back, so such a job leaves the finished run's files as they were.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from rsbench.errors import error_text, strip_ansi

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "torchvision", "timm", "lightning", "hydra-core", "omegaconf", "torchmetrics",
            "rasterio", "albumentations", "pandas", "wandb", "numpy", "pillow")
# Keys that do not change what a run computes, left out of the config hash. ``protocol`` is the
# switch's name only (the splits it sets are hashed); the dataset's paper protocol and split
# provenance describe the number, they do not change it.
VOLATILE = ("paths", "hydra", "force", "leaderboard", "data.num_workers", "trainer.enable_progress_bar",
            "logger", "callbacks.plots", "callbacks.curves", "callbacks.checkpoint.dirpath", "callbacks.submission.dirpath",
            "dataset.root", "datamodule.root", "datamodule.num_workers", "datamodule.cache_dir",
            "backbone.weights_dir", "dataset.kwargs.tile_cache", "datamodule.dataset_kwargs.tile_cache",
            "protocol", "dataset.paper_protocol", "dataset.split_parts", "dataset.split_source",
            "dataset.split_source_files", "data.full_check_max_samples", "datamodule.full_check_max_samples",
            "dataset.kwargs.verify", "datamodule.dataset_kwargs.verify", "datamodule.subset_dir")
#: split maps in which an unset stage and a stage set to null are the same run
SPLIT_MAPS = ("dataset.splits", "datamodule.splits")
#: failed records of this stage (a sweep member that never started) do not occupy their folder
BEFORE_TRAINING = "before training"
HYDRA_DIR, HYDRA_COPY = ".hydra", "run"


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``path`` through a temporary file of a unique name in its folder and ``os.replace``: a reader
    never sees half a file, and concurrent writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


def _node(d: dict, parts: list[str]) -> Any:
    for p in parts:
        d = d.get(p, {}) if isinstance(d, dict) else {}
    return d


def root_name(root: Any) -> str | None:
    """The data's identity in the config hash: the last component of the absolute data root (symlinks not
    followed), so moving a dataset's folder keeps its runs and a sweep over roots gives one run per root."""
    if not isinstance(root, (str, Path)) or not str(root):
        return None
    return Path(os.path.abspath(os.path.expanduser(str(root)))).name


def hashed_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config that decides what a run computes (what :func:`config_hash` hashes)."""
    d = json.loads(json.dumps(cfg, default=str))
    dataset = d.get("dataset")
    if isinstance(dataset, dict) and root_name(dataset.get("root")) is not None:
        dataset["root_name"] = root_name(dataset.get("root"))
    for key in VOLATILE:
        parts = key.split(".")
        node = _node(d, parts[:-1])
        if isinstance(node, dict):
            node.pop(parts[-1], None)
    for section in ("data", "datamodule"):  # the subset's seed means nothing when every label trains
        node = d.get(section)
        if isinstance(node, dict) and node.get("label_fraction", 1.0) == 1.0:
            node.pop("fraction_seed", None)
    for key in SPLIT_MAPS:
        node = _node(d, key.split("."))
        if isinstance(node, dict):
            for stage in [k for k, v in node.items() if v is None]:
                node.pop(stage)
    return d


def config_hash(cfg: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(hashed_config(cfg), sort_keys=True).encode()).hexdigest()[:16]


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 6) -> list[str]:
    """``key: old → new`` for the hashed keys that differ (at most ``limit``)."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        elif a != b:
            out.append(f"{prefix}: {a!r} → {b!r}")

    walk(hashed_config(old), hashed_config(new), "")
    return out[:limit]


def git_commit() -> dict[str, Any]:
    """The checkout's commit; none for an installed package (its parent folder is not rsbench's repository)."""
    if not (REPO_ROOT / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], check=False,
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


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
    cpu = cpu_model()
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
        self.first_started: str | None = None  # when a resumed run first started
        self.started_here = False  # this process wrote a record (start()) into the folder

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / "metrics.json"

    def existing(self) -> dict[str, Any] | None:
        return read_record(self.metrics_path)

    def _base(self, status: str) -> dict[str, Any]:
        started = self.first_started or time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started))
        return {"status": status, **self.identity, "config_hash": self.hash, "started": started,
                "run_dir": str(self.run_dir)}

    def execute(self, fn: Callable[[str | None], tuple[Mapping[str, Any], Mapping[str, Any]]], *,
                checkpoint: Path, force: bool = False,
                progress: Callable[[], Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """Run ``fn(resume_from)`` → (metrics, stats) under this record (class docstring).

        ``checkpoint`` is where an unfinished run left its last state; ``progress`` gives the
        stats recorded with a failure.
        """
        import shutil

        action, prev = self.plan(checkpoint, force)
        if action == "skip":
            return {**prev, "skipped": True}
        resume = str(checkpoint) if action == "resume" else None
        if resume:
            log.info("resuming the unfinished run from %s", checkpoint)
        elif force and self.write and checkpoint.parent.exists():
            shutil.rmtree(checkpoint.parent)
        self.start(resumed=prev if resume else None)
        try:
            metrics, stats = fn(resume)
        except BaseException as e:
            from rsbench.errors import RunInterrupted

            status = "interrupted" if isinstance(e, RunInterrupted) else "failed"
            self.fail(e, progress() if progress else None, status=status)
            raise
        return self.finish(metrics, {**stats, "resumed_from": resume})

    def plan(self, checkpoint: Path, force: bool = False) -> tuple[str, dict[str, Any] | None]:
        """What :meth:`execute` will do: ``("skip", record)`` (finished with this config), ``("resume", record)``
        (unfinished, its checkpoint there) or ``("start", record or None)``; a :class:`ConfigError` when
        the folder holds a run of another config (and not ``force``). Reads only."""
        from rsbench.errors import ConfigError

        prev = self.existing()
        if force or not occupies(prev):
            return "start", None
        if not self._same_config(prev):
            raise ConfigError(
                f"{self.run_dir} holds a run of this task/dataset/backbone/tag/seed with a different config"
                f"{self._differences()}. Give this one its own tag=... (e.g. tag=lr1e-4; for a sweep over data "
                "roots \"tag='${rsbench_basename:${dataset.root}}'\") or overwrite with force=true.")
        if prev["status"] == "ok":
            return "skip", prev
        return ("resume" if checkpoint.is_file() else "start"), prev

    def _same_config(self, prev: Mapping[str, Any]) -> bool:
        """The record's hash is this config's; for a record written before the data root's name was hashed,
        the folder's config.yaml hashed as now."""
        if prev.get("config_hash") == self.hash:
            return True
        old = self._stored_config()
        return old is not None and config_hash(old) == self.hash

    def _stored_config(self) -> dict[str, Any] | None:
        import yaml

        try:
            old = yaml.safe_load((self.run_dir / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return None
        return old if isinstance(old, dict) else None

    def _differences(self) -> str:
        """``(differs in: key: old → new, ...)`` from the folder's config.yaml, or nothing when unreadable."""
        old = self._stored_config()
        diff = config_differences(old, self.config) if old is not None else []
        return f" (differs in: {'; '.join(diff)})" if diff else ""

    def start(self, resumed: Mapping[str, Any] | None = None) -> None:
        import yaml

        if resumed is not None:
            self.first_started = resumed.get("started")
        if not self.write:
            return
        self.started_here = True
        keep_hydra_files(self.run_dir)
        atomic_write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.config, sort_keys=False))
        atomic_write_json(self.run_dir / "env.json", environment())
        atomic_write_json(self.metrics_path, self._base("running"))

    def finish(self, metrics: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
        rec = {**self._base("ok"), "wall_time_s": round(time.time() - self.started, 2), **stats, "metrics": dict(metrics)}
        if self.write:
            atomic_write_json(self.metrics_path, rec)
        return rec

    def fail(self, exc: BaseException, stats: Mapping[str, Any] | None = None, status: str = "failed") -> dict[str, Any]:
        rec = {**self._base(status), "wall_time_s": round(time.time() - self.started, 2), **(stats or {}),
               "error": error_text(exc),
               "traceback": strip_ansi("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))[-4000:]}
        if self.write:
            atomic_write_json(self.metrics_path, rec)
        return rec


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record at ``path``; None when there is none; ``status: unreadable`` (with the reason) when it is
    not a JSON object."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as e:
        return unreadable(path, f"not valid JSON: {e}" if isinstance(e, json.JSONDecodeError) else str(e))
    if not isinstance(rec, dict):
        return unreadable(path, f"holds a JSON {type(rec).__name__}, not an object")
    return rec


def unreadable(path: str | Path, reason: str) -> dict[str, Any]:
    return {"status": "unreadable", "error": f"{path}: {reason}", "reason": reason, "path": str(path),
            "run_dir": str(Path(path).parent)}


def occupies(rec: Mapping[str, Any] | None) -> bool:
    """Whether a record holds its folder for its config: not absent, unreadable, or a sweep member's
    failure before its run started."""
    return bool(rec) and rec.get("status") not in (None, "unreadable") and rec.get("stage") != BEFORE_TRAINING


def write_failure_before_start(run_dir: str | Path, identity: Mapping[str, Any], exc: BaseException) -> Path | None:
    """A ``failed`` record (``stage: before training``) for a run that never started, so a sweep's leaderboard
    lists it; never over a record that holds the folder (another run's, finished or resumable). Returns the
    path written, or None."""
    path = Path(run_dir) / "metrics.json"
    if occupies(read_record(path)):
        return None
    rec = {"status": "failed", "stage": BEFORE_TRAINING, **identity, "run_dir": str(run_dir),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "error": error_text(exc)}
    atomic_write_json(path, rec)
    return path


def keep_hydra_files(run_dir: str | Path) -> None:
    """Copy Hydra's files of the run starting in ``run_dir`` (``.hydra/*.yaml``) to ``.hydra/run/``."""
    src = Path(run_dir) / HYDRA_DIR
    for f in sorted(src.glob("*.yaml")) if src.is_dir() else []:
        atomic_write_bytes(src / HYDRA_COPY / f.name, f.read_bytes())


def restore_hydra_files(run_dir: str | Path) -> list[Path]:
    """Put back the copies :func:`keep_hydra_files` made (Hydra rewrote them for a job that did not run);
    returns the files restored."""
    copy, out = Path(run_dir) / HYDRA_DIR / HYDRA_COPY, []
    for f in sorted(copy.glob("*.yaml")) if copy.is_dir() else []:
        dst = f.parent.parent / f.name
        data = f.read_bytes()
        if not dst.is_file() or dst.read_bytes() != data:
            atomic_write_bytes(dst, data)
            out.append(dst)
    return out
