"""Per-band mean/std of a training split, for sensors without ImageNet statistics (Sentinel-2).

Estimated from up to ``max_samples`` randomly chosen training images (seeded) and cached as
JSON, so every run on the same data normalises identically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch


def band_stats(dataset, *, key: str = "image", max_samples: int = 2000, seed: int = 0,
               cache_dir: str | Path | None = None, cache_key: str = "") -> tuple[list[float], list[float]]:
    cache = None
    if cache_dir is not None:
        # the first sample's bands and dtype are part of the key: one copy of a release read with
        # different ``bands`` (OSCD rgb / all) must not share statistics
        first = dataset[0][key]
        h = hashlib.sha1(f"{cache_key}|{len(dataset)}|{max_samples}|{seed}|{tuple(first.shape[:1])}|{first.dtype}"
                         .encode()).hexdigest()[:12]
        cache = Path(cache_dir) / f"band_stats-{h}.json"
        if cache.is_file():
            d = json.loads(cache.read_text())
            return d["mean"], d["std"]
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(dataset))[:max_samples]
    s = s2 = None
    n = 0
    for i in idx:
        x = dataset[int(i)][key].to(torch.float64)
        x = x.reshape(x.shape[0], -1)
        s = x.sum(1) if s is None else s + x.sum(1)
        s2 = (x * x).sum(1) if s2 is None else s2 + (x * x).sum(1)
        n += x.shape[1]
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    out = (mean.tolist(), std.tolist())
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"mean": out[0], "std": out[1], "source": cache_key}))
        os.replace(tmp, cache)
    return out
