"""Any timm model as an rsbench backbone (the baselines: ``resnet50``, ``convnext_tiny``, ``vit_base_patch16_224``...).

``build_backbone(<timm name>, ...)`` builds :class:`TimmBackbone` for every name that is not an
rsbench backbone. The model is built whole (not ``features_only``) and its maps come from timm's
``forward_intermediates``, so timm's own ``group_matcher`` still names the layers for layer-wise
LR decay. By default the maps are the last four entries of the model's ``feature_info``: the
stages at strides 4, 8, 16, 32 of a conv net (a pyramid as it is), four blocks at stride 16 of a
ViT (which ``features="pyramid"`` passes through the fpn neck). Pretrained weights are never
downloaded: ``pretrained`` is a local file (timm or torchvision layout) or ``None``.
"""

from __future__ import annotations

import sys
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.models import group_parameters

from rsbench.errors import ConfigError
from rsbench.models.checkpoint import Filtered, StateDict, strip_prefix
from rsbench.models.registry import BACKBONES


class TimmBackbone(nn.Module):
    """Wraps timm model ``model_name``; forward gives the maps at ``out_indices`` (default: the last 4)."""

    def __init__(
        self,
        model_name: str,
        *,
        img_size: int | tuple[int, int],
        in_chans: int = 3,
        out_indices: list[int] | None = None,
        drop_path_rate: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__()
        if model_name not in timm.list_models():
            raise ConfigError(
                f"unknown backbone {model_name!r}: neither an rsbench backbone nor a timm model "
                f"(rsbench backbones: {', '.join(BACKBONES.names())}; timm names: timm.list_models())"
            )
        model_kw: dict[str, Any] = dict(in_chans=in_chans, num_classes=0, drop_path_rate=drop_path_rate)
        if _takes_img_size(model_name):
            model_kw["img_size"] = img_size
        self.model = timm.create_model(model_name, pretrained=False, **{**model_kw, **kw})
        if not hasattr(self.model, "forward_intermediates"):
            raise ConfigError(f"timm model {model_name!r} has no forward_intermediates; pick another")
        n_stages = len(self.model.feature_info)
        self.out_indices = list(out_indices) if out_indices is not None else list(range(max(0, n_stages - 4), n_stages))
        info = [self.model.feature_info[i] for i in self.out_indices]
        self.out_channels = [int(f["num_chs"]) for f in info]
        self.out_strides = [int(f["reduction"]) for f in info]
        self.model_name = model_name
        self._layer_map = _layer_map(self.model)
        self.num_layer_ids = max(self._layer_map.values(), default=0) + 2

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)
        return list(feats)

    def layer_id(self, name: str) -> int:
        """timm's fine-grained groups; the stem is 0, the last group ``num_layer_ids - 2``."""
        return self._layer_map.get(name.removeprefix("model."), self.num_layer_ids - 1)

    def checkpoint_filter_fn(self, state_dict: StateDict, model: nn.Module) -> Filtered:
        """A file of the timm model (timm or torchvision layout, or rsbench's ``model.*``), loaded as timm would.

        The model's own timm filter runs first where its module has one (e.g. a ViT's ``pos_embed``
        resized to this ``img_size``), then the classifier (``pretrained_cfg['classifier']``: ``fc``,
        ``head``...) is set aside as ignored, and the names go under ``model.``.
        """
        sd = {strip_prefix(k, "model."): v for k, v in state_dict.items()}
        timm_filter = getattr(sys.modules.get(type(self.model).__module__), "checkpoint_filter_fn", None)
        if timm_filter is not None:
            sd = dict(timm_filter(sd, self.model))
        own = self.model.state_dict()
        heads = self.model.pretrained_cfg.get("classifier") or ()
        heads = tuple(f"{h}." for h in ([heads] if isinstance(heads, str) else heads))
        ignored = [k for k in sd if k.startswith(heads) and k not in own]
        return Filtered({f"model.{k}": v for k, v in sd.items() if k not in ignored}, ignored=ignored)


def _takes_img_size(model_name: str) -> bool:
    return any(k in model_name for k in ("vit", "deit", "beit", "eva", "swin", "mae"))


def _layer_map(model: nn.Module) -> dict[str, int]:
    if not hasattr(model, "group_matcher"):
        return {}
    groups = group_parameters(model, model.group_matcher(coarse=False), reverse=False)
    out: dict[str, int] = {}
    for gid, names in groups.items():
        for n in names:
            out[n] = int(gid)
    return out
