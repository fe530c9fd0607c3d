"""Weights & Biases: one group per sweep, and the leaderboard as wandb Tables. Offline unless set up.

* ``logger=wandb`` (conf/logger/wandb.yaml): each run is a wandb run named by its run id
  (``<task>/<dataset>/<backbone>/<tag>-s<seed>``), ``job_type`` its task, in the group
  ``$RSBENCH_WANDB_GROUP``, else ``<task>-<dataset>-<backbone>`` for a single run. In a multirun
  (``python -m rsbench -m ...``) :class:`SweepGroup`, a Hydra callback of the launching process, sets
  ``RSBENCH_WANDB_GROUP`` to :func:`sweep_group` of the sweep's command-line overrides, so every member
  (run in this process, or as a submitit job that inherits its environment) is in the same group, and a
  relaunch of the same sweep (to resume it) joins the same group again. Choose the group yourself with
  ``RSBENCH_WANDB_GROUP=<name>`` (kept by the callback) or ``logger.group=<name>``. The wandb run id is
  kept in ``<run>/wandb_id`` (:func:`wandb_run_id`): a run resumed from its checkpoint (a relaunch, a
  requeued SLURM job) continues its wandb run; a fresh start (the first launch, ``force=true``) begins a new one.
* :func:`log_leaderboard` (``python -m rsbench.leaderboard --wandb``, or ``leaderboard=wandb`` on a run)
  logs ``leaderboard.csv``, ``leaderboard_backbones.csv`` and ``leaderboard_per_class.csv`` as wandb Tables
  and the leaderboard's figures as images, in a run of ``job_type=leaderboard`` under ``<results>/wandb/``.

Offline (files only, ``wandb sync`` uploads them later) unless ``WANDB_MODE=online``, ``WANDB_API_KEY`` or
a wandb entry in ``~/.netrc`` says otherwise (:func:`rsbench.config._wandb_offline`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

#: the wandb group of every run of this process (set by :class:`SweepGroup` in a multirun, or by the user)
ENV_GROUP = "RSBENCH_WANDB_GROUP"
_SET_BY_SWEEP: str | None = None  # the value SweepGroup put there (a user's own value is never replaced)


WANDB_ID_FILE = "wandb_id"


def wandb_run_id(run_dir: str | Path, resume: bool, write: bool = True) -> str:
    """The wandb run id of the run in ``run_dir``: the one saved there when the run ``resume``s from its
    checkpoint, else a new random id, saved (``write``: the process that writes the record) for a later
    resume. The logger gets it with ``resume="allow"``, so wandb continues that run (offline: a new
    offline folder under the same id, which ``wandb sync`` uploads into the same run)."""
    import secrets

    from rsbench.results import atomic_write_text

    path = Path(run_dir) / WANDB_ID_FILE
    if resume and path.is_file():
        saved = path.read_text().strip()
        if saved.isalnum():
            return saved
        log.warning("%s does not hold a wandb run id (%r); the resumed run logs to a new wandb run. "
                    "Put the id of the interrupted run there to continue it.", path, saved[:40])
    new = secrets.token_hex(8)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, new + "\n")
    return new


def sweep_group(overrides: Iterable[str], config_name: str = "config") -> str:
    """``sweep-<10 hex>``: a hash of the multirun's overrides as typed (order does not matter)."""
    text = "\n".join([str(config_name), *sorted(str(o) for o in overrides)])
    return "sweep-" + hashlib.sha1(text.encode()).hexdigest()[:10]


class SweepGroup(Callback):
    """Hydra callback (conf/hydra/default.yaml): at the start of a multirun, ``RSBENCH_WANDB_GROUP`` =
    :func:`sweep_group` of its overrides, unless the user set it."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        global _SET_BY_SWEEP
        current = os.environ.get(ENV_GROUP)
        if current and current != _SET_BY_SWEEP:
            return  # the user's group
        try:
            overrides = list(config.hydra.overrides.task)
            name = config.hydra.job.get("config_name") or "config"
        except Exception:  # noqa: BLE001 — a group name is a convenience, never an error
            return
        _SET_BY_SWEEP = os.environ[ENV_GROUP] = sweep_group(overrides, name)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        global _SET_BY_SWEEP
        if _SET_BY_SWEEP and os.environ.get(ENV_GROUP) == _SET_BY_SWEEP:
            os.environ.pop(ENV_GROUP)
        _SET_BY_SWEEP = None


def _table(df: Any) -> Any:
    """A wandb Table of a frame, missing values as None (wandb's column types do not take NaN in a text column)."""
    import pandas as pd
    import wandb

    df = df.astype(object).where(pd.notna(df), None)
    return wandb.Table(columns=[str(c) for c in df.columns], data=df.values.tolist())


def log_leaderboard(results_dir: str | Path, *, project: str | None = None, group: str | None = None,
                    name: str = "leaderboard") -> Path:
    """Log the leaderboard files of ``results_dir`` to wandb (offline by default); returns the wandb run's folder."""
    import pandas as pd
    import wandb

    from rsbench.config import _wandb_offline
    from rsbench.errors import LeaderboardError

    results_dir = Path(results_dir)
    frames = {}
    for key in ("leaderboard", "leaderboard_backbones", "leaderboard_per_class"):
        path = results_dir / f"{key}.csv"
        if path.is_file() and path.stat().st_size:
            try:
                frames[key] = pd.read_csv(path)
            except pd.errors.EmptyDataError:
                continue
    if "leaderboard" not in frames:
        raise LeaderboardError(f"no leaderboard in {results_dir} to log to wandb: run python -m rsbench.leaderboard first")
    run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "rsbench"), job_type="leaderboard", name=name,
                     group=group or os.environ.get(ENV_GROUP) or None, dir=str(results_dir),
                     mode="offline" if _wandb_offline() else "online", reinit="create_new",
                     config={"results_dir": str(results_dir)})
    try:
        data: dict[str, Any] = {key: _table(df) for key, df in frames.items()}
        for png in sorted(results_dir.glob("leaderboard*.png")):
            data[f"figures/{png.stem}"] = wandb.Image(str(png))
        run.log(data)
        folder = Path(run.dir).parent
    finally:
        run.finish()
    log.info("leaderboard logged to wandb: %s", folder)
    return folder
