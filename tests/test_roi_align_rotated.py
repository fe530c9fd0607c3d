"""RoIAlignRotated on grid_sample (rsbench/models/ops/roi_align_rotated.py) against mmcv's semantics.

References: (1) a plain loop re-statement of what mmcv's CPU kernel computes (written here, float64);
(2) torchvision's roi_align at theta = 0; (3) mmcv's published test vectors; (4) gradcheck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from rsbench.models.ops.rbox import rbox_to_poly
from rsbench.models.ops.roi_align_rotated import RoIAlignRotated, roi_align_rotated

D = torch.float64


def _bilinear_weights(H, W, y, x):
    """mmcv's bilinear_interpolate rules: [(index_y, index_x, weight)], empty when out of range."""
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return []
    y, x = max(y, 0.0), max(x, 0.0)
    y_lo, x_lo = int(y), int(x)
    if y_lo >= H - 1:
        y_lo = y_hi = H - 1
        y = float(y_lo)
    else:
        y_hi = y_lo + 1
    if x_lo >= W - 1:
        x_lo = x_hi = W - 1
        x = float(x_lo)
    else:
        x_hi = x_lo + 1
    ly, lx = y - y_lo, x - x_lo
    hy, hx = 1 - ly, 1 - lx
    return [(y_lo, x_lo, hy * hx), (y_lo, x_hi, hy * lx), (y_hi, x_lo, ly * hx), (y_hi, x_hi, ly * lx)]


def loop_reference(feat, rois, out_hw, scale, sampling_ratio, aligned, clockwise, grad_out=None):
    """Output (K, C, oh, ow) and, given grad_out, the input gradient, as mmcv's CPU kernel defines them."""
    _, C, H, W = feat.shape
    oh, ow = out_hw
    out = np.zeros((len(rois), C, oh, ow))
    grad = np.zeros_like(feat)
    for n, (b, cx, cy, w, h, t) in enumerate(rois):
        off = 0.5 if aligned else 0.0
        cx, cy, w, h = cx * scale - off, cy * scale - off, w * scale, h * scale
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        t = -t if clockwise else t
        bh, bw = h / oh, w / ow
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / oh)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / ow)
        count = max(gh * gw, 1)
        for i in range(oh):
            for j in range(ow):
                for iy in range(gh):
                    yy = -h / 2 + i * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        xx = -w / 2 + j * bw + (ix + 0.5) * bw / gw
                        y = yy * math.cos(t) - xx * math.sin(t) + cy
                        x = yy * math.sin(t) + xx * math.cos(t) + cx
                        for py, px, wt in _bilinear_weights(H, W, y, x):
                            out[n, :, i, j] += wt * feat[int(b), :, py, px] / count
                            if grad_out is not None:
                                grad[int(b), :, py, px] += wt * grad_out[n, :, i, j] / count
    return out, grad


def random_case(seed, k=9, size=(2, 3, 11, 13)):
    g = torch.Generator().manual_seed(seed)
    feat = torch.randn(*size, generator=g, dtype=D)
    u = torch.rand(k, 6, generator=g, dtype=D)
    # image pixels at scale 0.5: centres partly outside the 22 x 26 image, sizes 1-30, any angle
    rois = torch.stack([(u[:, 0] * size[0]).floor(), u[:, 1] * 36 - 5, u[:, 2] * 32 - 5,
                        1 + u[:, 3] * 29, 1 + u[:, 4] * 20, (u[:, 5] - 0.5) * 2 * math.pi], dim=1)
    rois[0] = torch.tensor([0, -4.0, -3.0, 3.0, 2.0, 0.3], dtype=D)  # samples beyond -1: zeros
    rois[1] = torch.tensor([size[0] - 1, 26.5, 22.0, 8.0, 5.0, -1.0], dtype=D)  # over the far border
    return feat, rois


@pytest.mark.parametrize("sampling_ratio,aligned,clockwise", [(2, True, True), (2, True, False), (0, True, True),
                                                               (3, False, True), (0, False, False)])
