"""Learning-rate factor per optimiser step, in the closed form of the MMEngine schedulers of the
official recipes: ``LinearLR`` warm-up per iteration, then ``CosineAnnealingLR`` (per epoch in
MMPretrain/Open-CD, ``cosine_by_epoch``; per iteration in mmseg) or ``MultiStepLR``.

MMEngine's schedulers are chained (each step multiplies the current rate); their closed forms,
with ``t`` the step counted from the scheduler's ``begin`` (mmengine/optim/scheduler/param_scheduler.py):

* ``LinearLR(start_factor=s, begin=0, end=W)``: ``total_iters = end - begin - 1 = W - 1`` and
  ``f(t) = s + (1 - s) * t / (W - 1)`` for ``t = 0 .. W-1``: the full rate is reached at step
  ``W - 1`` (not ``W``); after ``end`` the rate is left as it is (factor 1). With
  ``by_epoch=True, convert_to_iter_based=True`` (the cls/cd recipes) ``end = int(5 * epoch_length)``
  iterations.
* ``CosineAnnealingLR(T_max, eta_min=0, begin=B)``: ``eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2``
  with ``t`` the steps since ``B`` — epochs (stepped after each epoch; ``B`` = the warm-up epochs,
  ``T_max = epochs - B``) or iterations (``B`` = the warm-up iterations, ``T_max = iters - B``).

The official training logs (EuroSAT, RESISC-45, SpaceNet, LoveDA, LEVIR/CDD/WHU) agree with
these forms to 1e-14 (tests/test_fidelity_schedule.py). One degenerate case differs: with
``W = 1`` MMEngine keeps ``start_factor`` for good (its cosine then scales from there); here
step 0 runs at ``start_factor`` and the next step at the full rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass
class Schedule:
    total_steps: int
    steps_per_epoch: int
    name: str = "cosine"
    warmup_steps: int = 0
    warmup_start_factor: float = 1e-6
    cosine_by_epoch: bool = False
    milestones: list[int] = field(default_factory=list)  # in epochs
    gamma: float = 0.1
    min_lr_factor: float = 0.0

    @classmethod
    def from_config(cls, s: Mapping[str, Any], *, total_steps: int, steps_per_epoch: int) -> "Schedule":
        """The ``sched`` config node (conf/config.yaml) for a run of ``total_steps`` optimiser steps.

        ``warmup_steps`` wins over ``warmup_epochs``; epochs become ``int(epochs * steps_per_epoch)``
        iterations, as MMEngine's ``convert_to_iter_based`` does.
        """
        spe = max(1, int(steps_per_epoch))
        warmup = s.get("warmup_steps")
        if warmup is None:
            warmup = int(float(s.get("warmup_epochs") or 0) * spe)
        return cls(
            total_steps=int(total_steps), steps_per_epoch=spe, name=s.get("name", "cosine"),
            warmup_steps=int(warmup), warmup_start_factor=float(s.get("warmup_start_factor", 1e-6)),
            cosine_by_epoch=bool(s.get("cosine_by_epoch", False)), milestones=list(s.get("milestones") or []),
            gamma=float(s.get("gamma", 0.1)), min_lr_factor=float(s.get("min_lr_factor", 0.0)),
        )

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            f0 = self.warmup_start_factor
            return f0 + (1.0 - f0) * step / max(1, self.warmup_steps - 1)
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            epoch = step // max(1, self.steps_per_epoch)
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.name == "cosine":
            return self._cosine(step)
        raise ValueError(f"unknown schedule {self.name!r} (cosine, multistep, constant)")

    def _cosine(self, step: int) -> float:
        if self.cosine_by_epoch:
            spe = max(1, self.steps_per_epoch)
            begin = self.warmup_steps // spe
            t, period = step // spe - begin, self.total_steps // spe - begin
        else:
            t, period = step - self.warmup_steps, self.total_steps - self.warmup_steps
        period = max(1, period)
        t = min(max(t, 0), period)
        cos = 0.5 * (1 + math.cos(math.pi * t / period))
        return self.min_lr_factor + (1 - self.min_lr_factor) * cos
