"""InternImage-XL (DCNv3), the backbone MTP pre-trained with IMP + MTP, as an rsbench backbone.

``build_backbone("internimage_xl", img_size=..., pretrained="mtp")`` builds the configuration of
every MTP finetuning config (``RS_Tasks_Finetune/*/configs/**/intern-xl-*.py``): channels 192,
depths [5, 5, 24, 5], groups [12, 24, 48, 96], mlp_ratio 4, LayerNorm + GELU, post-norm, layer
scale 1e-5, offset_scale 2.0, linear drop path 0.2 over the 39 blocks, 3x3 DCNv3 kernels and 3x3
depth-wise convs. ``forward`` returns the maps of the four levels (taken before each level's
downsample) with ``out_channels`` [192, 384, 768, 1536] at ``out_strides`` [4, 8, 16, 32]. The
network is fully convolutional: ``img_size`` is accepted for the common backbone contract and
not used. The arch keywords (``channels``, ``depths``, ``groups``, ``mlp_ratio``,
``layer_scale``, ``offset_scale``, ``post_norm``, ``drop_path_rate``, ``drop_rate``,
``drop_path_type``, ``out_indices``) pass through, so small configurations can be built for
tests; two memory options do not change results: ``with_cp=True`` (activation checkpointing per
block, as the official ``with_cp``) and ``dcn_recompute=True`` (the DCNv3 core keeps no samples
for backward, see :mod:`rsbench.models.ops.dcnv3`).

Parameter names are those of the official ``InternImage`` class (``intern_image.py``), i.e. of the
released encoder file ``last_internimage_xl_ss_is_rd_pretrn_model_encoder.pth``:
``patch_embed.{conv1,norm1.1,conv2,norm2.1}``, ``levels.{i}.blocks.{j}.{norm1.0, dcn.{input_proj,
output_proj, offset, mask, dw_conv.0, dw_conv.1.1}, norm2.0, mlp.fc1, mlp.fc2, gamma1, gamma2}``,
``levels.{i}.downsample.{conv, norm.1}`` (and ``levels.{i}.norm.0`` without post-norm). The DCNv3
operator is :mod:`rsbench.models.ops.dcnv3` (plain PyTorch, CPU and GPU; same results as the
official ``dcnv3_core_pytorch``).

**Checkpoint loading** (``build_backbone(..., pretrained=)`` a path, or the tag ``mtp`` resolved under
``weights_dir`` / ``$RSBENCH_WEIGHTS`` by :func:`rsbench.models.weights.resolve_weights`; the rules are
:meth:`InternImage.checkpoint_filter_fn`, applied by :func:`rsbench.models.checkpoint.load_checkpoint`)
follows the official ``InternImage.init_weights``: take ``state_dict``, else ``model``, else the raw
dict; strip ``backbone.`` and ``module.``; load non-strictly. Two differences, both on the safe
side: (1) a whole MTP model file (``last_internimage_xl_ss_is_rd_pretrn_model.pth``, keys
``encoder.*`` beside the decoders' ``semsegdecoder.*``, ``rotdet*``...) is also accepted: its
``encoder.*`` keys are kept with the prefix removed and the rest is reported as ignored (the
official loader does not strip ``encoder.``, so with that file it would silently load nothing);
(2) backbone parameters missing from the file raise :class:`rsbench.errors.WeightsError` unless
``allow_missing=True``. Unexpected keys are reported, not fatal. The result is kept in
``model.load_report`` (:class:`rsbench.models.checkpoint.LoadReport`).

**Layer-wise LR decay.** The official configs ask for
``CustomLayerDecayOptimizerConstructor_InternImage`` with num_layers 39, decay 0.94, depths
[5, 5, 24, 5], but that constructor only recognises parameter names starting with
``encoder.patch_embed`` / ``encoder.levels``, while the finetuning models name them
``backbone.*``: every parameter falls through to id ``num_layers + 1`` and gets scale
``0.94 ** 0 = 1`` — the decay is OFF and the learning rate is uniform (the training logs show
``lr == base_lr``). rsbench reproduces that by default, ``layer_decay_mode="official"``:
``layer_id`` returns ``num_layer_ids - 1`` (= 40) for every backbone parameter, so
:func:`rsbench.models.layer_decay.param_groups` gives all of them scale 1 whatever decay rate it
is passed. ``layer_decay_mode="intended"`` applies the constructor's rule to the backbone's own
names, i.e. what the authors presumably meant: ``num_layer_ids = sum(depths) + 2`` (41);
``patch_embed.*`` → 0; block ``j`` of level ``i`` → ``1 + sum(depths[:i]) + j``; the
downsample (and norm) of level ``i`` → ``1 + sum(depths[:i+1])`` (the id of that level's last
block; level 3 gets ``1 + sum(depths[:3])``, as in the official function); anything else → 40.
With decay 0.94 that gives ``0.94 ** (40 - id)``: the stem ``0.94 ** 40``, the last block 0.94,
heads 1.

**Weight decay** (``no_weight_decay_param(name, param)``), as the same constructor: no weight decay
for 1-D tensors, names ending in ``.bias``, and names containing ``norm``,
``relative_position`` or ``sampling_offsets``. This rule is the one the official runs used.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as torch_checkpoint
from timm.layers import DropPath, trunc_normal_

from rsbench.errors import ConfigError
from rsbench.models.checkpoint import Filtered, StateDict, select_encoder_keys
from rsbench.models.ops.dcnv3 import DCNv3
from rsbench.models.registry import BACKBONES

log = logging.getLogger(__name__)

XL_ARCH: dict[str, Any] = dict(
    channels=192,
    depths=(5, 5, 24, 5),
    groups=(12, 24, 48, 96),
    mlp_ratio=4.0,
    layer_scale=1e-5,
    offset_scale=2.0,
    post_norm=True,
    drop_path_rate=0.2,
)

LAYER_DECAY_MODES = ("official", "intended")


class _ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class _ToChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


def _ln(dim: int, in_format: str = "channels_last", out_format: str = "channels_last") -> nn.Sequential:
    """LayerNorm (eps 1e-6) wrapped like the official ``build_norm_layer`` (same key indices)."""
    layers: list[nn.Module] = []
    if in_format == "channels_first":
        layers.append(_ToChannelsLast())
    layers.append(nn.LayerNorm(dim, eps=1e-6))
    if out_format == "channels_first":
        layers.append(_ToChannelsFirst())
    return nn.Sequential(*layers)


class StemLayer(nn.Module):
    """conv3x3 s2 (in→C/2) → LN → GELU → conv3x3 s2 (C/2→C) → LN; channels-last out."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = _ln(out_chans // 2, "channels_first", "channels_first")
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = _ln(out_chans, "channels_first", "channels_last")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class DownsampleLayer(nn.Module):
    """conv3x3 s2 without bias (C→2C) → LN; channels-last in and out."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = _ln(2 * channels, "channels_first", "channels_last")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class MLPLayer(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class InternImageLayer(nn.Module):
    """One block: ``x += DP(γ1·LN(DCN(x)))``, ``x += DP(γ2·LN(MLP(x)))`` with post-norm."""

    def __init__(
        self,
        channels: int,
        groups: int,
        mlp_ratio: float,
        drop: float,
        drop_path: float,
        post_norm: bool,
        layer_scale: float | None,
        offset_scale: float,
        with_cp: bool,
        dcn_recompute: bool,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.with_cp = with_cp
        self.post_norm = post_norm
        self.norm1 = _ln(channels)
        self.dcn = DCNv3(
            channels=channels, kernel_size=3, stride=1, pad=1, dilation=1, group=groups,
            offset_scale=offset_scale,
        )
        self.dcn.recompute = dcn_recompute
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = _ln(channels)
        self.mlp = MLPLayer(channels, int(channels * mlp_ratio), drop=drop)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(channels))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(channels))

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer_scale:
            if self.post_norm:
                x = x + self.drop_path(self.norm1(self.dcn(x)))
                return x + self.drop_path(self.norm2(self.mlp(x)))
            x = x + self.drop_path(self.dcn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        if self.post_norm:
            x = x + self.drop_path(self.gamma1 * self.norm1(self.dcn(x)))
            return x + self.drop_path(self.gamma2 * self.norm2(self.mlp(x)))
        x = x + self.drop_path(self.gamma1 * self.dcn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return torch_checkpoint.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


class InternImageBlock(nn.Module):
    """One level: its blocks, a final LN only without post-norm, then the downsample."""

    def __init__(
        self,
        channels: int,
        depth: int,
        groups: int,
        downsample: bool,
        drop_path: Sequence[float],
        post_norm: bool,
        **layer_kw: Any,
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.blocks = nn.ModuleList(
            [
                InternImageLayer(channels=channels, groups=groups, drop_path=drop_path[i], post_norm=post_norm, **layer_kw)
                for i in range(depth)
            ]
        )
        if not post_norm:
            self.norm = _ln(channels)
        self.downsample = DownsampleLayer(channels) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input of the next level, this level's output before downsampling)``."""
        for blk in self.blocks:
            x = blk(x)
        if not self.post_norm:
            x = self.norm(x)
        x_ = x
        if self.downsample is not None:
            x = self.downsample(x)
        return x, x_


