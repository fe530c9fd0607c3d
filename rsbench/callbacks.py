"""Lightning callbacks of a run: its speed and memory, pictures of predictions, a submission.

They know no task and no dataset: they ask the task (``batch_size_of``, the ``prediction`` a
``test_step`` returns, ``write_prediction``) and the datamodule (``plot``, ``sample_name``).
"""

from __future__ import annotations

import logging
import os
import random
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)


class RunStats(L.Callback):
    """Train images/s (over training batches only, data loading included), epochs, peak memory."""

    def __init__(self) -> None:
        self.images = 0
        self.train_time = 0.0
        self.epochs = 0
        self._t: float | None = None
        self.fit_time = 0.0
        self._fit_t0: float | None = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self._fit_t0 = time.perf_counter()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_fit_end(self, trainer, pl_module) -> None:
        if self._fit_t0 is not None:
            self.fit_time += time.perf_counter() - self._fit_t0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.images += pl_module.batch_size_of(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._t is not None:
            self.train_time += time.perf_counter() - self._t
        self.epochs += 1

    # Saved in every checkpoint, so a resumed run's record counts the whole run.
    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images, "train_time": self.train_time, "epochs": self.epochs,
                "fit_time": self.fit_time + (time.perf_counter() - self._fit_t0 if self._fit_t0 else 0.0)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.images, self.train_time = int(state["images"]), float(state["train_time"])
        self.epochs, self.fit_time = int(state["epochs"]), float(state["fit_time"])

    def summary(self) -> dict[str, Any]:
        if torch.cuda.is_available():
            peak, kind = torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
            kind = "process peak RSS"
        return {
            "epochs": self.epochs,
            "train_time_s": round(self.fit_time, 2),
            "train_images_per_s": round(self.images / self.train_time, 2) if self.train_time else None,
            "peak_memory_mb": round(peak, 1),
            "peak_memory_kind": kind,
        }


def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from, in types ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeCheckpoint(L.Callback):
    """``<dirpath>/last.ckpt``: the whole training state at every ``every_n_epochs``-th epoch end and
    every ``every_n_train_steps`` steps, written atomically (a kill while saving keeps the previous
    one). With the model, optimiser, scheduler and loop state (Lightning's) it holds every random
    generator's state, restored on resume, so a run resumed at an epoch boundary draws the same
    shuffles and augmentations as the run that was not interrupted.

    Cluster requeue signals: when a tool has a Python handler on SIGUSR1 / SIGUSR2 at the start of
    training (submitit's, which requeues the SLURM job and exits; Lightning's SLURM auto-requeue), the
    signal is noted instead and, at the end of the current training batch (every process agreeing under
    DDP), the state is saved and then that handler runs; the run ends ``interrupted`` (exit 138 / 140)
    and the requeued job resumes from the saved batch, exactly."""

    KEEP = ("last", "weights", "none")
    REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")

    def __init__(self, dirpath: str | Path, every_n_epochs: int | None = 1,
                 every_n_train_steps: int | None = None, keep: str = "weights") -> None:
        from rsbench.errors import ConfigError

        if keep not in self.KEEP:
            raise ConfigError(f"callbacks.checkpoint.keep={keep!r}: expected one of {', '.join(self.KEEP)}")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = int(every_n_epochs or 0)
        self.every_n_train_steps = int(every_n_train_steps or 0)
        self.keep = keep
        self._rng: dict[str, Any] | None = None
        self._chained: dict[int, Any] = {}
        self._pending: tuple[int, Any] | None = None

    def finalize(self, model: L.LightningModule) -> Path | None:
        """After a finished run: keep the whole state (``last``), only the model's weights once
        (``weights``: ``model.pt``, no optimiser state; the default) or nothing (``none``)."""
        if self.keep == "last" or not self.path.is_file():
            return self.path if self.path.is_file() else None
        out = None
        if self.keep == "weights":
            out = self.dirpath / "model.pt"
            tmp = self.dirpath / f".model.pt.{os.getpid()}.tmp"
            torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, tmp)
            os.replace(tmp, out)
        self.path.unlink()
        return out

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def save(self, trainer: L.Trainer) -> None:
        self._rng = rng_state()
        tmp = self.dirpath / f".last.ckpt.{os.getpid()}.tmp"
        trainer.save_checkpoint(tmp)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        trainer.strategy.barrier("rsbench-checkpoint")

    def on_train_start(self, trainer, pl_module) -> None:
        self._pending, self._chained = None, {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.REQUEUE_SIGNALS:
            sig = getattr(signal, name, None)
            prev = signal.getsignal(sig) if sig is not None else None
            if callable(prev):  # a cluster tool's handler: save first, then hand the signal over
                self._chained[sig] = prev
                signal.signal(sig, self._note_signal)

    def _note_signal(self, signum: int, frame: Any) -> None:
        self._pending = (signum, frame)

    def on_train_end(self, trainer, pl_module) -> None:
        for sig, prev in self._chained.items():
            signal.signal(sig, prev)
        self._chained = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0:
            self.save(trainer)
        if self._chained:
            pending = self._pending is not None
            if trainer.world_size > 1:  # every process saves together (the save is collective)
                pending = bool(trainer.strategy.reduce_boolean_decision(pending, all=False))
            if pending:
                self._hand_over(trainer)

    def _hand_over(self, trainer) -> None:
        from rsbench.errors import RunInterrupted

        signum, frame = self._pending or (next(iter(self._chained)), None)
        self.save(trainer)
        name = signal.Signals(signum).name
        log.info("%s (a cluster's requeue signal): state saved to %s; handing over to the cluster tool", name,
                 self.path)
        handler, self._chained = self._chained.get(signum), {}
        try:
            if handler is not None:
                handler(signum, frame)  # submitit: requeue the job, then sys.exit
        except SystemExit:
            pass
        raise RunInterrupted(name)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        """SIGTERM (a scheduler's pre-emption) or Ctrl-C: keep the progress since the last save."""
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, (SIGTERMException, KeyboardInterrupt)) and trainer.training:
            self.save(trainer)
            log.info("interrupted: state saved to %s", self.path)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng} if self._rng is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("rng") is not None:
            set_rng_state(state["rng"])


