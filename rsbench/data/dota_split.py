"""Cutting large DOTA / FAIR1M images into patches as MMRotate 1.x's ``tools/data/dota/split/img_split.py``
does, and merging patch detections back (MMRotate ``DOTAMetric.merge_results``). CLI: ``scripts/split_dota.py``.

**Windows** (:func:`sliding_windows`, ``get_sliding_window``): for each (size, gap) with step
``size - gap``: ``n = 1`` if the side ≤ size, else ``ceil((side - size) / step + 1)``; starts
``0, step, 2·step, …``, the last moved back to ``side - size`` when it would pass the end (only when
there are at least two). Windows are the product of x starts (outer) and y starts (inner). A window
is kept when the image covers more than ``img_rate_thr`` (0.6) of its area; if none does, those within
0.01 of the best rate are kept (a small image keeps its one padded window).

**Rates**: a rate ``r`` changes the *window*, ``int(size / r)`` and ``int(gap / r)`` original pixels, not
the pixels: patches are saved at window size (rate 0.5 → 2048² patches, 1.5 → 682²) and the training
resize brings them to the input size. Multi-scale = sizes ``[1024]``, gaps ``[500]``, rates
``[0.5, 1.0, 1.5]`` (``ms_*.json``); single-scale = ``[1024]``, ``[200]``, ``[1.0]`` (``ss_*.json``).

**Objects** (``get_window_obj``): iof = area(polygon ∩ window) / area(polygon) (exact, the window is an
axis-aligned rectangle: Sutherland–Hodgman clipping and the shoelace formula; MMRotate uses shapely;
as there, only windows whose horizontal box overlaps the polygon's are tested and the polygon's area
is taken in float32 with a floor of 1e-6). An object goes into every window with ``iof ≥ iof_thr``
(0.7), **unclipped**: its polygon is only translated by ``(-x_start, -y_start)`` (corners may lie
outside the patch). Its difficult field is written as ``2`` when it is truncated (``iof < 1``), else as
read (0/1). Label lines: ``x1 y1 … y4 class difficult`` with float32 coordinates as Python writes them
(``1054.0``), the class name as read, no header lines, LF endings.

**Patches** (``crop_and_save_img``): name ``<id>__<window size>__<x_start>___<y_start>`` (two
underscores, then three before y; e.g. ``P0000__1024__0___824``, multi-scale ``P0000__2048__0___0`` —
*not* the DOTA devkit's ``<id>__<rate>__…``). Every window is written, with or without objects (an
empty label file; training skips those, :meth:`RotatedDetectionDataset.training_view`). A window
reaching past the image is padded at the bottom/right to its full size with ``padding_value``; MMRotate's
configs give ``[104, 116, 124]`` to ``cv2`` (BGR), i.e. **RGB (124, 116, 104)** here, rsbench's default.
Grey images are written as RGB (``cv2.imread`` reads them as 3 channels too).

**Layout written** (what :class:`rsbench.data.datasets.dota.DOTA` reads with ``layout="patches"``)::

    <out>/<split>/images/<patch>.png      <out>/<split>/annfiles/<patch>.txt   (labelled splits)
    <out>/test/images/<patch>.png                                             (no labels: no annfiles)

``trainval`` splits ``train/`` and ``val/`` of the source together, as ``ss_trainval.json`` does.

**Merge** (:func:`merge_patch_detections`): a patch's rotated boxes (in the patch's own pixels) are moved
by its ``(x_start, y_start)``; per original image and class, rotated NMS at IoU 0.1 (no cap), as
``DOTAMetric(merge_patches=True)``. Devkit-named patches (``naming="devkit"``, ``<id>__<rate>__x___y``,
where the devkit resized the image by ``rate`` before cutting) map back by ``(p + offset) / rate``.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".JPG", ".png", ".tif", ".bmp")  # img_split's _load_dota_single
#: MMRotate's split_configs padding (104, 116, 124) given to cv2's BGR arrays, in RGB
PAD_RGB = (124, 116, 104)
PRESETS = {"ss": {"sizes": [1024], "gaps": [200], "rates": [1.0]},
           "ms": {"sizes": [1024], "gaps": [500], "rates": [0.5, 1.0, 1.5]}}
SOURCES_FILE = "sources.json"  # written beside images/ by split_images: the original images' names and sizes
PATCH_NAME = re.compile(r"^(?P<id>.+?)__(?P<size>\d+(?:\.\d+)?)__(?P<x>\d+)___(?P<y>\d+)$")

__all__ = ["PATCH_NAME", "PRESETS", "Patch", "clip_polygon", "merge_patch_detections", "parse_patch_name",
           "patch_name", "poly_window_iof", "polygon_area", "rate_windows", "sliding_windows", "split_image",
           "split_images", "window_objects", "read_sources", "write_sources", "SOURCES_FILE"]


# -- windows ------------------------------------------------------------------------------------

def rate_windows(sizes: Sequence[int], gaps: Sequence[int], rates: Sequence[float]) -> tuple[list[int], list[int]]:
    """The window sizes and gaps in original pixels: ``int(size / rate)``, ``int(gap / rate)`` per rate
    (img_split's ``main``; one size/gap pair with several rates, or several pairs with one rate)."""
    if len(sizes) != len(gaps):
        raise ValueError(f"{len(sizes)} sizes but {len(gaps)} gaps")
    if len(sizes) != 1 and len(rates) != 1:
        raise ValueError("give several sizes/gaps or several rates, not both (as img_split)")
    out_s, out_g = [], []
    for rate in rates:
        out_s += [int(s / rate) for s in sizes]
        out_g += [int(g / rate) for g in gaps]
    return out_s, out_g


def _starts(side: int, size: int, step: int) -> list[int]:
    n = 1 if side <= size else math.ceil((side - size) / step + 1)
    starts = [step * i for i in range(n)]
    if len(starts) > 1 and starts[-1] + size > side:
        starts[-1] = side - size
    return starts


def sliding_windows(width: int, height: int, sizes: Sequence[int], gaps: Sequence[int],
                    img_rate_thr: float = 0.6) -> np.ndarray:
    """(K, 4) int64 windows ``x_start, y_start, x_stop, y_stop`` (module docstring)."""
    windows = []
    for size, gap in zip(sizes, gaps):
        if size <= gap:
            raise ValueError(f"invalid window size/gap pair {size}/{gap} (the size must exceed the gap)")
        step = size - gap
        start = np.array(list(itertools.product(_starts(width, size, step), _starts(height, size, step))),
                         np.int64).reshape(-1, 2)
        windows.append(np.concatenate([start, start + size], axis=1))
    win = np.concatenate(windows, axis=0)
    inside = win.copy()
    inside[:, 0::2] = np.clip(inside[:, 0::2], 0, width)
    inside[:, 1::2] = np.clip(inside[:, 1::2], 0, height)
    img_area = (inside[:, 2] - inside[:, 0]) * (inside[:, 3] - inside[:, 1])
    win_area = (win[:, 2] - win[:, 0]) * (win[:, 3] - win[:, 1])
    rates = img_area / win_area
    if not (rates > img_rate_thr).any():
        rates[np.abs(rates - rates.max()) < 0.01] = 1
    return win[rates > img_rate_thr]


# -- polygon geometry ---------------------------------------------------------------------------

def polygon_area(pts: np.ndarray) -> float:
    """Area of a simple polygon ``(n, 2)`` (shoelace, absolute value)."""
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon(pts: np.ndarray, rect: Sequence[float]) -> np.ndarray:
    """Sutherland–Hodgman clip of polygon ``(n, 2)`` by the axis-aligned rectangle ``x1, y1, x2, y2``
    (a convex clip region: correct for any simple subject polygon); ``(m, 2)`` float64, maybe empty."""
    x1, y1, x2, y2 = (float(v) for v in rect)
    out = [tuple(p) for p in np.asarray(pts, np.float64)]
    # each edge: inside test and intersection of segment p→q with the boundary line
    edges = ((0, x1, True), (0, x2, False), (1, y1, True), (1, y2, False))
    for axis, bound, lower in edges:
        if not out:
            break
        inp, out = out, []
        def inside(p, axis=axis, bound=bound, lower=lower) -> bool:
            return p[axis] >= bound if lower else p[axis] <= bound
        prev = inp[-1]
        for cur in inp:
            cin, pin = inside(cur), inside(prev)
            if cin != pin:
                t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                other = 1 - axis
                cross = [0.0, 0.0]
                cross[axis] = bound
                cross[other] = prev[other] + t * (cur[other] - prev[other])
                out.append(tuple(cross))
            if cin:
                out.append(cur)
            prev = cur
    return np.asarray(out, np.float64).reshape(-1, 2)


def poly_window_iof(polys: np.ndarray, windows: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(N, K) area(polygon ∩ window) / area(polygon) of ``(N, 8)`` polygons and ``(K, 4)`` windows,
    as img_split's ``bbox_overlaps_iof`` (module docstring)."""
    polys = np.asarray(polys, np.float32).reshape(-1, 8)
    windows = np.asarray(windows).reshape(-1, 4)
    n, k = len(polys), len(windows)
    out = np.zeros((n, k), np.float64)
    if n * k == 0:
        return out
    pts = polys.reshape(n, 4, 2).astype(np.float64)
    lo, hi = pts.min(1), pts.max(1)
    iw = np.clip(np.minimum(hi[:, None, 0], windows[None, :, 2]) - np.maximum(lo[:, None, 0], windows[None, :, 0]),
                 0, None)
    ih = np.clip(np.minimum(hi[:, None, 1], windows[None, :, 3]) - np.maximum(lo[:, None, 1], windows[None, :, 1]),
                 0, None)
    areas = np.array([polygon_area(p) for p in pts], np.float64)
    for i, j in zip(*np.nonzero(iw * ih)):
        w = windows[j]
        if lo[i, 0] >= w[0] and lo[i, 1] >= w[1] and hi[i, 0] <= w[2] and hi[i, 1] <= w[3]:
            out[i, j] = areas[i]  # wholly inside: the intersection is the polygon itself
        else:
            out[i, j] = polygon_area(clip_polygon(pts[i], w))
    denom = np.clip(areas.astype(np.float32), eps, np.inf)  # img_split: unions in float32, floor eps
    return out / denom[:, None]


def window_objects(polys: np.ndarray, windows: np.ndarray, iof_thr: float = 0.7
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per window: (indices of the objects with iof ≥ ``iof_thr``, whether each is truncated, iof < 1)."""
    iofs = poly_window_iof(polys, windows)
    out = []
    for j in range(len(np.asarray(windows).reshape(-1, 4))):
        idx = np.nonzero(iofs[:, j] >= iof_thr)[0]
        out.append((idx, iofs[idx, j] < 1))
    return out


# -- patches ------------------------------------------------------------------------------------

def patch_name(image_id: str, window: Sequence[int]) -> str:
    """``<id>__<window size>__<x_start>___<y_start>`` (img_split's ``crop_and_save_img``)."""
    x1, y1, x2, _ = (int(v) for v in window)
    return f"{image_id}__{x2 - x1}__{x1}___{y1}"


def parse_patch_name(name: str) -> tuple[str, str, int, int]:
    """(original id, size-or-rate field, x_start, y_start) of a patch name (either convention)."""
    m = PATCH_NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a patch name <id>__<size>__<x>___<y>")
    return m["id"], m["size"], int(m["x"]), int(m["y"])


@dataclass
class Patch:
    name: str
    window: tuple[int, int, int, int]
    pixels: np.ndarray          # (h, w, C) uint8
    lines: list[str]            # the label file's lines (no newline)


def _fmt(v: np.float32) -> str:
    return str(np.float32(v))


def split_image(image: np.ndarray, image_id: str, polys: np.ndarray, names: Sequence[str], diffs: np.ndarray, *,
                sizes: Sequence[int], gaps: Sequence[int], img_rate_thr: float = 0.6, iof_thr: float = 0.7,
                padding_value: int | Sequence[int] = PAD_RGB, no_padding: bool = False) -> list[Patch]:
    """The patches of one (H, W, C) image with its objects (``sizes``/``gaps`` in original pixels, i.e.
    after :func:`rate_windows`)."""
    h, w = image.shape[:2]
    windows = sliding_windows(w, h, sizes, gaps, img_rate_thr)
    polys = np.asarray(polys, np.float32).reshape(-1, 8)
    diffs = np.asarray(diffs, np.int64).reshape(-1)
    patches = []
    for win, (idx, trunc) in zip(windows, window_objects(polys, windows, iof_thr)):
        x1, y1, x2, y2 = (int(v) for v in win)
        px = image[y1:y2, x1:x2]
        if not no_padding and (px.shape[0] < y2 - y1 or px.shape[1] < x2 - x1):
            full = np.empty((y2 - y1, x2 - x1) + image.shape[2:], np.uint8)
            full[...] = np.asarray(padding_value, np.uint8) if np.ndim(padding_value) else padding_value
            full[:px.shape[0], :px.shape[1]] = px
            px = full
        moved = polys[idx] + np.array([-x1, -y1] * 4, np.float32)
        lines = [" ".join(_fmt(v) for v in p) + f" {names[i]} {'2' if t else str(int(diffs[i]))}"
                 for p, i, t in zip(moved, idx, trunc)]
        patches.append(Patch(patch_name(image_id, win), (x1, y1, x2, y2), np.ascontiguousarray(px), lines))
    return patches


#: reads one source image's objects: image path → (polygons (N, 8), class names, difficult (N,) ints)
ObjectReader = Callable[[Path], tuple[np.ndarray, list[str], np.ndarray]]


def dota_reader(ann_dir: Path | None) -> ObjectReader:
    """Objects of ``<ann_dir>/<stem>.txt`` (DOTA ``labelTxt``); none without ``ann_dir``; a missing file is
    an image without objects (img_split: "treated as empty txtfile", logged)."""
    from rsbench.data.rotated import parse_dota_lines

    def read(img: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
        if ann_dir is None:
            return np.zeros((0, 8), np.float32), [], np.zeros((0,), np.int64)
        txt = ann_dir / f"{img.stem}.txt"
        if not txt.is_file():
            log.warning("%s: no label file, treated as empty", txt)
            return np.zeros((0, 8), np.float32), [], np.zeros((0,), np.int64)
        polys, names, diffs, _, _ = parse_dota_lines(txt)
        return polys, names, diffs
    return read


@dataclass
class Source:
    """A folder of images to split: how to read each image's objects and name it (default: its stem)."""

    folder: Path
    reader: ObjectReader
    image_id: Callable[[Path], str] | None = None


def split_images(sources: Iterable[Source], out_dir: Path, *, sizes: Sequence[int] = (1024,),
                 gaps: Sequence[int] = (200,), rates: Sequence[float] = (1.0,), img_rate_thr: float = 0.6,
                 iof_thr: float = 0.7, padding_value: int | Sequence[int] = PAD_RGB, no_padding: bool = False,
                 save_ext: str = ".png", write_labels: bool = True) -> dict[str, int]:
    """Split every image of ``sources`` into ``out_dir/images`` (and ``out_dir/annfiles`` when
    ``write_labels``); returns counts (images, patches, objects written)."""
    from PIL import Image

    from rsbench.data.io import read_image
    from rsbench.data.rotated import large_images

    if not 0 <= iof_thr <= 1:
        raise ValueError(f"iof_thr must lie in [0, 1], got {iof_thr}")
    wsizes, wgaps = rate_windows(list(sizes), list(gaps), list(rates))
    img_out, ann_out = out_dir / "images", out_dir / "annfiles"
    img_out.mkdir(parents=True, exist_ok=True)
    if write_labels:
        ann_out.mkdir(parents=True, exist_ok=True)
    stats = {"images": 0, "patches": 0, "objects": 0}
    originals: dict[str, dict[str, object]] = {}
    for src in sources:
        files = sorted(p for p in Path(src.folder).iterdir() if p.suffix in IMAGE_EXTS)
        for img_path in files:
            with large_images():
                image = read_image(img_path, bands=3, strict=False)
            polys, names, diffs = src.reader(img_path)
            pid = src.image_id(img_path) if src.image_id else img_path.stem
            patches = split_image(image, pid, polys, names, diffs, sizes=wsizes, gaps=wgaps,
                                  img_rate_thr=img_rate_thr, iof_thr=iof_thr, padding_value=padding_value,
                                  no_padding=no_padding)
            for p in patches:
                Image.fromarray(p.pixels).save(img_out / f"{p.name}{save_ext}")
                if write_labels:
                    (ann_out / f"{p.name}.txt").write_text("".join(f"{ln}\n" for ln in p.lines))
                stats["objects"] += len(p.lines)
            originals[pid] = {"file": img_path.name, "width": int(image.shape[1]), "height": int(image.shape[0]),
                              "depth": int(image.shape[2]) if image.ndim == 3 else 1}
            stats["images"] += 1
            stats["patches"] += len(patches)
            log.info("%s: %dx%d, %d objects, %d patches", img_path.name, image.shape[1], image.shape[0],
                     len(polys), len(patches))
    write_sources(out_dir, originals)
    return stats


def write_sources(out_dir: Path, originals: Mapping[str, Mapping[str, object]]) -> Path:
    """``<out_dir>/sources.json``: each original image's file name and size by id (a FAIR1M submission
    XML states them; the patches alone do not tell them)."""
    import json
    import os

    path = Path(out_dir) / SOURCES_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(originals), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def read_sources(split_dir: Path) -> dict[str, dict[str, object]] | None:
    """What :func:`write_sources` wrote into ``split_dir``, or None when the patches came without it."""
    import json

    from rsbench.errors import DataError

    path = Path(split_dir) / SOURCES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable ({e}); rerun scripts/split_dota.py or delete the file") from e
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object of image ids, got {type(data).__name__}")
    return data


# -- merge --------------------------------------------------------------------------------------

def merge_patch_detections(dets: Iterable[tuple[str, Mapping[str, torch.Tensor]]], *, iou_thr: float = 0.1,
                           naming: str = "mmrotate") -> dict[str, dict[str, torch.Tensor]]:
    """Patch detections → per original image (module docstring).

    ``dets``: (patch name, ``{"boxes": (N, 5) rboxes in the patch's pixels, "scores": (N,), "labels": (N,)}``);
    a name that is not a patch name is a whole image (offset 0). Boxes are moved in float32, as
    MMRotate's ``merge_results`` adds the offsets to float32 arrays.
    Returns ``{original id: {"boxes", "scores", "labels"}}`` in the original image's pixels, class by
    class (ascending), each class by decreasing score after rotated NMS at ``iou_thr``.
    """
    from rsbench.models.ops.rotated_nms import nms_rotated

    if naming not in ("mmrotate", "devkit"):
        raise ValueError(f"naming must be mmrotate or devkit, got {naming!r}")
    collect: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for name, d in dets:
        if PATCH_NAME.match(name):
            orig, field, x, y = parse_patch_name(name)
        else:  # a whole image (the official layout, not split): its own original
            orig, field, x, y = name, "1", 0, 0
        boxes = torch.as_tensor(d["boxes"]).detach().reshape(-1, 5).float().clone()
        boxes[:, 0] += x
        boxes[:, 1] += y
        if naming == "devkit":
            rate = float(field)
            boxes[:, :4] /= rate
        collect.setdefault(orig, []).append((boxes, torch.as_tensor(d["scores"]).detach().reshape(-1),
                                             torch.as_tensor(d["labels"]).detach().reshape(-1).long()))
    out = {}
    for orig, parts in collect.items():
        boxes = torch.cat([p[0] for p in parts])
        scores = torch.cat([p[1] for p in parts])
        labels = torch.cat([p[2] for p in parts])
        keep_b, keep_s, keep_l = [], [], []
        for c in torch.unique(labels).tolist():
            sel = torch.nonzero(labels == c).flatten()
            keep = sel[nms_rotated(boxes[sel], scores[sel], iou_thr)]
            keep_b.append(boxes[keep])
            keep_s.append(scores[keep])
            keep_l.append(labels[keep])
        out[orig] = {"boxes": torch.cat(keep_b) if keep_b else boxes[:0], "scores": torch.cat(keep_s) if keep_s
                     else scores[:0], "labels": torch.cat(keep_l) if keep_l else labels[:0]}
    return out


# -- command line -------------------------------------------------------------------------------

def build_parser():
    import argparse

    ap = argparse.ArgumentParser(
        prog="scripts/split_dota.py",
        description="Cut DOTA (or FAIR1M-2.0) images into patches as MMRotate's img_split.py does "
                    "(rsbench/data/dota_split.py). Writes <out>/<split>/images and <out>/<split>/annfiles.")
    ap.add_argument("--src", required=True, type=Path, help="the dataset in its official layout (DOTA: "
                    "<src>/{train,val,test}/images + labelTxt; FAIR1M: train/part*/, validation/, test/)")
    ap.add_argument("--out", required=True, type=Path, help="output root, e.g. data/split_ss_dota")
    ap.add_argument("--dataset", choices=("dota", "fair1m"), default="dota")
    ap.add_argument("--splits", nargs="+", default=["trainval", "test"],
                    help="splits to write (trainval = train + val; test has no labels)")
    ap.add_argument("--preset", choices=tuple(PRESETS), default="ss",
                    help="ss: 1024/200/rate 1 (split_ss_*); ms: 1024/500/rates 0.5 1 1.5 (split_ms_*)")
    ap.add_argument("--sizes", nargs="+", type=int, help="window sizes (override the preset)")
    ap.add_argument("--gaps", nargs="+", type=int, help="window overlaps (override the preset)")
    ap.add_argument("--rates", nargs="+", type=float, help="rates (override the preset)")
    ap.add_argument("--img-rate-thr", type=float, default=0.6)
    ap.add_argument("--iof-thr", type=float, default=0.7)
    ap.add_argument("--padding-value", nargs="+", type=int, default=list(PAD_RGB),
                    help="RGB padding (default 124 116 104 = MMRotate's BGR 104 116 124)")
    ap.add_argument("--no-padding", action="store_true")
    ap.add_argument("--save-ext", default=".png", choices=(".png", ".jpg", ".bmp", ".tif"))
    ap.add_argument("--label-dir", default=None, help="DOTA: label folder under <src>/<split>/ (default labelTxt)")
    ap.add_argument("--version", default="1.0", help="DOTA version (label folder search only)")
    return ap


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    from rsbench.errors import DataError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = dict(PRESETS[args.preset])
    for key in ("sizes", "gaps", "rates"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    pad = args.padding_value[0] if len(args.padding_value) == 1 else tuple(args.padding_value)
    if args.dataset == "dota":
        from rsbench.data.datasets.dota import split_sources
    else:
        from rsbench.data.datasets.fair1m import split_sources
    results = {}
    for split in args.splits:
        out = args.out / split
        if out.exists() and any(out.iterdir()):
            raise DataError(f"{out} already exists and is not empty (img_split refuses too); remove it first")
        kw = {"label_dir": args.label_dir, "version": args.version} if args.dataset == "dota" else {}
        sources, labelled = split_sources(args.src, split, **kw)
        results[split] = split_images(sources, out, sizes=cfg["sizes"], gaps=cfg["gaps"], rates=cfg["rates"],
                                      img_rate_thr=args.img_rate_thr, iof_thr=args.iof_thr, padding_value=pad,
                                      no_padding=args.no_padding, save_ext=args.save_ext, write_labels=labelled)
        log.info("%s: %d images → %d patches (%d objects) in %s", split, results[split]["images"],
                 results[split]["patches"], results[split]["objects"], out)
    return results