def test_equals_mmcv_cpu_kernel_semantics_fp64(sampling_ratio, aligned, clockwise):
    feat, rois = random_case(sampling_ratio * 7 + aligned + 2 * clockwise)
    x = feat.clone().requires_grad_(True)
    out = roi_align_rotated(x, rois, (3, 4), 0.5, sampling_ratio, aligned, clockwise)
    g_out = torch.randn(out.shape, dtype=D, generator=torch.Generator().manual_seed(0))
    out.backward(g_out)
    ref, ref_grad = loop_reference(feat.numpy(), rois.numpy(), (3, 4), 0.5, sampling_ratio, aligned, clockwise,
                                   g_out.numpy())
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(x.grad.numpy(), ref_grad, rtol=0, atol=1e-10)
    assert np.abs(ref[0]).max() < np.abs(ref[2:]).max()  # the outside RoI does get zeros somewhere


def test_equals_torchvision_roi_align_at_theta_zero():
    g = torch.Generator().manual_seed(1)
    feat = torch.randn(2, 4, 25, 30, generator=g)
    xyxy = torch.tensor([[0, 2.0, 3, 40, 30], [1, -3, -2, 20, 16], [0, 10.5, 5.2, 70, 55], [1, 50, 40, 58, 47]])
    rois = torch.cat([xyxy[:, :1], (xyxy[:, 1:3] + xyxy[:, 3:5]) / 2, xyxy[:, 3:5] - xyxy[:, 1:3],
                      torch.zeros(4, 1)], dim=1)
    for sr in (2, 0):
        ref = roi_align(feat, xyxy, (7, 7), spatial_scale=0.5, sampling_ratio=sr, aligned=True)
        out = roi_align_rotated(feat, rois, (7, 7), 0.5, sr, aligned=True)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_mmcv_published_vectors():
    """Inputs, outputs and input gradients (of sum(output)) from mmcv's own test,
    https://github.com/open-mmlab/mmcv/blob/main/tests/test_ops/test_roi_align_rotated.py
    (pool 2 x 2, spatial_scale 1, sampling_ratio 2, aligned=True, mmcv's default clockwise=False)."""
    f2 = [[[1.0, 2.0], [3.0, 4.0]]]
    f4 = [[[1.0, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]]]
    g2 = [[3.0625, 0.4375], [0.4375, 0.0625]]
    g4 = [[0.47265625, 0.42968750, 0.42968750, 0.04296875], [0.42968750, 0.39062500, 0.39062500, 0.03906250],
          [0.42968750, 0.39062500, 0.39062500, 0.03906250], [0.04296875, 0.03906250, 0.03906250, 0.00390625]]
    cases = [
        ([f2], [0, 0.5, 0.5, 1, 1, 0], [[[1.0, 1.25], [1.5, 1.75]]], [g2]),
        ([f2], [0, 0.5, 0.5, 1, 1, math.pi / 2], [[[1.5, 1], [1.75, 1.25]]], [g2]),
        ([[f2[0], [[4.0, 3], [2, 1]]]], [0, 0.5, 0.5, 1, 1, 0], [[[1.0, 1.25], [1.5, 1.75]], [[4.0, 3.75], [3.5, 3.25]]],
         [g2, g2]),
        ([f4], [0, 1.5, 1.5, 3, 3, 0], [[[1.9375, 4.75], [7.5625, 10.375]]], [g4]),
        ([f4], [0, 1.5, 1.5, 3, 3, math.pi / 2], [[[7.5625, 1.9375], [10.375, 4.75]]], [g4]),
    ]
    for feat, roi, want, want_grad in cases:
        for dtype in (torch.float32, D):
            x = torch.tensor(feat, dtype=dtype, requires_grad=True)  # (1, C, H, W)
            out = roi_align_rotated(x, torch.tensor([roi], dtype=dtype), (2, 2), 1.0, 2, True, clockwise=False)
            out.sum().backward()
            torch.testing.assert_close(out, torch.tensor([want], dtype=dtype), atol=1e-6, rtol=0)
            torch.testing.assert_close(x.grad, torch.tensor(want_grad, dtype=dtype)[None], atol=1e-6, rtol=0)


