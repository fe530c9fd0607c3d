"""The detectors' ``backbone``: an rsbench pyramid backbone (``body``) followed by MMDetection's FPN (``fpn``).

torchvision detectors call ``self.backbone(images)`` and expect an ordered dict of equal-width maps,
so the FPN sits inside that module, beside the rsbench backbone: parameters named ``backbone.body.*``
are the rsbench backbone's (its own names after the prefix, for layer-wise LR decay) and
``backbone.fpn.*`` are the neck's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from rsbench.errors import ConfigError

PYRAMID_STRIDES = (4, 8, 16, 32)


class P6P7OnInput(ExtraFPNBlock):
    """mmdet FPN ``add_extra_convs='on_input'``, ``relu_before_extra_convs=False`` (xView RetinaNet).

    P6 = conv3x3/2 on the *backbone's* last map (C5, not P5); P7 = conv3x3/2 on P6 with no ReLU
    between. torchvision's ``LastLevelP6P7`` puts a ReLU before P7 and uses P5 when C5 has the
    FPN's width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        p6 = self.p6(x[-1])
        p7 = self.p7(p6)
        return [*results, p6, p7], [*names, "p6", "p7"]


def xavier_init_convs(module: nn.Module) -> None:
    """mmdet FPN ``init_cfg=dict(type='Xavier', layer='Conv2d', distribution='uniform')``: gain 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DetectionBackbone(nn.Module):
    """``fpn(body(x)[start_level:])``: mmdet ``FPN(in_channels, out_channels, start_level, num_outs=5)``.

    ``extra="maxpool"``: P6 = ``max_pool2d(P5, 1, 2)`` (mmdet ``add_extra_convs=False``, DIOR);
    ``extra="on_input"``: :class:`P6P7OnInput` (xView). Lateral and output convs have bias and no
    norm or activation, the top-down path is nearest upsampling to the lower map's size, as mmdet's.
    ``strides``: the output levels' strides, for the anchors and the RoI pooler.
    """

    def __init__(self, body: nn.Module, out_channels: int = 256, *, start_level: int = 0,
                 extra: str = "maxpool") -> None:
        super().__init__()
        in_strides = [int(s) for s in body.out_strides]
        if in_strides != list(PYRAMID_STRIDES):
            raise ConfigError(f"detectors need a pyramid backbone (strides {list(PYRAMID_STRIDES)}), got {in_strides}; "
                              "build it with features='pyramid'")
        in_channels = [int(c) for c in body.out_channels][start_level:]
        if extra == "maxpool":
            extra_block: ExtraFPNBlock = LastLevelMaxPool()
        elif extra == "on_input":
            extra_block = P6P7OnInput(in_channels[-1], out_channels)
        else:
            raise ConfigError(f"FPN extra levels {extra!r}: expected 'maxpool' or 'on_input'")
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra_block)
        xavier_init_convs(self.fpn)
        self.start_level = start_level
        self.out_channels = int(out_channels)
        levels = in_strides[start_level:]
        self.strides: Sequence[int] = [*levels, *(levels[-1] * 2 ** k for k in range(1, 1 + _n_extra(extra)))]
        self.names = [*(str(i) for i in range(len(levels))), *(["pool"] if extra == "maxpool" else ["p6", "p7"])]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        maps = list(self.body(x))[self.start_level:]
        return self.fpn(OrderedDict((str(i), m) for i, m in enumerate(maps)))


def _n_extra(extra: str) -> int:
    return 1 if extra == "maxpool" else 2
