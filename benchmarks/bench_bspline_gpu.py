#!/usr/bin/env python
"""GPU benchmark of the B-spline KAN layer: kancore KANLinear vs the dense-basis PyTorch layer.

The CUDA counterpart of bench_bspline_cpu.py, whose dense-basis baseline (Cox-de Boor basis
tensor, then a matmul, as efficient-kan computes it) it imports. float32, x ~ U(-1, 1) with
requires_grad=True, at (B, in, out, G, k) = (1024, 256, 256, 5, 3), (4096, 64, 64, 16, 3) and
(4096, 1024, 1024, 5, 3). The dense layer loads kancore's weights and its output is checked
against kancore's before timing.

Timing: CUDA events on the current stream after warm-up, median (min) of --reps runs.
fwd = layer(x) under no_grad; fwd+bwd = layer(x).backward(g) (grads cleared outside the timed
region); update_grid = layer.update_grid(x) (kancore's grid fit runs on the CPU: it includes
the copies). Memory: torch.cuda.max_memory_allocated over one fwd+bwd minus what was allocated
before.

Usage: python benchmarks/bench_bspline_gpu.py [--quick] [--out DIR]
Writes bench_bspline_gpu.json and bench_bspline_gpu.md to --out (default benchmarks/results/).
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

import torch

import kancore
from kancore import KANLinear

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bspline_cpu import DenseBasisKAN  # noqa: E402  (the same baseline as on the CPU)

SHAPES = [(1024, 256, 256, 5, 3), (4096, 64, 64, 16, 3), (4096, 1024, 1024, 5, 3)]
QUICK_SHAPES = [(256, 32, 32, 5, 3)]


def _events_ms(fn, clear, warmup: int, reps: int) -> dict:
    for _ in range(warmup):
        clear()
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        clear()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median": statistics.median(times), "min": min(times)}


def _peak_mib(fn, clear) -> float:
    clear()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def run_shape(shape, warmup: int, reps: int) -> dict:
    B, I, O, G, k = shape
    torch.manual_seed(0)
    ours = KANLinear(I, O, grid_size=G, spline_order=k).cuda()
    dense = DenseBasisKAN(I, O, grid_size=G, spline_order=k).cuda()
    dense.load_state_dict(ours.state_dict())
    x = (torch.rand(B, I, device="cuda") * 2 - 1).requires_grad_(True)
    g = torch.randn(B, O, device="cuda")
    with torch.no_grad():
        err = (ours(x) - dense(x)).abs().max().item()
    row = {"shape": list(shape), "max_abs_diff_vs_dense": err}
    for name, layer in (("kancore", ours), ("dense", dense)):
        def clear(layer=layer):
            layer.zero_grad(set_to_none=True)
            x.grad = None

        def fwd(layer=layer):
            with torch.no_grad():
                layer(x)

        def fwd_bwd(layer=layer):
            layer(x).backward(g)

        def grid(layer=layer):
            layer.update_grid(x.detach())

        row[name] = {"fwd": _events_ms(fwd, clear, warmup, reps),
                     "fwd_bwd": _events_ms(fwd_bwd, clear, warmup, reps),
                     "peak_mib": _peak_mib(fwd_bwd, clear),
                     "update_grid": _events_ms(grid, lambda: None, 1, max(3, reps // 5))}
    row["speedup_fwd_bwd"] = row["dense"]["fwd_bwd"]["median"] / row["kancore"]["fwd_bwd"]["median"]
    return row


def markdown(meta: dict, rows: list) -> str:
    lines = [f"# B-spline KAN layer on {meta['device']}: kancore vs dense basis", "",
             f"- {meta['date']}; torch {meta['torch']}, kancore {meta['kancore']}; float32; CUDA events, "
             "median (min) ms", "",
             "| (B, in, out, G, k) | kancore fwd | kancore fwd+bwd | dense fwd+bwd | speed-up | "
             "peak MiB kancore / dense | update_grid kancore / dense |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ko, de = r["kancore"], r["dense"]
        lines.append(f"| {tuple(r['shape'])} | {ko['fwd']['median']:.3f} | {ko['fwd_bwd']['median']:.3f} "
                     f"({ko['fwd_bwd']['min']:.3f}) | {de['fwd_bwd']['median']:.3f} | {r['speedup_fwd_bwd']:.2f}x | "
                     f"{ko['peak_mib']:.1f} / {de['peak_mib']:.1f} | {ko['update_grid']['median']:.1f} / "
                     f"{de['update_grid']['median']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one small shape (smoke run)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to benchmark", file=sys.stderr)
        return 1
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rows = [run_shape(s, warmup=3, reps=5 if args.quick else args.reps) for s in shapes]
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "kancore": kancore.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_bspline_gpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    text = markdown(meta, rows)
    (out / "bench_bspline_gpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
