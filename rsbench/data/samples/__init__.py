"""Tiny datasets written in each dataset's official on-disk layout.

They drive the tests and the demo: a loader is tested by reading files laid out exactly as the
real release unpacks. Each writer is registered under the dataset's name and returns the root
it wrote. The pixels are synthetic but class-dependent, so a model can learn them.

    python -m rsbench.data.samples eurosat /tmp/eurosat      # write one from the shell
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rsbench.registry import Registry

SAMPLES: Registry[Callable[..., Path]] = Registry("sample dataset")

SAMPLE_NOTE = "GENERATED SAMPLE DATA (synthetic pixels in the official layout; not the real dataset)"
MARKER = "RSBENCH_SAMPLE_DATA.txt"


def write_sample(name: str, root: str | Path, **kw: Any) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = SAMPLES.get(name)(root, **kw)
    (root / MARKER).write_text(f"{SAMPLE_NOTE}\nwritten by rsbench.data.samples for {name!r}\n")
    return out


def is_sample(root: str | Path) -> bool:
    return (Path(root) / MARKER).is_file()


from rsbench.data.samples import scene  # noqa: E402,F401  (registers writers)
from rsbench.data.samples import segmentation  # noqa: E402,F401
from rsbench.data.samples import change  # noqa: E402,F401  (change-detection writers)
