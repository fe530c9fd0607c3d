"""Speed of rsbench's rotated ops against a per-pair shapely loop (the reference point); writes
results/bench_rotated.md.

    python scripts/bench_rotated.py [--threads 1] [--reps 3] [--device cpu|cuda|all] [--out results/bench_rotated.md]

* rotated IoU matrix, 2000 x {50, 500, 2000} boxes (:func:`rsbench.models.ops.rbox.rbox_iou`: torchvision's kernel
  with the near-coincident repair);
* rotated NMS, N = 500, 2000, 8000 boxes at IoU 0.1 (:func:`rsbench.models.ops.rotated_nms.nms_rotated`; greedy
  with a horizontal prefilter on CPU, IoU matrix + bitmask on CUDA);
* RoIAlignRotated forward + backward, 512 and 2000 RoIs x 256 channels x 7x7 on a 256 x 128 x 128 map
  (stride 8), against torchvision's horizontal ``roi_align`` on the same sizes;
* the Oriented R-CNN assigner's IoU on a dense DOTA patch: 2000 proposals x 1000 ground truths on 1024 px
  (:func:`rsbench.models.ops.rbox.rbox_iou`, as the assigner calls it).

The shapely reference computes each pair as ``Polygon.intersection(...).area`` in a Python loop (what a
hand-written loader or metric typically does); it is timed on a sample of the pairs and scaled to the
full count. rsbench timings are the minimum of ``--reps`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from rsbench.models.ops.rbox import rbox_iou, rbox_to_poly
from rsbench.models.ops.roi_align_rotated import roi_align_rotated
from rsbench.models.ops.rotated_nms import nms_rotated


def timeit(fn, reps: int, device: str) -> float:
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def boxes(n: int, g: torch.Generator, extent: float = 1024.0, side: float = 60.0) -> torch.Tensor:
    u = torch.rand(n, 5, generator=g, dtype=torch.float64)
    return torch.stack([u[:, 0] * extent, u[:, 1] * extent, 4 + u[:, 2] * side, 4 + u[:, 3] * side / 2,
                        (u[:, 4] - 0.5) * math.pi], 1).float()


def shapely_pairs_ms(a: torch.Tensor, b: torch.Tensor, pairs: int, sample: int = 20000, reps: int = 1) -> float:
    """Milliseconds a per-pair shapely loop takes for ``pairs`` pairs (timed on ``sample`` of them; the
    minimum of ``reps`` runs, as for rsbench)."""
    from shapely.geometry import Polygon

    pa = [Polygon(p.reshape(4, 2).tolist()) for p in rbox_to_poly(a.double()).numpy()]
    pb = [Polygon(p.reshape(4, 2).tolist()) for p in rbox_to_poly(b.double()).numpy()]
    n = min(sample, pairs)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        k = 0
        for i in range(len(pa)):
            for j in range(len(pb)):
                x, y = pa[i], pb[j]
                inter = x.intersection(y).area
                _ = inter / (x.area + y.area - inter)
                k += 1
                if k >= n:
                    break
            if k >= n:
                break
        best = min(best, time.perf_counter() - t0)
    return best * 1e3 * pairs / k


def bench(device: str, reps: int) -> list[tuple[str, float, float | None]]:
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(0)
    rows: list[tuple[str, float, float | None]] = []
    a = boxes(2000, g)
    for m in (50, 500, 2000):
        b = boxes(m, g)
        ad, bd = a.to(device), b.to(device)
        rows.append((f"rotated IoU 2000 x {m}", timeit(lambda: rbox_iou(ad, bd), reps, device),
                     shapely_pairs_ms(a, b, 2000 * m, reps=reps)))
    for n in (500, 2000, 8000):
        bx = boxes(n, g, extent=512.0)
        sc = torch.rand(n, generator=g)
        bd, sd = bx.to(device), sc.to(device)
        # greedy NMS visits about n^2 / 2 pairs in the worst case; the shapely loop is scored on that count
        rows.append((f"rotated NMS N={n} (IoU 0.1)", timeit(lambda: nms_rotated(bd, sd, 0.1), reps, device),
                     shapely_pairs_ms(bx, bx, n * (n - 1) // 2, reps=reps)))
    feat = torch.randn(2, 256, 128, 128, generator=g).to(device).requires_grad_(True)
    for r in (512, 2000):
        rb = boxes(r, g, extent=1024.0, side=200.0)
        rois = torch.cat([torch.randint(0, 2, (r, 1), generator=g).float(), rb], 1).to(device)
        hb = torch.cat([rois[:, :1], rois[:, 1:3] - rois[:, 3:5] / 2, rois[:, 1:3] + rois[:, 3:5] / 2], 1)

        def rot():
            out = roi_align_rotated(feat, rois, (7, 7), 1 / 8, sampling_ratio=2, aligned=True, clockwise=True)
            out.sum().backward()

        def hor():
            out = roi_align(feat, hb, (7, 7), 1 / 8, sampling_ratio=2, aligned=True)
            out.sum().backward()

        rows.append((f"RoIAlignRotated fwd+bwd {r} RoIs x 256 ch", timeit(rot, reps, device), None))
        rows.append(("  torchvision roi_align (horizontal), same", timeit(hor, reps, device), None))
    props, gts = boxes(2000, g, extent=1024.0, side=40.0), boxes(1000, g, extent=1024.0, side=40.0)
    pd_, gd = props.to(device), gts.to(device)
    rows.append(("assigner IoU, 1000 gts x 2000 proposals (1024 px patch)",
                 timeit(lambda: rbox_iou(gd, pd_), reps, device), shapely_pairs_ms(gts, props, 2000 * 1000, reps=reps)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--out", type=Path, default=Path("results/bench_rotated.md"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    lines = ["# Rotated ops: speed against a per-pair shapely loop", "",
             f"`python scripts/bench_rotated.py --threads {args.threads} --reps {args.reps}`; torch {torch.__version__}, "
             f"{platform.machine()}, {args.threads} CPU thread(s)"
             + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no GPU") + ". rsbench: minimum of the "
             "runs after a warm-up; shapely: a Python loop of `Polygon.intersection` per pair, timed on up to 20,000 "
             "pairs and scaled to the pair count (NMS: n(n-1)/2 pairs, the greedy worst case). Target (issue #14): "
             "rotated IoU and NMS at least 50x the shapely loop. The boxes are random on a 1024 px scene (sides 4-64 px), "
             "so most pairs are disjoint: shapely then takes GEOS's envelope fast path (~1 us a pair); rsbench runs "
             "torchvision's kernel only on the pairs whose horizontal boxes meet, in chunks (a kernel call costs ~10 us "
             "plus 0.15-0.3 us a pair), so small inputs are dominated by fixed costs. NMS boxes lie on 512 px.", ""]
    for device in devices:
        lines += [f"## {device}", "", "| case | rsbench (ms) | shapely loop (ms) | speed-up |", "|---|---|---|---|"]
        for name, ms, ref in bench(device, args.reps):
            ratio = f"{ref / ms:,.0f}x" if ref else "–"
            lines.append(f"| {name} | {ms:,.1f} | {'–' if ref is None else f'{ref:,.0f}'} | {ratio} |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
