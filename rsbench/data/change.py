"""Change detection (``task = "cd"``): shared reading of bi-temporal datasets (LEVIR-CD, CDD, WHU-CD,
OSCD, GVLM, CLCD, EGY-BCD), the family's plot and the helpers its sample writers share.

A sample is ``{"image1": (C,H,W), "image2": (C,H,W), "mask": (H,W) long}``: the two dates as
stored (uint8 for 8-bit images, int32 for 16-bit rasters) and the change mask with 0 = unchanged,
1 = changed, 255 = ignore. Every subclass only says where its files are
(:meth:`ChangeDataset._find_pairs`); this module does the rest:

* **Pairing.** Date 1, date 2 and the label are matched by file stem. A file in one folder
  without its partner in the others is a :class:`DataError` that names the file and the folder
  that lacks the partner, never a silently shorter dataset.
* **Checks before training** (``verify``): ``header`` (default) opens every file's header and
  checks that both dates and the label have the same size and the dates the same band count;
  ``full`` also decodes every label and checks its values; ``none`` checks only when a sample is
  read. The same checks run on every read.
* **Label values** (``label_rule``): ``binary255`` accepts 0/255 only (LEVIR-CD, CLCD,
  EGY-BCD as released), ``binary01`` 0/1 only, ``either`` a file of 0/255 or one of 0/1 (WHU-CD,
  GVLM, OSCD, whose releases differ), ``threshold`` maps >= 128 to changed (Open-CD's
  ``to_binary``; needed for JPEG labels such as CDD's). Anything else names the file and the
  values found. Open-CD's rule would turn a 0/1 label into "no change" silently; rsbench does not.
* **Tiling** (``tile``): the paper trains and tests on fixed-size patches (LEVIR-CD 1024² → 16
  non-overlapping 256² tiles, OSCD → 96², ...). With ``tile=N`` every image is cut on the fly into
  non-overlapping N×N tiles in row-major order, named ``<stem>_<k>`` (k = 1, 2, ...; the naming
  of the BIT/ChangeFormer LEVIR-CD-256 release); where N does not divide the side, the last row or
  column is shifted back to end at the image edge (the official GVLM clip script's rule), so
  every tile is N×N. An image no larger than N is one tile (its own size).
* **Tile cache** (``tile_cache``): a folder where each full image is stored once, decoded, as
  ``.npy``, so reading a tile is a memory-mapped slice instead of decoding a 1024² PNG 16 times
  per epoch. Keyed by path, size and mtime; safe with several workers. ``None`` decodes each
  time (with a one-image memory so consecutive tiles of one image are decoded once).
* **Split files** (``split_dir``): a folder with ``<split>.txt`` (one name per line, with or
  without extension) replaces the dataset's own split rule.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from rsbench.data.base import RSDataset, safe_name
from rsbench.data.io import image_header, read_image, read_lines, read_mask, to_chw_tensor
from rsbench.data.samples.synth import change_pair
from rsbench.errors import DataError
from rsbench.plotting import CHANGE_LEGEND, CHANGE_PRED_LEGEND, change_label_rgb, change_pred_rgb, figure, stretch_rgb

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
LABEL_RULES = ("binary255", "binary01", "either", "threshold")
CLASSES = ("unchanged", "changed")


@dataclass
class Pair:
    """One bi-temporal pair: ``image1``/``image2`` are a file each, or a tuple of band files."""

    name: str
    image1: Path | tuple[Path, ...]
    image2: Path | tuple[Path, ...]
    label: Path
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Header:
    size1: tuple[int, int]  # (H, W)
    size2: tuple[int, int]
    size_label: tuple[int, int]
    bands1: int
    bands2: int


# ------------------------------------------------------------------------------------------ helpers


def binarize_label(raw: np.ndarray, rule: str, path: Path | str) -> np.ndarray:
    """Label file values → uint8 0 (unchanged) / 1 (changed) / 255 (ignore) under ``rule``."""
    if rule == "threshold":
        return (raw >= 128).astype(np.uint8)
    values = np.unique(raw)
    vs = set(int(v) for v in values)
    if rule in ("binary255", "either") and vs <= {0, 255}:
        return (raw == 255).astype(np.uint8)
    if rule in ("binary01", "either") and vs <= {0, 1}:
        return raw.astype(np.uint8)
    expected = {"binary255": "0 (unchanged) and 255 (changed)", "binary01": "0 (unchanged) and 1 (changed)",
                "either": "0/255 or 0/1"}[rule]
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
    raise DataError(
        f"{path}: label values {{{shown}}}; expected {expected}. If this copy of the dataset stores "
        "labels differently (e.g. re-saved as JPEG), set dataset.kwargs.label_rule=threshold to map "
        "values >= 128 to 'changed' as Open-CD does."
    )


def index_folder(d: Path, exts: Sequence[str] = IMAGE_EXTS) -> dict[str, Path]:
    """stem → file for the image files directly in ``d`` (hidden files and other types skipped)."""
    out: dict[str, Path] = {}
    for f in sorted(d.iterdir()):
        if f.name.startswith(".") or not f.is_file() or f.suffix.lower() not in exts:
            continue
        if f.stem in out:
            raise DataError(f"{d}: two files for the name {f.stem!r}: {out[f.stem].name} and {f.name}")
        out[f.stem] = f
    return out


def match_triplets(dir1: Path, dir2: Path, dir_label: Path, *, names: Sequence[str] | None = None,
                   source: str | Path | None = None, exts: Sequence[str] = IMAGE_EXTS,
                   label_exts: Sequence[str] = IMAGE_EXTS) -> list[Pair]:
    """Pairs of ``dir1``/``dir2``/``dir_label`` matched by stem.

    With ``names`` (from a split file ``source``) exactly those, in that order; otherwise every
    image of ``dir1``, sorted, and every image of ``dir2`` must have a partner in ``dir1``.
    """
    for d in (dir1, dir2, dir_label):
        if not d.is_dir():
            raise DataError(f"{d}: folder not found (expected beside {', '.join(x.name for x in (dir1, dir2, dir_label))})")
    i1, i2, il = index_folder(dir1, exts), index_folder(dir2, exts), index_folder(dir_label, label_exts)
    if names is None:
        if not i1:
            raise DataError(f"{dir1}: no image files ({', '.join(exts)})")
        extra = sorted(set(i2) - set(i1))
        if extra:
            raise DataError(f"{i2[extra[0]]}: date-2 image without a date-1 image in {dir1}"
                            + (f" ({len(extra)} such files)" if len(extra) > 1 else ""))
        stems = sorted(i1)
    else:
        stems = [Path(n).stem if Path(n).suffix.lower() in exts else n for n in (x.strip() for x in names)]
        missing = [s for s in stems if s not in i1]
        if missing:
            raise DataError(f"{source or 'split list'}: {len(missing)} of {len(stems)} names have no image in "
                            f"{dir1} (e.g. {', '.join(missing[:3])})")
    out = []
    for s in stems:
        if s not in i2:
            raise DataError(f"{i1[s]}: date-1 image without its date-2 image {dir2 / i1[s].name}")
        if s not in il:
            raise DataError(f"{i1[s]}: image pair without its label in {dir_label} (expected e.g. "
                            f"{dir_label / (s + label_exts[0])})")
        out.append(Pair(s, i1[s], i2[s], il[s]))
    return out


def seeded_split(names: Sequence[str], fractions: Sequence[float], seed: int = 0) -> list[list[str]]:
    """Split sorted ``names`` by a seeded permutation into parts of ``fractions`` (last takes the rest)."""
    names = sorted(names)
    perm = np.random.default_rng(seed).permutation(len(names))
    cuts = np.cumsum([int(round(f * len(names))) for f in fractions[:-1]])
    return [[names[i] for i in sorted(part)] for part in np.split(perm, cuts)]


def tile_origins(length: int, tile: int) -> list[int]:
    """Non-overlapping tile starts along one side; the last tile is shifted back to the edge."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def _paths(p: Path | tuple[Path, ...]) -> tuple[Path, ...]:
    return p if isinstance(p, tuple) else (p,)


