"""What every task shares: the backbone, AdamW with layer-wise LR decay, the warm-up schedule,
and the small hooks through which the shared code asks a task about its own batches.

Hooks (override where the default does not fit; the datamodule and callbacks call only these):

* ``collate_fn`` — how samples become a batch (``None``: ``default_collate``; detection, whose
  images hold different numbers of boxes, returns lists).
* ``batch_size_of(batch)`` — images in a batch, for the run's images/s.
* ``test_step`` returns ``{"prediction": ...}`` (one entry per sample, as the dataset's ``plot``
  draws it), which :class:`rsbench.callbacks.PredictionPlots` draws for the first test samples.
* ``predict_step`` / ``write_prediction(prediction, name, out_dir)`` — a server submission:
  :class:`rsbench.callbacks.SubmissionWriter` calls it for every sample of the ``predict`` split.
* ``test_results`` — the run record's metrics, filled in ``on_test_epoch_end``.

``finetune`` (``conf/finetune/``): ``{name: full}`` trains everything; ``{name: frozen, freeze_encoder: true,
train_neck}`` freezes the encoder (:mod:`rsbench.models.freeze`): its parameters are not trained and not in
the optimiser, and it stays in eval mode whatever ``train()`` is called with, so every task trains only its
head / decoder / detector on it (for classification, a linear probe).
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch

from rsbench.errors import ConfigError
from rsbench.models import build_backbone
from rsbench.models.freeze import encoder_eval, freeze_encoder
from rsbench.models.layer_decay import param_groups
from rsbench.tasks.schedule import Schedule

log = logging.getLogger(__name__)


class BaseTask(L.LightningModule):
    """Subclasses add heads, losses and metrics; they fill ``self.test_results`` in ``on_test_epoch_end``.

    ``backbone``: ``{name, pretrained (a file or None), features ("maps" | "pyramid"),
    allow_missing, kwargs, task_kwargs}`` — the arguments of :func:`rsbench.models.build_backbone`
    (``task_kwargs``: the backbone config's arguments for this task, e.g. the ViT's detection copy).
    """

    #: how samples become a batch; None is torch's default_collate
    collate_fn: Callable | None = None
    #: where the backbone's parameters are named in this module (layer-wise LR decay reads below it)
    backbone_prefix: str = "backbone."

    def __init__(self, *, backbone: Mapping[str, Any], optim: Mapping[str, Any], sched: Mapping[str, Any],
                 img_size: int, in_chans: int = 3, num_classes: int, class_names: Sequence[str] | None = None,
                 finetune: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        bb = dict(backbone)
        pretrained = bb.get("pretrained")
        self.backbone = build_backbone(
            bb["name"], img_size=img_size, in_chans=in_chans, pretrained=pretrained,
            features=bb.get("features", "maps"), allow_missing=bool(bb.get("allow_missing")),
            **dict(bb.get("kwargs") or {}), **dict(bb.get("task_kwargs") or {}),
        )
        if getattr(self.backbone, "load_report", None) is not None:
            log.info("pretrained weights: %s", self.backbone.load_report.summary())
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        self.optim_cfg, self.sched_cfg = dict(optim), dict(sched)
        self.test_results: dict[str, Any] = {}
        ft = dict(finetune or {})
        self.finetune = str(ft.get("name") or "full")
        self.freeze_encoder = bool(ft.get("freeze_encoder", self.finetune == "frozen"))
        self.train_neck = bool(ft.get("train_neck", True))
        if self.freeze_encoder:  # before the heads are built: the backbone's own parameters only
            n = freeze_encoder(self.backbone, train_neck=self.train_neck)
            # Lightning warns of modules in eval mode at the start of training: here that is the point
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
            log.info("finetune=%s: the encoder is frozen (%s parameters, eval mode)%s", self.finetune, f"{n:,}",
                     "; the pyramid neck trains" if self.train_neck and hasattr(self.backbone, "_neck_names") else "")

    # -- a frozen encoder stays in eval mode ------------------------------------------------------
    def train(self, mode: bool = True) -> BaseTask:
        super().train(mode)
        if mode and self.__dict__.get("freeze_encoder"):
            encoder_eval(self.backbone, train_neck=self.train_neck)
        return self

    def parameter_counts(self) -> dict[str, int]:
        """Parameter values in all, trainable, and frozen in the encoder (the run record's ``parameters``)."""
        params = list(self.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        total = sum(p.numel() for p in params)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    # -- hooks ----------------------------------------------------------------------------------
    @staticmethod
    def batch_size_of(batch: Any) -> int:
        """Samples in ``batch``: the length of its first tensor (or list)."""
        if isinstance(batch, Mapping):
            return len(next(iter(batch.values())))
        return len(batch)

    def adopt_backbone(self, owner: torch.nn.Module, path: str) -> None:
        """Store the backbone once, inside ``owner`` (a model that wraps it, e.g. a detector) at ``path``.

        ``self.backbone`` stays a reference to it, no longer registered here, so every weight has
        one key in the checkpoints and the layer-decay groups read its names under ``path``.
        """
        backbone = self._modules.pop("backbone")
        if owner.get_submodule(path) is not backbone:
            raise ConfigError(f"{type(owner).__name__}.{path} is not the task's backbone")
        object.__setattr__(self, "backbone", backbone)
        self.backbone_prefix = f"{self._owner_name(owner)}.{path}."

    def _owner_name(self, owner: torch.nn.Module) -> str:
        name = next((n for n, m in self.named_children() if m is owner), None)
        if name is None:
            raise ConfigError(f"{type(owner).__name__} is not a child of {type(self).__name__}: assign it first")
        return name

    def write_prediction(self, prediction: torch.Tensor, name: str, out_dir: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} writes no server submission")

    def finish_submission(self, out_dir: Path, dataset: Any) -> dict[str, Any]:
        """After every sample went through :meth:`write_prediction` (all processes call it): a last step
        over the files, e.g. merging patches; what it returns joins the submission's summary."""
        return {}

    def _gather_count(self, n: int) -> int:
        """A per-process count summed over all processes (DDP)."""
        t = torch.tensor(n, device=self.device)
        return int(self.all_gather(t).sum()) if self.trainer.world_size > 1 else n

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self):
        """AdamW on the layer-decay groups with :class:`Schedule` stepped every optimiser step.

        Steps per epoch are what the trainer will run: ``ceil(batches / accumulate)`` with the
        last partial batch kept (the official ``DefaultSampler``; under DDP the batches of one
        process, i.e. ``ceil(ceil(N / devices) / per-device batch)`` = ``ceil(N / total batch)``).
        """
        o = self.optim_cfg
        groups = param_groups(self.named_parameters(), backbone=self.backbone, backbone_prefix=self.backbone_prefix,
                              lr=float(o["lr"]), weight_decay=float(o["weight_decay"]),
                              layer_decay=o.get("layer_decay"))  # trainable parameters only: a frozen encoder has none
        opt = torch.optim.AdamW(groups, lr=float(o["lr"]), betas=tuple(o.get("betas", (0.9, 0.999))))
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError("the schedule needs a finite run: set trainer.max_epochs or trainer.max_steps")
        schedule = Schedule.from_config(self.sched_cfg, total_steps=int(total), steps_per_epoch=self._steps_per_epoch())
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch of the trainer's own (possibly distributed) train loader."""
        t = self.trainer
        if t.train_dataloader is None:  # iteration-based runs (max_epochs=-1) have not loaded it yet
            t.fit_loop.setup_data()
        n = t.num_training_batches
        if not math.isfinite(n) or n < 1:
            return 1
        return max(1, math.ceil(n / max(1, t.accumulate_grad_batches)))
