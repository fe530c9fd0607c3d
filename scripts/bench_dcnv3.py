"""Op-level benchmark: rsbench's DCNv3 core vs the official pure-PyTorch core, on CPU.

    python scripts/bench_dcnv3.py --official-root PATH [--sizes 224 512 800] [--batch 1]
                                  [--passes 3] [--repeats 3] [--threads N] [--clock wall|cpu]
                                  [--append]
                                  [--out results/bench_dcnv3.md]

``PATH`` holds the official ``intern_image.py`` and ``ops_dcnv3/`` (see
``scripts/official_internimage.py``); the official ``dcnv3_core_pytorch`` is imported from it.
For every input size the four InternImage-XL stage shapes are timed — input ``(B, S/4^.., C)``
with C = 192, 384, 768, 1536 and G = 12, 24, 48, 96 groups of 16 channels, 3x3 kernel,
offset_scale 2.0 — with random inputs, offsets (std 2 px) and softmaxed masks:

* forward + backward time (``--clock wall``: ``time.perf_counter``; ``--clock cpu``: process
  CPU time, which with ``--threads 1`` leaves out time spent waiting for a core on a shared
  machine) for one fixed output gradient (gradients w.r.t. input, offset and mask), min and
  median over ``--passes`` sweeps over all shapes, each with ``--repeats``
  interleaved runs after one warm-up run per implementation;
* forward-only time under ``torch.no_grad`` (inference);
* peak memory allocated by PyTorch during forward + backward, above what existed before (the
  CPU allocator's "Total Allocated" from ``torch.profiler(profile_memory=True)``);
* the largest absolute difference from the official core, output and all three gradients.

``rsbench (recompute)`` is ``dcnv3_core(..., recompute=True)``, which keeps nothing P-fold
between forward and backward. The "XL total" rows weight each stage by its number of blocks
(5, 5, 24, 5): the DCN core's share of one InternImage-XL forward + backward. The machine is
whatever runs the script; the load average is recorded because shared machines make wall
times noisy (the min is the least disturbed statistic).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_internimage import load_official  # noqa: E402

from rsbench.models.ops.dcnv3 import dcnv3_core  # noqa: E402
from rsbench.results import cpu_model  # noqa: E402

CHANNELS, GROUPS, DEPTHS = (192, 384, 768, 1536), (12, 24, 48, 96), (5, 5, 24, 5)
OFFSET_SCALE = 2.0


def stage_hw(size: int, stage: int) -> int:
    h = size
    for _ in range(stage + 2):  # stem: two stride-2 convs; then one per downsample
        h = (h + 1) // 2
    return h


def make_inputs(batch: int, hw: int, C: int, G: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, hw, hw, C, generator=g)
    offset = torch.randn(batch, hw, hw, G * 18, generator=g) * 2.0
    mask = torch.randn(batch, hw, hw, G, 9, generator=g).softmax(-1).reshape(batch, hw, hw, G * 9)
    grad_out = torch.randn(batch, hw, hw, C, generator=g)
    return x, offset, mask, grad_out


def core_call(fn, G, **kw):
    return lambda x, o, m: fn(x, o, m, 3, 3, 1, 1, 1, 1, 1, 1, G, 16, OFFSET_SCALE, 0, **kw)


def fwd_bwd(call, leaves, grad_out):
    for t in leaves:
        t.grad = None
    out = call(*leaves)
    out.backward(grad_out)
    return out


def alloc_profile(fn) -> tuple[int, int]:
    """(peak, final) bytes allocated by PyTorch while ``fn`` runs, above the level before it.

    Whatever ``fn`` returns stays alive until the end, so ``final`` counts it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        keep = fn()  # noqa: F841
    with tempfile.TemporaryDirectory() as d:
        trace = Path(d) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    mem = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
    if not mem:
        return 0, 0
    start = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    return max(e["args"]["Total Allocated"] for e in mem) - start, mem[-1]["args"]["Total Allocated"] - start


CLOCK = time.perf_counter


