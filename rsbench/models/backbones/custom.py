"""Your own encoder as an rsbench backbone: ``backbone=custom backbone.target=my_pkg.MyEncoder``.

``backbone.target`` is the import path of an ``nn.Module`` class, or of a function returning one
(``pkg.module.Name``, or ``pkg.module:Name``); the module must be importable by the run: installed,
on ``PYTHONPATH``, or in the folder ``python -m rsbench`` starts in. rsbench calls it with
``backbone.kwargs`` (without ``target``, which conf/backbone/custom.yaml puts there) and adds
``img_size`` and ``in_chans`` where its signature takes them (by name, or through ``**kwargs``).

The contract the result must meet (checked when it is built; a run checks it before any data is read,
:func:`check_custom_backbone`, and stops with exit 2 naming what is missing):

* ``out_channels`` and ``out_strides``: sequences of positive integers, one entry per map;
* ``forward(x)`` with ``x`` of shape ``(B, in_chans, H, W)`` (``H = W = img_size``) returns a list or
  tuple of ``len(out_channels)`` tensors ``(B, out_channels[i], H_i, W_i)`` with ``H_i = H / out_strides[i]``
  (rounded down or up), checked on one dummy input in eval mode;
* tasks that take a pyramid (``seg``, ``det``, ``rotdet``) need maps at strides 4, 8, 16, 32, or maps of
  one stride and one width, which get the fpn neck of :mod:`rsbench.models.necks` (as a plain ViT);
* optional: ``num_layer_ids`` and ``layer_id(param_name) -> int`` (0 = embeddings … ``num_layer_ids - 1``
  = top) for layer-wise LR decay — without them every encoder parameter trains at the base rate;
  ``no_weight_decay_param(name, param)``; ``checkpoint_filter_fn(state_dict, encoder)`` for a file in
  another layout.

``backbone.pretrained=<file>`` loads the encoder's weights: a state dict (raw, or under
``state_dict``/``model``) named as the encoder names its parameters, or under an ``encoder.``,
``backbone.`` or ``model.`` prefix (a whole model's file; its other tensors are set aside as ignored).
The encoder is held as :class:`CustomBackbone`'s ``encoder``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import operator
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn

from rsbench.errors import ConfigError, WeightsError
from rsbench.models.checkpoint import Filtered, StateDict, strip_prefix
from rsbench.models.layer_decay import default_no_weight_decay
from rsbench.models.registry import BACKBONES

#: how a run names this backbone; any other name with a ``target`` is a custom encoder too
NAME = "custom"
#: where a weights file may hold the encoder, tried in this order (the best match wins)
PREFIXES = ("", "encoder.", "backbone.", "backbone.encoder.", "model.", "model.encoder.")
#: the contract checks already passed in this process: (target, kwargs, img_size, in_chans)
_CHECKED: set[str] = set()


class CustomBackbone(nn.Module):
    """A user's encoder with rsbench's contract attributes; its parameters are ``encoder.*``."""

    def __init__(self, encoder: nn.Module, target: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.target = target
        self.out_channels = [int(c) for c in encoder.out_channels]
        self.out_strides = [int(s) for s in encoder.out_strides]
        self.num_layer_ids = int(getattr(encoder, "num_layer_ids", 1)) if hasattr(encoder, "layer_id") else 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.encoder(x))

    def layer_id(self, name: str) -> int:
        """The encoder's own ``layer_id`` where it has one; else 0 of 1 id (one uniform rate)."""
        if not hasattr(self.encoder, "layer_id"):
            return 0
        return int(self.encoder.layer_id(strip_prefix(name, "encoder.")))

    def no_weight_decay_param(self, name: str, param: nn.Parameter) -> bool:
        rule = getattr(self.encoder, "no_weight_decay_param", default_no_weight_decay)
        return bool(rule(strip_prefix(name, "encoder."), param))

    def checkpoint_filter_fn(self, state_dict: StateDict, model: nn.Module) -> Filtered:
        """The encoder's tensors of a file (module docstring), named as this module names them (``encoder.*``)."""
        own_filter = getattr(self.encoder, "checkpoint_filter_fn", None)
        if own_filter is not None:
            out = own_filter(state_dict, self.encoder)
            f = out if isinstance(out, Filtered) else Filtered(dict(out))
            return Filtered({f"encoder.{k}": v for k, v in f.state_dict.items()}, ignored=list(f.ignored),
                            resized=list(f.resized), absent_ok=tuple(f"encoder.{k}" for k in f.absent_ok),
                            left_random=[f"encoder.{k}" for k in f.left_random])
        own = set(self.encoder.state_dict())
        prefix = max(PREFIXES, key=lambda p: sum(k.startswith(p) and k[len(p):] in own for k in state_dict))
        if not prefix:  # the encoder's own file: what does not fit is reported as unexpected
            return Filtered({f"encoder.{k}": v for k, v in state_dict.items()})
        kept = {f"encoder.{k[len(prefix):]}": v for k, v in state_dict.items() if k.startswith(prefix)}
        return Filtered(kept, ignored=[k for k in state_dict if not k.startswith(prefix)])


