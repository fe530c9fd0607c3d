"""Drawing primitives behind every dataset's ``plot`` (TorchGeo's ``dataset.plot(sample)`` convention).

One module for every task: the family base classes (:mod:`rsbench.data.scene`,
:mod:`rsbench.data.segmentation`, :mod:`rsbench.data.change`) compose their figures from these.

* Images are shown by a 2–98 % percentile stretch of three bands (a dataset's ``rgb_bands``), so
  a raw uint8/uint16 sample and a normalised float one look alike.
* Label maps are drawn in the dataset's palette; ignored pixels (255) and ids outside the palette
  in a spare colour that is not in it.
* Change maps: label unchanged black / changed white / ignored grey; prediction true change
  white, false alarm red, missed change blue, no change black (ignored pixels grey).
* Figures are plain :class:`matplotlib.figure.Figure` objects on the Agg canvas: no display and
  no pyplot state are needed (``fig.savefig(path)`` works; ``plt.close(fig)`` is harmless).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rsbench.constants import IGNORE_INDEX

Colour = tuple[int, int, int]

#: Candidates for ignored pixels, the first one not in the palette is used.
SPARE_COLOURS: tuple[Colour, ...] = ((0, 0, 0), (128, 128, 128), (255, 0, 255), (0, 255, 255))
#: Change maps (label and prediction).
UNCHANGED, CHANGED, IGNORED = (0, 0, 0), (255, 255, 255), (128, 128, 128)
FALSE_ALARM, MISSED = (230, 40, 40), (40, 90, 230)
CHANGE_LEGEND: tuple[tuple[str, Colour], ...] = (("unchanged", UNCHANGED), ("changed", CHANGED), ("ignored", IGNORED))
CHANGE_PRED_LEGEND: tuple[tuple[str, Colour], ...] = (("false alarm", FALSE_ALARM), ("missed change", MISSED))


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def stretch_rgb(image: Any, rgb_bands: Sequence[int] = (0, 1, 2), size: tuple[int, int] | None = None,
                percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """A (C, H, W) image (raw or normalised) as (H, W, 3) uint8: bands ``rgb_bands`` (the first band
    as grey when the image has fewer), stretched between the 2 and 98 % percentiles of the three,
    resized (bilinear) to ``size`` (H, W) when given."""
    x = to_numpy(image).astype(np.float32)
    if x.ndim == 2:
        x = x[None]
    x = x[list(rgb_bands)] if x.shape[0] > max(rgb_bands) else np.repeat(x[:1], 3, axis=0)
    if size is not None and tuple(x.shape[1:]) != tuple(size):
        import torch
        import torch.nn.functional as F

        x = F.interpolate(torch.from_numpy(x)[None], size=tuple(size), mode="bilinear", align_corners=False)[0].numpy()
    lo, hi = np.percentile(x, percentiles)
    x = np.clip((x - lo) / (hi - lo + 1e-6), 0, 1)
    return (x.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def spare_colour(palette: Sequence[Sequence[int]]) -> Colour:
    """The first of :data:`SPARE_COLOURS` that ``palette`` does not use."""
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    return next(c for c in SPARE_COLOURS if not (pal == np.array(c, np.uint8)).all(1).any())


def colorize(label: Any, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 in ``palette``; every id without a palette entry (the
    ignore index 255 among them) in :func:`spare_colour`."""
    pal = np.asarray(palette, np.uint8).reshape(-1, 3)
    lut = np.tile(np.array(spare_colour(pal), np.uint8), (256, 1))
    lut[: len(pal)] = pal
    return lut[np.clip(to_numpy(label), 0, 255).astype(np.uint8)]


def default_palette(n: int) -> list[Colour]:
    """``n`` distinct-enough colours (seeded), for datasets without an official palette."""
    rng = np.random.default_rng(12345)
    return [tuple(int(v) for v in rng.integers(30, 256, 3)) for _ in range(n)]  # type: ignore[misc]


def change_label_rgb(mask: Any, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Change label: changed white, unchanged black, ignored grey."""
    m = to_numpy(mask)
    out = np.zeros((*m.shape, 3), np.uint8)
    out[m == 1] = CHANGED
    out[m == ignore_index] = IGNORED
    return out


def change_pred_rgb(pred: Any, mask: Any | None = None, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Change prediction against the label: true change white, false alarm red, missed change
    blue, no change black; under ignored label pixels light/dark grey for changed/unchanged.
    Without a label: changed white, unchanged black."""
    p = to_numpy(pred)
    out = np.zeros((*p.shape, 3), np.uint8)
    if mask is None:
        out[p == 1] = CHANGED
        return out
    m = to_numpy(mask)
    out[(p == 1) & (m == 1)] = CHANGED
    out[(p == 1) & (m == 0)] = FALSE_ALARM
    out[(p == 0) & (m == 1)] = MISSED
    ign = m == ignore_index
    out[ign] = np.where(p[ign, None] == 1, 200, 100).astype(np.uint8)
    return out


def figure(panels: Sequence[tuple[np.ndarray, str]], *, suptitle: str | None = None,
           legend: Sequence[tuple[str, Sequence[int]]] = (), panel_inches: float = 3.2):
    """A one-row figure of (H, W, 3) uint8 ``panels`` with their titles, a legend of
    (name, RGB colour) entries below them and ``suptitle`` above."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = panels[0][0].shape[:2]
    aspect = min(2.0, max(0.5, h / max(1, w)))
    width = panel_inches * len(panels)
    ncol = max(1, min(len(legend), int(width / 1.4)))
    rows = -(-len(legend) // ncol) if legend else 0
    fig = Figure(figsize=(width, panel_inches * aspect + 0.3 + (0.3 if suptitle else 0.0) + 0.25 * rows),
                 layout="constrained")
    FigureCanvasAgg(fig)
    for ax, (img, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if legend:
        handles = [Patch(facecolor=np.asarray(c) / 255.0, edgecolor="0.5", label=n) for n, c in legend]
        fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=7, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return fig