def test_clockwise_matches_rbox_convention():
    """With clockwise=True a RoI's bin (i, j) samples the point centre + xx (cos t, sin t) + yy (-sin t, cos t),
    the frame of rbox_to_poly: on the map f(y, x) = x + 0.5 (pixel-centre coordinate) bilinear is exact."""
    H = W = 40
    feat = (torch.arange(W, dtype=D) + 0.5).expand(1, 1, H, W).clone()
    feat = torch.cat([feat, feat.transpose(2, 3)], dim=1)  # channel 1: y + 0.5
    box = torch.tensor([20.0, 18.0, 16.0, 6.0, 0.6], dtype=D)
    out = roi_align_rotated(feat, torch.cat([torch.zeros(1, dtype=D), box])[None], (3, 4), 1.0, 2)[0]
    xx = (torch.arange(4, dtype=D) + 0.5) / 4 * 16 - 8
    yy = (torch.arange(3, dtype=D) + 0.5) / 3 * 6 - 3
    c, s = math.cos(0.6), math.sin(0.6)
    torch.testing.assert_close(out[0], 20 + xx[None, :] * c - yy[:, None] * s)
    torch.testing.assert_close(out[1], 18 + xx[None, :] * s + yy[:, None] * c)
    # the corner bin nearest rbox_to_poly's 2nd corner (c + u - v) is bin (0, last)
    p = rbox_to_poly(box[None]).view(4, 2)
    d = [(out[:, i, j] - p[1]).norm() for i in (0, 2) for j in (0, 3)]
    assert int(np.argmin(d)) == 1


def test_gradcheck_and_module():
    feat, rois = random_case(5, k=3, size=(1, 2, 6, 7))
    x = feat.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: roi_align_rotated(t, rois, (2, 3), 0.5, 2), (x,), eps=1e-6, atol=1e-7)
    m = RoIAlignRotated((2, 3), spatial_scale=0.5)
    assert "clockwise=True" in repr(m) and m.sampling_ratio == 2
    torch.testing.assert_close(m(feat, rois), roi_align_rotated(feat, rois, (2, 3), 0.5, 2, True, True))
    assert m(feat, rois[:0]).shape == (0, 2, 2, 3)
    assert roi_align_rotated(feat.float(), rois.float(), 7).dtype == torch.float32


def _masked_border_pool(feat, geom, out_hw, grid_hw):
    """The previous formulation of ``_pool_group`` (border padding times an inside mask, 6-d sum), kept as
    a reference for the faster one (mask folded into the grid, zeros padding, avg_pool2d)."""
    import torch.nn.functional as F

    from rsbench.models.ops.roi_align_rotated import _sample_coords

    (oh, ow), (gh, gw) = out_hw, grid_hw
    k, (c, hgt, wid) = geom.shape[0], feat.shape
    y, x = _sample_coords(geom, out_hw, grid_hw)
    inside = (y >= -1) & (y <= hgt) & (x >= -1) & (x <= wid)
    grid = torch.stack([x * (2 / max(wid - 1, 1)) - 1, y * (2 / max(hgt - 1, 1)) - 1], dim=-1)
    grid = grid.to(feat.dtype).reshape(1, k * oh * gh, ow * gw, 2)
    val = F.grid_sample(feat[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    val = val.view(c, k, oh, gh, ow, gw) * inside.view(1, k, oh, gh, ow, gw).to(feat.dtype)
    return val.sum(dim=(3, 5)).div_(gh * gw).transpose(0, 1)


@pytest.mark.parametrize("dtype", [torch.float32, D])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_fast_pooling_equals_masked_border_formulation(monkeypatch, dtype, sampling_ratio):
    import rsbench.models.ops.roi_align_rotated as rar

    g = torch.Generator().manual_seed(41)
    feat = torch.randn(2, 8, 12, 10, generator=g, dtype=D).to(dtype)
    u = torch.rand(40, 5, generator=g, dtype=D)
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).to(D),
                      torch.stack([u[:, 0] * 100 - 10, u[:, 1] * 110 - 10, 4 + u[:, 2] * 60, 4 + u[:, 3] * 40,
                                   (u[:, 4] - 0.5) * 2 * math.pi], 1)], 1).to(dtype)  # many samples off the map
    grad = torch.randn(40, 8, 7, 7, generator=g, dtype=D).to(dtype)
    results = []
    for pool in (rar._pool_group, _masked_border_pool):
        monkeypatch.setattr(rar, "_pool_group", pool)
        x = feat.clone().requires_grad_(True)
        out = roi_align_rotated(x, rois, 7, 1 / 8, sampling_ratio)
        out.backward(grad)
        results.append((out.detach(), x.grad))
    (o1, g1), (o2, g2) = results
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(o1, o2, atol=tol, rtol=0)
    torch.testing.assert_close(g1, g2, atol=tol, rtol=0)
