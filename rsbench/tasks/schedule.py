"""Learning-rate factor per optimiser step: linear warm-up, then cosine / multistep / constant.

Matches the MMEngine schedulers of the official recipes: ``LinearLR(start_factor)`` per
iteration over the warm-up, then ``CosineAnnealingLR`` to ``eta_min`` (stepped per epoch in
MMPretrain/Open-CD, ``cosine_by_epoch``; per iteration in mmseg) or ``MultiStepLR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            f0 = self.warmup_start_factor
            return f0 + (1.0 - f0) * step / self.warmup_steps
        if self.name == "constant":
            return 1.0
        if self.name == "multistep":
            epoch = step // max(1, self.steps_per_epoch)
            return self.gamma ** sum(epoch >= m for m in self.milestones)
        if self.name == "cosine":
            if self.cosine_by_epoch:
                spe = max(1, self.steps_per_epoch)
                t = step // spe - self.warmup_steps // spe
                period = max(1, self.total_steps // spe - self.warmup_steps // spe)
            else:
                t = step - self.warmup_steps
                period = max(1, self.total_steps - self.warmup_steps)
            t = min(max(t, 0), period)
            cos = 0.5 * (1 + math.cos(math.pi * t / period))
            return self.min_lr_factor + (1 - self.min_lr_factor) * cos
        raise ValueError(f"unknown schedule {self.name!r} (cosine, multistep, constant)")
