"""Cut the official xView train release into the 416² tiles rsbench's ``xview`` loader reads.

    python scripts/prepare_xview.py <xview> <out> [--seed 0] [--n-train 700] [--workers 8]

``<xview>`` holds the release as unpacked: ``xView_train.geojson`` and ``train_images/*.tif``.
``<out>`` receives MTP's ``yolo_format_patch`` layout: ``{train,val}/images/<id>_<k>.png``,
``xview_{train,val}_coco_format.json`` (category ids 0-59) and ``rsbench_xview_split.json`` (the
split and what was dropped). Point ``dataset.root`` (conf/dataset/xview.yaml) at ``<out>``.

What it does is the official ``scripts/prepare_xview_dataset.py`` of MTP — type ids mapped to
the 60 classes (others dropped and counted), boxes clipped to the image, 416² windows at
``linspace(0, L-416, ceil((L-416)/416)+1)`` (truncated; neighbours overlap), images under 416 px
padded with 128 at the bottom/right, a box kept in every window holding its centre and clipped
to it (end - 1 px), windows without boxes not written — with the differences listed in
:mod:`rsbench.data.datasets.xview` (the functions live there, so the tests call them).

THE SPLIT IS NOT THE AUTHORS': theirs was ``np.random.shuffle`` without a seed (700 train, the
rest ~146 val), which cannot be reproduced. This script draws a seeded permutation (``--seed``,
default 0) of the labelled images sorted by number and prints it; the split is recorded in
``rsbench_xview_split.json``, and results on it are marked "rsbench seeded" on the leaderboard.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsbench.data.datasets.xview import TILE, prepare_xview
from rsbench.errors import RsbenchError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", type=Path, help="the official release: xView_train.geojson and train_images/")
    p.add_argument("dst", type=Path, help="output folder (the loader's root)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split (default 0)")
    p.add_argument("--n-train", type=int, default=700, help="train images (default 700; the rest are val)")
    p.add_argument("--tile", type=int, default=TILE, help=f"tile size (default {TILE})")
    p.add_argument("--workers", type=int, default=1, help="processes reading and writing images")
    p.add_argument("--official-pad-rescale", action="store_true",
                   help="scale the boxes of images under the tile size by padded/original size, as MTP's script does")
    p.add_argument("--overwrite", action="store_true", help="replace tiles already in <dst>/{train,val}/images")
    a = p.parse_args(argv)
    try:
        s = prepare_xview(a.src, a.dst, seed=a.seed, n_train=a.n_train, block=a.tile, workers=a.workers,
                          official_pad_rescale=a.official_pad_rescale, overwrite=a.overwrite)
    except (RsbenchError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"train images ({len(s['train'])}): {' '.join(s['train'])}")
    print(f"val images ({len(s['val'])}): {' '.join(s['val'])}")
    print(f"wrote {s['tiles']['train']} train and {s['tiles']['val']} val tiles to {a.dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
