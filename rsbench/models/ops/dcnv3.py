"""DCNv3 (InternImage's deformable convolution v3) in plain PyTorch, on CPU and GPU.

:func:`dcnv3_core` is the sampling core: for every output pixel, group ``g`` and kernel point
``p`` it samples the group's channels bilinearly (zeros outside the padded input) at

    reference point + (kernel grid point + offset[g, p]) * offset_scale

and returns the mask-weighted sum over the kernel points. It computes exactly what the official
pure-PyTorch core ``dcnv3_core_pytorch`` (``ops_dcnv3/functions/dcnv3_func.py`` in
github.com/OpenGVLab/InternImage and in every task folder of github.com/ViTAE-Transformer/MTP)
computes, with the same arguments in the same order, the same float32 arithmetic for the sampling
grid, and the same ``F.grid_sample`` (bilinear, zeros padding, ``align_corners=False``) — results
and gradients agree to float rounding (``tests/test_dcnv3.py`` checks 1e-5 against recorded
official outputs). Conventions, as the official code:

* ``input`` ``(N, H, W, G*Cg)`` channels-last; ``offset`` ``(N, Ho, Wo, G*P*2)`` ordered group,
  then kernel point, then ``(x, y)``; ``mask`` ``(N, Ho, Wo, G*P)`` (already softmaxed by the
  caller); output ``(N, Ho, Wo, G*Cg)``.
* Kernel point ``p = i * kernel_h + j`` sits at ``x = -(dilation_w*(kernel_w-1))//2 + i*dilation_w``,
  ``y = -(dilation_h*(kernel_h-1))//2 + j*dilation_h``; with ``remove_center`` the centre point is
  dropped (square odd kernels only).
* The reference point of output ``(i, j)`` is the centre of padded-input pixel
  ``((dilation*(k-1))//2 + i*stride, ...)``; locations are normalised by the PADDED size.
  The kernel grid is multiplied by ``offset_scale`` too (with InternImage's 2.0 the 3x3 kernel
  is effectively dilated by 2).

How it differs from the official core (speed and memory only):

* The official core samples all ``P`` points with one ``grid_sample`` into a
  ``(N*G, Cg, Ho*Wo, P)`` tensor, multiplies it by the broadcast mask into a second tensor of
  that size and sums over the last, 9-wide axis; in backward autograd builds two more tensors
  of that size (grad times mask, grad times samples) before the channel sum and the
  ``grid_sample`` backward.
* Here a custom autograd function (``_DCNv3Sample``) lays the sampling grid out as
  ``(N*G, T, P, l)``: the output pixels are cut into ``T`` tiles of ``l`` pixels (whole rows,
  about ``TILE_PIXELS``), and inside a tile kernel point 0 comes for all ``l`` pixels, then point
  1, ... The masked sum over points is then ``P`` fused multiply-adds over contiguous runs
  (no product tensor, no 9-wide reduction); the mask gradient is ``Cg`` multiply-adds over the
  kept samples, which are freed before the single ``P``-fold tensor of the backward (grad times
  mask) is made; one ``grid_sampler_2d_backward`` call gives the input and grid gradients; and
  ``grid_sample`` still visits all points of a few rows before moving on, so the input region
  it reads (and scatters into in backward) stays in cache. Without a mask gradient (inference,
  frozen layers) the points are sampled one at a time and nothing ``P``-fold is allocated.
* ``recompute=True`` does not keep the samples between forward and backward (they are
  recomputed point by point for the mask gradient): in a deep network this cuts the memory held
  for backward to about a third, for some speed.

``scripts/bench_dcnv3.py`` measures both cores at the InternImage-XL stage shapes
(``results/bench_dcnv3.md``). :func:`dcnv3_core_reference` is the plain, unoptimised
formulation (autograd through ``F.grid_sample``, mask multiply and sum) kept as the oracle for
gradient tests.

:class:`DCNv3` is the module around the core with the official parameter names
(``input_proj``, ``output_proj``, ``offset``, ``mask``, ``dw_conv.0`` depth-wise conv,
``dw_conv.1.1`` LayerNorm), so released InternImage / MTP weights load into it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DCNv3", "dcnv3_core", "dcnv3_core_reference", "dcnv3_sampling_grid"]

_grid_sampler_2d_backward = torch.ops.aten.grid_sampler_2d_backward


def _out_size(size: int, pad: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def dcnv3_sampling_grid(
    offset: torch.Tensor,
    in_hw: tuple[int, int],
    kernel_h: int,
    kernel_w: int,
    stride_h: int,
    stride_w: int,
    pad_h: int,
    pad_w: int,
    dilation_h: int,
    dilation_w: int,
    group: int,
    offset_scale: float,
    remove_center: bool,
) -> torch.Tensor:
    """``grid_sample`` coordinates in [-1, 1] over the padded input, ``(N*G, T, P, l, 2)``.

    Layout: the ``Ho*Wo`` output pixels are cut into ``T`` tiles of ``l`` pixels (whole output
    rows, see :func:`_tile_rows`); within a tile all ``l`` pixels of kernel point 0 come first,
    then kernel point 1, ... ``grid_sample`` walks the grid in memory order, so it visits all
    kernel points of a few output rows before moving on (the input region it reads, and in
    backward scatters into, stays in cache), while each kernel point still has contiguous runs
    of ``l`` values for the masked sums.

    The float32 arithmetic follows the official ``_get_reference_points`` /
    ``_generate_dilation_grids`` step by step, so the coordinates are the official ones bit for
    bit (only their order in memory differs).
    """
    N, Ho, Wo, _ = offset.shape
    Hp, Wp = in_hw[0] + 2 * pad_h, in_hw[1] + 2 * pad_w
    dev = offset.device
    f32 = torch.float32
    ch, cw = (dilation_h * (kernel_h - 1)) // 2, (dilation_w * (kernel_w - 1)) // 2
    ref_y = torch.linspace(ch + 0.5, ch + 0.5 + (Ho - 1) * stride_h, Ho, dtype=f32, device=dev) / Hp
    ref_x = torch.linspace(cw + 0.5, cw + 0.5 + (Wo - 1) * stride_w, Wo, dtype=f32, device=dev) / Wp
    kx = torch.linspace(-cw, -cw + (kernel_w - 1) * dilation_w, kernel_w, dtype=f32, device=dev) / Wp
    ky = torch.linspace(-ch, -ch + (kernel_h - 1) * dilation_h, kernel_h, dtype=f32, device=dev) / Hp
    # kernel point p = i * kernel_h + j sits at (kx[i], ky[j]) (official meshgrid order)
    kxy = torch.stack((kx.repeat_interleave(kernel_h), ky.repeat(kernel_w)), -1)  # (K, 2)
    if remove_center:
        keep = [q for q in range(kernel_h * kernel_w) if q != (kernel_h * kernel_w - 1) // 2]
        kxy = kxy[keep]
    P = kxy.shape[0]
    r = _tile_rows(Ho, Wo)
    T = Ho // r
    ref = torch.stack(torch.broadcast_tensors(ref_x.view(1, 1, 1, Wo), ref_y.view(T, 1, r, 1)), -1)  # (T,1,r,Wo,2)
    base = ref + (kxy * offset_scale).view(1, P, 1, 1, 2)  # (T, P, r, Wo, 2)
    norm = torch.tensor([Wp, Hp], device=dev)
    off = offset.reshape(N, T, r, Wo, group, P, 2).permute(0, 4, 1, 5, 2, 3, 6)  # (N, G, T, P, r, Wo, 2)
    loc = base + off * offset_scale / norm
    grid = 2 * loc - 1
    return grid.reshape(N * group, T, P, r * Wo, 2).contiguous()


TILE_PIXELS = 4096


def _tile_rows(Ho: int, Wo: int) -> int:
    """Output rows per tile: the largest divisor of ``Ho`` giving at most ``TILE_PIXELS`` pixels."""
    best = 1
    for r in range(1, Ho + 1):
        if Ho % r == 0 and r * Wo <= max(TILE_PIXELS, Wo):
            best = r
    return best


class _DCNv3Sample(torch.autograd.Function):
    """Masked sum of bilinear samples.

    x ``(N, H, W, C)``; grid ``(B, T, P, l, 2)``; mask ``(B, T, P, l)``; ``B = N*G``; the
    output pixels are the ``T*l`` tiled pixels in row-major order (``out_hw``).
    """

    @staticmethod
    def forward(ctx, x, grid, mask, pad_h, pad_w, group, out_hw, recompute):  # type: ignore[override]
        N, H, W, C = x.shape
        Cg = C // group
        B, T, P, l, _ = grid.shape
        Ho, Wo = out_hw
        Hp, Wp = H + 2 * pad_h, W + 2 * pad_w
        # zero-padded, group-major copy of the input: (N*G, Cg, Hp, Wp)
        inp = x.new_zeros(N, group, Cg, Hp, Wp)
        inp[:, :, :, pad_h:pad_h + H, pad_w:pad_w + W] = x.view(N, H, W, group, Cg).permute(0, 3, 4, 1, 2)
        inp = inp.view(B, Cg, Hp, Wp)
        # the samples are kept for the mask gradient, and only when it is needed
        keep_samples = ctx.needs_input_grad[2] and not recompute
        if keep_samples:
            s = torch.grid_sampler_2d(inp, grid.view(B, T * P, l, 2), 0, 0, False).view(B, Cg, T, P, l)
            out = s[:, :, :, 0] * mask[:, None, :, 0]
            for p in range(1, P):
                out.addcmul_(s[:, :, :, p], mask[:, None, :, p])
            ctx.samples = s
        else:  # one kernel point at a time: nothing P-fold is allocated
            out = _sample_point(inp, grid, 0).mul_(mask[:, None, :, 0])
            for p in range(1, P):
                out.addcmul_(_sample_point(inp, grid, p), mask[:, None, :, p])
            ctx.samples = None
        ctx.save_for_backward(inp, grid, mask)
        ctx.geom = (N, H, W, C, group, pad_h, pad_w, Ho, Wo)
        # (B, Cg, T, l) -> (N, Ho, Wo, G*Cg); for N == 1 the reshape alone would be a strided view
        return out.view(N, group, Cg, Ho, Wo).permute(0, 3, 4, 1, 2).reshape(N, Ho, Wo, C).contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        inp, grid, mask = ctx.saved_tensors
        N, H, W, C, group, pad_h, pad_w, Ho, Wo = ctx.geom
        B, T, P, l, _ = grid.shape
        Cg = C // group
        need_x, need_grid, need_mask = ctx.needs_input_grad[:3]
        # contiguous (B, Cg, T, 1, l): every op below reads it; for N == 1 the reshape alone would
        # be a view with channel stride C (several times slower to read)
        g = grad_out.reshape(N, Ho, Wo, group, Cg).permute(0, 3, 4, 1, 2).reshape(B, Cg, T, 1, l).contiguous()
        grad_mask = grad_x = grad_grid = None
        if need_mask:
            s = ctx.samples
            if s is not None:  # sum over channels of grad * samples: Cg contiguous multiply-adds
                grad_mask = s[:, 0] * g[:, 0]
                for c in range(1, Cg):
                    grad_mask.addcmul_(s[:, c], g[:, c])
            else:
                grad_mask = torch.stack(
                    [torch.linalg.vecdot(_sample_point(inp, grid, p), g[:, :, :, 0], dim=1) for p in range(P)], 2
                )
            del s
        ctx.samples = None  # free the P-fold samples before the P-fold grad_output below
        if need_x or need_grid:
            # (B, Cg, T, P, l), allocated contiguous: the kernel would copy any other layout
            go = torch.mul(g, mask[:, None], out=g.new_empty(B, Cg, T, P, l))
            gi, gg = _grid_sampler_2d_backward(
                go.view(B, Cg, T * P, l), inp, grid.view(B, T * P, l, 2), 0, 0, False, [need_x, need_grid]
            )
            del go
            if need_x:
                Hp, Wp = H + 2 * pad_h, W + 2 * pad_w
                grad_x = (
                    gi.view(N, group, Cg, Hp, Wp)[:, :, :, pad_h:pad_h + H, pad_w:pad_w + W]
                    .permute(0, 3, 4, 1, 2)
                    .reshape(N, H, W, C)
                    .contiguous()
                )
            if need_grid:
                grad_grid = gg.view(B, T, P, l, 2)
        return grad_x, grad_grid, grad_mask, None, None, None, None, None


def _sample_point(inp: torch.Tensor, grid: torch.Tensor, p: int) -> torch.Tensor:
    """Samples of kernel point ``p`` only: ``(B, Cg, T, l)``."""
    return torch.grid_sampler_2d(inp, grid[:, :, p], 0, 0, False)


def _check(input, offset, mask, group, group_channels, P, Ho, Wo) -> None:
    if input.dim() != 4 or offset.dim() != 4 or mask.dim() != 4:
        raise ValueError("dcnv3_core: input, offset and mask must be 4-D channels-last (N, H, W, C)")
    N, _, _, C = input.shape
    if C != group * group_channels:
        raise ValueError(f"dcnv3_core: input has {C} channels, expected group*group_channels = {group * group_channels}")
    if tuple(offset.shape) != (N, Ho, Wo, group * P * 2):
        raise ValueError(f"dcnv3_core: offset shape {tuple(offset.shape)}, expected {(N, Ho, Wo, group * P * 2)}")
    if tuple(mask.shape) != (N, Ho, Wo, group * P):
        raise ValueError(f"dcnv3_core: mask shape {tuple(mask.shape)}, expected {(N, Ho, Wo, group * P)}")


def dcnv3_core(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel_h: int = 3,
    kernel_w: int = 3,
    stride_h: int = 1,
    stride_w: int = 1,
    pad_h: int = 1,
    pad_w: int = 1,
    dilation_h: int = 1,
    dilation_w: int = 1,
    group: int = 1,
    group_channels: int | None = None,
    offset_scale: float = 1.0,
    remove_center: bool | int = False,
    *,
    recompute: bool = False,
) -> torch.Tensor:
    """DCNv3 sampling core; arguments in the order of the official ``dcnv3_core_pytorch``.

    ``recompute=True`` trades speed for memory in training (see the module docstring). Half and
    bfloat16 inputs are computed in float32 and the result is cast back.
    """
    remove_center = bool(remove_center)
    if remove_center and (kernel_h % 2 == 0 or kernel_w % 2 == 0 or kernel_h != kernel_w):
        raise ValueError("remove_center is only compatible with square odd kernel size.")
    N, H, W, C = input.shape
    group_channels = C // group if group_channels is None else group_channels
    Ho = _out_size(H, pad_h, kernel_h, stride_h, dilation_h)
    Wo = _out_size(W, pad_w, kernel_w, stride_w, dilation_w)
    P = kernel_h * kernel_w - int(remove_center)
    _check(input, offset, mask, group, group_channels, P, Ho, Wo)
    grid = dcnv3_sampling_grid(
        offset, (H, W), kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
        dilation_h, dilation_w, group, offset_scale, remove_center,
    )
    T, l = grid.shape[1], grid.shape[3]
    m = mask.reshape(N, T, l, group, P).permute(0, 3, 1, 4, 2).reshape(N * group, T, P, l).contiguous()
    # half / bfloat16 (autocast) are sampled in float32: a half grid cannot address a large map
    dt = torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype
    out = _DCNv3Sample.apply(input.to(dt), grid.to(dt), m.to(dt), pad_h, pad_w, group, (Ho, Wo), recompute)
    return out.to(input.dtype)


def dcnv3_core_reference(
    input: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel_h: int = 3,
    kernel_w: int = 3,
    stride_h: int = 1,
    stride_w: int = 1,
    pad_h: int = 1,
    pad_w: int = 1,
    dilation_h: int = 1,
    dilation_w: int = 1,
    group: int = 1,
    group_channels: int | None = None,
    offset_scale: float = 1.0,
    remove_center: bool | int = False,
) -> torch.Tensor:
    """The plain formulation, differentiated by autograd: all samples, times mask, summed.

    Slow and memory-hungry (it materialises every sample twice); the oracle for tests only.
    Works in float64, so ``torch.autograd.gradcheck`` can run through it.
    """
    remove_center = bool(remove_center)
    N, H, W, C = input.shape
    group_channels = C // group if group_channels is None else group_channels
    Ho = _out_size(H, pad_h, kernel_h, stride_h, dilation_h)
    Wo = _out_size(W, pad_w, kernel_w, stride_w, dilation_w)
    P = kernel_h * kernel_w - int(remove_center)
    _check(input, offset, mask, group, group_channels, P, Ho, Wo)
    grid = dcnv3_sampling_grid(
        offset, (H, W), kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
        dilation_h, dilation_w, group, offset_scale, remove_center,
    ).to(input.dtype)
    B = N * group
    xp = F.pad(input, [0, 0, pad_w, pad_w, pad_h, pad_h])
    inp = xp.permute(0, 3, 1, 2).reshape(B, group_channels, H + 2 * pad_h, W + 2 * pad_w)
    T, l = grid.shape[1], grid.shape[3]
    s = F.grid_sample(inp, grid.view(B, T * P, l, 2), mode="bilinear", padding_mode="zeros", align_corners=False)
    m = mask.reshape(N, T, l, group, P).permute(0, 3, 1, 4, 2).reshape(B, 1, T, P, l)
    out = (s.view(B, group_channels, T, P, l) * m).sum(3)  # (B, Cg, T, l) = (B, Cg, Ho*Wo)
    return out.view(N, group * group_channels, Ho, Wo).permute(0, 2, 3, 1).contiguous()


class DCNv3(nn.Module):
    """The DCNv3 layer (official ``DCNv3_pytorch`` / ``DCNv3``, same parameter names).

    ``input_proj`` → (``dw_conv``: depth-wise conv, LayerNorm, GELU → ``offset``, ``mask`` with a
    softmax over each group's kernel points) → :func:`dcnv3_core` → ``output_proj``. Channels-last
    in and out: ``(N, H, W, C)``. ``center_feature_scale`` (InternImage-H/G) is supported for
    completeness.
    """

    def __init__(
        self,
        channels: int = 64,
        kernel_size: int = 3,
        dw_kernel_size: int | None = None,
        stride: int = 1,
        pad: int = 1,
        dilation: int = 1,
        group: int = 4,
        offset_scale: float = 1.0,
        act_layer: str = "GELU",
        norm_layer: str = "LN",
        center_feature_scale: bool = False,
        remove_center: bool = False,
    ) -> None:
        super().__init__()
        if channels % group != 0:
            raise ValueError(f"channels must be divisible by group, but got {channels} and {group}")
        if act_layer != "GELU" or norm_layer != "LN":
            raise ValueError("rsbench DCNv3 supports act_layer='GELU' and norm_layer='LN' only (as InternImage-XL)")
        dw_kernel_size = dw_kernel_size if dw_kernel_size is not None else kernel_size
        self.channels = channels
        self.kernel_size = kernel_size
        self.dw_kernel_size = dw_kernel_size
        self.stride = stride
        self.dilation = dilation
        self.pad = pad
        self.group = group
        self.group_channels = channels // group
        self.offset_scale = offset_scale
        self.center_feature_scale = center_feature_scale
        self.remove_center = int(remove_center)
        self.recompute = False
        P = kernel_size * kernel_size - self.remove_center

        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=dw_kernel_size, stride=1,
                      padding=(dw_kernel_size - 1) // 2, groups=channels),
            nn.Sequential(_ToChannelsLast(), nn.LayerNorm(channels, eps=1e-6)),
            nn.GELU(),
        )
        self.offset = nn.Linear(channels, group * P * 2)
        self.mask = nn.Linear(channels, group * P)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        if center_feature_scale:
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros((group, channels)))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """The official init: zero offsets and mask logits, Xavier projections."""
        nn.init.constant_(self.offset.weight, 0.0)
        nn.init.constant_(self.offset.bias, 0.0)
        nn.init.constant_(self.mask.weight, 0.0)
        nn.init.constant_(self.mask.bias, 0.0)
        nn.init.xavier_uniform_(self.input_proj.weight)
        nn.init.constant_(self.input_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        N, H, W, _ = input.shape
        x = self.input_proj(input)
        x_proj = x
        x1 = self.dw_conv(input.permute(0, 3, 1, 2))
        offset = self.offset(x1)
        mask = F.softmax(self.mask(x1).reshape(N, H, W, self.group, -1), -1).reshape(N, H, W, -1)
        x = dcnv3_core(
            x, offset, mask,
            self.kernel_size, self.kernel_size, self.stride, self.stride, self.pad, self.pad,
            self.dilation, self.dilation, self.group, self.group_channels, self.offset_scale,
            self.remove_center, recompute=self.recompute,
        )
        if self.center_feature_scale:
            cfs = F.linear(x1, self.center_feature_scale_proj_weight, self.center_feature_scale_proj_bias).sigmoid()
            cfs = cfs[..., None].repeat(1, 1, 1, 1, self.channels // self.group).flatten(-2)
            x = x * (1 - cfs) + x_proj * cfs
        return self.output_proj(x)


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)
