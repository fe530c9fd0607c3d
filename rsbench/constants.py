"""Values every part of rsbench agrees on, defined once."""

from __future__ import annotations

from pathlib import Path

#: Label value that no loss or metric counts (mmseg's ``ignore_index``): no-data, rotation borders, padding.
IGNORE_INDEX = 255

#: The split files shipped with rsbench (made by ``scripts/make_splits.py``), ``<dataset>/<split>.txt``.
SPLITS_DIR = Path(__file__).resolve().parent / "splits"

#: ImageNet statistics on the 0..1 scale, as every MTP recipe normalises 8-bit RGB.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
