"""Lightning callbacks that measure a run for its record: training speed and peak memory."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning as L
import torch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, dict):
        for k in ("image", "image1"):
            if k in batch and hasattr(batch[k], "shape"):
                return int(batch[k].shape[0])
        v = next(iter(batch.values()))
        return len(v)
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0]) if batch and isinstance(batch[0], dict) else len(batch)
    return int(batch.shape[0])


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
        self.images += _batch_len(batch) * trainer.world_size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._t is not None:
            self.train_time += time.perf_counter() - self._t
        self.epochs += 1

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
