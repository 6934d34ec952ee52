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
the baseline. kancore and kanditioned get the same weights (kanditioned's state_dict is loaded
into kancore) and their forward outputs are checked to agree before anything is timed.

Timing: ``torch.set_num_threads(os.cpu_count())``; a few warm-up runs, then an adaptive repeat
count (aiming at ``--target`` seconds per measurement, with a minimum and a maximum count);
each run is timed on its own with ``time.perf_counter`` and the median and the minimum are
reported.

Peak memory (PyTorch keeps no allocator statistics on the CPU, so the kernel's RSS accounting
is used instead):

1. at start-up glibc's ``mallopt(M_MMAP_THRESHOLD = -3, 64 KiB)`` is called via ctypes. This
   fixes the mmap threshold (disabling glibc's dynamic threshold), so every block of 64 KiB or
   more is mmap'ed and handed back to the OS as soon as it is freed; the RSS then follows the
   live tensors instead of a high-water mark of the malloc heap;
2. per implementation and shape: ``gc.collect()``; write ``"5"`` to ``/proc/self/clear_refs``,
   which resets the process's peak RSS (``VmHWM``) to its current RSS; read ``VmRSS`` from
   ``/proc/self/status`` as the baseline (the layer, ``x`` and ``g`` already exist); run one
   fwd+bwd (the layer has been warmed up by the timing runs); read ``VmHWM``.
   ``peak extra = VmHWM - baseline``: everything the fwd+bwd allocated at its peak, i.e.
   activations/workspaces, the output and the gradients of ``x`` and of the weights.
   This is repeated ``--mem-repeats`` times and the minimum is reported.
3. fallback when ``/proc/self/clear_refs`` is not writable (or with ``--mem-method fork``):
   the run happens in a child made with ``os.fork()``; a fresh child's ``VmHWM`` starts at its
   RSS at fork time, so ``VmHWM - VmRSS(at child start)`` read in the child is the same
   quantity. The method used is printed and stored in the results.

RSS counts pages actually touched, at 4 KiB granularity; allocations below the 64 KiB
threshold come from malloc arenas that may already hold free memory, so a few hundred KiB of
noise is expected.

Usage::

    .venv/bin/python benchmarks/bench_c0_cpu.py                 # full run (a few minutes)
    .venv/bin/python benchmarks/bench_c0_cpu.py --quick         # CI smoke run (< 60 s)
    .venv/bin/python benchmarks/bench_c0_cpu.py --shapes 1024x256x256x32 --out /tmp/bench

Results: a markdown table on stdout, plus ``bench_c0_cpu.json`` and ``bench_c0_cpu.md`` in
``--out`` (default ``benchmarks/results/``).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 64 * 1024


def _set_mmap_threshold() -> str:
    """Fix glibc's mmap threshold so freed large blocks go back to the OS. Must run before
    the big allocations start; returns a description of what happened."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:  # not glibc (e.g. musl, macOS)
        return f"mallopt unavailable ({exc}); RSS may include freed heap memory"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if ok != 1:
        return "mallopt(M_MMAP_THRESHOLD) failed; RSS may include freed heap memory"
    return f"glibc mallopt(M_MMAP_THRESHOLD, {MMAP_THRESHOLD_BYTES}) set"


MALLOPT_STATUS = _set_mmap_threshold()  # before torch allocates anything

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
KANCORE_MAIN = "kancore embedding_bag"

# --------------------------------------------------------------------------------------------
# /proc helpers


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # "VmRSS:   1234 kB"
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _clear_refs_writable() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str, module=None) -> str:
    for name in (dist, dist.lower()):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return str(getattr(module, "__version__", "unknown"))


def _git_rev() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("-dirty" if dirty else "")) if rev else None


# --------------------------------------------------------------------------------------------
# layers and runs


def _make_layers(B: int, I: int, O: int, K: int, seed: int):
    """Build every layer for one shape; kancore gets kanditioned's weights."""
    torch.manual_seed(seed)
    reference = KanditionedKAN(I, O, "random_normal", num_control_points=K, impl="embedding_bag")
    state = reference.state_dict()
    layers = {}
    for label, family, impl in IMPLS:
        if family == "kancore":
            layer = KancoreKAN(I, O, "random_normal", num_control_points=K, impl=impl)
            layer.load_state_dict(state)
        elif family == "kanditioned":
            layer = KanditionedKAN(I, O, "random_normal", num_control_points=K, impl=impl)
            layer.load_state_dict(state)
        else:
            layer = torch.nn.Linear(I, O)
        layers[label] = layer
    del reference
    return layers


def _inputs(B: int, I: int, O: int, seed: int):
    gen = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(B, I, generator=gen) * 4.0 - 2.0).requires_grad_(True)
    g = torch.randn(B, O, generator=gen)
    return x, g


