"""Cut LEVIR-CD into the paper's 256×256 patches, once, on disk.

    python scripts/prepare_levir.py <LEVIR-CD root> <output root> [--tile 256] [--splits train val test]

Reads the official layout (``<root>/{train,val,test}/{A,B,label}/*.png``, or any layout
:class:`rsbench.data.datasets.levir.LEVIRCD` accepts), cuts every 1024² image into 16 non-overlapping
256² tiles in row-major order and writes them as ``<out>/<split>/{A,B,label}/<stem>_<k>.png``
(k = 1..16, the naming of the BIT/ChangeFormer LEVIR-CD-256 release), which gives the
7,120 / 1,024 / 2,048 patches of the MTP logs. Labels keep their 0/255 values. The result is read
with ``dataset.root=<out>``; with the config's ``tile: 256`` the patches are used as they are.
The same tiles are what ``dataset.kwargs.tile=256`` cuts on the fly, so this step is optional: it
only saves decoding each 1024² PNG again for every tile (so does ``tile_cache``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from rsbench.data.datasets.levir import LEVIRCD


def prepare(src: Path, dst: Path, *, tile: int = 256, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, int]:
    counts = {}
    for split in splits:
        ds = LEVIRCD(src, split, tile=tile, verify="header")
        by_pair: dict[int, list[tuple[tuple[int, int, int, int] | None, str]]] = {}
        for i, win, name in ds.items:
            by_pair.setdefault(i, []).append((win, name))
        for i, tiles in by_pair.items():
            pair = ds.pairs[i]
            for folder, path in (("A", pair.image1), ("B", pair.image2), ("label", pair.label)):
                out = dst / split / folder
                out.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as im:
                    im.load()
                    for win, name in tiles:
                        patch = im if win is None else im.crop((win[1], win[0], win[1] + win[3], win[0] + win[2]))
                        patch.save(out / f"{name}.png")
        counts[split] = len(ds)
        print(f"{split}: {len(ds.pairs)} pairs -> {len(ds)} patches in {dst / split}")
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    a = p.parse_args()
    prepare(a.src, a.dst, tile=a.tile, splits=tuple(a.splits))


if __name__ == "__main__":
    main()