def unbind(batch: Mapping[str, Any], j: int) -> dict[str, Any]:
    """Sample ``j`` of a collated batch (tensors and lists alike)."""
    return {k: v[j] for k, v in batch.items() if hasattr(v, "__getitem__") and not isinstance(v, str)}


class PredictionPlots(L.Callback):
    """The first ``num`` test samples with their predictions, drawn by the dataset's ``plot``,
    saved as ``<dirpath>/<k>_<sample name>.png`` (rank 0; on one device the names are exact)."""

    def __init__(self, dirpath: str | Path, num: int = 4) -> None:
        self.dirpath, self.num = Path(dirpath), int(num)
        self._seen = self._drawn = 0

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._seen = self._drawn = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        n = pl_module.batch_size_of(batch)
        if trainer.global_rank == 0 and self._drawn < self.num and isinstance(outputs, Mapping) \
                and "prediction" in outputs:
            import matplotlib.pyplot as plt

            self.dirpath.mkdir(parents=True, exist_ok=True)
            dm = trainer.datamodule
            for j in range(min(n, self.num - self._drawn)):
                idx = self._seen + j
                sample = {**unbind(batch, j), "prediction": outputs["prediction"][j]}
                sample = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in sample.items()}
                fig = dm.plot(sample, "test", idx if trainer.world_size == 1 else None)
                name = dm.sample_name("test", idx) if trainer.world_size == 1 else f"{idx:05d}"
                fig.savefig(self.dirpath / f"{self._drawn:03d}_{name}.png", dpi=100)
                plt.close(fig)
                self._drawn += 1
        self._seen += n

    def on_test_end(self, trainer, pl_module) -> None:
        if self._drawn and trainer.global_rank == 0:
            log.info("prediction plots: %s", self.dirpath)
            pl_module.test_results["predictions_dir"] = str(self.dirpath)


