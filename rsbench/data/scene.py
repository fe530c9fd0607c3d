"""Scene classification (``task = "cls"``): datasets stored as one folder per class.

Split files list bare file names (``AnnualCrop_1.jpg``); the class of a file is the folder it
lives in, so a split file may use a different extension than the images (TorchGeo's EuroSAT
split files say ``.jpg`` even for the 13-band ``.tif`` release). Samples are
``{"image": (C, H, W) uint8 | int32, "label": long}``. Also here: the plot of the family and the
helpers the sample writers share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from rsbench.data.base import RSDataset, safe_name
from rsbench.data.io import image_header, read_image, read_lines, read_raster, raster_tensor, to_chw_tensor
from rsbench.errors import DataError
from rsbench.plotting import figure, stretch_rgb, to_numpy


class SceneFolderDataset(RSDataset):
    """Base class: subclasses set ``classes``, ``extensions``, ``layouts``, ``expected_layout`` and split rules."""

    task = "cls"
    extensions: tuple[str, ...] = (".jpg",)
    #: Folders (relative to root) that may hold the class folders, most specific first.
    layouts: tuple[str, ...] = (".",)
    num_bands: int = 3
    raster: bool = False

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transforms: Callable | None = None,
        split_dir: str | Path | None = None,
        verify: str = "header",
    ) -> None:
        self.check_verify(verify)
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.image_dir = self._find_image_dir()
        index = self._index_files()
        names = self._split_names(split, split_dir)
        self.samples = self._resolve(names, index)
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
            f"Looked in:\n  {tried}\nExpected layout:\n{self.layout_help()}"
        )

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
                    read_raster(path, bands=self.num_bands)
                    seen.add(label)
            return
        for path, _ in self.samples:
            if full:
                read_image(path, strict=False)
            else:
                image_header(path, verify=True)

    # -- samples ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[i]
        if self.raster:
            image = raster_tensor(read_raster(path, bands=self.num_bands))
        else:
            image = to_chw_tensor(read_image(path, strict=False))
        return {"image": image, "label": torch.tensor(label, dtype=torch.long)}

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def sample_name(self, idx: int) -> str:
        """The file's stem, e.g. ``AnnualCrop_12`` (unique: the stem names the file in the split lists)."""
        return safe_name(self.samples[idx][0].stem)

    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):
        """The image (``rgb_bands``, 2–98 % stretch) titled ``label: X / prediction: Y``."""
        parts = [f"{k}: {self._class_name(sample[k])}" for k in ("label", "prediction") if k in sample]
        image = stretch_rgb(sample["image"], self.rgb_bands)
        return figure([(image, " / ".join(parts))], suptitle=suptitle)

    def _class_name(self, value: Any) -> str:
        """The class name of a label or prediction (an id, or scores over the classes)."""
        v = to_numpy(value)
        i = int(v.argmax()) if v.size > 1 else int(v.reshape(-1)[0])
        return self.classes[i] if 0 <= i < len(self.classes) else str(i)


# -------------------------------------------------------------------------------- sample writing


def write_class_folders(base: Path, classes: Sequence[str], per_class: int, rng: np.random.Generator,
                        fractions: Mapping[str, float], file_name: Callable[[str, int], str],
                        save: Callable[[Path, int], None],
                        listed_name: Callable[[str], str] = lambda n: n) -> dict[str, list[str]]:
    """One folder per class under ``base`` with ``per_class`` files written by ``save(path, label)``;
    returns a per-class stratified split of the (listed) names by ``fractions``."""
    splits: dict[str, list[str]] = {k: [] for k in fractions}
    cuts = np.cumsum([round(f * per_class) for f in list(fractions.values())[:-1]])
    for label, cls in enumerate(classes):
        (base / cls).mkdir(parents=True, exist_ok=True)
        names = []
        for n in range(1, per_class + 1):
            name = file_name(cls, n)
            save(base / cls / name, label)
            names.append(listed_name(name))
        perm = [names[i] for i in rng.permutation(len(names))]
        for k, part in zip(splits, np.split(np.array(perm, dtype=object), cuts)):
            splits[k] += list(part)
    return splits


def write_split_lists(folder: Path, prefix: str, splits: Mapping[str, list[str]]) -> None:
    """``folder/<prefix><split>.txt``, one sorted name a line."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, names in splits.items():
        (folder / f"{prefix}{k}.txt").write_text("\n".join(sorted(names)) + "\n")
