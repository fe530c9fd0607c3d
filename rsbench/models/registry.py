"""The backbone registry and :func:`build_backbone`, the one way tasks get a backbone.

``build_backbone`` (1) resolves ``pretrained`` to a file (:func:`rsbench.models.weights.resolve_weights`;
a run resolves it once beforehand and passes the path, for which this is only a check), (2) builds the
registered backbone ``name`` — or, given ``target=<import path>``, the user's encoder
(:mod:`rsbench.models.backbones.custom`), or the timm model of that name — with its raw maps, (3) for
``features="pyramid"`` applies :func:`rsbench.models.necks.as_pyramid`, and (4) loads the weights into
the result with :func:`rsbench.models.checkpoint.load_checkpoint` and the backbone's own
``checkpoint_filter_fn``. The :class:`~rsbench.models.checkpoint.LoadReport` is kept in ``load_report``
(``None`` without weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from rsbench.errors import ConfigError, WeightsError
from rsbench.models.checkpoint import load_checkpoint
from rsbench.models.necks import as_pyramid
from rsbench.models.weights import resolve_weights
from rsbench.registry import Registry

BACKBONES: Registry = Registry("backbone")

#: what a task asks of a backbone: its raw maps, or a pyramid at strides 4, 8, 16, 32
FEATURES = ("maps", "pyramid")


def build_backbone(
    name: str,
    *,
    img_size: int | tuple[int, int],
    in_chans: int = 3,
    pretrained: str | Path | None = None,
    features: str = "maps",
    allow_missing: bool = False,
    weights_dir: str | Path | None = None,
    **kw: Any,
) -> nn.Module:
    """Backbone ``name`` (registered, else a timm model) with the maps ``features`` asks for.

    ``pretrained``: None, a checkpoint path, or a released tag (``mtp``) looked up in
    ``weights_dir``; ``allow_missing``: load a file that lacks some backbone parameters; ``kw``: the
    builder's own arguments (architecture, drop path, loader options such as ``in_chans_adapt``).
    """
    if features not in FEATURES:
        raise ConfigError(f"backbone features={features!r}: expected one of {', '.join(FEATURES)}")
    path = resolve_weights(name, pretrained, weights_dir)
    if "target" in kw:  # your own encoder by its import path (backbones/custom.py), under any name
        body = BACKBONES.get("custom")(img_size=img_size, in_chans=in_chans, **kw)
    elif name in BACKBONES:
        body = BACKBONES.get(name)(img_size=img_size, in_chans=in_chans, **kw)
    else:
        from rsbench.models.backbones.timm_backbone import TimmBackbone

        body = TimmBackbone(name, img_size=img_size, in_chans=in_chans, **kw)
    model = as_pyramid(body) if features == "pyramid" else body
    model.load_report = None
    if path is not None:
        try:
            model.load_report = load_checkpoint(
                model, path, filter_fn=getattr(model, "checkpoint_filter_fn", None), allow_missing=allow_missing
            )
        except WeightsError as e:  # the file and the backbone named, and what to do
            raise WeightsError(f"backbone.pretrained of backbone {name!r}: {e}\n"
                               f"Give a checkpoint of this backbone (backbone.pretrained=<file>), or train from "
                               f"scratch with backbone.pretrained=none.") from e
    return model
