"""RoIAlignRotated in plain PyTorch on ``F.grid_sample``, with mmcv's semantics (CPU and GPU, autograd).

``rois`` ``(K, 6)`` are ``(batch_index, cx, cy, w, h, theta)`` in input-image pixels (multiplied by
``spatial_scale`` for the feature map), theta in radians. With ``clockwise=True`` (MMRotate's Oriented
R-CNN setting, and rsbench's convention, see ``rbox.py``) theta turns the RoI clockwise on screen
(y down); ``clockwise=False`` is mmcv's default (counter-clockwise). Output ``(K, C, oh, ow)``: bin
``(i, j)`` covers the RoI's local rows ``i`` (along its h side) and columns ``j`` (along its w side).

What mmcv's kernel (``roi_align_rotated`` CPU/CUDA, from detectron2) computes, reproduced here:

* ``aligned=True`` shifts the RoI centre by -0.5 feature pixel (pixel centres at integer + 0.5);
  ``aligned=False`` instead clamps w, h of the scaled RoI to >= 1.
* Each bin averages ``sampling_ratio x sampling_ratio`` bilinear samples at the bin's sub-cell centres
  (``sampling_ratio <= 0``: ``ceil(h / oh) x ceil(w / ow)`` per RoI), dividing by the full count.
* A sample with ``y < -1``, ``y > H``, ``x < -1`` or ``x > W`` contributes 0; otherwise coordinates are
  clamped into ``[0, H-1] x [0, W-1]`` (values and gradients go to the border pixels) — exactly
  ``grid_sample(padding_mode="border", align_corners=True)`` times a mask.

The samples of all RoIs of one image go through one ``grid_sample`` call (one call per image in the
batch and per distinct sampling grid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

__all__ = ["RoIAlignRotated", "roi_align_rotated"]


def _local(size: Tensor, bins: int, grid: int) -> Tensor:
    """RoI-local offsets ``(k, bins*grid)`` of the sub-cell centres along one side of length ``size`` (k,),
    computed as mmcv does: ``-size/2 + i*bin + (p + 0.5)*bin/grid``."""
    bin_size = (size / bins)[:, None, None]
    i = torch.arange(bins, dtype=size.dtype, device=size.device)[:, None]
    p = torch.arange(grid, dtype=size.dtype, device=size.device)[None, :] + 0.5
    return (-size[:, None, None] / 2 + i * bin_size + p * bin_size / grid).reshape(size.shape[0], -1)


def _sample_coords(geom: Tensor, out_hw: tuple[int, int], grid_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Feature-map ``(y, x)``, each ``(k, oh*gh, ow*gw)``, of every sample; ``geom`` ``(k, 5)`` is the
    scaled ``(cx, cy, w, h, theta)`` with mmcv's sign already applied (``x = yy sin + xx cos + cx``)."""
    cx, cy, w, h, t = geom.unbind(1)
    yy = _local(h, out_hw[0], grid_hw[0])[:, :, None]
    xx = _local(w, out_hw[1], grid_hw[1])[:, None, :]
    cx, cy, t = cx[:, None, None], cy[:, None, None], t[:, None, None]
    cos, sin = torch.cos(t), torch.sin(t)
    return yy * cos - xx * sin + cy, yy * sin + xx * cos + cx