def bench_shape(impls: dict, batch: int, hw: int, C: int, G: int, repeats: int, seed: int,
                measure_memory: bool) -> dict:
    """Times (lists of seconds) for every implementation; with ``measure_memory`` also the peak
    and kept memory and the differences from the official core."""
    x, offset, mask, grad_out = make_inputs(batch, hw, C, G, seed)
    leaves = {k: [t.clone().requires_grad_() for t in (x, offset, mask)] for k in impls}
    calls = {k: core_call(fn, G, **kw) for k, (fn, kw) in impls.items()}
    row: dict = {k: {"fb": [], "fwd": []} for k in impls}
    outs = {}
    for k in impls:  # warm-up, and the results compared below
        out = fwd_bwd(calls[k], leaves[k], grad_out)
        outs[k] = [out.detach()] + [t.grad.clone() for t in leaves[k]]
        with torch.no_grad():
            calls[k](x, offset, mask)
    for _ in range(repeats):
        for k in impls:
            t0 = CLOCK()
            fwd_bwd(calls[k], leaves[k], grad_out)
            row[k]["fb"].append(CLOCK() - t0)
    for _ in range(repeats):
        for k in impls:
            with torch.no_grad():
                t0 = CLOCK()
                calls[k](x, offset, mask)
                row[k]["fwd"].append(CLOCK() - t0)
    if measure_memory:
        ref = outs["official"]
        for k in impls:
            for t in leaves[k]:
                t.grad = None
            peak, _ = alloc_profile(lambda: fwd_bwd(calls[k], leaves[k], grad_out))
            for t in leaves[k]:
                t.grad = None
            _, kept = alloc_profile(lambda: calls[k](*leaves[k]))  # output + what autograd keeps for backward
            diffs = [(a - b).abs().max().item() for a, b in zip(outs[k], ref)]
            row[k].update(peak=peak, kept=kept, max_diff_out=diffs[0], max_diff_grad=max(diffs[1:]))
    return row


def summarise(row: dict) -> dict:
    for r in row.values():
        r.update(fb_min=min(r["fb"]), fb_med=statistics.median(r["fb"]), fwd_min=min(r["fwd"]))
    return row


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.1f}"


