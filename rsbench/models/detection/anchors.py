"""Anchors as MMDetection's ``AnchorGenerator`` makes them (``center_offset=0``, float sizes, fixed strides).

torchvision's :class:`~torchvision.models.detection.anchor_utils.AnchorGenerator` differs in two ways:
it rounds the base anchors (a 45.25 x 22.63 anchor becomes 46 x 22), and it infers each level's stride
as ``image_size // grid_size``, which on a padded 800 px image gives 61 instead of 64 for the stride-64
level (13 cells) and 59 / 104 instead of 64 / 128 for RetinaNet's P6 / P7 on 416 px. mmdet uses the
configured strides. Ratios are ``h / w`` in both: ``h = size * sqrt(r)``, ``w = size / sqrt(r)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList


class MMDetAnchorGenerator(AnchorGenerator):
    """One anchor set per level: ``sizes[i] x aspect_ratios[i]`` centred on ``(x * strides[i], y * strides[i])``.

    Ordering within a cell is ratio-major (mmdet ``scale_major=True``), as torchvision's. Anchors are
    computed in float32 (or float64) whatever the feature dtype, so mixed precision does not round
    the coordinates used for assignment.
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]],
                 strides: Sequence[int]) -> None:
        if not len(sizes) == len(aspect_ratios) == len(strides):
            raise ValueError(f"{len(sizes)} size sets, {len(aspect_ratios)} ratio sets, {len(strides)} strides")
        super().__init__(tuple(tuple(float(s) for s in ss) for ss in sizes),
                         tuple(tuple(float(r) for r in rr) for rr in aspect_ratios))
        self.strides = [int(s) for s in strides]

    def generate_anchors(self, scales, aspect_ratios, dtype=torch.float32, device=None) -> Tensor:
        """mmdet ``gen_single_level_base_anchors`` with ``center_offset=0``: ``±0.5 w``, ``±0.5 h``, no rounding."""
        scales = torch.as_tensor(scales, dtype=torch.float64, device=device)
        ratios = torch.as_tensor(aspect_ratios, dtype=torch.float64, device=device)
        h_ratios = torch.sqrt(ratios)
        ws = (scales[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (scales[None, :] * h_ratios[:, None]).reshape(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) * 0.5).to(dtype)

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"{len(feature_maps)} feature maps for {len(self.strides)} anchor levels")
        dtype = torch.promote_types(feature_maps[0].dtype, torch.float32)
        device = feature_maps[0].device
        grid_sizes = [list(f.shape[-2:]) for f in feature_maps]
        strides = [[torch.tensor(s, device=device), torch.tensor(s, device=device)] for s in self.strides]
        self.set_cell_anchors(dtype, device)
        levels = self.grid_anchors(grid_sizes, strides)
        per_image = torch.cat(levels)
        return [per_image for _ in image_list.image_sizes]


def rpn_anchor_generator(scale: float = 8.0, ratios: Sequence[float] = (0.5, 1.0, 2.0),
                         strides: Sequence[int] = (4, 8, 16, 32, 64)) -> MMDetAnchorGenerator:
    """DIOR Faster R-CNN: mmdet ``scales=[8]``, one size per level = ``8 * stride`` (32 ... 512)."""
    return MMDetAnchorGenerator([(scale * s,) for s in strides], [tuple(ratios)] * len(strides), strides)


def retinanet_anchor_generator(octave_base_scale: float = 4.0, scales_per_octave: int = 3,
                               ratios: Sequence[float] = (0.5, 1.0, 2.0),
                               strides: Sequence[int] = (8, 16, 32, 64, 128)) -> MMDetAnchorGenerator:
    """xView RetinaNet: sizes ``stride * octave_base_scale * 2 ** (k / scales_per_octave)`` (32, 40.32, 50.80 ...)."""
    octave = [octave_base_scale * 2 ** (k / scales_per_octave) for k in range(scales_per_octave)]
    return MMDetAnchorGenerator([tuple(s * o for o in octave) for s in strides], [tuple(ratios)] * len(strides),
                                strides)