def _pool_group(feat: Tensor, geom: Tensor, out_hw: tuple[int, int], grid_hw: tuple[int, int]) -> Tensor:
    """mmcv RoIAlignRotated of ``k`` RoIs (``geom`` ``(k, 5)``) on one image ``feat`` ``(C, H, W)``."""
    (oh, ow), (gh, gw) = out_hw, grid_hw
    k, (c, hgt, wid) = geom.shape[0], feat.shape
    y, x = _sample_coords(geom, out_hw, grid_hw)
    inside = (y >= -1) & (y <= hgt) & (x >= -1) & (x <= wid)
    # mmcv's rule folded into the grid (no (C, k, ...) mask product, forward or backward): inside samples
    # clamped to [0, H-1] x [0, W-1] by hand (what padding_mode="border" does), outside ones sent to -4
    # (normalised; all four taps off the map), where padding_mode="zeros" gives 0 and no gradient.
    far = torch.full_like(x, -4.0)
    gx = torch.where(inside, x.clamp(0, wid - 1) * (2 / max(wid - 1, 1)) - 1, far)
    gy = torch.where(inside, y.clamp(0, hgt - 1) * (2 / max(hgt - 1, 1)) - 1, far)
    grid = torch.stack([gx, gy], dim=-1).to(feat.dtype).reshape(1, k * oh * gh, ow * gw, 2)
    val = F.grid_sample(feat[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    # the gh x gw samples of a bin are a gh x gw block of the (k*oh*gh, ow*gw) sample image: avg_pool2d
    # averages them (dividing by the full count, as mmcv) without a strided 6-d reduction
    val = F.avg_pool2d(val, (gh, gw), (gh, gw))  # (1, C, k*oh, ow)
    return val.view(c, k, oh, ow).transpose(0, 1)  # (k, C, oh, ow)


def roi_align_rotated(input: Tensor, rois: Tensor, output_size: int | tuple[int, int] = (7, 7),
                      spatial_scale: float = 1.0, sampling_ratio: int = 2, aligned: bool = True,
                      clockwise: bool = True) -> Tensor:
    """Rotated RoIAlign with mmcv's semantics; gradients flow to ``input`` (not to ``rois``).

    ``input`` ``(B, C, H, W)``; ``rois`` ``(K, 6)`` ``(batch_index, cx, cy, w, h, theta)`` in image
    pixels, theta radians (clockwise on screen when ``clockwise``, as rsbench's rboxes);
    ``spatial_scale`` = 1 / feature stride. Returns ``(K, C, oh, ow)`` in ``input``'s dtype.
    """
    oh, ow = _pair(output_size)
    k, c = rois.shape[0], input.shape[1]
    if k == 0:
        return input.new_zeros((0, c, oh, ow))
    r = rois.detach().to(input.dtype)
    offset = 0.5 if aligned else 0.0
    cx, cy = r[:, 1] * spatial_scale - offset, r[:, 2] * spatial_scale - offset
    w, h = r[:, 3] * spatial_scale, r[:, 4] * spatial_scale
    if not aligned:
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    theta = -r[:, 5] if clockwise else r[:, 5]
    geom = torch.stack([cx, cy, w, h, theta], dim=1)
    if sampling_ratio > 0:
        grids = torch.full((k, 2), sampling_ratio, dtype=torch.long, device=r.device)
    else:
        grids = torch.stack([torch.ceil(h / oh), torch.ceil(w / ow)], dim=1).long()
    keys = torch.cat([r[:, :1].long(), grids], dim=1).cpu()
    pieces, where = [], []
    for key in torch.unique(keys, dim=0).tolist():
        b, gh, gw = key
        sel = (keys == torch.tensor(key)).all(dim=1).nonzero().squeeze(1).to(r.device)
        if gh <= 0 or gw <= 0:  # adaptive grid of an empty RoI: mmcv outputs 0
            pieces.append(input.new_zeros((sel.numel(), c, oh, ow)))
        else:
            pieces.append(_pool_group(input[b], geom[sel], (oh, ow), (gh, gw)))
        where.append(sel)
    idx = torch.cat(where)
    out = torch.cat(pieces)
    return out.new_zeros((k, c, oh, ow)).index_copy(0, idx, out)


class RoIAlignRotated(nn.Module):
    """Module form of :func:`roi_align_rotated` (mmcv ``RoIAlignRotated`` arguments; rsbench defaults
    are MMRotate's Oriented R-CNN: 7x7, sampling_ratio 2, aligned, clockwise)."""

    def __init__(self, output_size: int | tuple[int, int] = (7, 7), spatial_scale: float = 1.0,
                 sampling_ratio: int = 2, aligned: bool = True, clockwise: bool = True) -> None:
        super().__init__()
        self.output_size = _pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = aligned
        self.clockwise = clockwise

    def forward(self, input: Tensor, rois: Tensor) -> Tensor:
        return roi_align_rotated(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio,
                                 self.aligned, self.clockwise)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}, clockwise={self.clockwise}")