def fmt_mib(b: int) -> str:
    return f"{b / 2**20:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-root", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512, 800])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per implementation and shape in a pass")
    ap.add_argument("--passes", type=int, default=3, help="sweeps over all shapes; times are pooled over passes")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time.perf_counter; cpu: process CPU time (time.process_time) - with --threads 1 it "
                         "leaves out the time the process waits for a core, the stable choice on a shared machine")
    ap.add_argument("--no-recompute", action="store_true", help="skip the recompute=True variant")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_dcnv3.md"))
    ap.add_argument("--append", action="store_true", help="add this run as a section to an existing --out file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        global CLOCK
        CLOCK = time.process_time
        if torch.get_num_threads() > 1:
            print("warning: --clock cpu with several threads also counts their spin-waiting", flush=True)
    official = load_official(args.official_root)
    impls = {"official": (official.dcnv3_core_pytorch, {}), "rsbench": (dcnv3_core, {})}
    if not args.no_recompute:
        impls["rsbench (recompute)"] = (dcnv3_core, {"recompute": True})
    load_start = os.getloadavg()
    t_start = time.time()
    shapes = [(size, stage, stage_hw(size, stage)) for size in args.sizes for stage in range(4)]
    rows: dict = {}
    for pas in range(args.passes):  # whole sweeps, so that a busy spell of the machine hits one pass only
        for size, stage, hw in shapes:
            r = bench_shape(impls, args.batch, hw, CHANNELS[stage], GROUPS[stage], args.repeats,
                            seed=size * 10 + stage, measure_memory=pas == 0)
            if pas == 0:
                rows[(size, stage)] = r
            else:
                for k in impls:
                    rows[(size, stage)][k]["fb"] += r[k]["fb"]
                    rows[(size, stage)][k]["fwd"] += r[k]["fwd"]
            o, n = r["official"], r["rsbench"]
            print(
                f"pass {pas + 1} {size} stage {stage + 1} {hw}x{hw}x{CHANNELS[stage]}: fwd+bwd official "
                f"{fmt_ms(min(o['fb']))} ms, rsbench {fmt_ms(min(n['fb']))} ms ({min(o['fb']) / min(n['fb']):.2f}x)",
                flush=True,
            )
    rows = [(size, stage, hw, summarise(rows[(size, stage)])) for size, stage, hw in shapes]
    load_end = os.getloadavg()
    write_report(args, impls, rows, load_start, load_end, time.time() - t_start, official.commit)


def write_report(args, impls, rows, load_start, load_end, elapsed, commit) -> None:
    names = list(impls)
    rc = names[2] if len(names) > 2 else None
    cmd = "python scripts/bench_dcnv3.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        f"## {torch.get_num_threads()} torch thread(s), batch {args.batch}, "
        + ("process CPU time" if args.clock == "cpu" else "wall-clock time"),
        "",
        f"Command: `{cmd}`",
        "",
        f"- date {datetime.datetime.now().isoformat(timespec='minutes')}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} logical CPUs ({cpu_model() or 'unknown'})",
        f"- official code: github.com/ViTAE-Transformer/MTP @ {commit}, `dcnv3_core_pytorch`",
        f"- load average (1 min) {load_start[0]:.1f} at start, {load_end[0]:.1f} at end; other jobs share this "
        f"machine, so times are the min (and median) of {args.repeats * args.passes} runs ({args.passes} sweeps over "
        f"all shapes x {args.repeats} interleaved runs); took {elapsed:.0f} s",
        "",
        "Time, ms ("
        + ("process CPU time, `time.process_time`" if args.clock == "cpu" else "wall clock, `time.perf_counter`")
        + "; forward + backward unless noted):",
        "",
        "| input | stage | H=W, C, G | official min / med | rsbench min / med | speed-up |"
        + (" rsbench recompute min |" if rc else "") + " fwd only (no_grad) official / rsbench |",
        "|---|---|---|---|---|---|" + ("---|" if rc else "") + "---|",
    ]
    for size, stage, hw, r in rows:
        o, n = r["official"], r["rsbench"]
        cells = [
            str(size), str(stage + 1), f"{hw}, {CHANNELS[stage]}, {GROUPS[stage]}",
            f"{fmt_ms(o['fb_min'])} / {fmt_ms(o['fb_med'])}", f"{fmt_ms(n['fb_min'])} / {fmt_ms(n['fb_med'])}",
            f"**{o['fb_min'] / n['fb_min']:.2f}x**",
        ]
        if rc:
            cells.append(fmt_ms(r[rc]["fb_min"]))
        cells.append(f"{fmt_ms(o['fwd_min'])} / {fmt_ms(n['fwd_min'])}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Memory, MiB (peak: allocated during forward + backward above the starting level; kept: output plus what "
        "autograd holds between forward and backward, which adds up over the 39 blocks of a network) and the largest "
        "absolute difference from the official core over the output and the input, offset and mask gradients:",
        "",
        "| input | stage | peak official / rsbench" + (" / recompute" if rc else "")
        + " | kept official / rsbench" + (" / recompute" if rc else "") + " | max abs diff |",
        "|---|---|---|---|---|",
    ]
    totals: dict = {}
    for size, stage, hw, r in rows:
        diff = max(max(r[k]["max_diff_out"], r[k]["max_diff_grad"]) for k in names if k != "official")
        peak = " / ".join(fmt_mib(r[k]["peak"]) for k in names)
        kept = " / ".join(fmt_mib(r[k]["kept"]) for k in names)
        lines.append(f"| {size} | {stage + 1} | {peak} | {kept} | {diff:.1e} |")
        t = totals.setdefault(size, {k: [0.0, 0.0, 0, 0] for k in names})
        for k in names:
            t[k][0] += DEPTHS[stage] * r[k]["fb_min"]
            t[k][1] += DEPTHS[stage] * r[k]["fwd_min"]
            t[k][2] = max(t[k][2], r[k]["peak"])
            t[k][3] += DEPTHS[stage] * r[k]["kept"]
    lines += [
        "",
        "XL total: stage figures weighted by the blocks per stage (5, 5, 24, 5), i.e. the DCN core's share of one "
        "InternImage-XL pass (time: sum of min times; kept: summed over the 39 blocks):",
        "",
        "| input | fwd+bwd s official / rsbench | speed-up | fwd only s official / rsbench | speed-up | "
        "kept for backward MiB official / rsbench" + (" / recompute" if rc else "") + " |",
        "|---|---|---|---|---|---|",
    ]
    for size, t in totals.items():
        o, n = t["official"], t["rsbench"]
        kept = " / ".join(f"{t[k][3] / 2**20:.0f}" for k in names)
        lines.append(
            f"| {size} | {o[0]:.2f} / {n[0]:.2f} | **{o[0] / n[0]:.2f}x** | {o[1]:.2f} / {n[1]:.2f} | "
            f"{o[1] / n[1]:.2f}x | {kept} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        "# DCNv3 core: rsbench vs the official pure-PyTorch core (CPU)",
        "",
        "Written by `scripts/bench_dcnv3.py` (see its docstring for what is measured). Random inputs at the "
        "InternImage-XL stage shapes: float32, 3x3 kernel, offset_scale 2.0, 16 channels per group, offsets "
        "~ N(0, 2^2) px, softmaxed masks, one fixed output gradient; gradients w.r.t. input, offset and mask.",
        "",
    ]
    if args.append and out.exists():
        text = out.read_text().rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    else:
        text = "\n".join(header + lines) + "\n"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
