#!/usr/bin/env python
"""CPU benchmark of the C0 (piecewise-linear) KAN layer: kancore vs kanditioned vs nn.Linear.

What is measured, per shape ``(batch, in, out, K)`` (float32, ``x ~ U(-2, 2)`` with
``requires_grad=True``):

* **fwd**: ``layer(x)`` under ``torch.no_grad()``.
* **fwd+bwd**: ``y = layer(x); y.backward(g)`` with a fixed random ``g``, so the gradients of
  the input and of the weights are both computed. ``x.grad`` and the parameter grads are set
  to ``None`` before every run (outside the timed region), so every run allocates them afresh.
* **peak extra memory** of one fwd+bwd run (see below).

Implementations: ``kancore.KANLayer`` with ``impl="embedding_bag"`` (the native fused path)
and ``impl="sparse_matmul_csr"`` (the native CSR path); ``kanditioned.KANLayer`` 1.0.4 with
``impl="embedding_bag"`` and ``impl="embedding"`` (its ``sparse_matmul_csr`` raises
``RuntimeError: addmm: mat2 must be a matrix`` and is skipped); ``torch.nn.Linear(in, out)`` as
the baseline. kancore and kanditioned get the same weights (a kanditioned state_dict is loaded
into kancore, and kancore's state_dict into the kanditioned layers), and every implementation's
forward output is asserted to agree with kanditioned's ``embedding_bag`` (``allclose``,
``atol = 1e-4 * max|y|``) before anything is timed; the gradients are compared too and the
differences are stored in the JSON.

Timing (phase 1, all shapes): ``torch.set_num_threads(os.cpu_count())``; warm-up runs, then a
calibration run whose time sets the repeat count (aiming at ``--target`` seconds per
measurement, between a minimum and a maximum count); each run is timed on its own with
``time.perf_counter`` and the median and the minimum are reported. Other processes on the
machine disturb the timings badly (with 2 cores, a busy neighbour makes torch's OpenMP threads
wait for time slices), so each measurement records the CPU time the *rest* of the machine used
meanwhile (``/proc/stat`` busy time minus this process's ``os.times()``), waits (up to
``--idle-wait`` s) for the machine to be quiet before starting, and is redone (up to
``--retries`` times, keeping the least disturbed attempt) when others used more than 0.1 CPU on
average; waits and re-runs together are capped at ``--budget`` seconds per benchmark run. Cells
still disturbed are marked ``*`` in the table. Warm-up stops early (after at least one run) once
it has taken half of ``--target``, so slow cells do not spend long warming up.

Peak memory (phase 2, after all timing; PyTorch keeps no allocator statistics on the CPU, so the
kernel's RSS accounting is used):

1. glibc's ``mallopt(M_MMAP_THRESHOLD = -3, 64 KiB)`` is called via ctypes. This fixes the mmap
   threshold (and disables glibc's dynamic threshold), so every block of 64 KiB or more is
   mmap'ed and handed back to the OS as soon as it is freed; RSS then follows the live tensors
   instead of the high-water mark of the malloc heap. It is called when phase 2 starts, not at
   start-up, because it also makes every large allocation a fresh mmap + page faults, which
   slows allocation-heavy code (kanditioned builds several index/weight tensors per call) by up
   to several times and would bias the timings (``--mallopt-at-startup`` does it at start-up
   anyway).
2. per shape, the layers and ``x``, ``g`` are built afresh; per implementation:
   ``gc.collect()``; glibc ``malloc_trim(0)``, which hands the malloc arenas' free pages back
   to the OS (otherwise memory freed earlier but still resident could be reused during the run
   without showing up in the RSS); write ``"5"`` to ``/proc/self/clear_refs``, which resets the
   process's peak RSS (``VmHWM``) to its current RSS; read ``VmRSS`` from ``/proc/self/status``
   as the baseline (the layer, ``x`` and ``g`` already exist); run one fwd+bwd; read ``VmHWM``.
   ``peak extra = VmHWM - baseline``: everything the fwd+bwd had allocated at its peak, i.e.
   saved activations, temporaries and workspaces, the output and the gradients of ``x`` and
   of the weights. Repeated ``--mem-repeats`` times; the largest value is reported (the first
   run of each fresh layer is included, so one-time allocations are counted).
3. fallback when ``/proc/self/clear_refs`` is not writable (or with ``--mem-method fork``):
   ``gc.collect()`` and ``malloc_trim(0)``, then ``os.fork()``. A fresh child's ``VmHWM``
   starts at its RSS at fork time, but fork does not copy the page tables of file-backed
   mappings, so the child's first run would also count the library code it pages in. The child
   therefore runs and frees one fwd+bwd, reads ``VmRSS`` as the baseline, runs the measured
   fwd+bwd and reports ``VmHWM - baseline`` (the first run's peak cannot exceed the second's).
   The child runs with one torch/OpenMP thread: GNU OpenMP's thread pool does not survive
   ``fork()`` (a multi-threaded region in the child hangs), so per-thread buffers may differ a
   little. The method used is printed and stored in the results.

RSS counts the pages actually touched (4 KiB granularity; untouched parts of an allocation are
not counted), and the kernel's RSS counters are approximate (per-CPU batches): on Linux 6.x the
VmHWM of a freed 1-16 MiB tensor read ~0.3 MiB low, so differences below ~0.5 MiB are noise.

Usage::

    .venv/bin/python benchmarks/bench_c0_cpu.py                 # full run (a few minutes)
    .venv/bin/python benchmarks/bench_c0_cpu.py --quick         # CI smoke run (< 60 s)
    .venv/bin/python benchmarks/bench_c0_cpu.py --shapes 1024x256x256x32 --out /tmp/bench

Results: a markdown table on stdout, plus ``bench_c0_cpu.json`` and ``bench_c0_cpu.md`` in
``--out`` (default ``benchmarks/results/``, git-ignored).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

from cpu_harness import (  # noqa: E402  (first: it sets up malloc before torch loads)
    CONTENDED_CPUS,
    HarnessSetup,
    _clear_grads,
    _cpu_model,
    _fwd,
    _fwd_bwd,
    _git_rev,
    _loadavg,
    _shape_name,
    _version,
    add_harness_args,
)

import torch  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)

import kancore  # noqa: E402
from kancore import KANLayer as KancoreKAN  # noqa: E402

try:
    from KANditioned import KANLayer as KanditionedKAN  # noqa: E402
except ImportError:  # pragma: no cover - other spellings of the package
    from kanditioned import KANLayer as KanditionedKAN  # type: ignore  # noqa: E402


DEFAULT_SHAPES = ((1024, 256, 256, 32), (4096, 64, 64, 8), (100, 1000, 1000, 8))

# (row label, family, impl)
IMPLS = (
    ("kancore embedding_bag", "kancore", "embedding_bag"),
    ("kancore sparse_matmul_csr", "kancore", "sparse_matmul_csr"),
    ("kanditioned embedding_bag", "kanditioned", "embedding_bag"),
    ("kanditioned embedding", "kanditioned", "embedding"),
    ("nn.Linear", "linear", None),
)
REFERENCE = "kanditioned embedding_bag"
SKIPPED = ("kanditioned impl='sparse_matmul_csr' is skipped: it raises "
           "(RuntimeError: addmm: mat2 must be a matrix, got 3-D tensor)")

# --------------------------------------------------------------------------------------------
# /proc helpers


# --------------------------------------------------------------------------------------------
# layers and runs


def _make_layers(I: int, O: int, K: int, seed: int) -> dict:
    """Build every layer for one shape, all KAN layers with the same weights: a kanditioned
    layer's state_dict goes into kancore, and kancore's back into kanditioned (both directions
    of the drop-in promise)."""
    torch.manual_seed(seed)
    state = KanditionedKAN(I, O, "random_normal", num_control_points=K, impl=REFERENCE.split()[1]).state_dict()
    layers = {}
    for label, family, impl in IMPLS:
        if family == "kancore":
            layer = KancoreKAN(I, O, "random_normal", num_control_points=K, impl=impl)
            layer.load_state_dict(state)
            state = layer.state_dict()
        elif family == "kanditioned":
            layer = KanditionedKAN(I, O, "random_normal", num_control_points=K, impl=impl)
            layer.load_state_dict(state)
        else:
            layer = torch.nn.Linear(I, O)
        layers[label] = layer
    return layers


def _inputs(B: int, I: int, O: int, seed: int):
    gen = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(B, I, generator=gen) * 4.0 - 2.0).requires_grad_(True)
    g = torch.randn(B, O, generator=gen)
    return x, g


def _sanity_check(layers: dict, x, g) -> dict:
    """Every KAN implementation must compute kanditioned embedding_bag's function (forward
    asserted; gradient differences reported)."""
    ref = layers[REFERENCE]
    _clear_grads(ref, x)
    y_ref = ref(x)
    y_ref.backward(g)
    gx_ref, gw_ref = x.grad.clone(), ref.kan_weight.grad.clone()
    y_ref = y_ref.detach()
    tol = 1e-4 * float(y_ref.abs().max())
    report = {"reference": REFERENCE, "atol": tol, "rtol": 1e-4}
    for label, family, _ in IMPLS:
        if family == "linear" or label == REFERENCE:
            continue
        layer = layers[label]
        _clear_grads(layer, x)
        y = layer(x)
        y.backward(g)
        y = y.detach()
        diff = float((y - y_ref).abs().max())
        if not torch.allclose(y, y_ref, rtol=1e-4, atol=tol):
            raise AssertionError(f"{label} disagrees with {REFERENCE}: max |diff| = {diff:.3e} "
                                 f"(atol {tol:.3e})")
        gx_diff = float((x.grad - gx_ref).abs().max())
        gw_diff = float((layer.kan_weight.grad - gw_ref).abs().max())
        report[label] = {
            "fwd_max_abs_diff": diff,
            "grad_x_max_abs_diff": gx_diff,
            "grad_x_max_abs": float(gx_ref.abs().max()),
            "grad_w_max_abs_diff": gw_diff,
            "grad_w_max_abs": float(gw_ref.abs().max()),
            "grads_close": bool(gx_diff <= 1e-4 * float(gx_ref.abs().max()) + 1e-6
                                and gw_diff <= 1e-4 * float(gw_ref.abs().max()) + 1e-6),
        }
        _clear_grads(layer, x)
    _clear_grads(ref, x)
    return report


# --------------------------------------------------------------------------------------------
# output


def _ms(t: dict) -> str:
    return f"{t['median_ms']:.3f} ({t['min_ms']:.3f})" + ("*" if t.get("disturbed") else "")


def _markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        "# C0 KAN layer on the CPU: kancore vs kanditioned vs nn.Linear",
        "",
        f"- date: {meta['date']}; total {meta['total_s']} s",
        f"- CPU: {meta['cpu_model']}; torch threads: {meta['threads']} (os.cpu_count() = {meta['cpu_count']}); "
        f"load average at start / end: {meta['loadavg_start']} / {meta['loadavg_end']}",
        f"- torch {meta['torch_version']}, kanditioned {meta['kanditioned_version']}, "
        f"kancore {meta['kancore_version']}" + (f" (git {meta['git']})" if meta.get("git") else ""),
        f"- mode: {'quick' if meta['quick'] else 'full'}; float32; x ~ U(-2, 2) with requires_grad=True; "
        "kancore loads kanditioned's state_dict and all outputs were checked to agree",
        "- fwd: `layer(x)` under `torch.no_grad()`; fwd+bwd: `layer(x).backward(g)` with a fixed random g "
        "(grads of x and of the weights). Times: median (min) in ms of repeated `time.perf_counter` runs "
        f"after warm-up, about {meta['target_s']} s per cell; `*` = other processes used >= "
        f"{CONTENDED_CPUS} CPU during that cell (numbers disturbed)",
        "- vs Linear: fwd+bwd median / nn.Linear's fwd+bwd median. kancore speed-up: median of "
        "kanditioned's faster impl / kancore's median, for fwd and for fwd+bwd",
        f"- peak extra MiB: {meta['memory_method_text']}",
        f"- {SKIPPED}",
        "",
    ]
    for res in results:
        B, I, O, K = res["shape"]
        lines += [
            f"## batch={B}, in={I}, out={O}, K={K}",
            "",
            "| implementation | fwd ms | fwd+bwd ms | fwd+bwd vs Linear | kancore speed-up fwd / fwd+bwd "
            "| peak extra MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for row in res["rows"]:
            sp = row.get("speedup_vs_kanditioned")
            sp_text = "—" if sp is None else f"{sp['fwd']:.2f}× / {sp['fwd_bwd']:.2f}×"
            mem = row.get("peak_extra_mib")
            lines.append(
                f"| {row['label']} | {_ms(row['fwd'])} | {_ms(row['fwd_bwd'])} "
                f"| {row['fwd_bwd_vs_linear']:.1f}× | {sp_text} "
                f"| {'—' if mem is None else f'{mem:.1f}'} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def _parse_shape(text: str):
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) <= 0 or shape[3] < 2:
        raise argparse.ArgumentTypeError(f"shape must be BATCHxINxOUTxK (K >= 2), got {text!r}")
    return shape


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small repeat counts, no idle waits or retries (CI smoke run, < 60 s)")
    ap.add_argument("--shapes", nargs="+", type=_parse_shape, metavar="BxINxOUTxK",
                    help="shapes to run (default: " + " ".join(map(_shape_name, DEFAULT_SHAPES)) + ")")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="directory for bench_c0_cpu.json / .md (default: benchmarks/results)")
    add_harness_args(ap)
    args = ap.parse_args(argv)

    shapes = args.shapes or list(DEFAULT_SHAPES)
    setup = HarnessSetup(args, ap)
    timer = setup.timer

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch_version": torch.__version__,
        "kanditioned_version": _version("kanditioned"),
        "kancore_version": str(kancore.__version__),
        "git": _git_rev(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "loadavg_start": _loadavg(),
        "dtype": "float32",
        **setup.meta,
        "skipped": SKIPPED,
    }
    print(f"# torch {meta['torch_version']} | kanditioned {meta['kanditioned_version']} | "
          f"kancore {meta['kancore_version']} | {meta['cpu_model']} | {meta['threads']} threads | "
          f"load {meta['loadavg_start']}", flush=True)
    print(f"# {SKIPPED}", flush=True)

    t_start = time.perf_counter()
    results = []
    # Phase 1: correctness check and timing, default glibc malloc behaviour.
    for shape in shapes:
        B, I, O, K = shape
        layers = _make_layers(I, O, K, args.seed)
        x, g = _inputs(B, I, O, args.seed)
        sanity = _sanity_check(layers, x, g)
        print(f"\n## {_shape_name(shape)}: all outputs agree with {REFERENCE} "
              f"(atol {sanity['atol']:.2e}); timing", flush=True)
        rows = []
        for label, family, impl in IMPLS:
            layer = layers[label]
            clear = lambda layer=layer: _clear_grads(layer, x)  # noqa: E731
            fwd = timer(lambda: _fwd(layer, x), clear)
            fwd_bwd = timer(lambda: _fwd_bwd(layer, x, g), clear)
            rows.append({"label": label, "family": family, "impl": impl, "fwd": fwd, "fwd_bwd": fwd_bwd})
            print(f"  {label:27s} fwd {_ms(fwd):>22s} ms   fwd+bwd {_ms(fwd_bwd):>22s} ms   "
                  f"(reps {fwd['reps']}/{fwd_bwd['reps']}, others' CPU "
                  f"{fwd['foreign_cpus'] or 0:.2f}/{fwd_bwd['foreign_cpus'] or 0:.2f})", flush=True)
            _clear_grads(layer, x)
        lin = rows[-1]["fwd_bwd"]["median_ms"]
        kd = [r for r in rows if r["family"] == "kanditioned"]
        best_fwd = min(r["fwd"]["median_ms"] for r in kd)
        best_fb = min(r["fwd_bwd"]["median_ms"] for r in kd)
        for r in rows:
            r["fwd_bwd_vs_linear"] = r["fwd_bwd"]["median_ms"] / lin
            if r["family"] == "kancore":
                r["speedup_vs_kanditioned"] = {"fwd": best_fwd / r["fwd"]["median_ms"],
                                               "fwd_bwd": best_fb / r["fwd_bwd"]["median_ms"]}
        results.append({"shape": list(shape), "batch": B, "in_features": I, "out_features": O,
                        "num_control_points": K, "sanity": sanity, "rows": rows})
        del layers, x, g, rows
        gc.collect()

    # Phase 2: peak extra memory of one fwd+bwd, with large blocks returned to the OS on free.
    setup.start_memory_phase(meta)
    for res in results:
        B, I, O, K = res["shape"]
        layers = _make_layers(I, O, K, args.seed)
        x, g = _inputs(B, I, O, args.seed)
        setup.measure_memory(res, layers, x, g)
        del layers, x, g
        gc.collect()

    meta["loadavg_end"] = _loadavg()
    meta["wait_retry_budget_left_s"] = round(timer.budget_left, 1)
    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    md = _markdown(meta, results)
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_c0_cpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (args.out / "bench_c0_cpu.md").write_text(md + "\n")
    print(f"wrote {args.out / 'bench_c0_cpu.json'} and {args.out / 'bench_c0_cpu.md'} ({meta['total_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
