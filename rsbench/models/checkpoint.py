"""One checkpoint loader for every backbone, in timm's ``load_checkpoint(model, path, filter_fn=...)`` shape.

:func:`load_checkpoint` does the same four steps for every architecture:

1. :func:`read_state_dict`: the tensors of the file, whatever wrapper they were saved in (a dict
   with ``state_dict`` or ``model`` — the MTP release saves ``{'epoch', 'iteration', 'state_dict',
   'optimizer', ...}`` — or a raw state dict; ``.safetensors`` too); ``module.`` prefixes (DDP)
   stripped.
2. ``filter_fn(state_dict, model)``: the architecture's own rules — which prefix holds the encoder,
   which keys it knows and leaves unused, which tensors to resize. Each backbone class provides its
   filter as the method ``checkpoint_filter_fn``; ``model`` is the module being loaded (the backbone,
   or the backbone with its neck). A filter returns the state dict to load (a plain dict, as timm's
   filter functions do) or a :class:`Filtered` when it has more to report.
3. :func:`load_state_dict_checked`: a tensor of the wrong shape is an error naming it; a missing
   backbone parameter is an error unless ``allow_missing``.
4. The outcome, a :class:`LoadReport` (loaded / missing / unexpected / resized / ignored keys).

The helpers the filters share (encoder-prefix selection, pos-embed and rel-pos resizing) live here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from rsbench.errors import WeightsError

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


@dataclass
class LoadReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    # checkpoint keys the backbone knows and deliberately does not use (e.g. the final ``norm`` of
    # an MTP encoder, which no finetuning model applies); neither loaded nor unexpected
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.path}: loaded {len(self.loaded)} tensors, resized {len(self.resized)}, "
            f"missing {len(self.missing)}, unexpected {len(self.unexpected)}, ignored {len(self.ignored)}"
        )


@dataclass
class Filtered:
    """What a filter function hands to the loader besides the tensors."""

    state_dict: StateDict
    #: checkpoint keys set aside on purpose (reported as ignored, not as unexpected)
    ignored: list[str] = field(default_factory=list)
    #: keys whose tensors were resized to the model
    resized: list[str] = field(default_factory=list)
    #: substrings of model keys that may be absent from the file and are not reported (recomputed buffers)
    absent_ok: tuple[str, ...] = ()
    #: model keys left at their initialisation on purpose: reported as missing, never an error
    left_random: list[str] = field(default_factory=list)


FilterFn = Callable[[StateDict, nn.Module], Union[Mapping[str, torch.Tensor], Filtered]]


def load_checkpoint(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    *,
    filter_fn: FilterFn | None = None,
    allow_missing: bool = False,
) -> LoadReport:
    """Read ``source`` (a file or an in-memory checkpoint), filter it for ``model`` and load it (module docstring)."""
    path = "<state dict>" if isinstance(source, Mapping) else str(source)
    sd = read_state_dict(source)
    out = filter_fn(sd, model) if filter_fn is not None else sd
    f = out if isinstance(out, Filtered) else Filtered(dict(out))
    report = load_state_dict_checked(model, f.state_dict, path=path, allow_missing=allow_missing,
                                     ignore_missing=f.absent_ok)
    report.resized, report.ignored = list(f.resized), list(f.ignored)
    report.missing += f.left_random  # reported (left at their init on purpose), not an error
    if report.unexpected:
        log.warning("%s: %d unexpected keys, e.g. %s", path, len(report.unexpected), report.unexpected[:5])
    if report.missing:
        log.warning("%s: %d backbone parameters not loaded (allowed), e.g. %s", path, len(report.missing),
                    report.missing[:5])
    return report


def read_state_dict(source: str | Path | Mapping[str, Any]) -> StateDict:
    """The tensors of a checkpoint file (or of an already loaded checkpoint), whatever wrapper it was saved in."""
    if isinstance(source, Mapping):
        name, ckpt = "<state dict>", source
    else:
        name, ckpt = str(source), _read_file(Path(source))
    if isinstance(ckpt, Mapping):
        for key in ("state_dict", "model"):
            if key in ckpt and isinstance(ckpt[key], Mapping):
                ckpt = ckpt[key]
                break
    if not isinstance(ckpt, Mapping) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise WeightsError(
            f"{name} holds no state dict (expected a dict of tensors, or one under 'state_dict'/'model')"
        )
    return {strip_prefix(k, "module."): v for k, v in ckpt.items()}


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 — re-raised naming the file and what is wrong with it
        raise WeightsError(f"cannot read checkpoint {path}: {describe_unreadable(path, e)}") from e


#: the first bytes of the formats ``torch.load`` reads: a zip archive (torch ≥ 1.6) or a pickle (older torch)
_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


def describe_unreadable(path: Path, e: BaseException) -> str:
    """What is wrong with a checkpoint file ``torch.load`` (or safetensors) refused, in words: empty,
    truncated / corrupt, or not a checkpoint at all; the loader's own message follows in brackets."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"the file cannot be opened ({err})"
    detail = " ".join(f"{type(e).__name__}: {e}".split()).split(". ")[0]  # its first sentence
    if len(detail) > 200:
        detail = detail[:200] + "…"
    if size == 0:
        what = "the file is empty (0 bytes)"
    elif path.suffix == ".safetensors":
        what = f"not a complete safetensors file ({size:,} bytes; truncated or corrupt)"
    elif head.startswith(_ZIP_MAGIC):
        what = f"the file is truncated or corrupt ({size:,} bytes: a PyTorch zip archive that does not read to its end)"
    elif head.startswith(_PICKLE_MAGIC):
        what = f"the file is truncated or corrupt ({size:,} bytes: a legacy PyTorch pickle that does not read)"
    else:
        what = (f"not a PyTorch checkpoint at all (its first bytes {head[:8]!r} are neither a PyTorch zip archive nor "
                "a pickle; expected a file written by torch.save, or a .safetensors file)")
    return f"{what} [{detail}]"


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
        raise WeightsError(f"{path}: {len(bad)} tensors do not fit the model (size mismatch: a checkpoint of another "
                           f"architecture or width?): " + "; ".join(bad[:8]))
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


def select_encoder_keys(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, list[str]]:
    """Whole MTP model → its ``encoder.*``; finetuned mm model → its ``backbone.*``; else as is.

    Returns the backbone's tensors (prefix removed) and the names of the others (decoders, heads).
    """
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
