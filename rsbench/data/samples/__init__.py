"""Tiny datasets written in each dataset's official on-disk layout.

They drive the tests and the demo: a loader is tested by reading files laid out exactly as the
real release unpacks. Each dataset class writes its own (``write_sample``, beside its loader in
:mod:`rsbench.data.datasets`); :func:`write_sample` adds the marker that says the data is
generated. The pixels (:mod:`rsbench.data.samples.synth`) are synthetic but class-dependent, so
a model can learn them.

    python -m rsbench.data.samples eurosat /tmp/eurosat      # write one from the shell
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAMPLE_NOTE = "GENERATED SAMPLE DATA (synthetic pixels in the official layout; not the real dataset)"
MARKER = "RSBENCH_SAMPLE_DATA.txt"


def write_sample(name: str, root: str | Path, **kw: Any) -> Path:
    """The registered dataset ``name``'s sample copy written to ``root`` (``seed=``, the writer's own
    keywords), marked as generated; returns the root."""
    from rsbench.data import DATASETS

    cls = DATASETS.get(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    out = cls.write_sample(root, **kw)
    (root / MARKER).write_text(f"{SAMPLE_NOTE}\nwritten by rsbench.data.samples for {name!r}\n")
    return out


def is_sample(root: str | Path) -> bool:
    return (Path(root) / MARKER).is_file()
