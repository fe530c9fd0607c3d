"""LoveDA (Wang et al., NeurIPS 2021 Datasets & Benchmarks): 5,987 RGB 1024×1024 PNGs at 0.3 m,
urban and rural scenes of Nanjing, Changzhou and Wuhan, 7 land-cover classes.

Layout: ``LAYOUT`` below (the official ``Train.zip``, ``Val.zip``, ``Test.zip`` unpacked into ``root``).
Also accepted (common variants): the three folders one level down in ``root/LoveDA/``, and any
capitalisation of the split/scene/product folder names (``train/urban/images_png``).

Masks are single-channel 8-bit PNGs with the image's name and size: 0 = no-data, 1 background,
2 building, 3 road, 4 water, 5 barren, 6 forest, 7 agriculture. They are read as mmseg's
``reduce_zero_label=True`` (MTP's setting): 0 → 255 (ignored), 1..7 → class ids 0..6.

Classes (ids): 0 background, 1 building, 2 road, 3 water, 4 barren, 5 forest, 6 agricultural.

Splits: ``train`` (Train/), ``val`` (Val/), ``trainval`` (both; what MTP trains on before
submitting to the server) and ``test`` (Test/, images only: samples have no ``mask``).
``scene``: ``urban``, ``rural`` or ``both`` (default). The test-set submission format is
described in :mod:`rsbench.tasks.segmentation`.

Checks: an image without its mask, a mask whose size differs from its image and mask values
outside 0..7 raise :class:`DataError` naming the file (the pairing and sizes are checked up
front with ``verify='header'``, the values when a mask is read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from rsbench.constants import IGNORE_INDEX
from rsbench.data.io import image_header, read_image, read_mask, to_chw_tensor
from rsbench.data.registry import DATASETS
from rsbench.data.segmentation import SegmentationDataset
from rsbench.errors import DataError

CLASSES = ("background", "building", "road", "water", "barren", "forest", "agricultural")
#: mmseg / MTP palette (RGB), one colour per class id.
PALETTE = ((255, 255, 255), (255, 0, 0), (255, 255, 0), (0, 0, 255), (159, 129, 183), (0, 255, 0), (255, 195, 128))
SPLIT_FOLDERS = {"train": ("Train",), "val": ("Val",), "trainval": ("Train", "Val"), "test": ("Test",)}
SCENES = {"urban": ("Urban",), "rural": ("Rural",), "both": ("Urban", "Rural")}

LAYOUT = """\
  <root>/Train/Urban/images_png/<id>.png   <root>/Train/Urban/masks_png/<id>.png
  <root>/Train/Rural/images_png/<id>.png   <root>/Train/Rural/masks_png/<id>.png
  <root>/Val/{Urban,Rural}/{images_png,masks_png}/<id>.png
  <root>/Test/{Urban,Rural}/images_png/<id>.png            (no masks: the labels are private)
i.e. Train.zip, Val.zip and Test.zip of https://zenodo.org/records/5706578 unpacked into <root>
(or into <root>/LoveDA/)."""

# raw mask value → class id (0 → ignore, 1..7 → 0..6); values > 7 are invalid (marked 254 here)
_LUT = np.full(256, 254, dtype=np.uint8)
_LUT[0] = IGNORE_INDEX
_LUT[1:8] = np.arange(7, dtype=np.uint8)
_LUT64 = _LUT.astype(np.int64)


def _child(parent: Path, name: str) -> Path | None:
    """``parent/name`` matched case-insensitively (the exact spelling wins)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    for p in parent.iterdir():
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


