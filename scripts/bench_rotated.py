"""Speed of rsbench's rotated ops against a per-pair shapely loop (the reference point); writes
results/bench_rotated.md.

    python scripts/bench_rotated.py [--threads 1] [--reps 3] [--device cpu|cuda|all] [--out results/bench_rotated.md]

* rotated IoU matrix, 2000 x {50, 500, 2000} boxes (:func:`rsbench.models.ops.rbox.rbox_iou`: torchvision's kernel
  with the near-coincident repair);
* rotated NMS, N = 500, 2000, 8000 boxes at IoU 0.1 (:func:`rsbench.models.ops.rotated_nms.nms_rotated`, ``auto``:
  on the CPU the suppression graph from IoU bounds and the kernel where they do not decide, or greedy with a
  horizontal prefilter for crowded boxes; IoU matrix + bitmask on CUDA);
* RoIAlignRotated forward + backward, 512 and 2000 RoIs x 256 channels x 7x7 on a 256 x 128 x 128 map
  (stride 8), against torchvision's horizontal ``roi_align`` on the same sizes;
* the Oriented R-CNN assigner's IoU on a dense DOTA patch: 2000 proposals x 1000 ground truths on 1024 px
  (:func:`rsbench.models.ops.rbox.rbox_iou`, as the assigner calls it).

The shapely reference computes each pair as ``Polygon.intersection(...).area`` in a Python loop (what a
hand-written loader or metric typically does); it is timed on a sample of the pairs and scaled to the
full count. The two are timed in alternation, ``--reps`` rounds of one shapely loop and the best of a few
rsbench calls (at least 3, about 50 ms of them), after a warm-up: the table gives each side's minimum
and the speed-up as the median over rounds of the paired ratios (so a change of the shared machine's
load between rounds, 2-3x here within minutes, cancels).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from rsbench.models.ops.rbox import rbox_iou, rbox_to_poly
from rsbench.models.ops.roi_align_rotated import roi_align_rotated
from rsbench.models.ops.rotated_nms import nms_rotated
from rsbench.results import cpu_model


def timeit(fn, reps: int, device: str) -> float:
    """Milliseconds: the fastest of ``reps`` calls after a warm-up (the RoIAlign rows: seconds a call)."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_ms(fn, device: str, budget: float = 0.05) -> float:
    """The fastest of at least 3 calls of ``fn`` (more while under ``budget`` seconds), in ms."""
    best, spent, k = math.inf, 0.0, 0
    while k < 3 or spent < budget:
        t0 = time.perf_counter()
        fn()
        sync(device)
        dt = time.perf_counter() - t0
        best, spent, k = min(best, dt), spent + dt, k + 1
    return best * 1e3


def paired(fn, ref, reps: int, device: str) -> tuple[float, float, float]:
    """(rsbench ms, shapely ms, speed-up): ``reps`` rounds of the shapely loop ``ref()`` and
    :func:`best_ms` of ``fn`` in alternation; the minimum of each side and the median paired ratio."""
    fn()
    sync(device)
    ours, theirs = [], []
    for _ in range(reps):
        theirs.append(ref())
        ours.append(best_ms(fn, device))
    return min(ours), min(theirs), statistics.median(t / o for t, o in zip(theirs, ours))


def boxes(n: int, g: torch.Generator, extent: float = 1024.0, side: float = 60.0) -> torch.Tensor:
    u = torch.rand(n, 5, generator=g, dtype=torch.float64)
    return torch.stack([u[:, 0] * extent, u[:, 1] * extent, 4 + u[:, 2] * side, 4 + u[:, 3] * side / 2,
                        (u[:, 4] - 0.5) * math.pi], 1).float()


def shapely_loop(a: torch.Tensor, b: torch.Tensor, pairs: int, sample: int = 20000):
    """A function returning the milliseconds a per-pair shapely loop takes for ``pairs`` pairs (timed on
    ``sample`` of them, scaled)."""
    from shapely.geometry import Polygon

    pa = [Polygon(p.reshape(4, 2).tolist()) for p in rbox_to_poly(a.double()).numpy()]
    pb = [Polygon(p.reshape(4, 2).tolist()) for p in rbox_to_poly(b.double()).numpy()]
    n = min(sample, pairs)

    def run() -> float:
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
        return (time.perf_counter() - t0) * 1e3 * pairs / k

    return run


