"""ViT-B/L with Rotated Varied-Size window Attention (RVSA), as finetuned in MTP (Wang et al. 2024).

A re-implementation of the official ``RVSA_MTP`` / ``RVSA_MTP_branches`` backbones
(github.com/ViTAE-Transformer/MTP, ``RS_Tasks_Finetune/*/models/backbones/vit_rvsa_mtp*.py``,
commit 13cc2b7) that computes the same function with the same parameter names, so the released
``last_vit_{b,l}_rvsa_ss_is_rd_pretrn_model_encoder.pth`` files load as they are. The maths is
that of the official code; the implementation is vectorised over batch, heads and windows and uses
``F.scaled_dot_product_attention`` where that is faster (see :class:`FullAttention`).

Architecture (docs/protocols.md §3.1)
    Conv2d patch embedding (16×16), absolute ``pos_embed`` (1, N, C) without cls token, added as is
    (so the input must be exactly ``img_size``); pre-norm blocks (LN eps 1e-6, GELU MLP, no
    layer scale); every ``interval``-th block (index ``i`` with ``(i+1) % interval == 0``) is global
    attention, all others RVSA with 7×7 windows. ``forward`` returns the ``out_indices`` blocks'
    maps at stride 16; the final ``norm`` is never applied (no official finetune forward calls it).

The official copies, and how rsbench builds each (``build_backbone(name, features=..., ...)``)
    Scene_Classification / Change_Detection ``RVSA_MTP``: ``features="maps"`` — the four stride-16
    maps. Semantic_Segmentation ``RVSA_MTP``: ``features="pyramid"`` — the same maps through the
    ``fpn1..4`` ops (strides 4, 8, 16, 32), which rsbench builds as a separate neck,
    :class:`rsbench.models.necks.SimpleFeaturePyramid`, whose parameters keep the official names.
    Horizontal/Rotated_Detection ``RVSA_MTP_branches``: ``features="pyramid", rel_pos=False`` — their
    global blocks have no decomposed rel-pos (commented out in the official det copies).

Parameters a model does not use are not created: ``norm.*`` (never used when finetuning),
``fpn*`` without the pyramid neck, ``full_attn_rel_pos_*`` with ``rel_pos=False``. The loader
reports those checkpoint keys under ``LoadReport.ignored`` rather than as unexpected, so a released
encoder file loads with no missing and no unexpected keys into each of them, and DDP sees no unused
parameters.

Initialisation follows the official flow as mmengine runs it: ``init_weights`` re-applies
trunc-normal(0.02) to every Linear (which undoes ``fix_init_weight``'s rescaling), LayerNorms 1/0,
convs keep PyTorch's default init (the RVSA predictor convs are never zero-initialised),
``pos_embed`` and ``relative_position_bias_table`` trunc-normal(0.02), rel-pos tables zeros.

Checkpoints (:meth:`VitRVSA.checkpoint_filter_fn`, used by :func:`rsbench.models.checkpoint.load_checkpoint`)
— the official ``init_weights`` rules, plus prefixes
    1. ``state_dict`` / ``model`` / raw dict; ``module.`` stripped (``read_state_dict``).
    2. whole MTP model files: keep ``encoder.*`` (drop ``semsegdecoder.``, ``rotdet*`` ...); else
       finetuned mm files: keep ``backbone.*``. The official rule is "first sorted key starts with
       ``encoder``"; rsbench's is "any key starts with ``encoder.``" (same result on MTP files).
    3. ``full_attn_rel_pos_h/w`` (2·s_old−1, d) → bicubic (align_corners=False) to (2·s_new−1, d),
       interpolated as a (1, 1, L, d) image exactly as the official loader (each table to its own
       target size; the official code sizes both to the ``_h`` table, the same for square inputs).
    4. ``pos_embed``: drop the first token when the file has a ``cls_token`` (MAE checkpoints);
       resize the square grid bicubically (align_corners=False, no antialias) when it differs.
    5. ``in_chans != 3`` (e.g. 13-band Sentinel-2) — not in the finetune code, which has only RGB
       (OSCD uses an RGB version); the official pretraining loader drops ``patch_embed.proj.*`` and
       leaves it random. rsbench's default ``in_chans_adapt="repeat"`` uses timm's
       ``adapt_input_conv`` instead: the RGB kernels are repeated cyclically over the new channels
       (R,G,B,R,G,B,...) and scaled by 3/in_chans so a constant input still gives the same
       response; 1-channel input sums the RGB kernels. ``in_chans_adapt="drop"`` reproduces the
       official pretraining behaviour (random patch embedding, reported as missing but allowed).
    6. ``load_state_dict(strict=False)`` through ``load_state_dict_checked``: a missing backbone
       tensor is an error unless ``allow_missing=True``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models._manipulate import adapt_input_conv

from rsbench.errors import ConfigError
from rsbench.models.checkpoint import Filtered, StateDict, resize_pos_embed, resize_rel_pos, select_encoder_keys
from rsbench.models.registry import BACKBONES

WINDOW = 7  # RVSA window (ws = attn_ws = 7 in every official config)
IN_CHANS_ADAPT = ("repeat", "drop")


# ----------------------------------------------------------------------------- attention


def _rel_pos_logits(q: torch.Tensor, table_h: torch.Tensor, table_w: torch.Tensor, gh: int, gw: int):
    """MViTv2 decomposed rel-pos terms of ``calc_rel_pos_spatial`` for square-grid q and k.

    ``q`` is (..., gh*gw, d) in row-major token order; returns ``rel_h`` (..., gh*gw, gh) with
    ``rel_h[i, kh] = q_i · table_h[h_i - kh + gh - 1]`` and ``rel_w`` (..., gh*gw, gw) likewise,
    to be added to the logits as ``rel_h[..., kh] + rel_w[..., kw]`` for key (kh, kw).
    """
    dev = q.device
    idx_h = torch.arange(gh, device=dev)[:, None] - torch.arange(gh, device=dev)[None, :] + (gh - 1)
    idx_w = torch.arange(gw, device=dev)[:, None] - torch.arange(gw, device=dev)[None, :] + (gw - 1)
    rh = table_h[idx_h].to(q.dtype)  # (gh, gh, d): [query row, key row]
    rw = table_w[idx_w].to(q.dtype)  # (gw, gw, d)
    lead = q.shape[:-2]
    d = q.shape[-1]
    r_q = q.reshape(*lead, gh, gw, d)
    rel_h = torch.einsum("...hwc,hkc->...hwk", r_q, rh).reshape(*lead, gh * gw, gh)
    rel_w = torch.einsum("...hwc,wkc->...hwk", r_q, rw).reshape(*lead, gh * gw, gw)
    return rel_h, rel_w


class FullAttention(nn.Module):
    """Global multi-head attention of the official ``Attention`` class (``full_attn_rel_pos_*``).

    With ``rel_pos`` (cls/seg/cd copies) the logits are ``(q·s)·k + rel_h + rel_w`` where the
    decomposed terms use the SCALED q. They are added without materialising the (N, N) bias: q is
    extended with the per-query terms ``[q·s, rel_h, rel_w]`` and k with one-hot row/column codes
    ``[k, onehot(row), onehot(col)]``, so ``q'·k'`` equals the biased logits exactly, and the
    product goes through ``F.scaled_dot_product_attention`` (fused kernels on CPU and GPU; a
    float ``attn_mask`` that needs a gradient would force the slow math path and O(N²) memory).
    Without ``rel_pos`` (det copies) it is plain SDPA.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        *,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_pos: bool = True,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.head_dim = head_dim
        self.scale = qk_scale or head_dim**-0.5
        self.grid = grid
        self.qkv = nn.Linear(dim, head_dim * num_heads * 3, bias=qkv_bias)
        self.rel_pos = rel_pos
        if rel_pos:
            # (2·g−1, head_dim). The official code sizes both tables from grid[0] (the same for the
            # square inputs of every recipe; its non-square case indexes past the w table).
            self.full_attn_rel_pos_h = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
            self.full_attn_rel_pos_w = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))
        self.attn_drop = attn_drop
        self.proj = nn.Linear(head_dim * num_heads, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nH, N, d)
        drop = self.attn_drop if self.training else 0.0
        if not self.rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        else:
            if 2 * H - 1 != self.full_attn_rel_pos_h.shape[0] or 2 * W - 1 != self.full_attn_rel_pos_w.shape[0]:
                raise ValueError(
                    f"global attention rel-pos tables are for a {self.grid} token grid, got {(H, W)}"
                )
            qs = q * self.scale
            rel_h, rel_w = _rel_pos_logits(qs, self.full_attn_rel_pos_h, self.full_attn_rel_pos_w, H, W)
            d = self.head_dim
            code_h = F.one_hot(torch.arange(H, device=x.device), H).to(q.dtype)  # (H, H)
            code_w = F.one_hot(torch.arange(W, device=x.device), W).to(q.dtype)
            code_h = code_h[:, None, :].expand(H, W, H).reshape(N, H)
            code_w = code_w[None, :, :].expand(H, W, W).reshape(N, W)
            e = d + H + W
            pad = (-e) % 8
            qa = torch.cat([qs, rel_h, rel_w], dim=-1)
            ka = torch.cat([k, code_h.expand(B, self.num_heads, N, H), code_w.expand(B, self.num_heads, N, W)], dim=-1)
            if pad:
                qa = F.pad(qa, (0, pad))
                ka = F.pad(ka, (0, pad))
            va = F.pad(v, (0, e + pad - d))  # fused kernels need equal head dims
            out = F.scaled_dot_product_attention(qa, ka, va, dropout_p=drop, scale=1.0)[..., :d]
        out = out.transpose(1, 2).reshape(B, N, -1)
        return self.proj_drop(self.proj(out))


