"""Backbones behind one function, :func:`build_backbone`.

Contract: ``build_backbone(name, *, img_size, in_chans=3, pretrained=None, **kw)`` returns an
``nn.Module`` whose ``forward(x)`` gives a list of feature maps ``(B, C, H, W)`` and which
exposes ``out_channels`` and ``out_strides`` (lists, one entry per map). For layer-wise LR decay
it also exposes ``num_layer_ids`` and ``layer_id(param_name) -> int`` (see
:mod:`rsbench.models.layer_decay`). Any name that is not registered here is tried as a timm model.
"""

from __future__ import annotations

from rsbench.models.registry import BACKBONES, build_backbone

# Importing the modules registers their builders.
from rsbench.models.backbones import timm_backbone  # noqa: F401,E402
from rsbench.models.backbones import vit_rvsa  # noqa: F401,E402
from rsbench.models.backbones import internimage  # noqa: F401,E402

__all__ = ["BACKBONES", "build_backbone"]