def _clear_grads(layer, x) -> None:
    x.grad = None
    layer.zero_grad(set_to_none=True)


def _fwd(layer, x) -> None:
    with torch.no_grad():
        layer(x)


def _fwd_bwd(layer, x, g) -> None:
    y = layer(x)
    y.backward(g)


def _sanity_check(layers, x, g) -> dict:
    """kancore and kanditioned must compute the same function (forward asserted; the grads
    are compared and reported)."""
    ref_label = "kanditioned embedding_bag"
    ref = layers[ref_label]
    _clear_grads(ref, x)
    y_ref = ref(x)
    y_ref.backward(g)
    gx_ref, gw_ref = x.grad.clone(), ref.kan_weight.grad.clone()
    y_ref = y_ref.detach()
    tol = 1e-4 * float(y_ref.abs().max())
    report = {"reference": ref_label, "atol": tol}
    for label, family, _ in IMPLS:
        if family == "linear" or label == ref_label:
            continue
        layer = layers[label]
        _clear_grads(layer, x)
        y = layer(x)
        y.backward(g)
        y = y.detach()
        if not torch.allclose(y, y_ref, rtol=1e-4, atol=tol):
            raise AssertionError(
                f"{label} disagrees with {ref_label}: max |diff| = {(y - y_ref).abs().max():.3e} "
                f"(atol {tol:.3e})")
        gx_tol = 1e-4 * float(gx_ref.abs().max()) + 1e-6
        gw_tol = 1e-4 * float(gw_ref.abs().max()) + 1e-6
        gx_diff = float((x.grad - gx_ref).abs().max())
        gw_diff = float((layer.kan_weight.grad - gw_ref).abs().max())
        report[label] = {
            "fwd_max_abs_diff": float((y - y_ref).abs().max()),
            "grad_x_max_abs_diff": gx_diff,
            "grad_w_max_abs_diff": gw_diff,
            "grads_close": gx_diff <= gx_tol and gw_diff <= gw_tol,
        }
        _clear_grads(layer, x)
    _clear_grads(ref, x)
    return report


def _time(fn, clear, warmup: int, target_s: float, min_reps: int, max_reps: int) -> dict:
    for _ in range(warmup):
        clear()
        fn()
    # Estimate the run time from the warm-up-free calibration run, then pick the repeat count.
    clear()
    t0 = time.perf_counter()
    fn()
    est = time.perf_counter() - t0
    reps = int(min(max_reps, max(min_reps, target_s / max(est, 1e-7))))
    times = []
    for _ in range(reps):
        clear()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "min_ms": min(times) * 1e3,
        "reps": reps,
    }


def _peak_clear_refs(run) -> int:
    gc.collect()
    _reset_peak_rss()
    base = _status_kib("VmRSS")
    run()
    return _status_kib("VmHWM") - base


def _peak_fork(run) -> int:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure and report through the pipe, never return
        code = 0
        try:
            os.close(read_fd)
            gc.collect()
            base = _status_kib("VmRSS")
            run()
            os.write(write_fd, str(_status_kib("VmHWM") - base).encode())
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    if not text or os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("forked memory measurement failed")
    return int(text)


def _peak_extra_kib(layer, x, g, method: str, repeats: int) -> list[int]:
    results = []
    for _ in range(repeats):
        _clear_grads(layer, x)
        if method == "clear_refs":
            results.append(_peak_clear_refs(lambda: _fwd_bwd(layer, x, g)))
        else:
            results.append(_peak_fork(lambda: _fwd_bwd(layer, x, g)))
        _clear_grads(layer, x)
    return results


# --------------------------------------------------------------------------------------------
# output


def _fmt(v, spec=".3f"):
    return "—" if v is None else format(v, spec)


def _shape_name(shape) -> str:
    return "x".join(str(s) for s in shape)


