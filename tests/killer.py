"""A callback that kills its own process at a chosen training batch, when RSBENCH_TEST_KILL is set:
the same run config with and without the variable, so the relaunch is the same run."""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAt(L.Callback):
    def __init__(self, epoch: int, batch: int, signame: str = "SIGKILL", stage: str = "train") -> None:
        self.epoch, self.batch, self.sig, self.stage = int(epoch), int(batch), getattr(signal, signame), stage

    def _maybe_kill(self, stage: str, epoch: int, batch_idx: int) -> None:
        if os.environ.get("RSBENCH_TEST_KILL") and stage == self.stage and batch_idx == self.batch \
                and (stage == "test" or epoch == self.epoch):
            os.kill(os.getpid(), self.sig)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_kill("train", trainer.current_epoch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._maybe_kill("test", trainer.current_epoch, batch_idx)


class FakeSubmitit(L.Callback):
    """Stands in for submitit inside a job: a Python handler on SIGUSR2 that "requeues" (writes a marker
    file) and exits as submitit's does, and the cluster's signal sent at a chosen training batch."""

    def __init__(self, epoch: int, batch: int, marker: str) -> None:
        self.epoch, self.batch, self.marker = int(epoch), int(batch), marker

    def setup(self, trainer, pl_module, stage: str) -> None:
        if os.environ.get("RSBENCH_TEST_KILL") and stage == "fit":
            def requeue(signum, frame):
                with open(self.marker, "a") as f:
                    f.write(f"requeued at epoch {trainer.current_epoch} step {trainer.global_step}\n")
                raise SystemExit(-1)
            signal.signal(signal.SIGUSR2, requeue)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if os.environ.get("RSBENCH_TEST_KILL") and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGUSR2)


class StepLog(L.Callback):
    """Appends the trainer's ``global_step`` at the start of every training batch to the file named by
    RSBENCH_TEST_STEPLOG (nothing when unset): which steps a (resumed) process actually trained."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        path = os.environ.get("RSBENCH_TEST_STEPLOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{trainer.global_step}\n")


def logged_steps(path) -> list[int]:
    """The steps :class:`StepLog` wrote (none if the process trained nothing)."""
    try:
        with open(path) as f:
            return [int(v) for v in f.read().split()]
    except FileNotFoundError:
        return []