class SubmissionWriter(BasePredictionWriter):
    """Every sample of the ``predict`` split through the task's ``write_prediction`` into ``dirpath``
    (a server submission, e.g. LoveDA test); each process writes its own samples."""

    def __init__(self, dirpath: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.dirpath = Path(dirpath)
        self.count = 0

    def on_predict_start(self, trainer, pl_module) -> None:
        dm = trainer.datamodule
        names = [dm.sample_name("predict", i) for i in range(dm.num_samples("predict"))]
        if len(set(names)) != len(names):
            from rsbench.errors import DataError

            dup = next(n for n in names if names.count(n) > 1)
            raise DataError(f"the predict split has two samples named {dup}; a submission needs unique names")
        self.dirpath.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        for j, idx in enumerate(batch_indices):
            pl_module.write_prediction(prediction[j], trainer.datamodule.sample_name("predict", idx), self.dirpath)
        self.count += len(batch_indices)

    def on_predict_end(self, trainer, pl_module) -> None:
        """The task's last step over everything written (rotated detection: merge the patches, write the
        server's format); every process calls it, the task decides who writes."""
        self.finished = pl_module.finish_submission(self.dirpath, trainer.datamodule.dataset_of("predict")) or {}

    def summary(self, pl_module) -> dict[str, Any]:
        return {"split": pl_module.trainer.datamodule.splits.get("predict"), "dir": str(self.dirpath),
                "num_files": pl_module._gather_count(self.count), **getattr(self, "finished", {})}


def _loggers_write_now(trainer) -> bool:
    """Whether Lightning writes this batch's step metrics to the loggers (``log_every_n_steps``): the test its
    own ``LearningRateMonitor`` makes before logging; True where a Lightning version lacks it."""
    return bool(getattr(getattr(trainer, "_logger_connector", None), "should_update_logs", True))


class TrainingCurves(L.Callback):
    """The learning rates logged, and ``<run>/curves.png`` drawn when the run ends (:mod:`rsbench.curves`).

    Before every training batch the rates of the backbone's first optimiser group (the embeddings: the most
    decayed rate under layer-wise decay) and of the head's group are logged as ``lr/backbone`` and ``lr/head``
    (to every logger, at the trainer's ``log_every_n_steps``, as Lightning's ``LearningRateMonitor``). The
    callback also records train loss, rates and ``val/<metric>`` at that cadence itself (and in the resume
    checkpoint), for runs without a CSV log. :meth:`draw` (the run calls it after fit and test, also when they
    failed or were interrupted) plots the CSV log when there is one, else that record. No error of it ever
    fails a run: it is logged as a warning.
    """

    def __init__(self, path: str | Path, metric: str, title: str = "", every_n_steps: int | None = None) -> None:
        self.path, self.metric, self.title = Path(path), str(metric), str(title)
        self.every_n_steps = int(every_n_steps) if every_n_steps else None
        self.record: dict[str, list[list[float]]] = {"loss": [], "lr_backbone": [], "lr_head": [], "val": []}
        self._warned = False
        self._step, self._due_now = 0, False

    # -- recording ------------------------------------------------------------------------------
    def _warn(self, what: str, e: BaseException) -> None:
        if not self._warned:
            log.warning("warning: training curves: %s: %s: %s (the run goes on)", what, type(e).__name__, e)
            self._warned = True

    @staticmethod
    def groups(trainer, pl_module) -> dict[str, int]:
        """``{lr_backbone: i, lr_head: j}``: the first optimiser group holding a backbone parameter and the first
        holding another (the head's), by the groups' ``param_names`` (rsbench's layer-decay groups); without
        names, the first and the last group. A frozen encoder has no backbone group."""
        if not trainer.optimizers:
            return {}
        pgs = trainer.optimizers[0].param_groups
        prefix = getattr(pl_module, "backbone_prefix", "backbone.")
        names = [g.get("param_names") for g in pgs]
        if not any(names):
            return {"lr_backbone": 0, "lr_head": len(pgs) - 1} if pgs else {}
        out = {}
        bb = next((i for i, n in enumerate(names) if n and any(p.startswith(prefix) for p in n)), None)
        head = next((i for i, n in enumerate(names) if n and any(not p.startswith(prefix) for p in n)), None)
        if bb is not None:
            out["lr_backbone"] = bb
        if head is not None:
            out["lr_head"] = head
        return out

    def _due(self, trainer) -> bool:
        every = self.every_n_steps or max(1, int(trainer.log_every_n_steps or 1))
        step = trainer.global_step
        return step == 0 or (step + 1) % every == 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from rsbench.curves import LR_COLUMNS

        self._step, self._due_now = trainer.global_step, self._due(trainer)  # the step this batch trains
        due, logs_now = self._due_now, _loggers_write_now(trainer)
        if not (due or logs_now):  # a `log` call costs ~1 ms on the CPU: only where it is written or recorded
            return
        try:
            pgs = trainer.optimizers[0].param_groups if trainer.optimizers else []
            for name, i in self.groups(trainer, pl_module).items():
                lr = float(pgs[i]["lr"])
                if logs_now:
                    pl_module.log(LR_COLUMNS[name], lr, on_step=True, on_epoch=False, prog_bar=False, batch_size=1)
                if due:
                    self.record[name].append([trainer.global_step, lr])
        except Exception as e:  # noqa: BLE001 — curves never fail a run
            self._warn("the learning rate was not logged", e)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        try:
            loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
            if loss is not None and self._due_now:  # at the step the batch began (global_step has moved on)
                self.record["loss"].append([self._step, float(loss.detach() if torch.is_tensor(loss) else loss)])
        except Exception as e:  # noqa: BLE001
            self._warn("the train loss was not recorded", e)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        try:
            v = trainer.callback_metrics.get(f"val/{self.metric}")
            if v is not None:
                self.record["val"].append([trainer.global_step, trainer.current_epoch, float(v)])
        except Exception as e:  # noqa: BLE001
            self._warn("the validation metric was not recorded", e)

    # Saved in every checkpoint, so a resumed run's curves start at its first step.
    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        rec = state.get("record") or {}
        self.record = {k: [list(p) for p in rec.get(k, [])] for k in self.record}

    # -- drawing --------------------------------------------------------------------------------
    @staticmethod
    def csv_log(trainer) -> Path | None:
        """The CSV logger's ``metrics.csv`` (``logger=csv``), or None."""
        from lightning.pytorch.loggers import CSVLogger

        for lg in getattr(trainer, "loggers", None) or []:
            if isinstance(lg, CSVLogger):
                return Path(lg.log_dir) / "metrics.csv"
        return None

    def draw(self, trainer=None) -> Path | None:
        """``curves.png`` from the CSV log (or the callback's record); a warning, never an error; rank 0 only."""
        from rsbench.curves import curve_series, plot_curves

        try:
            if trainer is not None and trainer.global_rank != 0:
                return None
            series, source = curve_series(self.csv_log(trainer) if trainer is not None else None, self.metric,
                                          self.record)
            out = plot_curves(series, self.path, title=self.title, metric=self.metric, source=source)
            if out is not None:
                log.info("training curves: %s", out)
            return out
        except Exception as e:  # noqa: BLE001 — curves never fail a run
            log.warning("warning: no training curves (%s): %s: %s", self.path, type(e).__name__, e)
            return None