@DATASETS.register("loveda")
class LoveDA(SegmentationDataset):
    """LoveDA in its official ``Train|Val|Test/Urban|Rural/images_png|masks_png`` layout (module docstring)."""

    classes = CLASSES
    palette = PALETTE
    splits = tuple(SPLIT_FOLDERS)
    expected_layout = LAYOUT

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None,
                 scene: str = "both", verify: str = "header") -> None:
        if split not in SPLIT_FOLDERS:
            raise DataError(f"LoveDA split {split!r}: expected one of {', '.join(SPLIT_FOLDERS)}")
        if scene not in SCENES:
            raise DataError(f"LoveDA scene {scene!r}: expected urban, rural or both")
        self.check_verify(verify)
        self.root, self.split, self.scene, self.transforms = Path(root), split, scene, transforms
        self.base = self._find_base()
        self.has_masks = split != "test"
        self.image_paths: list[Path] = []
        self.mask_paths: list[Path | None] = []
        for sp in SPLIT_FOLDERS[split]:
            for sc in SCENES[scene]:
                self._add_folder(sp, sc)
        if not self.image_paths:
            raise DataError(f"LoveDA {split}/{scene}: no PNG images under {self.base}")
        if verify != "none":
            self._verify(full=verify == "full")

    def _find_base(self) -> Path:
        for cand in (self.root, self.root / "LoveDA"):
            if any(_child(cand, f) is not None for f in ("Train", "Val", "Test")):
                return cand
        raise DataError(
            f"LoveDA: no Train/, Val/ or Test/ folder under {self.root} (nor {self.root / 'LoveDA'}). "
            "Unpack Train.zip, Val.zip and Test.zip (zenodo.org/records/5706578) there, giving "
            "Train/Urban/images_png/*.png etc., or point dataset.root=... at that folder."
        )

    def _add_folder(self, split_folder: str, scene_folder: str) -> None:
        expected = self.base / split_folder / scene_folder / "images_png"
        sp = _child(self.base, split_folder)
        sc = _child(sp, scene_folder) if sp else None
        img_dir = _child(sc, "images_png") if sc else None
        if img_dir is None:
            raise DataError(f"LoveDA {self.split}: folder {expected} not found (official layout: "
                            "<root>/Train|Val|Test/Urban|Rural/images_png/*.png)")
        images = sorted((p for p in img_dir.iterdir() if p.suffix.lower() == ".png"), key=_sort_key)
        if not images:
            raise DataError(f"{img_dir}: no PNG images")
        masks: list[Path | None] = [None] * len(images)
        if self.has_masks:
            mask_dir = _child(sc, "masks_png")
            if mask_dir is None:
                raise DataError(f"LoveDA {self.split}: mask folder {sc / 'masks_png'} not found beside {img_dir}")
            masks = [mask_dir / p.name for p in images]
            missing = [p for p, m in zip(images, masks) if not m.is_file()]
            if missing:
                raise DataError(
                    f"{mask_dir}: {len(missing)} of {len(images)} images have no mask, e.g. "
                    f"{missing[0]} has no {mask_dir / missing[0].name}"
                )
        self.image_paths += images
        self.mask_paths += masks

    def _verify(self, *, full: bool) -> None:
        for img, mask in zip(self.image_paths, self.mask_paths):
            (h, w), _ = image_header(img)
            if mask is not None:
                (mh, mw), _ = image_header(mask)
                if (mw, mh) != (w, h):
                    raise DataError(f"{mask}: mask is {mh}×{mw} px but its image {img} is {h}×{w} px")
        if full:
            for i in range(len(self)):
                self._load(i)

    def _load(self, i: int) -> dict[str, torch.Tensor]:
        img_path, mask_path = self.image_paths[i], self.mask_paths[i]
        image = read_image(img_path, strict=False)
        sample = {"image": to_chw_tensor(image)}
        if mask_path is not None:
            sample["mask"] = torch.from_numpy(self.convert_mask(read_mask(mask_path), mask_path, image.shape[:2]))
        return sample

    @staticmethod
    def convert_mask(raw: np.ndarray, path: Path, image_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Raw 0..7 mask → (H, W) int64 with class ids 0..6 and 255 for no-data; checks size and values."""
        if raw.ndim != 2:
            raise DataError(f"{path}: expected a single-channel mask, got shape {raw.shape}")
        if image_hw is not None and tuple(raw.shape) != tuple(image_hw):
            raise DataError(f"{path}: mask is {raw.shape[0]}×{raw.shape[1]} px but its image is "
                            f"{image_hw[0]}×{image_hw[1]} px")
        if raw.size and (int(raw.max()) > 7 or (raw.dtype.kind != "u" and int(raw.min()) < 0)):
            bad = np.unique(raw[(raw > 7) | (raw < 0)])
            raise DataError(f"{path}: mask values {bad[:10].tolist()} outside LoveDA's 0..7 "
                            "(0 no-data, 1 background … 7 agriculture)")
        return _LUT64[raw if raw.dtype == np.uint8 else raw.astype(np.uint8)]  # one pass: ids straight to int64

    @classmethod
    def write_sample(cls, root: Path, seed: int = 0, *, per_folder: int = 2, size: int = 128) -> Path:
        """``root/{Train,Val}/{Urban,Rural}/{images_png,masks_png}/<id>.png`` and
        ``root/Test/{Urban,Rural}/images_png/<id>.png`` (real images are 1024² px; ``size`` here).

        Masks hold the raw values 0..7 (0 no-data); ids are integers, unique over the whole
        dataset, numbered split by split as in the release (Train/Rural first).
        """
        rng = np.random.default_rng(seed)
        n = 0
        for split in ("Train", "Val", "Test"):
            for scene in ("Rural", "Urban"):
                img_dir = root / split / scene / "images_png"
                img_dir.mkdir(parents=True, exist_ok=True)
                if split != "Test":
                    (root / split / scene / "masks_png").mkdir(parents=True, exist_ok=True)
                for _ in range(per_folder):
                    mask = _sample_mask(rng, size)
                    img = _SAMPLE_COLOURS[mask] + rng.normal(0, 12, mask.shape + (3,))
                    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(img_dir / f"{n}.png")
                    if split != "Test":
                        Image.fromarray(mask).save(root / split / scene / "masks_png" / f"{n}.png")
                    n += 1
        return root


def _sort_key(p: Path) -> tuple[int, int | str]:
    return (0, int(p.stem)) if p.stem.isdigit() else (1, p.stem)


#: Mean colour of each raw LoveDA mask value 0..7 in the sample (0 = no-data is black, as in the real images).
_SAMPLE_COLOURS = np.array([
    (0, 0, 0), (200, 200, 190), (180, 60, 50), (120, 120, 120), (40, 70, 160),
    (170, 150, 110), (40, 110, 40), (150, 170, 70),
], dtype=np.float32)


def _sample_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W) uint8 raw labels 1..7 in blocks of random shapes, with a no-data (0) strip at times."""
    m = np.full((size, size), rng.integers(1, 8), np.uint8)
    for _ in range(6):
        h, w = rng.integers(size // 8, size // 2 + 1, size=2)
        y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        m[y:y + h, x:x + w] = rng.integers(1, 8)
    if rng.random() < 0.5:  # no-data border, as along the edge of real tiles
        m[:, : max(1, size // 10)] = 0
    return m