def _markdown(meta: dict, results: list[dict]) -> str:
    lines = [
        "# C0 KAN layer, CPU: kancore vs kanditioned vs nn.Linear",
        "",
        f"- date: {meta['date']}",
        f"- CPU: {meta['cpu_model']}, torch threads: {meta['threads']} (os.cpu_count() = {meta['cpu_count']})",
        f"- torch {meta['torch_version']}, kanditioned {meta['kanditioned_version']}, "
        f"kancore {meta['kancore_version']}" + (f" (git {meta['git']})" if meta.get("git") else ""),
        f"- mode: {'quick' if meta['quick'] else 'full'}; dtype float32; x ~ U(-2, 2), requires_grad=True",
        "- fwd: `layer(x)` under `torch.no_grad()`; fwd+bwd: `layer(x).backward(g)`, g fixed random "
        "(grads of x and of the weights); times are medians (min in parentheses) of repeated "
        "`time.perf_counter` runs after warm-up",
        f"- peak extra memory: {meta['memory_method_text']}",
        "- vs Linear: fwd+bwd median / nn.Linear's fwd+bwd median. kancore speed-up: kanditioned's "
        "faster impl's median / kancore's median (fwd, fwd+bwd)",
        f"- {meta['skipped']}",
        "",
    ]
    for res in results:
        B, I, O, K = res["shape"]
        lines.append(f"## batch={B}, in={I}, out={O}, K={K}")
        lines.append("")
        lines.append("| implementation | fwd ms | fwd+bwd ms | fwd+bwd vs Linear | kancore speed-up "
                     "(fwd / fwd+bwd) | peak extra MiB |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for row in res["rows"]:
            sp = row.get("speedup_vs_kanditioned")
            sp_text = "—" if sp is None else f"{sp['fwd']:.2f}× / {sp['fwd_bwd']:.2f}×"
            lines.append(
                f"| {row['label']} "
                f"| {_fmt(row['fwd']['median_ms'])} ({_fmt(row['fwd']['min_ms'])}) "
                f"| {_fmt(row['fwd_bwd']['median_ms'])} ({_fmt(row['fwd_bwd']['min_ms'])}) "
                f"| {row['fwd_bwd_vs_linear']:.1f}× "
                f"| {sp_text} "
                f"| {row['peak_extra_mib']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def _parse_shape(text: str):
    parts = text.replace(",", "x").lower().split("x")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"shape must be BxINxOUTxK, got {text!r}")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must be BxINxOUTxK, got {text!r}") from None
    if min(shape) <= 0 or shape[3] < 2:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}")
    return shape


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small repeat counts (CI smoke run, < 60 s)")
    ap.add_argument("--shapes", nargs="+", type=_parse_shape, metavar="BxINxOUTxK",
                    help="shapes to run (default: " + " ".join(map(_shape_name, DEFAULT_SHAPES)) + ")")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="directory for bench_c0_cpu.json / .md (default: benchmarks/results)")
    ap.add_argument("--target", type=float, default=None,
                    help="seconds of timed runs per measurement (default 1.0, quick 0.1)")
    ap.add_argument("--mem-method", choices=("auto", "clear_refs", "fork"), default="auto",
                    help="peak-RSS method (default: clear_refs if writable, else fork)")
    ap.add_argument("--mem-repeats", type=int, default=None,
                    help="memory measurements per row, minimum reported (default 3, quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    shapes = args.shapes or list(DEFAULT_SHAPES)
    if args.quick:
        warmup, target, min_reps, max_reps, mem_reps = 1, 0.1, 2, 50, 1
    else:
        warmup, target, min_reps, max_reps, mem_reps = 3, 1.0, 5, 2000, 3
    if args.target is not None:
        target = args.target
    if args.mem_repeats is not None:
        mem_reps = max(1, args.mem_repeats)

    if args.mem_method == "auto":
        mem_method = "clear_refs" if _clear_refs_writable() else "fork"
    else:
        mem_method = args.mem_method
        if mem_method == "clear_refs" and not _clear_refs_writable():
            ap.error("/proc/self/clear_refs is not writable; use --mem-method fork or auto")
    if mem_method == "clear_refs":
        method_text = ("VmHWM - VmRSS around one fwd+bwd, peak reset by writing 5 to "
                       "/proc/self/clear_refs; " + MALLOPT_STATUS + f"; min of {mem_reps} run(s)")
    else:
        method_text = ("VmHWM - VmRSS of a forked child (os.fork) running one fwd+bwd "
                       "(/proc/self/clear_refs not used" +
                       (" — not writable" if not _clear_refs_writable() else "") + "); "
                       + MALLOPT_STATUS + f"; min of {mem_reps} run(s)")

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "kanditioned_version": _version("kanditioned"),
        "kancore_version": str(kancore.__version__),
        "kancore_built_with_cuda": bool(kancore.built_with_cuda()) if callable(
            getattr(kancore, "built_with_cuda", None)) else getattr(kancore, "built_with_cuda", None),
        "git": _git_rev(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dtype": "float32",
        "quick": args.quick,
        "warmup": warmup,
        "target_s": target,
        "min_reps": min_reps,
        "max_reps": max_reps,
        "memory_method": mem_method,
        "memory_method_text": method_text,
        "mallopt": MALLOPT_STATUS,
        "skipped": "kanditioned impl='sparse_matmul_csr' skipped: it raises "
                   "(RuntimeError: addmm: mat2 must be a matrix, got 3-D tensor)",
    }
    print(f"# torch {meta['torch_version']} | kanditioned {meta['kanditioned_version']} | "
          f"kancore {meta['kancore_version']} | {meta['cpu_model']} | {meta['threads']} threads",
          flush=True)
    print(f"# memory: {method_text}", flush=True)
    print(f"# {meta['skipped']}", flush=True)

    t_start = time.perf_counter()
    results = []
    for shape in shapes:
        B, I, O, K = shape
        layers = _make_layers(B, I, O, K, args.seed)
        x, g = _inputs(B, I, O, args.seed)
        sanity = _sanity_check(layers, x, g)
        print(f"\n## {_shape_name(shape)}: outputs agree (atol {sanity['atol']:.2e})", flush=True)
        rows = []
        for label, family, impl in IMPLS:
            layer = layers[label]
            clear = lambda layer=layer: _clear_grads(layer, x)  # noqa: E731
            fwd = _time(lambda: _fwd(layer, x), clear, warmup, target, min_reps, max_reps)
            fwd_bwd = _time(lambda: _fwd_bwd(layer, x, g), clear, warmup, target, min_reps, max_reps)
            mem = _peak_extra_kib(layer, x, g, mem_method, mem_reps)
            row = {
                "label": label, "family": family, "impl": impl,
                "fwd": fwd, "fwd_bwd": fwd_bwd,
                "peak_extra_kib_runs": mem, "peak_extra_mib": min(mem) / 1024.0,
            }
            rows.append(row)
            print(f"  {label:27s} fwd {fwd['median_ms']:9.3f} ms  fwd+bwd {fwd_bwd['median_ms']:9.3f} ms"
                  f"  peak +{row['peak_extra_mib']:8.1f} MiB  (reps {fwd['reps']}/{fwd_bwd['reps']})",
                  flush=True)
            _clear_grads(layer, x)
            gc.collect()
        by = {r["label"]: r for r in rows}
        lin = by["nn.Linear"]["fwd_bwd"]["median_ms"]
        kd = [r for r in rows if r["family"] == "kanditioned"]
        best_fwd = min(r["fwd"]["median_ms"] for r in kd)
        best_fb = min(r["fwd_bwd"]["median_ms"] for r in kd)
        for r in rows:
            r["fwd_bwd_vs_linear"] = r["fwd_bwd"]["median_ms"] / lin
            if r["family"] == "kancore":
                r["speedup_vs_kanditioned"] = {
                    "fwd": best_fwd / r["fwd"]["median_ms"],
                    "fwd_bwd": best_fb / r["fwd_bwd"]["median_ms"],
                }
        results.append({"shape": list(shape), "batch": B, "in_features": I, "out_features": O,
                        "num_control_points": K, "sanity": sanity, "rows": rows})
        del layers, x, g
        gc.collect()

    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    md = _markdown(meta, results)
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_c0_cpu.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    (args.out / "bench_c0_cpu.md").write_text(md + "\n")
    print(f"wrote {args.out / 'bench_c0_cpu.json'} and {args.out / 'bench_c0_cpu.md'} "
          f"({meta['total_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
