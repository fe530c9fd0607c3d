"""Datasets behind :func:`build_dataset`, found by the registry: every module of
:mod:`rsbench.data.datasets` is imported and registers its classes (see :mod:`rsbench.data.base`)."""

import rsbench.data.datasets  # noqa: F401  (imports every loader module, which registers it)
from rsbench.data.registry import DATASETS, build_dataset

__all__ = ["DATASETS", "build_dataset"]