@BACKBONES.register(NAME)
def custom(*, img_size: int | tuple[int, int], in_chans: int = 3, target: str | None = None,
           **kwargs: Any) -> CustomBackbone:
    """``target(**kwargs)`` (plus ``img_size``/``in_chans`` where it takes them), its contract checked."""
    if not target:
        raise ConfigError("backbone=custom needs the encoder's import path: backbone.target=<package.module.Class> "
                          "(an nn.Module class, or a function returning one)")
    encoder = build_encoder(target, img_size=img_size, in_chans=in_chans, kwargs=kwargs)
    key = repr((target, sorted(kwargs.items()), img_size, in_chans))
    check_contract(encoder, target, img_size=img_size, in_chans=in_chans, forward=key not in _CHECKED)
    _CHECKED.add(key)
    return CustomBackbone(encoder, target)


def import_target(target: str) -> Callable[..., Any]:
    """The object at ``pkg.module.Name`` (the longest importable module, then attributes) or ``pkg.module:Name``."""
    where = f"backbone.target={target!r}"
    if ":" in target:
        mod_name, _, attrs = target.partition(":")
        candidates = [(mod_name, attrs.split("."))]
    else:
        parts = target.split(".")
        candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)]
    if not target or not candidates or any(not p for m, a in candidates for p in [*m.split("."), *a]):
        raise ConfigError(f"{where}: not an import path; expected package.module.Name (a class or a function), "
                          "e.g. backbone.target=my_pkg.encoders.MyEncoder")
    first_error: BaseException | None = None
    for mod_name, attrs in candidates:
        try:
            obj: Any = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name and not (mod_name == e.name or mod_name.startswith(e.name + ".")):
                raise ConfigError(f"{where}: importing {mod_name} failed: {type(e).__name__}: {e} "
                                  "(a module it imports is missing)") from e
            first_error = first_error or e
            continue
        except Exception as e:  # noqa: BLE001 — the user's module raised while it was imported
            raise ConfigError(f"{where}: importing {mod_name} failed: {type(e).__name__}: {e}") from e
        for i, attr in enumerate(attrs):
            if not hasattr(obj, attr):
                have = sorted(n for n in dir(obj) if not n.startswith("_"))[:20]
                raise ConfigError(f"{where}: {'.'.join([mod_name, *attrs[:i]])} has no attribute {attr!r} "
                                  f"(it has: {', '.join(have) or 'nothing public'})")
            obj = getattr(obj, attr)
        if not callable(obj):
            raise ConfigError(f"{where}: {target} is a {type(obj).__name__}, not a class or a function")
        return obj
    raise ConfigError(f"{where}: cannot import module {candidates[-1][0]!r} ({first_error}); install the package that "
                      "defines it, put its folder on PYTHONPATH, or start the run in the folder that holds it")


def build_encoder(target: str, *, img_size: int | tuple[int, int], in_chans: int,
                  kwargs: Mapping[str, Any]) -> nn.Module:
    """``target(**kwargs)``, with ``img_size`` and ``in_chans`` added where its signature takes them."""
    fn = import_target(target)
    kw = dict(kwargs)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value in (("img_size", img_size), ("in_chans", in_chans)):
        if name not in kw and (name in params or takes_any):
            kw[name] = value
    try:
        module = fn(**kw)
    except Exception as e:  # noqa: BLE001 — the user's constructor: re-raised naming the call
        args = ", ".join(f"{k}={v!r}" for k, v in kw.items())
        raise ConfigError(f"backbone.target={target!r}: {target}({args}) failed: {type(e).__name__}: {e} "
                          "(its arguments come from backbone.kwargs: +backbone.kwargs.<name>=<value>)") from e
    if not isinstance(module, nn.Module):
        raise ConfigError(f"backbone.target={target!r}: {target}(...) returned a {type(module).__name__}, "
                          "not a torch.nn.Module")
    return module


def _ints(v: Any) -> list[int] | None:
    """``v`` as a non-empty list of positive integers, or None."""
    if isinstance(v, (str, bytes)) or not isinstance(v, (Sequence, torch.Size)):
        return None
    try:
        out = [operator.index(x) for x in v]
    except TypeError:
        return None
    return out if out and all(x > 0 and not isinstance(x, bool) for x in out) else None


