"""Datasets behind :func:`build_dataset`; one module per dataset, each registered by name."""

from rsbench.data.registry import DATASETS, build_dataset

# Importing the modules registers the datasets.
from rsbench.data import eurosat, resisc45  # noqa: F401,E402

__all__ = ["DATASETS", "build_dataset"]
