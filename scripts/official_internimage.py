"""Import the official (MTP / InternImage) DCNv3 and InternImage code from a local copy, for
comparisons only: ``scripts/bench_dcnv3.py`` and ``scripts/record_internimage_known_answers.py``.

``root`` is the folder that holds the official ``intern_image.py`` and ``ops_dcnv3/``, e.g. the
``RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones`` folder of a checkout of
github.com/ViTAE-Transformer/MTP (any task's copy: they are identical apart from the registry).
Nothing of it is part of rsbench. The compiled ``DCNv3`` extension and the mm* registries are
replaced by stubs, so only the pure-PyTorch path (``dcnv3_core_pytorch``, ``DCNv3_pytorch``)
works.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import subprocess
import sys
import types
from pathlib import Path

_STUB_ROOTS = ("mmseg", "mmdet", "mmpretrain", "mmrotate", "mmcv", "mmengine", "opencd", "DCNv3")
PKG = "_mtp_official_backbones"


class _AnyRegistry:
    """Stands for any registry object: ``@MODELS.register_module()`` returns the class unchanged."""

    def register_module(self, *a, **k):
        if a and isinstance(a[0], type):
            return a[0]
        return lambda cls: cls

    def __call__(self, *a, **k):
        return self

    def __getattr__(self, name):
        return _AnyRegistry()


class _StubModule(types.ModuleType):
    _rsbench_stub = True  # scripts/official_rvsa.py may replace it with its own stub

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "get_dist_info":
            return lambda: (0, 1)
        return _AnyRegistry()


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in _STUB_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


class _FakeDist:
    version = "1.1"


def load_official(root: str | Path) -> types.SimpleNamespace:
    """The official module objects: ``dcnv3_core_pytorch``, ``DCNv3_pytorch``, ``InternImage``."""
    root = Path(root).expanduser().resolve()
    for need in ("intern_image.py", "ops_dcnv3/functions/dcnv3_func.py", "ops_dcnv3/modules/dcnv3.py"):
        if not (root / need).is_file():
            raise SystemExit(
                f"--official-root {root}: {need} not found. Point it at the folder holding the "
                "official intern_image.py and ops_dcnv3/ (e.g. MTP's "
                "RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones)."
            )
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)  # only while the official files are imported
    # dcnv3_func.py asks pkg_resources for the version of the compiled DCNv3 package.
    pkg_resources = types.ModuleType("pkg_resources")
    pkg_resources.get_distribution = lambda name: _FakeDist()  # type: ignore[attr-defined]
    saved = sys.modules.get("pkg_resources")
    sys.modules["pkg_resources"] = pkg_resources
    try:
        pkg = types.ModuleType(PKG)
        pkg.__path__ = [str(root)]
        sys.modules[PKG] = pkg
        func = importlib.import_module(f"{PKG}.ops_dcnv3.functions.dcnv3_func")
        mods = importlib.import_module(f"{PKG}.ops_dcnv3.modules.dcnv3")
        ii = importlib.import_module(f"{PKG}.intern_image")
    finally:
        sys.meta_path.remove(finder)
        if saved is not None:
            sys.modules["pkg_resources"] = saved
        else:
            sys.modules.pop("pkg_resources", None)
    return types.SimpleNamespace(
        root=str(root),
        commit=git_commit(root),
        dcnv3_core_pytorch=func.dcnv3_core_pytorch,
        DCNv3_pytorch=mods.DCNv3_pytorch,
        InternImage=ii.InternImage,
        intern_image_module=ii,
    )


def git_commit(root: Path) -> str:
    """The commit of the checkout holding ``root`` (or of a COMMIT file beside an extracted copy)."""
    for d in (root, *root.parents):
        f = d / "COMMIT"
        if f.is_file():
            return f.read_text().strip()
    try:
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"
