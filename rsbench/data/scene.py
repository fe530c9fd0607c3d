"""Shared reading of scene-classification datasets stored as one folder per class.

Split files list bare file names (``AnnualCrop_1.jpg``); the class of a file is the folder it
lives in, so a split file may use a different extension than the images (TorchGeo's EuroSAT
split files say ``.jpg`` even for the 13-band ``.tif`` release).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from rsbench.data.io import read_image, read_lines, read_raster, raster_tensor, to_chw_tensor
from rsbench.errors import DataError

SPLITS_DIR = Path(__file__).resolve().parents[1] / "splits"


class SceneFolderDataset(Dataset):
    """Base class: subclasses set ``classes``, ``extensions``, ``layouts`` and split rules."""

    classes: tuple[str, ...] = ()
    extensions: tuple[str, ...] = (".jpg",)
    #: Folders (relative to root) that may hold the class folders, most specific first.
    layouts: tuple[str, ...] = (".",)
    bands: int = 3
    raster: bool = False

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Callable | None = None,
        split_dir: str | Path | None = None,
        verify: str = "header",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.image_dir = self._find_image_dir()
        index = self._index_files()
        names = self._split_names(split, split_dir)
        self.samples = self._resolve(names, index)
        if verify not in ("none", "header", "full"):
            raise ValueError(f"verify must be none|header|full, got {verify!r}")
        if verify != "none":
            self._verify(full=verify == "full")

    # -- layout -------------------------------------------------------------------------------
    def _find_image_dir(self) -> Path:
        for rel in self.layouts:
            d = (self.root / rel).resolve()
            if d.is_dir() and any((d / c).is_dir() for c in self.classes):
                return d
        tried = "\n  ".join(str((self.root / rel).resolve()) for rel in self.layouts)
        raise DataError(
            f"{type(self).__name__}: no class folders ({', '.join(self.classes[:3])}, ...) found. "
            f"Looked in:\n  {tried}\n{self.layout_help()}"
        )

    @classmethod
    def layout_help(cls) -> str:
        return (cls.__doc__ or "").strip().split("\n\n")[0]

    def _index_files(self) -> dict[str, tuple[Path, int]]:
        known = {c: i for i, c in enumerate(self.classes)}
        index: dict[str, tuple[Path, int]] = {}
        for d in sorted(p for p in self.image_dir.iterdir() if p.is_dir()):
            if d.name not in known:
                raise DataError(
                    f"{d}: unknown class folder {d.name!r}; {type(self).__name__} has the classes "
                    f"{', '.join(self.classes)}"
                )
            for f in d.iterdir():
                if f.suffix.lower() in self.extensions:
                    index[f.stem] = (f, known[d.name])
        missing = [c for c in self.classes if not (self.image_dir / c).is_dir()]
        if missing:
            raise DataError(f"{self.image_dir}: class folders missing: {', '.join(missing)}")
        return index

    # -- splits -------------------------------------------------------------------------------
    def _split_names(self, split: str, split_dir: str | Path | None) -> list[str]:
        path = self.split_file(split, split_dir)
        names = read_lines(path)
        if not names:
            raise DataError(f"{path}: split {split!r} is empty")
        self.split_path = path
        return names

    def split_file(self, split: str, split_dir: str | Path | None) -> Path:  # pragma: no cover
        raise NotImplementedError

    def _resolve(self, names: Sequence[str], index: dict[str, tuple[Path, int]]) -> list[tuple[Path, int]]:
        out, missing = [], []
        for n in names:
            stem = Path(n.split()[0]).stem
            if stem in index:
                out.append(index[stem])
            else:
                missing.append(n)
        if missing:
            raise DataError(
                f"{self.split_path}: {len(missing)} of {len(names)} files of split {self.split!r} are not "
                f"under {self.image_dir} (e.g. {', '.join(missing[:3])}). The dataset is incomplete, "
                "or the split file belongs to another copy of it."
            )
        return out

    def _verify(self, *, full: bool) -> None:
        """Open every file's header (or decode it, ``full``) so bad files fail before training."""
        if self.raster:
            # rasterio opens are slow; the band count is checked on one file per class here and
            # on every file when it is read.
            seen: set[int] = set()
            for path, label in self.samples:
                if full or label not in seen:
                    read_raster(path, bands=self.bands)
                    seen.add(label)
            return
        for path, _ in self.samples:
            if full:
                read_image(path)
                continue
            try:
                with Image.open(path) as im:
                    im.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                raise DataError(f"{path}: not a readable image ({e})") from e

    # -- samples ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[i]
        if self.raster:
            image = raster_tensor(read_raster(path, bands=self.bands))
        else:
            image = to_chw_tensor(read_image(path))
        sample = {"image": image, "label": torch.tensor(label, dtype=torch.long)}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]
