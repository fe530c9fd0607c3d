"""Datasets behind :func:`build_dataset`; one module per dataset, each registered by name."""

from rsbench.data.registry import DATASETS, build_dataset

# Importing the modules registers the datasets.
from rsbench.data import eurosat, resisc45  # noqa: F401,E402
from rsbench.data import loveda, spacenet1  # noqa: F401,E402
from rsbench.data import cdd, clcd, egybcd, gvlm, levir, oscd, whu  # noqa: F401,E402  (change detection)

__all__ = ["DATASETS", "build_dataset"]
