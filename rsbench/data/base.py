"""The contract every rsbench dataset class fulfils, and what all of them share.

A dataset is one module in :mod:`rsbench.data.datasets` (found by the registry, nothing to list)
plus one ``conf/dataset/<name>.yaml``. Its class derives from a family base —
:class:`rsbench.data.scene.SceneFolderDataset` (``cls``), :class:`rsbench.data.segmentation.SegmentationDataset`
(``seg``) or :class:`rsbench.data.change.ChangeDataset` (``cd``), which implement :meth:`RSDataset.plot`
and :meth:`RSDataset.sample_name` once per family — and provides:

* ``task`` (``"cls"`` | ``"seg"`` | ``"cd"``, set by the family), ``classes`` (names, in id order),
  ``splits`` (the split names it defines), ``expected_layout`` (the files to put under ``root``,
  shown when the root is missing), ``rgb_bands`` (three channel indices to display), ``palette``
  (segmentation: one RGB per class);
* ``__init__(root, split="train", transforms=None, **kwargs)`` — ``kwargs`` are ``dataset.kwargs``;
* ``_load(idx)`` — the raw sample dict (``__getitem__`` applies ``transforms`` to it);
* ``write_sample(root, seed=0, **kw) -> root`` — a tiny synthetic copy in the official layout
  (the demo and the tests read it as they would the real release); ``sample_loader_kwargs(root)``
  — loader arguments that copy needs beyond the defaults (e.g. its own split lists where the
  shipped split names files of the full release).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from torch.utils.data import Dataset

#: what a loader checks before training: nothing, every file's header, every file decoded; ``auto`` (the configs'
#: default) is ``header`` in the loader, and the datamodule reads a small split in full
#: (:meth:`rsbench.data.datamodule.RSDataModule.check`)
VERIFY = ("none", "header", "full", "auto")
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def safe_name(name: str) -> str:
    """``name`` usable as a file-name stem on every OS (path separators and reserved characters → ``_``)."""
    return _UNSAFE.sub("_", name)


class RSDataset(Dataset):
    """Base of every rsbench dataset (module docstring)."""

    task: ClassVar[str] = ""
    classes: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train", "val", "test")
    expected_layout: str = ""
    rgb_bands: tuple[int, int, int] = (0, 1, 2)
    palette: tuple[tuple[int, int, int], ...] | None = None
    transforms: Callable | None = None

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, **kw: Any) -> Path:  # pragma: no cover - abstract
        """Write a tiny synthetic copy of the dataset in its official layout under ``root``; returns ``root``."""
        raise NotImplementedError(f"{cls.__name__} has no sample writer")

    @classmethod
    def sample_loader_kwargs(cls, root: Path) -> dict[str, Any]:
        """Loader arguments that read the copy ``write_sample`` wrote to ``root`` (default: none)."""
        return {}

    def sample_name(self, idx: int) -> str:  # pragma: no cover - abstract
        """A file-name-safe stem naming sample ``idx`` (unique within the split)."""
        raise NotImplementedError

    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):  # pragma: no cover - abstract
        """A matplotlib Figure of ``sample`` (raw or normalised; may hold ``prediction``)."""
        raise NotImplementedError

    def _load(self, idx: int) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, idx: int) -> dict[str, Any]:
        sample = self._load(idx)
        return self.transforms(sample) if self.transforms is not None else sample

    @classmethod
    def layout_help(cls) -> str:
        return cls.expected_layout.strip()

    @staticmethod
    def check_verify(verify: str) -> str:
        if verify not in VERIFY:
            raise ValueError(f"verify must be none|header|full|auto, got {verify!r}")
        return verify
