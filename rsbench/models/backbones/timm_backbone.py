"""Any timm model as an rsbench backbone (the baselines: ``resnet50``, ``vit_base_patch16_224``...).

The model is built whole (not ``features_only``) and its maps come from timm's
``forward_intermediates``, so timm's own ``group_matcher`` still names the layers for layer-wise
LR decay. Pretrained weights are never downloaded: ``pretrained`` is a local file (timm or
torchvision layout) or ``None`` for random init.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from timm.models import group_parameters

from rsbench.errors import ConfigError, WeightsError
from rsbench.models.registry import BACKBONES


class TimmBackbone(nn.Module):
    """Wraps a timm model; forward gives the maps at ``out_indices`` (default: the last 4).

    ``variant`` (the task's wish for a pyramid or raw maps) is accepted and ignored: timm
    convnets give a 4–32 pyramid and timm ViTs their stride-16 maps either way.
    """

    def __init__(
        self,
        model_name: str,
        *,
        img_size: int | tuple[int, int],
        in_chans: int = 3,
        pretrained: str | None = None,
        out_indices: list[int] | None = None,
        drop_path_rate: float = 0.0,
        allow_missing: bool = False,
        weights_dir: str | None = None,
        variant: str | None = None,
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
        model_kw.update(kw)
        self.model = timm.create_model(model_name, pretrained=False, **model_kw)
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
        if pretrained:
            from rsbench.models.weights import resolve_weights

            path = resolve_weights(model_name, pretrained, weights_dir)
            load_timm_weights(self.model, path, allow_missing=allow_missing)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model.forward_intermediates(x, indices=self.out_indices, intermediates_only=True)
        return list(feats)

    def layer_id(self, name: str) -> int:
        """timm's fine-grained groups; the stem is 0, the last group ``num_layer_ids - 2``."""
        return self._layer_map.get(name.removeprefix("model."), self.num_layer_ids - 1)


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


def load_timm_weights(model: nn.Module, path: str | Path, *, allow_missing: bool = False) -> None:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"pretrained weights {path} not found. rsbench never downloads weights: get the "
            "file from the model's publisher (e.g. the timm model card on huggingface.co) and "
            "pass its local path as backbone.pretrained=..."
        )
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — re-raised with the file named
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            raise WeightsError(f"cannot read checkpoint {path}: {e}") from e
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    head = ("fc.", "head.", "classifier.", "head.fc.")
    sd = {k: v for k, v in sd.items() if not k.startswith(head)}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith(head)]
    if missing and not allow_missing:
        raise WeightsError(
            f"{path}: {len(missing)} backbone parameters missing from the checkpoint, e.g. {missing[:5]}"
        )


@BACKBONES.register("resnet50")
def resnet50(**kw: Any) -> TimmBackbone:
    return TimmBackbone("resnet50", **kw)


@BACKBONES.register("resnet18")
def resnet18(**kw: Any) -> TimmBackbone:
    return TimmBackbone("resnet18", **kw)


def build_timm_backbone(name: str, **kw: Any) -> TimmBackbone:
    return TimmBackbone(name, **kw)