def _check_arch(channels: int, depths: list[int], groups: list[int], layer_decay_mode: str,
                drop_path_type: str) -> None:
    """ConfigErrors for configurations the official class would fail on or silently misread."""
    if len(depths) != len(groups):
        raise ConfigError(f"InternImage: depths {depths} and groups {groups} differ in length")
    for i, g in enumerate(groups):
        if (channels * 2**i) % g:
            raise ConfigError(f"InternImage: level {i} has {channels * 2**i} channels, not divisible by groups {g}")
    if layer_decay_mode not in LAYER_DECAY_MODES:
        raise ConfigError(f"InternImage: layer_decay_mode {layer_decay_mode!r} not in {LAYER_DECAY_MODES}")
    if drop_path_type not in ("linear", "uniform"):
        raise ConfigError(f"InternImage: drop_path_type {drop_path_type!r} not in ('linear', 'uniform')")


class InternImage(nn.Module):
    """InternImage with DCNv3 (official ``InternImage`` layout and initialisation)."""

    def __init__(
        self,
        *,
        in_chans: int = 3,
        channels: int = 64,
        depths: Sequence[int] = (3, 4, 18, 5),
        groups: Sequence[int] = (3, 6, 12, 24),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        drop_path_type: str = "linear",
        layer_scale: float | None = None,
        offset_scale: float = 1.0,
        post_norm: bool = False,
        with_cp: bool = False,
        dcn_recompute: bool = False,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        layer_decay_mode: str = "official",
    ) -> None:
        super().__init__()
        depths, groups = list(depths), list(groups)
        _check_arch(channels, depths, groups, layer_decay_mode, drop_path_type)
        num_levels = len(depths)
        self.depths = depths
        self.channels = channels
        self.out_indices = tuple(out_indices)
        self.layer_decay_mode = layer_decay_mode
        self.num_layer_ids = sum(depths) + 2

        self.patch_embed = StemLayer(in_chans, channels)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device="cpu")]
        if drop_path_type == "uniform":
            dpr = [drop_path_rate] * len(dpr)
        self.levels = nn.ModuleList(
            [
                InternImageBlock(
                    channels=channels * 2**i,
                    depth=depths[i],
                    groups=groups[i],
                    downsample=i < num_levels - 1,
                    drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                    post_norm=post_norm,
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    layer_scale=layer_scale,
                    offset_scale=offset_scale,
                    with_cp=with_cp,
                    dcn_recompute=dcn_recompute,
                )
                for i in range(num_levels)
            ]
        )
        self.out_channels = [channels * 2**i for i in self.out_indices]
        self.out_strides = [4 * 2**i for i in self.out_indices]
        self.apply(self._init_weights)
        for m in self.modules():
            if isinstance(m, DCNv3):
                m._reset_parameters()

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for i, level in enumerate(self.levels):
            x, x_ = level(x)
            if i in self.out_indices:
                outs.append(x_.permute(0, 3, 1, 2).contiguous())
        return outs

    # -- layer-wise LR decay and weight decay (see the module docstring) -----------------------

    def layer_id(self, name: str) -> int:
        """Layer id of backbone parameter ``name`` (no ``backbone.`` prefix)."""
        last = self.num_layer_ids - 1
        if self.layer_decay_mode == "official":
            return last
        if name.startswith("patch_embed"):
            return 0
        if name.startswith("levels."):
            parts = name.split(".")
            stage = int(parts[1])
            if parts[2] not in ("downsample", "norm"):
                return int(parts[3]) + 1 + sum(self.depths[:stage])
            return 1 + sum(self.depths[:min(stage, 2) + 1])
        return last

    @staticmethod
    def no_weight_decay_param(name: str, param: torch.Tensor) -> bool:
        return (
            param.ndim == 1
            or name.endswith(".bias")
            or "relative_position" in name
            or "norm" in name
            or "sampling_offsets" in name
        )

    # -- checkpoint ---------------------------------------------------------------------------

    @staticmethod
    def checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> Filtered:
        """The official rules plus the two safeguards of the module docstring."""
        sd, ignored = select_encoder_keys(state_dict)  # encoder.* of a whole MTP model, backbone.* of a finetuned one
        if ignored:
            log.info("checkpoint holds more than the encoder: loading its encoder.*/backbone.* weights, "
                     "ignoring %d decoder/head tensors", len(ignored))
        return Filtered(sd, ignored=ignored)


@BACKBONES.register("internimage_xl")
def internimage_xl(
    *,
    img_size: int | tuple[int, int] | None = None,
    in_chans: int = 3,
    layer_decay_mode: str = "official",
    **arch_kw: Any,
) -> InternImage:
    """InternImage-XL as in MTP: four levels at strides 4-32 (``img_size`` unused: fully convolutional)."""
    del img_size
    return InternImage(in_chans=in_chans, layer_decay_mode=layer_decay_mode, **{**XL_ARCH, **arch_kw})
