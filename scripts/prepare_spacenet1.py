"""Prepare SpaceNet 1 (AOI_1_Rio) for rsbench: rasterise the footprints once, and write splits.

    python scripts/prepare_spacenet1.py <root>                      # masks → <train>/rsbench_masks/
    python scripts/prepare_spacenet1.py <root> --out /fast/masks    # elsewhere (then dataset.kwargs.mask_dir=...)
    python scripts/prepare_spacenet1.py <root> --split-from-files   # <root>/spacenet1-{train,val}.txt of the tiles present
    python scripts/prepare_spacenet1.py --make-repo-split           # rsbench/splits/spacenet1/{train,val}.txt

``<root>`` is the dataset root (holding ``SN1_buildings/train/``, or that folder itself; see
``rsbench/data/datasets/spacenet1.py``). Masks: one uint8 PNG per tile, named like the tile
(``3band_AOI_1_RIO_img<N>.png``), 0 background / 1 building, rasterised from the tile's GeoJSON
with ``rasterio.features.rasterize`` on the tile's own geotransform (pixel centres inside a
footprint; empty or 0-byte GeoJSONs give all-background masks). The loader then reads these
instead of rasterising on the fly; the pixels are identical either way.

Splits: MTP's train/val split of the 6,940 labelled tiles is not published. The repository's
split (``--make-repo-split``) is a seeded random permutation (numpy ``default_rng(seed)``,
seed 0) of ``img1 .. img6940`` — the tile numbering of the release, assumed contiguous
(UNCONFIRMED) — whose first 1,940 ids are ``val`` and the other 5,000 ``train`` (the
5,000 / 1,940 split commonly quoted for SN1, also UNCONFIRMED); both files are sorted by id.
``--split-from-files`` applies the same rule to the tiles actually present (same seed, val =
round(n · 1940 / 6940)) and writes it beside the data, where the loader prefers it.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

N_TILES, N_VAL, SEED = 6940, 1940, 0


def seeded_split(ids: list[int], n_val: int, seed: int = SEED) -> tuple[list[int], list[int]]:
    """(train, val) ids: a seeded permutation, the first ``n_val`` to val; both sorted."""
    perm = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def write_split(dir_or_prefix: Path, train: list[int], val: list[int], *, prefix: str = "") -> list[Path]:
    out = []
    for name, ids in (("train", train), ("val", val)):
        p = dir_or_prefix / f"{prefix}{name}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(f"img{i}\n" for i in ids))
        out.append(p)
    return out


def _one(args: tuple[str, str, str]) -> str:
    from PIL import Image

    from rsbench.data.datasets.spacenet1 import tile_mask

    tile, geojson, out = args
    mask = tile_mask(Path(tile), Path(geojson))
    tmp = Path(out).with_suffix(".tmp.png")
    Image.fromarray(mask).save(tmp)
    tmp.replace(out)
    return out


def prepare_masks(root: Path, out: Path | None, workers: int, overwrite: bool) -> tuple[Path, int]:
    from rsbench.data.datasets.spacenet1 import MASK_DIR, find_train_dir, index_tiles, prepared_mask_name
    from rsbench.errors import DataError

    train = find_train_dir(root)
    out = out or train / MASK_DIR
    out.mkdir(parents=True, exist_ok=True)
    tiles, geo = index_tiles(train)
    missing = sorted(set(tiles) - set(geo))
    if missing:
        raise DataError(f"{train / 'geojson'}: no GeoJSON for {len(missing)} tiles, e.g. img{missing[0]}")
    jobs = [(str(tiles[i]), str(geo[i]), str(out / prepared_mask_name(tiles[i]))) for i in sorted(tiles)]
    if not overwrite:
        jobs = [j for j in jobs if not Path(j[2]).is_file()]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as ex:
            for _ in ex.map(_one, jobs, chunksize=16):
                pass
    else:
        for j in jobs:
            _one(j)
    return out, len(jobs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", type=Path, help="SpaceNet 1 root (holding SN1_buildings/train/)")
    p.add_argument("--out", type=Path, default=None, help="mask folder (default <train>/rsbench_masks)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--overwrite", action="store_true", help="rewrite masks that exist")
    p.add_argument("--no-masks", action="store_true", help="only write splits")
    p.add_argument("--split-from-files", action="store_true", help="write <root>/spacenet1-{train,val}.txt of the tiles present")
    p.add_argument("--make-repo-split", action="store_true", help="write rsbench/splits/spacenet1/{train,val}.txt")
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args(argv)
    from rsbench.constants import SPLITS_DIR
    from rsbench.errors import RsbenchError

    try:
        if a.make_repo_split:
            train, val = seeded_split(list(range(1, N_TILES + 1)), N_VAL, a.seed)
            for f in write_split(SPLITS_DIR / "spacenet1", train, val):
                print(f"wrote {f}")
            print(f"train {len(train)} / val {len(val)} tiles, seed {a.seed}")
        if a.root is None:
            if not a.make_repo_split:
                p.error("give the dataset root (or --make-repo-split)")
            return 0
        if not a.no_masks:
            out, n = prepare_masks(a.root, a.out, a.workers, a.overwrite)
            print(f"wrote {n} masks to {out}")
        if a.split_from_files:
            from rsbench.data.datasets.spacenet1 import find_train_dir, index_tiles

            tiles, _ = index_tiles(find_train_dir(a.root))
            ids = sorted(tiles)
            n_val = max(1, round(len(ids) * N_VAL / N_TILES))
            train, val = seeded_split(ids, n_val, a.seed)
            for f in write_split(a.root, train, val, prefix="spacenet1-"):
                print(f"wrote {f}")
            print(f"train {len(train)} / val {len(val)} tiles, seed {a.seed}")
    except RsbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
