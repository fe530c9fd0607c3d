"""Backbones behind one function, :func:`build_backbone`.

Contract: ``build_backbone(name, *, img_size, in_chans=3, pretrained=None, features="maps" |
"pyramid", allow_missing=False, **kw)`` returns an ``nn.Module`` whose ``forward(x)`` gives a list
of feature maps ``(B, C, H, W)`` and which exposes ``out_channels`` and ``out_strides`` (one entry
per map), ``num_layer_ids`` and ``layer_id(param_name) -> int`` for layer-wise LR decay (see
:mod:`rsbench.models.layer_decay`) and ``load_report``. ``features="pyramid"`` guarantees four maps
at strides 4, 8, 16, 32 (:mod:`rsbench.models.necks`); ``"maps"`` gives the backbone's raw maps.

A backbone is one module under ``rsbench/models/backbones/`` whose builders are decorated with
``@BACKBONES.register(name)``; every module there is imported here, so adding one edits no list.
Any name that is not registered is tried as a timm model.
"""

from __future__ import annotations

from rsbench.models.registry import BACKBONES, FEATURES, build_backbone
from rsbench.registry import import_submodules

import_submodules("rsbench.models.backbones")

__all__ = ["BACKBONES", "FEATURES", "build_backbone"]
