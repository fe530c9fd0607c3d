"""UperNet decoder (Xiao et al. 2018) as mmseg 1.x ``UPerHead``, the MTP segmentation head.

mmseg config of the MTP recipes (docs/protocols.md §2.4): ``in_index=[0, 1, 2, 3]``,
``pool_scales=(1, 2, 3, 6)``, ``channels=512``, ``dropout_ratio=0.1`` (here ``dropout``), SyncBN,
``align_corners=False``, no auxiliary head. Structure:

- PPM on the deepest map: for each scale, AdaptiveAvgPool → 1×1 ConvModule, bilinearly
  upsampled back; concatenated with the map → 3×3 ``bottleneck``.
- FPN: 1×1 ``lateral_convs`` on the other maps, top-down addition (bilinear upsampling), 3×3
  ``fpn_convs``; all levels upsampled to the finest and concatenated → 3×3 ``fpn_bottleneck``.
- ``cls_seg``: Dropout2d(0.1) → 1×1 ``conv_seg`` (N(0, 0.01) init, bias 0).

Every ConvModule is :class:`~rsbench.models.heads.blocks.ConvBNReLU` (conv without bias → BN →
ReLU, mmcv's names and Kaiming-normal fan_out init, BN weight 1 / bias 0). Under DDP,
``trainer.sync_batchnorm=true`` turns BN into SyncBN as in the paper. Any backbone pyramid works:
the maps need not have strides 4–32 (the levels are resized to the first map's size), only their
channel counts are needed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from rsbench.models.heads.blocks import ConvBNReLU


def _conv(in_ch: int, out_ch: int, kernel_size: int, padding: int = 0) -> ConvBNReLU:
    """mmcv ``ConvModule`` (BN, ReLU) as mmseg builds it, with mmcv's init."""
    return ConvBNReLU(in_ch, out_ch, kernel_size, padding, mmcv_init=True)


class PPM(nn.ModuleList):
    """Pooling pyramid module of PSPNet (mmseg ``PPM``)."""

    def __init__(self, pool_scales: Sequence[int], in_ch: int, channels: int, align_corners: bool = False) -> None:
        super().__init__(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), _conv(in_ch, channels, 1)) for s in pool_scales
        )
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [F.interpolate(m(x), size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
                for m in self]


class UPerHead(nn.Module):
    """``forward(feats)`` → logits at the resolution of ``feats[in_index[0]]``."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1,
                 in_index: Sequence[int] | None = None, align_corners: bool = False) -> None:
        super().__init__()
        self.in_index = list(in_index) if in_index is not None else list(range(len(in_channels)))
        in_channels = [int(in_channels[i]) for i in self.in_index]
        if len(in_channels) < 1:
            raise ValueError("UPerHead needs at least one input map")
        self.in_channels, self.channels, self.num_classes = in_channels, int(channels), int(num_classes)
        self.align_corners = align_corners
        self.psp_modules = PPM(pool_scales, in_channels[-1], self.channels, align_corners)
        self.bottleneck = _conv(in_channels[-1] + len(pool_scales) * self.channels, self.channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(_conv(c, self.channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(_conv(self.channels, self.channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = _conv(len(in_channels) * self.channels, self.channels, 3, padding=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(self.channels, self.num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def _resize(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def features(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs = [feats[i] for i in self.in_index]
        laterals = [conv(inputs[i]) for i, conv in enumerate(self.lateral_convs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down path
            laterals[i - 1] = laterals[i - 1] + self._resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals) - 1)]
        outs.append(laterals[-1])
        outs = [outs[0]] + [self._resize(o, outs[0].shape[2:]) for o in outs[1:]]
        return self.fpn_bottleneck(torch.cat(outs, dim=1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.conv_seg(self.dropout(self.features(feats)))
