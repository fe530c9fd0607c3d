"""What every task shares: the backbone, AdamW with layer-wise LR decay, the warm-up schedule."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import lightning as L
import torch

from rsbench.models import build_backbone
from rsbench.models.layer_decay import param_groups
from rsbench.tasks.schedule import Schedule

log = logging.getLogger(__name__)


class BaseTask(L.LightningModule):
    """Subclasses add heads, losses and metrics; they fill ``self.test_results`` in ``on_test_epoch_end``."""

    def __init__(self, *, backbone: Mapping[str, Any], optim: Mapping[str, Any], sched: Mapping[str, Any],
                 img_size: int, in_chans: int = 3, **_: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        bb = dict(backbone)
        self.backbone = build_backbone(
            bb["name"], img_size=img_size, in_chans=in_chans, pretrained=bb.get("pretrained"),
            **({"allow_missing": bb.get("allow_missing", False)} if bb.get("pretrained") else {}),
            **({"variant": bb["variant"]} if bb.get("variant") else {}),
            **dict(bb.get("kwargs") or {}),
        )
        if getattr(self.backbone, "load_report", None) is not None:
            log.info("pretrained weights: %s", self.backbone.load_report.summary())
        self.optim_cfg, self.sched_cfg = dict(optim), dict(sched)
        self.test_results: dict[str, Any] = {}

    def configure_optimizers(self):
        o, s = self.optim_cfg, self.sched_cfg
        groups = param_groups(self.named_parameters(), backbone=self.backbone, backbone_prefix="backbone.",
                              lr=float(o["lr"]), weight_decay=float(o["weight_decay"]),
                              layer_decay=o.get("layer_decay"))
        opt = torch.optim.AdamW(groups, lr=float(o["lr"]), betas=tuple(o.get("betas", (0.9, 0.999))))
        total = int(self.trainer.estimated_stepping_batches)
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        spe = max(1, total // max_epochs) if self.trainer.max_steps in (-1, None) else max(1, self._steps_per_epoch())
        warmup = s.get("warmup_iters")
        if warmup is None:
            warmup = int(round(float(s.get("warmup_epochs") or 0) * spe))
        schedule = Schedule(
            total_steps=total, steps_per_epoch=spe, name=s.get("name", "cosine"), warmup_steps=int(warmup),
            warmup_start_factor=float(s.get("warmup_start_factor", 1e-6)),
            cosine_by_epoch=bool(s.get("cosine_by_epoch", False)), milestones=list(s.get("milestones") or []),
            gamma=float(s.get("gamma", 0.1)), min_lr_factor=float(s.get("min_lr_factor", 0.0)),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        dl = self.trainer.datamodule.train_dataloader() if self.trainer.datamodule else None
        n = len(dl) if dl is not None else 1
        return max(1, n // max(1, self.trainer.accumulate_grad_batches))