def check_contract(encoder: nn.Module, target: str, *, img_size: int | tuple[int, int], in_chans: int,
                   forward: bool = True) -> None:
    """Raise a :class:`ConfigError` naming what ``encoder`` lacks (module docstring); ``forward``: run the dummy input."""
    where = f"backbone.target={target!r} ({type(encoder).__name__})"
    missing = [a for a in ("out_channels", "out_strides") if not hasattr(encoder, a)]
    if missing:
        raise ConfigError(f"{where} has no {' and no '.join(missing)}: an rsbench backbone exposes out_channels "
                          "(the channels of each map forward returns) and out_strides (their strides), "
                          "e.g. self.out_channels = [64, 128, 256, 512]; self.out_strides = [4, 8, 16, 32]")
    chans, strides = _ints(encoder.out_channels), _ints(encoder.out_strides)
    for attr, got in (("out_channels", chans), ("out_strides", strides)):
        if got is None:
            raise ConfigError(f"{where}: {attr} = {getattr(encoder, attr)!r}, expected a list of positive integers "
                              "(one per map forward returns)")
    if len(chans) != len(strides):
        raise ConfigError(f"{where}: out_channels {chans} and out_strides {strides} differ in length "
                          "(one entry each per map)")
    if not forward:
        return
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    x = torch.randn(1, in_chans, h, w, generator=torch.Generator().manual_seed(0))
    param = next(iter(encoder.parameters()), None)
    if param is not None:
        x = x.to(param.device)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out = encoder(x)
    except Exception as e:  # noqa: BLE001 — the user's forward: re-raised naming the input
        raise ConfigError(f"{where}: forward failed on a dummy input of shape {tuple(x.shape)} "
                          f"(1 × in_chans × img_size²): {type(e).__name__}: {e}") from e
    finally:
        encoder.train(was_training)
    if isinstance(out, torch.Tensor) or not isinstance(out, (list, tuple)):
        raise ConfigError(f"{where}: forward returned a {type(out).__name__}; expected a list (or tuple) of "
                          f"{len(chans)} feature maps (B, C, H, W), one per out_channels entry")
    if len(out) != len(chans):
        raise ConfigError(f"{where}: forward returned {len(out)} maps, but out_channels {chans} / out_strides "
                          f"{strides} describe {len(chans)}")
    bad = []
    for i, (f, c, s) in enumerate(zip(out, chans, strides)):
        sizes = ({h // s, math.ceil(h / s)}, {w // s, math.ceil(w / s)})
        if not isinstance(f, torch.Tensor) or f.ndim != 4:
            bad.append(f"map {i} is {type(f).__name__}{tuple(f.shape) if isinstance(f, torch.Tensor) else ''}, "
                       "not a (B, C, H, W) tensor")
        elif f.shape[0] != 1 or f.shape[1] != c or f.shape[2] not in sizes[0] or f.shape[3] not in sizes[1]:
            bad.append(f"map {i} is {tuple(f.shape)}, expected (1, {c}, {h / s:g}, {w / s:g}) "
                       f"(out_channels[{i}] = {c}, out_strides[{i}] = {s})")
    if bad:
        raise ConfigError(f"{where}: on a dummy input {tuple(x.shape)} " + "; ".join(bad))


def check_custom_backbone(cfg: Any) -> None:
    """A run's check of ``backbone=custom`` (the resolved run config), before any data is read: the target
    imports, the encoder meets the contract for this task's input and features, the weights file is there
    and fits. Builds the encoder once (random init, then the weights), so its errors come before training."""
    from rsbench.models.registry import build_backbone
    from rsbench.models.weights import resolve_weights

    bb, mod = cfg.backbone, cfg.task.module
    target, name = bb.get("target"), str(bb.name)
    if not target:
        raise ConfigError("backbone=custom needs the encoder's import path: backbone.target=<package.module.Class> "
                          "(an nn.Module class, or a function returning one)")
    if name != NAME:
        import timm

        if name in BACKBONES or name in timm.list_models():
            raise ConfigError(f"backbone.name={name!r} (from backbone.target={target!r}) is the name of a built-in "
                              "backbone, whose leaderboard rows yours would join: name yours with backbone.name=<name>")
    kwargs = {**dict(mod.backbone.get("kwargs") or {}), **dict(mod.backbone.get("task_kwargs") or {})}
    if kwargs.get("target") != target:
        raise ConfigError(f"backbone.kwargs.target is {kwargs.get('target')!r}, not backbone.target={target!r}: "
                          "keep it (conf/backbone/custom.yaml sets it) and add your arguments one by one with "
                          "+backbone.kwargs.<name>=<value>")
    try:
        weights = resolve_weights(name, bb.get("pretrained"), bb.get("weights_dir"))
    except WeightsError as e:
        raise WeightsError(f"backbone.pretrained={bb.get('pretrained')!r}, the weights of backbone.target={target!r}: "
                           f"no such file ({str(e).split('(', 1)[-1].split(')', 1)[0]}); give a checkpoint file of the "
                           "encoder (its state dict), or backbone.pretrained=none to train it from scratch") from e
    try:
        build_backbone(name, img_size=mod.img_size, in_chans=int(mod.in_chans), pretrained=weights,
                       features=mod.backbone.get("features") or "maps", allow_missing=bool(bb.get("allow_missing")),
                       **kwargs)
    except ConfigError as e:  # e.g. the pyramid neck's strides: say which task asked
        if "backbone.target" in str(e):
            raise
        raise ConfigError(f"task={cfg.task.name} with backbone.target={target!r}: {e}") from e
