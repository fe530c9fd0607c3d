"""Synthetic but learnable pixels: each class has its own colour and stripe pattern."""

from __future__ import annotations

import numpy as np


def class_image(rng: np.random.Generator, label: int, num_classes: int, size: int, channels: int = 3,
                dtype=np.uint8, scale: float = 255.0) -> np.ndarray:
    """(H, W, C) image whose mean colour and stripe direction/frequency depend on ``label``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * label / num_classes
    freq = 2 + (label % 4) * 2
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 2 * np.pi))
    hue = np.array([np.cos(2 * np.pi * (label / num_classes + c / channels)) for c in range(channels)])
    base = 0.5 + 0.35 * hue
    img = base[None, None, :] * (0.6 + 0.4 * stripes[:, :, None]) + rng.normal(0, 0.05, (size, size, channels))
    return (np.clip(img, 0, 1) * scale).astype(dtype)


def binary_blobs(rng: np.random.Generator, size: int, n: int = 3, max_r: float = 0.2) -> np.ndarray:
    """(H, W) bool mask of a few random rectangles (buildings, changes)."""
    m = np.zeros((size, size), bool)
    for _ in range(n):
        h, w = rng.integers(max(2, size // 16), max(3, int(size * max_r)), size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        m[y:y + h, x:x + w] = True
    return m


def terrain(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """(H, W, C) float image in [0, 1]: smooth random field (fields, vegetation) plus fine noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w), np.float32)
    for _ in range(4):
        fy, fx = rng.uniform(0.5, 3.0, 2) / max(h, w)
        field += np.sin(2 * np.pi * (fy * yy + fx * xx) + rng.uniform(0, 2 * np.pi))
    field = 0.5 + 0.12 * field
    tint = rng.uniform(0.7, 1.1, channels).astype(np.float32)
    img = field[:, :, None] * tint[None, None, :] * np.linspace(0.8, 1.0, channels, dtype=np.float32)[None, None, :]
    return np.clip(img + rng.normal(0, 0.02, (h, w, channels)), 0, 1)


def change_pair(rng: np.random.Generator, h: int, w: int | None = None, channels: int = 3, n_changes: int = 3,
                season: bool = False, dtype=np.uint8, scale: float = 255.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(date 1, date 2, change mask): a learnable synthetic change pair.

    Both dates show the same terrain and the same unchanged "buildings" (so appearance alone does
    not give the answer); date 2 adds ``n_changes`` bright new rectangles, which are the changed
    pixels. ``season`` shifts date 2's colours globally (CDD's season-varying pairs).
    Images are (H, W, C) ``dtype`` scaled to ``scale``; the mask is (H, W) bool.
    """
    w = h if w is None else w
    base = terrain(rng, h, w, channels)
    old = _rects(rng, h, w, 2)
    roof_old = rng.uniform(0.75, 0.95, channels)
    base[old] = roof_old + rng.normal(0, 0.02, (int(old.sum()), channels))
    img1 = base + rng.normal(0, 0.015, base.shape)
    img2 = base + rng.normal(0, 0.015, base.shape)
    if season:
        img2 = img2 * rng.uniform(0.85, 1.1, channels) + rng.uniform(-0.05, 0.05, channels)
    new = _rects(rng, h, w, n_changes) & ~old
    roof = rng.uniform(0.8, 1.0, channels) * np.where(np.arange(channels) % 3 == 0, 1.0, 0.55)
    img2[new] = roof + rng.normal(0, 0.02, (int(new.sum()), channels))
    to = lambda x: (np.clip(x, 0, 1) * scale).round().astype(dtype)  # noqa: E731
    return to(img1), to(img2), new


def _rects(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    for _ in range(n):
        rh = int(rng.integers(max(2, h // 10), max(3, h // 4)))
        rw = int(rng.integers(max(2, w // 10), max(3, w // 4)))
        y, x = int(rng.integers(0, h - rh)), int(rng.integers(0, w - rw))
        m[y:y + rh, x:x + rw] = True
    return m