def _first(p: Path | tuple[Path, ...]) -> Path:
    return _paths(p)[0]


# ------------------------------------------------------------------------------------------ dataset


class ChangeDataset(RSDataset):
    """Base class of the change-detection loaders; subclasses implement :meth:`_find_pairs`.

    Args (common to every CD dataset; set them under ``dataset.kwargs``):
        root: the dataset folder as unpacked. split: the split name the dataset defines.
        transforms: applied to each sample dict (``None``: raw samples, see module docstring).
        verify: ``none`` | ``header`` | ``full`` (see module docstring).
        tile: cut images into ``tile``×``tile`` patches on the fly (``None``: whole images).
        tile_cache: folder for decoded full images (``.npy``), used when ``tile`` is set.
        label_rule: override the dataset's label rule (``binary255``/``binary01``/``either``/``threshold``).
        split_dir: folder with ``<split>.txt`` name lists replacing the dataset's split rule.
    """

    task = "cd"
    classes = CLASSES
    #: what a label file holds as released (see module docstring)
    label_rule = "binary255"
    #: bands of each date as read (3 for 8-bit RGB)
    num_bands = 3

    def __init__(self, root: str | Path, split: str = "train", transforms: Callable | None = None, *,
                 verify: str = "header", tile: int | None = None, tile_cache: str | Path | None = None,
                 label_rule: str | None = None, split_dir: str | Path | None = None) -> None:
        self.check_verify(verify)
        self.root = Path(root)
        self.split = split
        self.transforms = transforms
        self.tile = int(tile) if tile else None
        self.tile_cache = Path(tile_cache) if tile_cache and self.tile else None
        self.label_rule = label_rule or type(self).label_rule
        if self.label_rule not in LABEL_RULES:
            raise ValueError(f"label_rule must be one of {', '.join(LABEL_RULES)}, got {self.label_rule!r}")
        self.split_dir = Path(split_dir) if split_dir else None
        self.pairs: list[Pair] = self._find_pairs(split)
        if not self.pairs:
            raise DataError(f"{type(self).__name__}: split {split!r} under {self.root} is empty")
        headers = self._check_headers() if (verify != "none" or self.tile) else None
        if verify == "full":
            for i in range(len(self.pairs)):
                self._decode(i)
        self.items: list[tuple[int, tuple[int, int, int, int] | None, str]] = self._make_items(headers)
        self.items = self._select_items(self.items)
        if not self.items:
            raise DataError(f"{type(self).__name__}: split {split!r} under {self.root} has no samples")
        self._last: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    # -- what subclasses provide --------------------------------------------------------------
    def _find_pairs(self, split: str) -> list[Pair]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _select_items(self, items: list) -> list:
        """Hook for splits defined over tiles (GVLM); default: all tiles of the split's pairs."""
        return items

    def _read_images(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """Both dates as (H, W, C) arrays as stored."""
        return read_image(_first(pair.image1), bands=self.num_bands), read_image(_first(pair.image2), bands=self.num_bands)

    def _read_label(self, pair: Pair) -> np.ndarray:
        """The label file as (H, W) values on disk."""
        return read_mask(pair.label)

    def _header(self, pair: Pair) -> Header:
        s1, b1 = image_header(_first(pair.image1))
        s2, b2 = image_header(_first(pair.image2))
        sl, _ = image_header(pair.label)
        return Header(s1, s2, sl, b1, b2)

    # -- helpers for subclasses ---------------------------------------------------------------
    def _layout_error(self, tried: Iterable[Path], what: str) -> DataError:
        tried_s = "\n  ".join(str(Path(t)) for t in tried)
        return DataError(f"{type(self).__name__}: {what} not found under {self.root}. Looked for:\n  {tried_s}\n"
                         f"Expected layout:\n{self.layout_help()}")

    def _split_names(self, split: str) -> tuple[list[str], Path] | None:
        """Names from ``split_dir/<split>.txt`` when ``split_dir`` is set, else ``None``."""
        if self.split_dir is None:
            return None
        path = self.split_dir / f"{split}.txt"
        names = read_lines(path)
        if not names:
            raise DataError(f"{path}: split {split!r} is empty")
        return names, path

    # -- checks and items ---------------------------------------------------------------------
    def _check_headers(self) -> list[Header]:
        out = []
        for p in self.pairs:
            h = self._header(p)
            self._check_consistent(p, h.size1, h.size2, h.size_label, h.bands1, h.bands2)
            out.append(h)
        return out

    def _check_consistent(self, p: Pair, s1, s2, sl, b1: int, b2: int) -> None:
        f1, f2 = _first(p.image1), _first(p.image2)
        if b1 != b2:
            raise DataError(f"{f1} has {b1} band(s) but {f2} has {b2}: the two dates must have the same bands")
        if b1 != self.num_bands:
            raise DataError(f"{f1}: has {b1} band(s), {type(self).__name__} expects {self.num_bands}")
        if tuple(s1) != tuple(s2):
            raise DataError(f"{f1} is {s1[1]}x{s1[0]} (WxH) but {f2} is {s2[1]}x{s2[0]}: the two dates of a pair "
                            "must be co-registered images of the same size")
        if tuple(s1) != tuple(sl):
            raise DataError(f"{p.label} is {sl[1]}x{sl[0]} (WxH) but the images {f1} are {s1[1]}x{s1[0]}")

    def _make_items(self, headers: list[Header] | None) -> list[tuple[int, tuple[int, int, int, int] | None, str]]:
        if not self.tile:
            return [(i, None, p.name) for i, p in enumerate(self.pairs)]
        assert headers is not None
        items = []
        for i, (p, h) in enumerate(zip(self.pairs, headers)):
            H, W = h.size1
            ys, xs = tile_origins(H, self.tile), tile_origins(W, self.tile)
            if len(ys) * len(xs) == 1:
                items.append((i, None, p.name))
                continue
            k = 0
            for y in ys:
                for x in xs:
                    k += 1
                    items.append((i, (y, x, min(self.tile, H), min(self.tile, W)), f"{p.name}_{k}"))
        return items

    # -- reading ------------------------------------------------------------------------------
    def _decode(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.pairs[i]
        a, b = self._read_images(p)
        raw = self._read_label(p)
        self._check_consistent(p, a.shape[:2], b.shape[:2], raw.shape[:2], a.shape[2], b.shape[2])
        return a, b, binarize_label(raw, self.label_rule, p.label)

    def _cache_tag(self) -> str:
        """What else decides the decoded pixels (e.g. OSCD's bands and 8-bit gain); part of the cache key."""
        return ""

    def _cache_files(self, i: int) -> list[Path]:
        p = self.pairs[i]
        h = hashlib.sha1(f"{type(self).__name__}|{self.label_rule}|{p.extra}|{self._cache_tag()}".encode())
        for f in (*_paths(p.image1), *_paths(p.image2), p.label):
            st = f.stat()
            h.update(f"|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        base = self.tile_cache / type(self).__name__.lower() / h.hexdigest()[:20]  # type: ignore[operator]
        return [base.with_name(f"{base.name}.{k}.npy") for k in ("image1", "image2", "mask")]

    def _arrays(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Date 1, date 2 and the binarised label of pair ``i``, whole (cached, or decoded once in a row)."""
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        if self.tile_cache is not None:
            files = self._cache_files(i)
            if not all(f.is_file() for f in files):
                arrays = self._decode(i)
                files[0].parent.mkdir(parents=True, exist_ok=True)
                for f, arr in zip(files, arrays):
                    tmp = f.with_name(f"{f.name}.{os.getpid()}.tmp.npy")
                    np.save(tmp, np.ascontiguousarray(arr))
                    os.replace(tmp, f)
            arrays = tuple(np.load(f, mmap_mode="r") for f in files)  # type: ignore[assignment]
        else:
            arrays = self._decode(i)
        self._last = (i, arrays)  # type: ignore[assignment]
        return arrays  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.items)

    def sample_name(self, idx: int) -> str:
        """The pair's stem, with ``_<k>`` for tile k (``test_12_3``); what ``split_dir`` lists name."""
        return safe_name(self.items[idx][2])

    def _load(self, idx: int) -> dict[str, torch.Tensor]:
        i, win, _ = self.items[idx]
        a, b, m = self._arrays(i)
        if win is not None:
            y, x, h, w = win
            a, b, m = a[y:y + h, x:x + w], b[y:y + h, x:x + w], m[y:y + h, x:x + w]
        return {"image1": to_chw_tensor(a), "image2": to_chw_tensor(b), "mask": torch.from_numpy(np.array(m, dtype=np.int64))}

    def plot(self, sample: Mapping[str, Any], suptitle: str | None = None):
        """date 1 | date 2 | label | prediction (those present); the prediction against the label:
        true change white, false alarm red, missed change blue (:mod:`rsbench.plotting`)."""
        mask = sample.get("mask")
        size = tuple(mask.shape[-2:]) if mask is not None else None
        panels = [(stretch_rgb(sample[k], self.rgb_bands, size=size), f"date {d}") for d, k in ((1, "image1"), (2, "image2"))]
        legend = list(CHANGE_LEGEND)
        if mask is not None:
            panels.append((change_label_rgb(mask), "label"))
        if "prediction" in sample:
            panels.append((change_pred_rgb(sample["prediction"], mask), "prediction"))
            legend += CHANGE_PRED_LEGEND if mask is not None else []
        return figure(panels, suptitle=suptitle, legend=legend)


# ------------------------------------------------------------------------------------------ layouts


def find_split_folders(ds: ChangeDataset, bases: Sequence[Path], split: str,
                       folder_sets: Sequence[tuple[str, str, str]], *, exts: Sequence[str] = IMAGE_EXTS,
                       label_exts: Sequence[str] = IMAGE_EXTS) -> list[Pair] | None:
    """Pairs of the split-folder layout ``<base>/<split>/{<d1>,<d2>,<label>}/`` (first base and
    folder set that exists), honouring ``split_dir``; ``None`` when no base has it."""
    for base in bases:
        sd = base / split
        found = [fs for fs in folder_sets if (sd / fs[0]).is_dir()]
        if found:  # a complete folder set, else the first one (whose error names the missing folder)
            d1, d2, dl = next((fs for fs in found if all((sd / f).is_dir() for f in fs)), found[0])
            given = ds._split_names(split)
            return match_triplets(sd / d1, sd / d2, sd / dl, names=given[0] if given else None,
                                  source=given[1] if given else None, exts=exts, label_exts=label_exts)
    return None


def find_flat(bases: Sequence[Path], folders: tuple[str, str, str]) -> Path | None:
    """The first base holding the flat layout ``<base>/{<d1>,<d2>,<label>}/``."""
    for base in bases:
        if all((base / f).is_dir() for f in folders):
            return base
    return None


def list_file_names(ds: ChangeDataset, split: str, candidates: Sequence[Path]) -> tuple[list[str], Path] | None:
    """Names for ``split`` from ``split_dir`` or the first existing list file in ``candidates``."""
    given = ds._split_names(split)
    if given:
        return given
    for c in candidates:
        if c.is_file():
            names = read_lines(c)
            if not names:
                raise DataError(f"{c}: split {split!r} is empty")
            return names, c
    return None


def find_ab_label(ds: ChangeDataset, bases: Sequence[Path], split: str, *,
                  list_files: Sequence[str] = ("list/{split}.txt",),
                  fallback: Callable[[Path], tuple[list[str], Any] | None] | None = None) -> list[Pair] | None:
    """Pairs of the common ``A/B/label`` layouts under the first of ``bases`` that has one:

    split folders ``<base>/<split>/{A,B,label}/``; else flat ``<base>/{A,B,label}/`` with the names
    of ``split_dir``, of the first of ``list_files`` that exists (relative to the base, ``{split}``
    filled in), or of ``fallback(base)`` (``(names, source)``; the dataset's own split rule).
    ``None`` when no base has either layout.
    """
    pairs = find_split_folders(ds, bases, split, [("A", "B", "label")])
    if pairs is not None:
        return pairs
    base = find_flat(bases, ("A", "B", "label"))
    if base is None:
        return None
    lists = [base / f.format(split=split) for f in list_files]
    given = list_file_names(ds, split, lists) or (fallback(base) if fallback else None)
    if given is None:
        raise ds._layout_error(lists, f"the split list for {split!r}")
    return match_triplets(base / "A", base / "B", base / "label", names=given[0], source=given[1])


# ------------------------------------------------------------------------------------------ samples


def write_triplet(rng: np.random.Generator, d1: Path, d2: Path, dl: Path, name: str, h: int, w: int | None = None,
                  *, img_ext: str = ".png", label_ext: str = ".png", season: bool = False) -> None:
    """One synthetic pair (:func:`rsbench.data.samples.synth.change_pair`) as ``d1/<name>``, ``d2/<name>``
    and its 0/255 label ``dl/<name>`` (JPEG at quality 95 where an extension says so)."""
    for d in (d1, d2, dl):
        d.mkdir(parents=True, exist_ok=True)
    a, b, m = change_pair(rng, h, w, season=season)
    kw = {"quality": 95} if img_ext == ".jpg" else {}
    Image.fromarray(a).save(d1 / f"{name}{img_ext}", **kw)
    Image.fromarray(b).save(d2 / f"{name}{img_ext}", **kw)
    Image.fromarray((m * 255).astype(np.uint8), mode="L").save(dl / f"{name}{label_ext}", **kw)
