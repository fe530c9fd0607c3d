"""A frozen encoder (``finetune=frozen``, conf/finetune/frozen.yaml): which parts of a backbone are the encoder,
freezing them, and keeping them in eval mode.

The encoder is the whole backbone, except the pyramid neck :func:`rsbench.models.necks.as_pyramid` adds
to a ViT for dense tasks (:class:`~rsbench.models.necks.BackboneWithNeck`, whose ``fpn1..4`` ops share
the backbone's module dict) when ``train_neck`` is true: the neck then trains with the decoder. A frozen
part gets ``requires_grad=False`` (so :func:`rsbench.models.layer_decay.param_groups` leaves it out of
the optimiser) and is put in eval mode (BatchNorm uses and keeps its running statistics, dropout and drop
path are off) by :func:`encoder_eval`, which the task calls again whenever it is put in train mode.
"""

from __future__ import annotations

import torch.nn as nn


def _neck_names(backbone: nn.Module, train_neck: bool) -> frozenset[str]:
    return frozenset(getattr(backbone, "_neck_names", ())) if train_neck else frozenset()


def encoder_parameters(backbone: nn.Module, train_neck: bool = True) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of the encoder's parameters, names as the backbone gives them."""
    neck = _neck_names(backbone, train_neck)
    return [(n, p) for n, p in backbone.named_parameters() if n.split(".", 1)[0] not in neck]


def encoder_eval(backbone: nn.Module, train_neck: bool = True) -> None:
    """The encoder's modules in eval mode (the neck's as they were)."""
    neck = _neck_names(backbone, train_neck)
    if not neck:
        backbone.eval()
        return
    for name, child in backbone.named_children():
        if name not in neck:
            child.eval()
    body = backbone.__dict__.get("body")  # BackboneWithNeck's encoder (unregistered: its own flag)
    if isinstance(body, nn.Module):
        body.training = False


def freeze_encoder(backbone: nn.Module, train_neck: bool = True) -> int:
    """``requires_grad=False`` for the encoder's parameters and the encoder in eval mode; returns how many
    parameter values were frozen."""
    n = 0
    for _, p in encoder_parameters(backbone, train_neck):
        p.requires_grad_(False)
        n += p.numel()
    encoder_eval(backbone, train_neck)
    return n
