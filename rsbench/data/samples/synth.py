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
