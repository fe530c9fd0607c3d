"""Backbone speed and memory: forward+backward images/s and peak memory, written to results/bench_backbones.md.

Each backbone family contributes a function ``<family>_entries(args) -> list[BenchEntry]`` listed
in ``ENTRY_SOURCES``; entries with the same ``group`` are timed together (interleaved round by
round, so load from other processes hits them alike) and compared in one table. To add a family
(e.g. InternImage), write its function next to the others and append it to ``ENTRY_SOURCES``; give
the rsbench implementation ``role="rsbench"``, the official code ``role="official"`` and a plain
reference ``role="baseline"`` so the target columns are filled in.

Measurement
    * one step = forward of a batch of random images in train mode + backward of the sum of the
      means of all returned maps; drop path 0 everywhere (same compute in every implementation);
    * ``--warmup`` untimed steps per model, then ``--rounds`` rounds in which every model of the
      group runs one timed step;
    * ``--clock wall`` (default) times with ``time.perf_counter``; ``--clock cpu`` with the
      process's CPU time (``time.process_time``), which with ``--threads 1`` does not count the
      time the process waits for a core, so it is the stable choice on a shared CPU machine
      (with several threads it would count spin-waiting, don't combine the two);
    * s/step is reported as min and median over the rounds; images/s = batch / min s/step, and the
      ratios use the min (the least disturbed estimate on a shared machine); the wall-clock min is
      listed beside it;
    * peak memory on CPU: each (entry, size) runs ONE step in a fresh subprocess; after the model
      and input are built the peak-RSS counter is reset (``/proc/self/clear_refs`` ← 5), and the
      figure is the peak RSS after the step (``VmHWM`` in /proc/self/status) minus the RSS before
      it: the high-water mark of activations, gradients and allocator caches of one fwd+bwd,
      excluding weights (``ru_maxrss`` is not used: Linux carries the parent's peak into a child
      across exec). On CUDA it is
      ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (same exclusion).

Usage::

    python scripts/bench_backbones.py --official-root /tmp/mtp_ref            # CPU, 224 and 512
    python scripts/bench_backbones.py --sizes 224 --families vit --no-memory   # quick look

Without ``--official-root`` (or when the official file is absent) the official rows are skipped
with a note in the results file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from rsbench.results import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

Model = Callable[[torch.Tensor], Any]


@dataclass
class BenchEntry:
    group: str  # rows compared in one table, e.g. "ViT-B"
    label: str  # unique within the group
    role: str  # "rsbench" | "official" | "baseline" | "extra"
    build: Callable[[int], tuple[Model, list[torch.nn.Parameter]]]  # img_size -> (callable, params)
    sizes: list[int] | None = None  # None: every --sizes value
    note: str = ""


@dataclass
class Skipped:
    group: str
    label: str
    reason: str


@dataclass
class Result:
    entry: BenchEntry
    size: int
    times: list[float] = field(default_factory=list)  # on the --clock used for the ratios
    wall: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    error: str = ""

    @property
    def best(self) -> float:
        return min(self.times) if self.times else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


# ----------------------------------------------------------------------------- entry sources

VIT_LAYOUTS = {
    "ViT-B": dict(name="vitb_rvsa", timm="vit_base_patch16_224", embed_dim=768, depth=12, num_heads=12,
                  out_indices=[3, 5, 7, 11], interval=3),
    "ViT-L": dict(name="vitl_rvsa", timm="vit_large_patch16_224", embed_dim=1024, depth=24, num_heads=16,
                  out_indices=[7, 11, 15, 23], interval=6),
}


def _module(m: torch.nn.Module) -> tuple[Model, list[torch.nn.Parameter]]:
    return m.train(), list(m.parameters())


def rsbench_vit_rvsa_entries(args: argparse.Namespace) -> list[BenchEntry | Skipped]:
    from official_rvsa import RSBENCH_EQUIVALENT

    from rsbench.models import build_backbone

    out: list[BenchEntry | Skipped] = []
    for group, lay in VIT_LAYOUTS.items():
        def build(img: int, lay=lay, ckpt=False):
            return _module(build_backbone(lay["name"], img_size=img, drop_path_rate=0.0, grad_ckpt=ckpt,
                                          **RSBENCH_EQUIVALENT[args.variant]))

        out.append(BenchEntry(group, f"rsbench {lay['name']}", "rsbench", build,
                              note=f"as the official {args.variant} copy"))
        if args.grad_ckpt:
            out.append(BenchEntry(group, f"rsbench {lay['name']} grad_ckpt", "extra",
                                  lambda img, lay=lay: build(img, lay, True),
                                  note="activation checkpointing per block"))
    return out


def timm_vit_entries(args: argparse.Namespace) -> list[BenchEntry | Skipped]:
    import timm

    out: list[BenchEntry | Skipped] = []
    for group, lay in VIT_LAYOUTS.items():
        def build(img: int, lay=lay):
            m = timm.create_model(lay["timm"], img_size=img, num_classes=0, drop_path_rate=0.0).train()

            def fwd(x, m=m):
                return m.forward_intermediates(x, indices=lay["out_indices"], intermediates_only=True)

            return fwd, list(m.parameters())

        out.append(BenchEntry(group, f"timm {lay['timm']}", "baseline", build,
                              note="plain ViT, global SDPA attention in every block, same out_indices"))
    return out


def official_vit_rvsa_entries(args: argparse.Namespace) -> list[BenchEntry | Skipped]:
    from official_rvsa import OFFICIAL_FILES, build_official, official_file

    out: list[BenchEntry | Skipped] = []
    cls_name = OFFICIAL_FILES[args.variant][1]
    for group, lay in VIT_LAYOUTS.items():
        label = f"official {cls_name} ({args.variant})"
        if not args.official_root:
            out.append(Skipped(group, label, "no --official-root given"))
            continue
        path = official_file(args.official_root, args.variant)
        if not path.is_file():
            out.append(Skipped(group, label, f"{path} not found"))
            continue

        def build(img: int, lay=lay):
            arch = {k: v for k, v in lay.items() if k not in ("name", "timm")}
            m = build_official(args.official_root, args.variant, img_size=img, qkv_bias=True,
                               use_abs_pos_emb=True, drop_path_rate=0.0, **arch)
            return _module(m)

        out.append(BenchEntry(group, label, "official", build, note=str(path.relative_to(args.official_root))))
    return out


def internimage_entries(args: argparse.Namespace) -> list[BenchEntry | Skipped]:
    """InternImage-XL: rsbench's ``internimage_xl`` vs the official ``InternImage`` running its
    pure-PyTorch DCNv3 (``core_op='DCNv3_pytorch'``; the compiled ``DCNv3`` op cannot be built
    here), same XL arguments, drop path 0. The official files are
    ``RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones/{intern_image.py,ops_dcnv3/}``
    under ``--official-root`` (add them to the ``git archive`` command of official_rvsa.py); they
    are imported by ``scripts/official_internimage.py``. XL is heavy on CPU (about 10x ViT-B)."""
    from rsbench.models import build_backbone

    group = "InternImage-XL"
    out: list[BenchEntry | Skipped] = [
        BenchEntry(group, "rsbench internimage_xl", "rsbench",
                   lambda img: _module(build_backbone("internimage_xl", img_size=img, drop_path_rate=0.0)),
                   note="rsbench.models.ops.dcnv3 core"),
    ]
    rel = "RS_Tasks_Finetune/Semantic_Segmentation/mmseg/models/backbones"
    label = "official InternImage (DCNv3_pytorch)"
    folder = Path(args.official_root) / rel if args.official_root else None
    if folder is None:
        out.append(Skipped(group, label, "no --official-root given"))
    elif not (folder / "intern_image.py").is_file() or not (folder / "ops_dcnv3").is_dir():
        out.append(Skipped(group, label, f"{folder}/intern_image.py or ops_dcnv3/ not found"))
    else:
        def build(img: int):
            from official_internimage import load_official

            m = load_official(folder).InternImage(
                core_op="DCNv3_pytorch", channels=192, depths=[5, 5, 24, 5], groups=[12, 24, 48, 96],
                mlp_ratio=4.0, drop_path_rate=0.0, norm_layer="LN", layer_scale=1e-5, offset_scale=2.0,
                post_norm=True, with_cp=False, out_indices=(0, 1, 2, 3))
            return _module(m)

        out.append(BenchEntry(group, label, "official", build, note=f"{rel}/intern_image.py"))
    return out


# Families: "vit" entries come from these functions. Add e.g. ("internimage", internimage_entries).
ENTRY_SOURCES: list[tuple[str, Callable[[argparse.Namespace], list[BenchEntry | Skipped]]]] = [
    ("vit", rsbench_vit_rvsa_entries),
    ("vit", timm_vit_entries),
    ("vit", official_vit_rvsa_entries),
    ("internimage", internimage_entries),
]


def collect_entries(args: argparse.Namespace) -> tuple[list[BenchEntry], list[Skipped]]:
    entries: list[BenchEntry] = []
    skipped: list[Skipped] = []
    for family, fn in ENTRY_SOURCES:
        if args.families and family not in args.families:
            continue
        for e in fn(args):
            if args.groups and e.group not in args.groups:
                continue
            (skipped if isinstance(e, Skipped) else entries).append(e)
    return entries, skipped


# ----------------------------------------------------------------------------- measuring


def _step(model: Model, x: torch.Tensor) -> None:
    out = model(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    loss = sum(o.float().mean() for o in out)
    loss.backward()


def _zero(params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_group(entries: list[BenchEntry], size: int, args: argparse.Namespace) -> list[Result]:
    device = torch.device(args.device)
    results = [Result(e, size) for e in entries]
    models: list[tuple[Model, list] | None] = []
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, size, size, generator=gen).to(device)
    for r in results:
        try:
            torch.manual_seed(0)
            fn, params = r.entry.build(size)
            for p in params:
                p.data = p.data.to(device)
            for _ in range(args.warmup):
                _step(fn, x)
                _zero(params)
            models.append((fn, params))
        except Exception as e:  # noqa: BLE001 — reported in the table
            r.error = f"{type(e).__name__}: {e}"[:200]
            models.append(None)
    for _ in range(args.rounds):
        for r, m in zip(results, models):
            if m is None:
                continue
            fn, params = m
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            _step(fn, x)
            _sync(device)
            t, c = time.perf_counter() - t, time.process_time() - c
            r.wall.append(t)
            r.times.append(c if args.clock == "cpu" else t)
            _zero(params)
        print("  round: " + ", ".join(f"{r.entry.label} {r.times[-1]:.2f}s ({r.wall[-1]:.2f}s wall)"
                                      for r in results if r.times), flush=True)
    return results


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    """This process's peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries the parent's peak into it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_hwm() -> bool:
    try:  # "5" resets the peak RSS to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_memory(args: argparse.Namespace) -> None:
    """One fwd+bwd of one entry; prints the peak memory figure as JSON."""
    entries, _ = collect_entries(args)
    entry = next(e for e in entries if f"{e.group}/{e.label}" == args.child)
    device = torch.device(args.device)
    torch.manual_seed(0)
    fn, params = entry.build(args.child_size)
    for p in params:
        p.data = p.data.to(device)
    x = torch.randn(args.batch, 3, args.child_size, args.child_size).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(fn, x)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _rss_bytes()
        _reset_hwm()
        _step(fn, x)
        peak = _hwm_bytes() - base
    print(json.dumps({"peak_mb": peak / 2**20}))


