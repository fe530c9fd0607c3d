"""The backbone registry and :func:`build_backbone`."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from rsbench.registry import Registry

BACKBONES: Registry = Registry("backbone")


def build_backbone(
    name: str,
    *,
    img_size: int | tuple[int, int],
    in_chans: int = 3,
    pretrained: str | None = None,
    **kw: Any,
) -> nn.Module:
    """Build backbone ``name``; unregistered names fall through to timm (``timm_backbone``)."""
    if name in BACKBONES:
        builder = BACKBONES.get(name)
    else:
        from rsbench.models.backbones.timm_backbone import build_timm_backbone

        return build_timm_backbone(
            name, img_size=img_size, in_chans=in_chans, pretrained=pretrained, **kw
        )
    return builder(img_size=img_size, in_chans=in_chans, pretrained=pretrained, **kw)
