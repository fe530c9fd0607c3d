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