def _window_attend(q, k, v, bias, scale: float, drop: float) -> torch.Tensor:
    """softmax(q·kᵀ·scale + bias)·v on 49-token windows.

    The bias depends on q and on learned tables, so it needs a gradient; on CPU that rules out
    the fused SDPA kernels and the explicit product is faster than SDPA's math path. On CUDA the
    memory-efficient kernel takes a differentiable float mask.
    """
    if q.is_cuda or _FORCE_WINDOW_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop, scale=scale)
    attn = torch.matmul(q, k.transpose(-2, -1)).mul_(scale).add_(bias).softmax(dim=-1)
    if drop:
        attn = F.dropout(attn, drop)
    return torch.matmul(attn, v)


_FORCE_WINDOW_SDPA = False  # tests flip this to check the CUDA path on CPU


class RotatedVariedSizeWindowAttention(nn.Module):
    """The official ``RotatedVariedSizeWindowAttention`` (ws = attn_ws = 7, one deform per head).

    Per window and head, three predictors on the 7×7-average-pooled, zero-padded input give an
    offset (2), a scale (2) and an angle (1); the 7×7 sampling grid of the keys/values is the
    window's regular grid scaled, rotated about the window centre and shifted; k and v are
    bilinearly sampled there (``grid_sample``, zeros padding, align_corners=True) and attended by
    the regular-grid queries with decomposed rel-pos (unscaled q) plus a Swin bias table.
    Everything is computed for all batches, heads and windows at once: one pooled tensor feeds
    the three predictors as one fused 1×1 conv, k and v are sampled in one ``grid_sample`` call
    whose output grid is laid out window by window, so no window partition of k/v is needed.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        window_size: int = WINDOW,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        ws = window_size
        self.ws = ws
        self.dim = dim
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.head_dim = head_dim
        self.scale = qk_scale or head_dim**-0.5
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * ws - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * ws - 1, head_dim))
        # nn.Sequential(AvgPool, LeakyReLU, Conv1x1) keeps the official names `.2.weight`; forward
        # pools once and applies the three convs as one.
        self.sampling_offsets = _predictor(dim, num_heads * 2, ws)
        self.sampling_scales = _predictor(dim, num_heads * 2, ws)
        self.sampling_angles = _predictor(dim, num_heads, ws)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) * (2 * ws - 1), num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        # persistent, as in the official module, so the released files' keys all match
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1])
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _sampling_grid(self, xp: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B·nH, nh·nw, 49, 2) sampling locations (x, y in [-1, 1] of the padded map)."""
        B, Hp, Wp, C = xp.shape
        ws, nH = self.ws, self.num_heads
        nh, nw = Hp // ws, Wp // ws
        dev, dt = xp.device, xp.dtype
        pooled = F.leaky_relu(xp.view(B, nh, ws, nw, ws, C).mean(dim=(2, 4)), 0.01)  # (B, nh, nw, C)
        weight = torch.cat(
            [self.sampling_offsets[2].weight, self.sampling_scales[2].weight, self.sampling_angles[2].weight]
        ).flatten(1)
        bias = torch.cat([self.sampling_offsets[2].bias, self.sampling_scales[2].bias, self.sampling_angles[2].bias])
        pred = F.linear(pooled, weight, bias).permute(0, 3, 1, 2)  # (B, 5·nH, nh, nw)
        off = pred[:, : 2 * nH].reshape(B * nH, 2, nh, nw)
        scl = pred[:, 2 * nH : 4 * nH].reshape(B * nH, 2, nh, nw)
        ang = pred[:, 4 * nH :].reshape(B * nH, nh, nw)
        # official quirk, kept: the x offset is divided by the UNPADDED h//ws and y by w//ws
        off_x = off[:, 0] / (H // ws)
        off_y = off[:, 1] / (W // ws)
        # reference grids, computed as the official code does (same float ops)
        ref_x = torch.linspace(-1, 1, Wp, device=dev, dtype=dt).view(nw, ws).mean(1)  # window centres
        ref_y = torch.linspace(-1, 1, Hp, device=dev, dtype=dt).view(nh, ws).mean(1)
        base_h = torch.arange(ws, device=dev) * 2 * ws / ws / (Hp - 1)
        base_h = (base_h - base_h.mean()).to(dt)
        base_w = torch.arange(ws, device=dev) * 2 * ws / ws / (Wp - 1)
        base_w = (base_w - base_w.mean()).to(dt)
        # (B·nH, nh, nw, 1, 1) window parameters × (ws, 1) / (1, ws) in-window coordinates
        sx = (scl[:, 0] + 1)[..., None, None]
        sy = (scl[:, 1] + 1)[..., None, None]
        cos, sin = torch.cos(ang)[..., None, None], torch.sin(ang)[..., None, None]
        wx = base_w.view(1, 1, 1, 1, ws) * sx  # (B·nH, nh, nw, 1, ws)
        wy = base_h.view(1, 1, 1, ws, 1) * sy  # (B·nH, nh, nw, ws, 1)
        gx = ref_x.view(1, 1, nw, 1, 1) + (-wy * sin + wx * cos) + off_x[..., None, None]
        gy = ref_y.view(1, nh, 1, 1, 1) + (wy * cos + wx * sin) + off_y[..., None, None]
        grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # (B·nH, nh, nw, ws, ws, 2)
        return grid.reshape(B * nH, nh * nw, ws * ws, 2)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        ws, nH, d = self.ws, self.num_heads, self.head_dim
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        top, left = pad_h // 2, pad_w // 2
        Hp, Wp = H + pad_h, W + pad_w
        nh, nw = Hp // ws, Wp // ws
        nW = nh * nw
        xs = x.view(B, H, W, C)
        xp = F.pad(xs, (0, 0, left, pad_w - left, top, pad_h - top)) if pad_h or pad_w else xs
        grid = self._sampling_grid(xp, H, W)

        # split (not slicing): its backward is one concatenation, not zero-filled full-size grads
        q, kv = self.qkv(x).view(B, H, W, 3, nH, d).split([1, 2], dim=3)
        # k and v, channels-first per (batch, head), zero-padded, sampled in one call
        kv = kv.permute(0, 4, 3, 5, 1, 2)  # (B, nH, 2, d, H, W)
        kv = F.pad(kv, (left, pad_w - left, top, pad_h - top)).reshape(B * nH, 2 * d, Hp, Wp)
        kv = F.grid_sample(kv, grid.to(kv.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
        k, v = kv.view(B * nH, 2, d, nW, ws * ws).to(x.dtype).unbind(1)
        k = k.permute(0, 2, 3, 1)  # (B·nH, nW, 49, d)
        v = v.permute(0, 2, 3, 1)
        # q on the regular window grid: (B·nH, nW, 49, d)
        q = q.squeeze(3)
        if pad_h or pad_w:
            q = F.pad(q, (0, 0, 0, 0, left, pad_w - left, top, pad_h - top))
        q = q.view(B, nh, ws, nw, ws, nH, d).permute(0, 5, 1, 3, 2, 4, 6).reshape(B * nH, nW, ws * ws, d)

        rel_h, rel_w = _rel_pos_logits(q, self.rel_pos_h, self.rel_pos_w, ws, ws)  # unscaled q
        table = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        table = table.view(ws * ws, ws * ws, nH).permute(2, 0, 1).to(q.dtype)  # (nH, 49, 49)
        bias = (rel_h.view(B, nH, nW, ws * ws, ws, 1) + rel_w.view(B, nH, nW, ws * ws, 1, ws)).view(
            B, nH, nW, ws * ws, ws * ws
        ) + table.view(1, nH, 1, ws * ws, ws * ws)
        bias = bias.view(B * nH, nW, ws * ws, ws * ws)
        # (the official RVSA defines attn_drop but never applies it; neither does this)
        out = _window_attend(q, k, v, bias, self.scale, 0.0)

        out = out.view(B, nH, nh, nw, ws, ws, d).permute(0, 2, 4, 3, 5, 1, 6).reshape(B, Hp, Wp, C)
        if pad_h or pad_w:
            out = out[:, top : top + H, left : left + W]
        out = out.reshape(B, N, C)
        return self.proj_drop(self.proj(out))


def _predictor(dim: int, out: int, ws: int) -> nn.Sequential:
    return nn.Sequential(nn.AvgPool2d(ws, ws), nn.LeakyReLU(), nn.Conv2d(dim, out, kernel_size=1))


# ----------------------------------------------------------------------------- blocks


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        qk_scale: float | None,
        drop: float,
        attn_drop: float,
        drop_path: float,
        window: bool,
        grid: tuple[int, int],
        rel_pos: bool,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if window:
            self.attn: nn.Module = RotatedVariedSizeWindowAttention(
                dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=drop
            )
        else:
            self.attn = FullAttention(
                dim, num_heads, grid, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                proj_drop=drop, rel_pos=rel_pos,
            )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        # official Mlp: fc1 → GELU → fc2 → dropout (no dropout after the activation)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=(0.0, drop))

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """16×16 conv patch embedding; ``grid`` is the token grid of the ``img_size`` it was built for."""

    def __init__(self, img_size: tuple[int, int], patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.grid = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


# ----------------------------------------------------------------------------- model


def _check_layout(img_size, patch_size: int, window_size: int, embed_dim: int, num_heads: int, depth: int,
                  interval: int, out_indices: Sequence[int]) -> tuple[tuple[int, int], list[int]]:
    """ConfigErrors for layouts the official code cannot run; returns ``(img_size as (h, w), out_indices)``."""
    if patch_size != 16:
        raise ConfigError(f"vit_rvsa supports patch_size 16 (the MTP models), got {patch_size}")
    if window_size != WINDOW:
        raise ConfigError(f"vit_rvsa RVSA windows are {WINDOW}x{WINDOW} in every MTP model, got {window_size}")
    if embed_dim % num_heads:
        raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    idx = [int(i) for i in out_indices]
    if any(not 0 <= i < depth for i in idx) or len(set(idx)) != len(idx):
        raise ConfigError(f"out_indices {idx}: expected distinct block indices in [0, {depth})")
    hw = (int(img_size), int(img_size)) if isinstance(img_size, (int, float)) else tuple(int(s) for s in img_size)
    if len(hw) != 2 or hw[0] % patch_size or hw[1] % patch_size:
        raise ConfigError(f"vit_rvsa img_size {img_size} must be a multiple of {patch_size}")
    if min(hw) // patch_size < WINDOW and any((i + 1) % interval for i in range(depth)):
        raise ConfigError(
            f"vit_rvsa img_size {hw}: RVSA needs at least {WINDOW}x{WINDOW} tokens ({WINDOW * patch_size} px); "
            f"the official code divides the window offsets by tokens // {WINDOW} (inf below that)"
        )
    return hw, idx  # type: ignore[return-value]


class VitRVSA(nn.Module):
    """ViT + RVSA backbone; ``forward(x)`` returns the ``out_indices`` maps at stride 16 (module docstring).

    ``rel_pos``: decomposed rel-pos in the global blocks (False: the official detection copies);
    ``in_chans_adapt``: how a 3-band checkpoint meets ``in_chans != 3`` (``repeat`` | ``drop``);
    ``grad_ckpt``: activation checkpointing per block (ViT-L at 800-1024 px).
    """

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 224,
        in_chans: int = 3,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (3, 5, 7, 11),
        interval: int = 3,
        window_size: int = WINDOW,
        rel_pos: bool = True,
        in_chans_adapt: str = "repeat",
        grad_ckpt: bool = False,
    ) -> None:
        super().__init__()
        self.img_size, self.out_indices = _check_layout(
            img_size, patch_size, window_size, embed_dim, num_heads, depth, interval, out_indices
        )
        if in_chans_adapt not in IN_CHANS_ADAPT:
            raise ConfigError(f"in_chans_adapt={in_chans_adapt!r}: expected one of {', '.join(IN_CHANS_ADAPT)}")
        self.in_chans, self.in_chans_adapt = in_chans, in_chans_adapt
        self.embed_dim, self.depth, self.num_heads, self.interval = embed_dim, depth, num_heads, interval
        self.rel_pos, self.grad_ckpt = bool(rel_pos), grad_ckpt

        self.patch_embed = PatchEmbed(self.img_size, patch_size, in_chans, embed_dim)
        self.grid = self.patch_embed.grid
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [float(r) for r in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[i], window=(i + 1) % interval != 0, grid=self.grid,
                rel_pos=self.rel_pos,
            )
            for i in range(depth)
        )
        self.out_channels = [embed_dim] * len(self.out_indices)
        self.out_strides = [patch_size] * len(self.out_indices)
        self.num_layer_ids = depth + 2

        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    # --- layer-wise LR decay (LayerDecayOptimizerConstructor_ViT) ---
    def layer_id(self, name: str) -> int:
        """0 for the embeddings, ``i + 1`` for ``blocks.i``, ``depth + 1`` for everything else."""
        if name in ("cls_token", "mask_token", "pos_embed") or name.startswith("patch_embed"):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layer_ids - 1

    @staticmethod
    def no_weight_decay_param(name: str, param: nn.Parameter) -> bool:
        """The official rule: 1-D, ``*.bias`` and ``pos_embed`` get none; rel-pos tables do get it."""
        return param.ndim == 1 or name.endswith(".bias") or "pos_embed" in name

    # --- forward ---
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(
                f"vit_rvsa was built for {self.img_size[0]}x{self.img_size[1]} inputs (its pos_embed and "
                f"global rel-pos are not resized at run time, as in the official code); got "
                f"{x.shape[-2]}x{x.shape[-1]}. Build it with img_size={tuple(x.shape[-2:])}."
            )
        H, W = self.grid
        # contiguous (B, N, C): a transposed view would keep its strides through every residual add
        # and make each LayerNorm copy its input (the official code pays that)
        x = self.patch_embed(x).flatten(2).transpose(1, 2).contiguous()
        x = self.pos_drop(x + self.pos_embed)
        feats: list[torch.Tensor] = []
        ckpt = self.grad_ckpt and self.training and torch.is_grad_enabled()
        want = set(self.out_indices)
        last = max(self.out_indices)
        for i, blk in enumerate(self.blocks):
            if ckpt:
                x = torch.utils.checkpoint.checkpoint(blk, x, H, W, use_reentrant=False)
            else:
                x = blk(x, H, W)
            if i in want:
                feats.append(x)
            if i >= last:
                break  # blocks after the last output index do not change any output
        # in block order, as the official code collects them (a pyramid neck's fpn1 gets the shallowest)
        return [_TokensToMap.apply(f, H, W) for f in feats]

    # --- checkpoints ---
    def checkpoint_filter_fn(self, state_dict: StateDict, model: nn.Module) -> Filtered:
        """The official loader's rules (module docstring, steps 2-5); ``model``: this backbone or it with its neck."""
        sd, ignored = select_encoder_keys(state_dict)  # ignored: a whole model file's decoders and heads
        own = model.state_dict()
        resized = _fit_rel_pos(sd, own, ignored) + _fit_pos_embed(sd, self.grid)
        absent_ok, left_random = ("relative_position_index",), []
        w = sd.get("patch_embed.proj.weight")
        if w is not None and w.ndim == 4 and w.shape[1] != self.in_chans:
            if self.in_chans_adapt == "repeat":
                sd["patch_embed.proj.weight"] = adapt_input_conv(self.in_chans, w, base_chans=w.shape[1])
                resized.append("patch_embed.proj.weight")
            else:  # "drop": the official pretraining loader's random patch embedding
                del sd["patch_embed.proj.weight"]
                sd.pop("patch_embed.proj.bias", None)
                absent_ok += ("patch_embed.proj.",)
                left_random = ["patch_embed.proj.weight", "patch_embed.proj.bias"]
        for k in [k for k in sd if k not in own and (k in _UNUSED_KEYS or k.split(".", 1)[0] in _NECK_OPS)]:
            ignored.append(k)  # the final norm, MAE tokens, and fpn ops a model without the neck lacks
            del sd[k]
        return Filtered(sd, ignored=ignored, resized=resized, absent_ok=absent_ok, left_random=left_random)


class _TokensToMap(torch.autograd.Function):
    """(B, N, C) tokens → contiguous (B, C, H, W) map whose gradient comes back contiguous.

    A plain ``transpose`` would hand the residual stream a transposed gradient, which then keeps
    that layout through every add and makes each Linear's backward copy it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, H: int, W: int) -> torch.Tensor:  # type: ignore[override]
        B, N, C = x.shape
        return x.transpose(1, 2).reshape(B, C, H, W).contiguous()

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        B, C, H, W = g.shape
        return g.reshape(B, C, H * W).transpose(1, 2).contiguous(), None, None


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ----------------------------------------------------------------------------- checkpoint rules

# keys of the official encoder that no finetuning model uses (reported as `ignored`)
_UNUSED_KEYS = ("cls_token", "mask_token", "norm.weight", "norm.bias")
# the official pyramid ops (rsbench: the SimpleFeaturePyramid neck), ignored in a model without it
_NECK_OPS = ("fpn1", "fpn2", "fpn3", "fpn4")


def _fit_rel_pos(sd: StateDict, own: StateDict, ignored: list[str]) -> list[str]:
    """Step 3: global rel-pos tables resized to the model's grid, or ignored where it has none."""
    resized = []
    for k in [k for k in sd if "full_attn_rel_pos_h" in k or "full_attn_rel_pos_w" in k]:
        if k not in own:  # rel_pos=False: no rel-pos in global attention
            ignored.append(k)
            del sd[k]
        elif sd[k].shape != own[k].shape:
            sd[k] = resize_rel_pos(sd[k], own[k].shape[0])
            resized.append(k)
    return resized


def _fit_pos_embed(sd: StateDict, grid: tuple[int, int]) -> list[str]:
    """Step 4: a cls-token position dropped, the grid resized."""
    if "pos_embed" not in sd:
        return []
    old = sd["pos_embed"]
    sd["pos_embed"] = resize_pos_embed(old, grid, 1 if "cls_token" in sd else 0)
    return ["pos_embed"] if sd["pos_embed"].shape != old.shape else []


# ----------------------------------------------------------------------------- builders


def _build(arch: dict[str, Any], *, img_size: int | Sequence[int], in_chans: int, drop_path_rate: float,
           **kw: Any) -> VitRVSA:
    return VitRVSA(img_size=img_size, in_chans=in_chans, drop_path_rate=drop_path_rate, **{**arch, **kw})


VITB = dict(embed_dim=768, depth=12, num_heads=12, out_indices=[3, 5, 7, 11], interval=3)
VITL = dict(embed_dim=1024, depth=24, num_heads=16, out_indices=[7, 11, 15, 23], interval=6)


@BACKBONES.register("vitb_rvsa")
def vitb_rvsa(*, img_size: int | Sequence[int], in_chans: int = 3, drop_path_rate: float = 0.3, **kw: Any) -> VitRVSA:
    """ViT-B + RVSA: 768 wide, 12 blocks, 12 heads, interval 3, out_indices [3, 5, 7, 11].

    ``img_size``: the (fixed) input size; ``drop_path_rate``: linear stochastic depth (0.3 in every
    MTP finetune recipe); any keyword of :class:`VitRVSA` (``rel_pos``, ``in_chans_adapt``,
    ``grad_ckpt``, or the layout: ``embed_dim``, ``depth``, ``out_indices``...) passes through.
    """
    return _build(VITB, img_size=img_size, in_chans=in_chans, drop_path_rate=drop_path_rate, **kw)


@BACKBONES.register("vitl_rvsa")
def vitl_rvsa(*, img_size: int | Sequence[int], in_chans: int = 3, drop_path_rate: float = 0.3, **kw: Any) -> VitRVSA:
    """ViT-L + RVSA: 1024 wide, 24 blocks, 16 heads, interval 6, out_indices [7, 11, 15, 23].

    Arguments as :func:`vitb_rvsa`.
    """
    return _build(VITL, img_size=img_size, in_chans=in_chans, drop_path_rate=drop_path_rate, **kw)
