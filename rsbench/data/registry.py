"""The dataset registry and :func:`build_dataset`; the classes register from :mod:`rsbench.data.datasets`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rsbench.errors import DataError
from rsbench.registry import Registry

DATASETS: Registry = Registry("dataset")


def build_dataset(name: str, root: str | Path, split: str, transforms: Callable | None = None, **kw: Any):
    """The dataset ``name`` read from ``root`` in its official layout (the contract of :mod:`rsbench.data.base`).

    ``kw`` are the loader's arguments (``dataset.kwargs``). A missing root is a :class:`DataError`
    that shows the class's ``expected_layout``.
    """
    cls = DATASETS.get(name)
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(
            f"dataset {name!r}: data root {root.resolve()} does not exist. Put the dataset there in "
            f"its official layout (see the docstring of {cls.__module__}.{cls.__name__}), or point "
            f"dataset.root=... / paths.data_dir=... (env RSBENCH_DATA) at it.\nExpected layout:\n{cls.expected_layout}"
        )
    return cls(root=root, split=split, transforms=transforms, **kw)