Row = tuple[str, float, "float | None", "float | None"]  # case, rsbench ms, shapely ms, speed-up


def bench(device: str, reps: int) -> list[Row]:
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(0)
    rows: list[Row] = []
    a = boxes(2000, g)
    for m in (50, 500, 2000):
        b = boxes(m, g)
        ad, bd = a.to(device), b.to(device)
        rows.append((f"rotated IoU 2000 x {m}",
                     *paired(lambda: rbox_iou(ad, bd), shapely_loop(a, b, 2000 * m), reps, device)))
    for n in (500, 2000, 8000):
        bx = boxes(n, g, extent=512.0)
        sc = torch.rand(n, generator=g)
        bd, sd = bx.to(device), sc.to(device)
        # greedy NMS visits about n^2 / 2 pairs in the worst case; the shapely loop is scored on that count
        rows.append((f"rotated NMS N={n} (IoU 0.1)",
                     *paired(lambda: nms_rotated(bd, sd, 0.1), shapely_loop(bx, bx, n * (n - 1) // 2), reps, device)))
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

        rows.append((f"RoIAlignRotated fwd+bwd {r} RoIs x 256 ch", timeit(rot, reps, device), None, None))
        rows.append(("  torchvision roi_align (horizontal), same", timeit(hor, reps, device), None, None))
    props, gts = boxes(2000, g, extent=1024.0, side=40.0), boxes(1000, g, extent=1024.0, side=40.0)
    pd_, gd = props.to(device), gts.to(device)
    rows.append(("assigner IoU, 1000 gts x 2000 proposals (1024 px patch)",
                 *paired(lambda: rbox_iou(gd, pd_), shapely_loop(gts, props, 2000 * 1000), reps, device)))
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
             + (f", {torch.cuda.get_device_name(0)}" if "cuda" in devices else ", no GPU") + f", {cpu_model()}, "
             f"{os.cpu_count()} logical CPU(s), load average {', '.join(f'{x:.2f}' for x in os.getloadavg())} at the "
             "start. shapely: a Python loop of `Polygon.intersection` per pair, timed on up to 20,000 pairs and scaled "
             "to the pair count (NMS: n(n-1)/2 pairs, the greedy worst case). The two sides run in alternation, "
             f"{args.reps} rounds of one shapely loop and the best of at least 3 rsbench calls (~50 ms of them) after a "
             "warm-up; the times are each side's minimum, the speed-up the median over rounds of the paired ratios (the "
             "shared machine's speed moves 2-3x within minutes; pairing cancels most of it). Target (issue #14): rotated "
             "IoU and NMS at least 50x the shapely loop. The boxes are random on a 1024 px scene (sides 4-64 px), so most "
             "pairs are disjoint: shapely then takes GEOS's envelope fast path (~1 us a pair); rsbench runs torchvision's "
             "kernel only on the pairs whose horizontal boxes meet and that no axis of either box separates, in chunks (a "
             "kernel call costs ~5 us plus 0.15-0.25 us a pair), so small inputs are dominated by fixed costs. NMS boxes "
             "lie on 512 px.", ""]
    for device in devices:
        lines += [f"## {device}", "", "| case | rsbench (ms) | shapely loop (ms) | speed-up (median paired) | "
                  "target ≥ 50x |", "|---|---|---|---|---|"]
        for name, ms, ref, ratio in bench(device, args.reps):
            target = "–" if ratio is None else ("pass" if ratio >= 50 else "**FAIL**")  # every row with a reference
            lines.append(f"| {name} | {ms:,.1f} | {'–' if ref is None else f'{ref:,.0f}'} | "
                         f"{'–' if ratio is None else f'{ratio:,.0f}x'} | {target} |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
