"""Reading released checkpoints and loading them into backbones, with a report of what matched.

Formats handled by :func:`read_state_dict`: a dict with ``state_dict`` or ``model`` (the MTP
release saves ``{'epoch', 'iteration', 'state_dict', 'optimizer', ...}``), or a raw state dict;
``module.`` prefixes (DDP) are stripped. Architecture-specific rules (prefix selection,
position-embedding interpolation) live with each backbone and call these helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from rsbench.errors import WeightsError


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    # checkpoint keys the backbone knows and deliberately does not use (e.g. the final ``norm`` of
    # an MTP encoder, which no finetuning variant applies); neither loaded nor unexpected
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors, resized {len(self.resized)}, "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, ignored {len(self.ignored)}"
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, whatever wrapper it was saved in."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        ckpt: Any = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 — re-raised naming the file
        raise WeightsError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from e
    if isinstance(ckpt, Mapping):
        for key in ("state_dict", "model"):
            if key in ckpt and isinstance(ckpt[key], Mapping):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise WeightsError(f"{path} holds no state dict (expected a dict of tensors, or one under 'state_dict'/'model')")
    return {strip_prefix(k, "module."): v for k, v in ckpt.items()}


def strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    path: str,
    allow_missing: bool = False,
    ignore_missing: tuple[str, ...] = (),
) -> LoadReport:
    """``load_state_dict(strict=False)`` that raises on missing keys unless allowed.

    Shape mismatches are reported as an error naming the key and both shapes rather than
    torch's long RuntimeError. ``ignore_missing`` lists key substrings that may be absent
    (buffers that the model recomputes, for instance).
    """
    own = model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if bad:
        raise WeightsError(f"{path}: {len(bad)} tensors do not fit the model: " + "; ".join(bad[:8]))
    result = model.load_state_dict(dict(state_dict), strict=False)
    missing = [k for k in result.missing_keys if not any(s in k for s in ignore_missing)]
    report = LoadReport(
        path=str(path),
        loaded=[k for k in state_dict if k in own],
        missing=missing,
        unexpected=list(result.unexpected_keys),
    )
    if missing and not allow_missing:
        raise WeightsError(
            f"{path}: {len(missing)} backbone parameters are not in the checkpoint, e.g. "
            f"{missing[:6]}. Is it the right file for this backbone? (allow with "
            "backbone.allow_missing=true)"
        )
    return report


def select_encoder_keys(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Whole MTP model → its ``encoder.*``; finetuned mm model → its ``backbone.*``; else as is.

    Returns the backbone's tensors (prefix removed) and the names of the others (decoders, heads).
    """
    sd = {strip_prefix(k, "module."): v for k, v in sd.items()}
    for prefix in ("encoder.", "backbone."):
        if any(k.startswith(prefix) for k in sd):
            kept = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            return kept, [k for k in sd if not k.startswith(prefix)]
    return dict(sd), []


def resize_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """(L_old, d) → (length, d): the official bicubic resize of a (1, 1, L, d) image."""
    if table.shape[0] == length:
        return table
    old = table.float().reshape(1, 1, table.shape[0], table.shape[1])
    new = F.interpolate(old, size=(length, table.shape[1]), mode="bicubic", align_corners=False)
    return new.reshape(length, table.shape[1]).to(table.dtype)


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_extra_tokens: int = 0) -> torch.Tensor:
    """Drop ``num_extra_tokens`` leading tokens and resize the square grid bicubically to ``grid``."""
    pos = pos_embed[:, num_extra_tokens:]
    n = pos.shape[1]
    side = int(math.isqrt(n))
    if side * side != n:
        raise WeightsError(f"pos_embed with {n} grid tokens is not a square grid")
    if (side, side) == tuple(grid):
        return pos
    return resample_abs_pos_embed(
        pos, new_size=list(grid), old_size=[side, side], num_prefix_tokens=0, interpolation="bicubic", antialias=False
    )
