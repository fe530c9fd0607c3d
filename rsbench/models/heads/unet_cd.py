"""Siamese feature fusion and the UNet decoder of the MTP change-detection models (Open-CD 1.1.0).

Re-implements, from their description (docs/protocols.md §5), the pieces of the official
``SiamEncoderDecoder``:

* :func:`siamese_features`: ONE backbone applied to each date separately (shared weights, two
  forward passes as ``SiamEncoderDecoder.extract_feat`` does, so BatchNorm backbones see each date
  as its own batch), fused by ``FeatureFusionNeck(policy='abs_diff')``: ``|f1 - f2|`` at every
  level. The result is symmetric in the two dates.
* :class:`UNetHead`: Open-CD's ``UNetHead`` (SMP-style). The feature list is reversed, the deepest
  map is the head and the others are skips; ``len(decoder_channels)`` decoder blocks each do nearest
  ×2 upsampling, bilinear-resize the skip (if any) to the new size, concatenate, then 2 × (conv3×3
  without bias → BN → ReLU, :class:`~rsbench.models.heads.blocks.ConvBNReLU`). With 4 inputs and 4
  blocks the last block has no skip. No centre block, no attention. Then bilinear ×2 →
  ``Dropout2d(0.1)`` → 1×1 conv (``conv_seg``, init N(0, 0.01), bias 0, as mmseg's
  ``BaseDecodeHead``) → class logits.

Any backbone of :func:`rsbench.models.build_backbone` plugs in: with ViT's four stride-16 maps
the skips are resized down/up to each block's size and the logits come out at 2× the input size;
with a 4–32 pyramid they come out at the input size. The caller resizes logits to the label.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from rsbench.models.heads.blocks import ConvBNReLU


def siamese_features(backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> list[torch.Tensor]:
    """``|backbone(x1)[i] - backbone(x2)[i]|`` for every level ``i`` (shared weights)."""
    f1, f2 = backbone(x1), backbone(x2)
    return [torch.abs(a - b) for a, b in zip(f1, f2)]


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(in_channels + skip_channels, out_channels)
        self.conv2 = ConvBNReLU(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            skip = F.interpolate(skip, size=x.shape[2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetHead(nn.Module):
    """Open-CD ``UNetHead`` (see module docstring). ``in_channels``: the backbone's ``out_channels``,
    shallowest first."""

    def __init__(self, in_channels: Sequence[int], decoder_channels: Sequence[int] = (512, 256, 128, 64),
                 num_classes: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        enc = [int(c) for c in in_channels][::-1]
        dec = [int(c) for c in decoder_channels]
        if not enc or not dec:
            raise ValueError("UNetHead needs at least one input map and one decoder block")
        skips = (enc[1:] + [0] * len(dec))[: len(dec)]
        ins = [enc[0]] + dec[:-1]
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, dec))
        self.num_skips = sum(1 for s in skips if s)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(dec[-1], num_classes, kernel_size=1)
        nn.init.normal_(self.conv_seg.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        feats = list(feats)[::-1]
        x, skips = feats[0], feats[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < min(len(skips), self.num_skips) else None)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv_seg(self.dropout(x))
