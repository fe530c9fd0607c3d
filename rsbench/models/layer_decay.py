"""Layer-wise learning-rate decay parameter groups, as the official MTP constructors build them.

The official ViT constructor (``LayerDecayOptimizerConstructor_ViT``) gives every parameter a
layer id: 0 for the embeddings, ``i + 1`` for block ``i``, and ``L - 1`` for everything else
(heads, necks, decoders, the fpn ops, the final norm), where ``L = num_layers + 2``. Its LR is
``lr * decay ** (L - 1 - id)``. Parameters that are 1-D, biases or ``pos_embed`` get no weight
decay; 2-D rel-pos tables do.

A backbone takes part by exposing ``num_layer_ids`` (``L``) and ``layer_id(name)`` for its own
parameter names, and may override the weight-decay rule with ``no_weight_decay_param(name, param)``.
A backbone without ``layer_id`` gets one uniform LR (scale 1) for all its parameters.
Parameters outside the backbone always get id ``L - 1`` (scale 1), exactly as the official code.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch.nn as nn

NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token")


def default_no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """The official rule: no weight decay for 1-D tensors, biases and position embeddings."""
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or name.endswith(".bias") or leaf in NO_DECAY_NAMES


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    *,
    backbone: nn.Module | None,
    backbone_prefix: str,
    lr: float,
    weight_decay: float,
    layer_decay: float | None,
) -> list[dict[str, Any]]:
    """Group ``named_params`` by (layer id, weight decay) for ``torch.optim.AdamW``.

    ``backbone_prefix`` is the attribute path of the backbone inside the module whose
    parameters are grouped (``"backbone."``); names under it are asked of the backbone.
    Each group carries ``lr_scale`` and ``layer_id`` so schedulers and tests can read them.
    """
    has_ids = backbone is not None and hasattr(backbone, "layer_id")
    num_ids = int(getattr(backbone, "num_layer_ids", 1)) if has_ids else 1
    no_wd_fn = getattr(backbone, "no_weight_decay_param", None) if backbone is not None else None

    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        in_backbone = name.startswith(backbone_prefix)
        local = name[len(backbone_prefix):] if in_backbone else name
        layer = backbone.layer_id(local) if (in_backbone and has_ids) else num_ids - 1
        if not 0 <= layer < num_ids:
            raise ValueError(f"layer id {layer} of {name!r} outside [0, {num_ids})")
        if in_backbone and no_wd_fn is not None:
            no_wd = bool(no_wd_fn(local, p))
        else:
            no_wd = default_no_weight_decay(local, p)
        scale = 1.0 if not layer_decay else float(layer_decay) ** (num_ids - 1 - layer)
        key = (layer, no_wd)
        if key not in groups:
            groups[key] = {
                "params": [],
                "param_names": [],
                "lr": lr * scale,
                "initial_lr": lr * scale,
                "lr_scale": scale,
                "layer_id": layer,
                "weight_decay": 0.0 if no_wd else weight_decay,
            }
        groups[key]["params"].append(p)
        groups[key]["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]
