"""Necks: from a backbone's raw maps to the four-level pyramid (strides 4, 8, 16, 32) dense heads take.

:func:`as_pyramid` is what ``build_backbone(..., features="pyramid")`` applies:

* maps already at strides 4/8/16/32 (InternImage, timm conv nets): the backbone as it is;
* maps that share one stride (a ViT: ViT-RVSA, any timm ViT): the backbone followed by a
  :class:`SimpleFeaturePyramid`, joined by :class:`BackboneWithNeck`;
* anything else: a :class:`~rsbench.errors.ConfigError` naming the strides.

:class:`SimpleFeaturePyramid` is the ``fpn1..fpn4`` of the official MTP ViT copies that feed
dense heads (docs/protocols.md §3.1), in ViTDet's simple-pyramid form: each level rescales one
input map by transposed convs (up) or max pooling (down), keeping the channels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from rsbench.errors import ConfigError
from rsbench.models.checkpoint import Filtered, StateDict
from rsbench.models.layer_decay import default_no_weight_decay

PYRAMID_STRIDES = (4, 8, 16, 32)


class Norm2d(nn.Module):
    """LayerNorm (eps 1e-6) over the channels of a (B, C, H, W) map (official name: ``fpnX.1.ln``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def _rescale(channels: int, in_stride: int, out_stride: int) -> nn.Module:
    """stride ``in_stride`` → ``out_stride``: ConvT(2, 2) per factor 2 up (LN + GELU between), max pool down."""
    ratio = max(in_stride, out_stride) // min(in_stride, out_stride)
    if ratio * min(in_stride, out_stride) != max(in_stride, out_stride) or ratio & (ratio - 1):
        raise ConfigError(f"pyramid neck: stride {in_stride} → {out_stride} is not a power-of-2 rescale")
    if in_stride == out_stride:
        return nn.Identity()
    if in_stride < out_stride:
        return nn.MaxPool2d(kernel_size=ratio, stride=ratio)
    layers: list[nn.Module] = []
    for i in range(int(math.log2(ratio))):
        if i:
            layers += [Norm2d(channels), nn.GELU()]
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class SimpleFeaturePyramid(nn.Module):
    """Maps of one stride → one map per ``out_strides`` level, as the MTP ViT's ``fpn1..fpn4``.

    From stride 16 this is exactly the official module: ``fpn1`` = ConvT → LN → GELU → ConvT (×4),
    ``fpn2`` = ConvT (×2), ``fpn3`` = identity, ``fpn4`` = 2×2 max pool, with PyTorch's default
    initialisation (the official ``init_weights`` touches only Linear and LayerNorm layers).
    ``num_inputs``: one map per level (MTP: the ``out_indices`` blocks, shallowest to ``fpn1``) or a
    single map that feeds every level (ViTDet).
    """

    def __init__(self, channels: int, in_stride: int, *, num_inputs: int = 4,
                 out_strides: Sequence[int] = PYRAMID_STRIDES) -> None:
        super().__init__()
        out_strides = [int(s) for s in out_strides]
        if num_inputs not in (1, len(out_strides)):
            raise ConfigError(
                f"the fpn1..{len(out_strides)} pyramid neck takes 1 map or one per level ({len(out_strides)}); "
                f"the backbone gives {num_inputs} (choose its maps with out_indices)"
            )
        self.levels = [f"fpn{i}" for i in range(1, len(out_strides) + 1)]
        for name, s in zip(self.levels, out_strides):
            self.add_module(name, _rescale(int(channels), int(in_stride), s))
        self.num_inputs = num_inputs
        self.out_channels = [int(channels)] * len(out_strides)
        self.out_strides = out_strides

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(maps) != self.num_inputs:
            raise ValueError(f"pyramid neck built for {self.num_inputs} maps, got {len(maps)}")
        if self.num_inputs == 1:
            maps = list(maps) * len(self.out_strides)
        # by name, not children(): inside a BackboneWithNeck the neck's module dict also holds the body's
        return [getattr(self, name)(m) for name, m in zip(self.levels, maps)]


class BackboneWithNeck(nn.Module):
    """``neck(body(x))`` as one backbone whose parameters keep the body's and the neck's own names.

    The official MTP ViT copies hold their pyramid ops inside the backbone, so released files name
    them ``fpn1.*`` beside ``blocks.*``; so does this module's ``state_dict`` (no ``body.`` or
    ``neck.`` prefix), and the released files load as they are. To get there the three modules
    share one set of state: the ``_modules`` / ``_parameters`` / ``_buffers`` dicts of ``body`` and
    ``neck`` are replaced by one dict each holding both, which this module uses as its own. So
    ``.to()``, ``load_state_dict``, ``SyncBatchNorm`` conversion or ``deepcopy`` of this module act on
    what ``body`` and ``neck`` compute with. ``body`` and ``neck`` stay reachable as unregistered
    attributes (their forwards are called; ``train()``/``eval()`` set their flags too).

    Contract attributes: ``out_channels`` / ``out_strides`` of the neck; ``num_layer_ids`` of the
    body, ``layer_id`` gives the neck's parameters the last id (as the official layer-decay
    constructor gives the fpn ops) and asks the body for the rest; ``no_weight_decay_param`` and
    ``checkpoint_filter_fn`` are the body's where it has them.
    """

    def __init__(self, body: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        stores = ("_modules", "_parameters", "_buffers")
        self._neck_names = frozenset().union(*(getattr(neck, s) for s in stores))
        clash = self._neck_names & set().union(*(getattr(body, s) for s in stores))
        if clash:
            raise ConfigError(f"backbone and neck both have {sorted(clash)}")
        for store in stores:
            a, b = getattr(body, store), getattr(neck, store)
            merged = type(a)({**a, **b})
            for m in (self, body, neck):
                m.__dict__[store] = merged
        non_persistent = body._non_persistent_buffers_set | neck._non_persistent_buffers_set
        for m in (self, body, neck):
            m.__dict__["_non_persistent_buffers_set"] = non_persistent
        self.__dict__["body"], self.__dict__["neck"] = body, neck
        self.out_channels = list(neck.out_channels)
        self.out_strides = list(neck.out_strides)
        self.num_layer_ids = int(getattr(body, "num_layer_ids", 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.neck(self.body(x))

    def train(self, mode: bool = True) -> BackboneWithNeck:
        super().train(mode)  # the shared children
        self.body.training = self.neck.training = mode
        return self

    def layer_id(self, name: str) -> int:
        if name.split(".", 1)[0] in self._neck_names or not hasattr(self.body, "layer_id"):
            return self.num_layer_ids - 1
        return int(self.body.layer_id(name))

    def no_weight_decay_param(self, name: str, param: nn.Parameter) -> bool:
        rule = getattr(self.body, "no_weight_decay_param", default_no_weight_decay)
        return bool(rule(name, param))

    def checkpoint_filter_fn(self, state_dict: StateDict, model: nn.Module) -> Filtered:
        """The body's checkpoint rules, applied to the whole module (the neck's keys have no prefix).

        A file with none of the neck's tensors (a timm ViT's, say) leaves the neck at its
        initialisation: its keys are reported as missing, not an error. A file with part of them
        is loaded as any other (what it lacks is an error unless allowed).
        """
        rule = getattr(self.body, "checkpoint_filter_fn", None)
        out = rule(state_dict, model) if rule is not None else state_dict
        f = out if isinstance(out, Filtered) else Filtered(dict(out))
        neck_keys = [k for k in model.state_dict() if k.split(".", 1)[0] in self._neck_names]
        if not any(k in f.state_dict for k in neck_keys):
            f.absent_ok = (*f.absent_ok, *neck_keys)
            f.left_random = [*f.left_random, *neck_keys]
        return f


def as_pyramid(body: nn.Module) -> nn.Module:
    """``body`` if its maps are at strides 4/8/16/32; with a :class:`SimpleFeaturePyramid` if they share one stride."""
    strides, channels = list(body.out_strides), list(body.out_channels)
    if strides == list(PYRAMID_STRIDES):
        return body
    if len(set(strides)) == 1 and len(set(channels)) == 1:
        return BackboneWithNeck(body, SimpleFeaturePyramid(channels[0], strides[0], num_inputs=len(strides)))
    raise ConfigError(
        f"features='pyramid' needs maps at strides {list(PYRAMID_STRIDES)}, or maps of one stride and width for "
        f"the fpn neck; this backbone gives strides {strides} with channels {channels} "
        "(choose other maps with backbone.kwargs.out_indices=[...])"
    )