def measure_memory(entry: BenchEntry, size: int, args: argparse.Namespace) -> float | None:
    cmd = [sys.executable, __file__, "--child", f"{entry.group}/{entry.label}", "--child-size", str(size),
           "--batch", str(args.batch), "--device", args.device, "--variant", args.variant,
           "--threads", str(args.threads)]
    if args.official_root:
        cmd += ["--official-root", args.official_root]
    if args.grad_ckpt:
        cmd += ["--grad-ckpt"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout, check=True)
        return float(json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"])
    except Exception as e:  # noqa: BLE001
        print(f"  memory of {entry.label} @ {size} failed: {e}", flush=True)
        return None


# ----------------------------------------------------------------------------- report


def write_report(path: Path, results: list[Result], skipped: list[Skipped], args: argparse.Namespace,
                 load: tuple[tuple[float, ...], tuple[float, ...]], wall: float) -> None:
    device = torch.device(args.device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_model() or 'unknown'}, {os.cpu_count()} cores"
    lines = [
        "# Backbone benchmark: forward + backward",
        "",
        f"Command: `{args.command}`",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; total wall time {wall / 60:.1f} min",
        f"- device: {args.device} ({dev_name}); torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"- batch {args.batch}, {args.warmup} warm-up + {args.rounds} timed rounds per model, variant "
        f"`{args.variant}`, drop path 0, train mode, fp32",
        f"- load average (1/5/15 min) before {load[0][0]:.2f}/{load[0][1]:.2f}/{load[0][2]:.2f}, after "
        f"{load[1][0]:.2f}/{load[1][1]:.2f}/{load[1][2]:.2f} — the machine is shared; models of a group are "
        "interleaved round by round so that load hits them alike",
        f"- clock: {'process CPU time (time.process_time)' if args.clock == 'cpu' else 'wall (time.perf_counter)'}; "
        "s/step: min / median over the rounds; img/s = batch / min; ratios use the min; the wall-clock min is "
        "listed too",
        "- peak memory: " + ("`torch.cuda.max_memory_allocated` of one step (weights excluded)" if device.type == "cuda"
                             else "one step in a fresh subprocess, peak RSS (`VmHWM`, reset after building the model "
                                  "and input) minus the RSS before the step (activations + gradients + allocator caches; "
                                  "weights excluded)"),
        "",
    ]
    sizes = sorted({r.size for r in results})
    groups = list(dict.fromkeys(r.entry.group for r in results))
    targets: list[str] = []
    for size in sizes:
        lines += [f"## {size}×{size}", "",
                  "| group | implementation | s/step (min / median) | wall s/step (min) | img/s | peak MB | "
                  "speed vs official | time vs baseline | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for group in groups:
            rows = [r for r in results if r.size == size and r.entry.group == group]
            off = next((r for r in rows if r.entry.role == "official" and r.times), None)
            base = next((r for r in rows if r.entry.role == "baseline" and r.times), None)
            for r in rows:
                if r.error or not r.times:
                    lines.append(f"| {group} | {r.entry.label} | failed | | | | | | {r.error} |")
                    continue
                ips = args.batch / r.best
                vs_off = f"{off.best / r.best:.2f}×" if off else "n/a"
                vs_base = f"{r.best / base.best:.2f}×" if base else "n/a"
                mem = f"{r.peak_mb:.0f}" if r.peak_mb is not None else "—"
                lines.append(f"| {group} | {r.entry.label} | {r.best:.3f} / {r.median:.3f} | {min(r.wall):.3f} | "
                             f"{ips:.2f} | {mem} | "
                             f"{vs_off} | {vs_base} | {r.entry.note} |")
                if r.entry.role == "rsbench":
                    if off:
                        s = off.best / r.best
                        targets.append(f"- {group} @ {size}: speed vs official {s:.2f}× (target ≥ 1.3×): "
                                       f"**{'met' if s >= 1.3 else 'NOT met'}**")
                    if base:
                        t = r.best / base.best
                        targets.append(f"- {group} @ {size}: time vs {base.entry.label} {t:.2f}× (target ≤ 1.2×): "
                                       f"**{'met' if t <= 1.2 else 'NOT met'}**")
            for s in skipped:
                if s.group == group:
                    lines.append(f"| {group} | {s.label} | skipped | | | | | | {s.reason} |")
        lines.append("")
    if targets:
        lines += ["## Targets", ""] + targets + [""]
    if args.notes:
        lines += ["## Notes", "", Path(args.notes).read_text().strip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    if args.append and path.is_file():
        text = path.read_text().rstrip() + "\n\n---\n\n" + text.replace("# Backbone benchmark", "# Run", 1)
    path.write_text(text)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official-root", default=None, help="folder with the extracted official MTP files")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 512])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    ap.add_argument("--variant", default="cls", choices=["cls", "seg", "det", "cd"])
    ap.add_argument("--families", nargs="*", default=None, help="e.g. vit internimage (default: all)")
    ap.add_argument("--groups", nargs="*", default=None, help="e.g. ViT-B (default: all)")
    ap.add_argument("--grad-ckpt", action="store_true", help="also time rsbench with activation checkpointing")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--child-timeout", type=int, default=1200)
    ap.add_argument("--notes", default=None, help="markdown file appended under '## Notes'")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench_backbones.md"))
    ap.add_argument("--append", action="store_true", help="append this run to --out instead of replacing it")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_memory(args)
        return
    args.command = "python scripts/bench_backbones.py " + " ".join(sys.argv[1:])
    t0 = time.time()
    load0 = os.getloadavg()
    entries, skipped = collect_entries(args)
    results: list[Result] = []
    for size in args.sizes:
        for group in dict.fromkeys(e.group for e in entries):
            group_entries = [e for e in entries if e.group == group and (e.sizes is None or size in e.sizes)]
            print(f"{group} @ {size}: timing {[e.label for e in group_entries]}", flush=True)
            res = time_group(group_entries, size, args)
            if not args.no_memory:
                for r in res:
                    if not r.error:
                        r.peak_mb = measure_memory(r.entry, size, args)
            results += res
    write_report(Path(args.out), results, skipped, args, (load0, os.getloadavg()), time.time() - t0)


if __name__ == "__main__":
    main()
