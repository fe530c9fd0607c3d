"""Import the official MTP ViT+RVSA backbones from an extracted copy of github.com/ViTAE-Transformer/MTP.

Used by ``scripts/record_vit_known_answers.py`` and ``scripts/bench_backbones.py`` only; nothing in
the ``rsbench`` package imports it, and no official code is committed to rsbench.

``--official-root`` is a folder holding the official files under their repository paths, e.g.
made with::

    git --git-dir=<MTP mirror>/repo archive HEAD \
        RS_Tasks_Finetune/Scene_Classification/mmpretrain/models/backbones/vit_rvsa_mtp.py \
        RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones/vit_rvsa_mtp.py \
        RS_Tasks_Finetune/Horizontal_Detection/mmdet/models/backbones/vit_rvsa_mtp_branches.py \
        RS_Tasks_Finetune/Change_Detection/opencd/models/backbones/vit_rvsa_mtp.py \
        Multi-Task_Pretrain/backbone/vit_win_rvsa_v3_wsz7.py | tar -x -C /tmp/mtp_ref

The mm* registries (``mmseg.registry.MODELS`` and friends), ``mmengine.dist.get_dist_info`` and,
when it is not installed, ``einops.rearrange`` (only the one pattern the file uses) are stubbed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
from pathlib import Path

import torch

# variant -> (file under the official root, class name)
OFFICIAL_FILES: dict[str, tuple[str, str]] = {
    "cls": ("RS_Tasks_Finetune/Scene_Classification/mmpretrain/models/backbones/vit_rvsa_mtp.py", "RVSA_MTP"),
    "seg": ("RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones/vit_rvsa_mtp.py", "RVSA_MTP"),
    "det": ("RS_Tasks_Finetune/Horizontal_Detection/mmdet/models/backbones/vit_rvsa_mtp_branches.py", "RVSA_MTP_branches"),
    "cd": ("RS_Tasks_Finetune/Change_Detection/opencd/models/backbones/vit_rvsa_mtp.py", "RVSA_MTP"),
    "pretrain": ("Multi-Task_Pretrain/backbone/vit_win_rvsa_v3_wsz7.py", "ViT_Win_RVSA_V3_WSZ7"),
}

# variant -> the build_backbone arguments of rsbench's equivalent (rsbench/models/backbones/vit_rvsa.py)
RSBENCH_EQUIVALENT: dict[str, dict[str, object]] = {
    "cls": dict(features="maps"),
    "cd": dict(features="maps"),
    "seg": dict(features="pyramid"),
    "det": dict(features="pyramid", rel_pos=False),
}


class _Registry:
    def register_module(self, *a, **k):
        return lambda cls: cls


def _rearrange(t: torch.Tensor, pattern: str, **s: int) -> torch.Tensor:
    # the only pattern in vit_rvsa_mtp*.py
    if pattern.replace(" ", "") != "(bhhww)h(ws1ws2)d->b(hd)(hhws1)(wwws2)":
        raise NotImplementedError(f"einops stub: pattern {pattern!r}")
    b, hh, ww, h, ws1, ws2 = s["b"], s["hh"], s["ww"], s["h"], s["ws1"], s["ws2"]
    d = t.shape[-1]
    t = t.reshape(b, hh, ww, h, ws1, ws2, d).permute(0, 3, 6, 1, 4, 2, 5)
    return t.reshape(b, h * d, hh * ws1, ww * ws2)


def _install_stubs() -> None:
    for pkg in ("mmseg", "mmdet", "mmrotate", "opencd", "mmpretrain"):
        if pkg in sys.modules and not getattr(sys.modules[pkg], "_rsbench_stub", False):
            continue
        mod = types.ModuleType(pkg)
        mod._rsbench_stub = True  # type: ignore[attr-defined]
        reg = types.ModuleType(pkg + ".registry")
        reg.MODELS = _Registry()  # type: ignore[attr-defined]
        mod.registry = reg  # type: ignore[attr-defined]
        sys.modules[pkg] = mod
        sys.modules[pkg + ".registry"] = reg
    try:
        import mmengine.dist  # noqa: F401
    except ImportError:
        me = types.ModuleType("mmengine")
        dist = types.ModuleType("mmengine.dist")
        dist.get_dist_info = lambda: (0, 1)  # type: ignore[attr-defined]
        me.dist = dist  # type: ignore[attr-defined]
        sys.modules["mmengine"] = me
        sys.modules["mmengine.dist"] = dist
    try:
        import einops  # noqa: F401
    except ImportError:
        ein = types.ModuleType("einops")
        ein.rearrange = _rearrange  # type: ignore[attr-defined]
        ein.repeat = None  # type: ignore[attr-defined]
        sys.modules["einops"] = ein


_cache: dict[tuple[str, str], types.ModuleType] = {}


def official_file(root: str | Path, variant: str) -> Path:
    rel, _ = OFFICIAL_FILES[variant]
    return Path(root) / rel


def load_official_module(root: str | Path, variant: str) -> types.ModuleType:
    """The official module for ``variant`` (cls, seg, det, cd, pretrain), imported from ``root``."""
    path = official_file(root, variant)
    if not path.is_file():
        raise FileNotFoundError(f"official file {path} not found (see scripts/official_rvsa.py)")
    key = (str(path.resolve()), variant)
    if key in _cache:
        return _cache[key]
    _install_stubs()
    import warnings

    name = f"_mtp_official_{variant}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(mod)
    _cache[key] = mod
    return mod


def build_official(root: str | Path, variant: str, pretrained: str | None = None, **kw):
    """Build the official backbone class of ``variant`` with ``kw`` as its config dict would.

    With ``pretrained`` its own ``init_weights`` loads the file (the official loader); the
    pretraining class takes the path as an argument instead.
    """
    mod = load_official_module(root, variant)
    cls = getattr(mod, OFFICIAL_FILES[variant][1])
    with contextlib.redirect_stdout(io.StringIO()):
        if variant == "pretrain":
            model = cls(**kw)
        else:
            model = cls(pretrained=pretrained, **kw)
            model.init_weights()
    return model
