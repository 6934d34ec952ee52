#!/usr/bin/env python
"""CPU benchmark of the B-spline KAN layer: kancore ``KANLinear`` vs a dense-basis PyTorch layer.

What is measured, per shape ``(batch, in, out, G, k)`` (float32, ``x ~ U(-1, 1)``, i.e. inside
the default grid range, with ``requires_grad=True``):

* **fwd**: ``layer(x)`` under ``torch.no_grad()``.
* **fwd+bwd**: ``y = layer(x); y.backward(g)`` with a fixed random ``g``, so the gradients of
  the input and of all the weights are computed. ``x.grad`` and the parameter grads are set to
  ``None`` before every run (outside the timed region), so every run allocates them afresh.
* **peak extra memory** of one fwd+bwd run (see below).
* **update_grid**: ``layer.update_grid(x, margin=0.01)`` on the same batch (``x`` detached).
  Run after the fwd and fwd+bwd timings of that layer; repeated updates on the same batch leave
  the grid where the first one put it, so every run does the same work.

Implementations:

* ``kancore.KANLinear(in, out, grid_size=G, spline_order=k)``: the native layer, which evaluates
  only the k+1 non-zero basis functions per (b, i) and never builds a basis tensor;
* **dense basis**: ``DenseBasisKAN`` below, a plain PyTorch layer written for this benchmark
  from the textbook Cox-de Boor recursion, the way efficient-kan's ``KANLinear`` computes it:
  order-0 indicators ``(x >= t_j) & (x < t_{j+1})`` over all extended knots, then k levels of
  the recursion on ``(batch, in, ...)`` tensors, giving the dense basis ``(batch, in, G+k)``, and
  ``F.linear(silu(x), base_weight) + F.linear(basis.view(batch, -1),
  (spline_weight * spline_scaler[..., None]).view(out, -1))``. Its ``update_grid`` follows the
  description in ``docs/layer_math.md`` ("Grid updates"): sort each feature's samples, G+1 evenly spaced
  order statistics mixed with uniform knots over ``[min - margin, max + margin]`` by
  ``grid_eps``, k more knots each side with the uniform step, and a refit of ``spline_weight``
  by ``torch.linalg.lstsq`` of the dense basis on the new knots ``(in, batch, G+k)`` against
  the old per-edge spline outputs ``(in, batch, out)``. It fits the *unscaled* spline (so the
  layer's function is preserved, as kancore does; efficient-kan fits the scaled one, a known
  defect, at the same cost) and has no ridge term;
* ``torch.nn.Linear(in, out)`` as a further reference.

The dense-basis layer gets the kancore layer's ``grid``, ``base_weight``, ``spline_weight`` and
``spline_scaler`` (copied by name), and its forward output is asserted to agree with kancore's
(``allclose``, ``rtol = 1e-4``, ``atol = 1e-4 * max|y|``) before anything is timed; the
gradient differences are stored in the JSON. One ``update_grid`` of each, on fresh copies of the
layers, is also compared (knots, outputs after the update, and how well each preserved its
function); those differences are stored and printed, not asserted.

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
kernel's RSS accounting is used), exactly as in ``bench_c0_cpu.py``:

1. glibc's ``mallopt(M_MMAP_THRESHOLD = -3, 64 KiB)`` is called via ctypes, so every block of
   64 KiB or more is mmap'ed and handed back to the OS as soon as it is freed; RSS then follows
   the live tensors. It is called when phase 2 starts, not at start-up, because the extra page
   faults slow allocation-heavy code (``--mallopt-at-startup`` does it at start-up anyway).
2. per shape, the layers and ``x``, ``g`` are built afresh; per implementation:
   ``gc.collect()``; glibc ``malloc_trim(0)``; write ``"5"`` to ``/proc/self/clear_refs``, which
   resets the peak RSS (``VmHWM``) to the current RSS; read ``VmRSS`` as the baseline; run one
   fwd+bwd; read ``VmHWM``. ``peak extra = VmHWM - baseline``: saved activations, temporaries,
   workspaces, the output and the gradients of ``x`` and of the weights (the layer, ``x`` and
   ``g`` are not counted). Repeated ``--mem-repeats`` times; the largest value is reported.
3. fallback when ``/proc/self/clear_refs`` is not writable (or with ``--mem-method fork``): the
   same in a child made with ``os.fork()`` after ``gc.collect()`` and ``malloc_trim(0)``; the
   child first runs and frees one fwd+bwd (to page in library code), then measures the second,
   with one torch thread (GNU OpenMP's pool does not survive ``fork()``).

Differences below ~0.5 MiB are noise (the kernel's RSS counters are approximate).

Targets (printed as met / not met): kancore fwd+bwd >= 3x faster than the dense basis at
``(1024, 256, 256, 5, 3)`` and >= 5x at ``(4096, 64, 64, 16, 3)``; kancore's peak extra memory
>= 5x lower than the dense basis's (every shape); kancore's ``update_grid`` <= 2x its own
fwd+bwd (every shape). On other shapes (``--quick``, ``--shapes``) only the last two apply.

Usage::

    .venv/bin/python benchmarks/bench_bspline_cpu.py                 # full run (a few minutes)
    .venv/bin/python benchmarks/bench_bspline_cpu.py --quick         # CI smoke run (< 60 s)
    .venv/bin/python benchmarks/bench_bspline_cpu.py --shapes 1024x256x256x5x3 --out /tmp/bench

Results: a markdown table on stdout, plus ``bench_bspline_cpu.json`` and ``bench_bspline_cpu.md``
in ``--out`` (default ``benchmarks/results/``, git-ignored).
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
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)

import kancore  # noqa: E402

try:
    from kancore import KANLinear  # noqa: E402
    _KANLINEAR_ERROR = None
except (ImportError, AttributeError) as exc:  # not built yet: the dense-basis parts still import
    KANLinear = None
    _KANLINEAR_ERROR = exc


DEFAULT_SHAPES = ((1024, 256, 256, 5, 3), (4096, 64, 64, 16, 3))
QUICK_SHAPES = ((256, 64, 64, 5, 3),)
# minimum kancore speed-up over the dense basis in fwd+bwd, per shape
SPEEDUP_TARGETS = {(1024, 256, 256, 5, 3): 3.0, (4096, 64, 64, 16, 3): 5.0}
MEMORY_TARGET = 5.0        # dense-basis peak extra / kancore peak extra >= this
UPDATE_GRID_TARGET = 2.0   # kancore update_grid / kancore fwd+bwd <= this
MARGIN = 0.01
PARAM_NAMES = ("grid", "base_weight", "spline_weight", "spline_scaler")

# (row label, family)
IMPLS = (
    ("kancore KANLinear", "kancore"),
    ("dense basis (PyTorch)", "dense"),
    ("nn.Linear", "linear"),
)
KANCORE, DENSE, LINEAR = (label for label, _ in IMPLS)

# --------------------------------------------------------------------------------------------
# the dense-basis baseline


def dense_basis(x: torch.Tensor, grid: torch.Tensor, order: int) -> torch.Tensor:
    """Cox-de Boor B-spline basis of order ``order`` on each feature's knots, as a dense tensor.

    x: (batch, in); grid: (in, n) non-decreasing knots. Returns (batch, in, n - 1 - order).
    B_{j,0}(x) = [t_j <= x < t_{j+1}];
    B_{j,p}(x) = (x - t_j) / (t_{j+p} - t_j) * B_{j,p-1}(x)
               + (t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}) * B_{j+1,p-1}(x).
    Zero outside [t_0, t_{n-1}). No guard for repeated knots (the benchmark's grids have none).
    """
    xe = x.unsqueeze(-1)  # (batch, in, 1)
    t = grid  # (in, n), broadcasts against (batch, in, .)
    basis = ((xe >= t[:, :-1]) & (xe < t[:, 1:])).to(x.dtype)  # (batch, in, n - 1)
    for p in range(1, order + 1):
        m = basis.shape[-1] - 1  # number of order-p functions
        left = (xe - t[:, :m]) / (t[:, p:p + m] - t[:, :m])
        right = (t[:, p + 1:p + 1 + m] - xe) / (t[:, p + 1:p + 1 + m] - t[:, 1:1 + m])
        basis = left * basis[..., :m] + right * basis[..., 1:]
    return basis


class DenseBasisKAN(nn.Module):
    """efficient-kan's function with efficient-kan's parameter names, computed through the
    dense (batch, in, G+k) basis. Parameters are loaded from the kancore layer."""

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5, spline_order: int = 3,
                 grid_eps: float = 0.02, grid_range=(-1.0, 1.0)):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order, self.grid_eps = grid_size, spline_order, grid_eps
        h = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32) * h + grid_range[0]
        self.register_buffer("grid", knots.expand(in_features, -1).contiguous())
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, grid_size + spline_order))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.normal_(self.base_weight, std=in_features ** -0.5)
        nn.init.normal_(self.spline_weight, std=0.1)
        nn.init.ones_(self.spline_scaler)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        basis = dense_basis(x, self.grid, self.spline_order)
        scaled = self.spline_weight * self.spline_scaler.unsqueeze(-1)
        return (F.linear(F.silu(x), self.base_weight)
                + F.linear(basis.reshape(x.shape[0], -1), scaled.reshape(self.out_features, -1)))

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01) -> None:
        B = x.shape[0]
        G, k = self.grid_size, self.spline_order
        # old per-edge spline outputs (unscaled): (in, batch, G+k) @ (in, G+k, out) -> (in, batch, out)
        old_basis = dense_basis(x, self.grid, k).transpose(0, 1)
        old_coef = self.spline_weight.permute(1, 2, 0)
        target = torch.bmm(old_basis, old_coef)
        # new knots from the sorted samples
        xs = torch.sort(x, dim=0).values  # (batch, in)
        idx = torch.div(torch.arange(G + 1, device=x.device) * (B - 1), G, rounding_mode="floor")
        adaptive = xs[idx]  # (G+1, in)
        step = (xs[-1] - xs[0] + 2 * margin) / G  # (in,)
        uniform = xs[0] - margin + torch.arange(G + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step
        inner = self.grid_eps * uniform + (1.0 - self.grid_eps) * adaptive  # (G+1, in)
        ext = torch.arange(1, k + 1, dtype=x.dtype, device=x.device).unsqueeze(1) * step  # (k, in)
        knots = torch.cat([inner[:1] - ext.flip(0), inner, inner[-1:] + ext], dim=0).T.contiguous()
        # refit: lstsq of the new dense basis against the old outputs, per feature
        new_basis = dense_basis(x, knots, k).transpose(0, 1)  # (in, batch, G+k)
        coef = torch.linalg.lstsq(new_basis, target).solution  # (in, G+k, out)
        self.grid.copy_(knots)
        self.spline_weight.copy_(coef.permute(2, 0, 1))


# --------------------------------------------------------------------------------------------
# /proc helpers (as in bench_c0_cpu.py)


# --------------------------------------------------------------------------------------------
# layers and runs


def _make_layers(B: int, I: int, O: int, G: int, k: int, seed: int) -> dict:
    """Build every layer for one shape; the dense-basis layer gets the kancore layer's tensors."""
    torch.manual_seed(seed)
    kc = KANLinear(I, O, grid_size=G, spline_order=k)
    dense = DenseBasisKAN(I, O, grid_size=G, spline_order=k, grid_eps=float(getattr(kc, "grid_eps", 0.02)))
    with torch.no_grad():
        for name in PARAM_NAMES:
            src, dst = getattr(kc, name), getattr(dense, name)
            if tuple(src.shape) != tuple(dst.shape):
                raise AssertionError(f"kancore KANLinear.{name} has shape {tuple(src.shape)}, "
                                     f"expected {tuple(dst.shape)}")
            dst.copy_(src)
    return {KANCORE: kc, DENSE: dense, LINEAR: nn.Linear(I, O)}


def _inputs(B: int, I: int, O: int, seed: int):
    gen = torch.Generator().manual_seed(seed + 1)
    x = (torch.rand(B, I, generator=gen) * 2.0 - 1.0).requires_grad_(True)
    g = torch.randn(B, O, generator=gen)
    return x, g


def _max_abs(t) -> float:
    return float(t.abs().max()) if t.numel() else 0.0


def _sanity_check(layers: dict, x, g) -> dict:
    """kancore's forward must agree with the dense basis (asserted); gradient differences are
    reported."""
    ref, kc = layers[DENSE], layers[KANCORE]
    _clear_grads(ref, x)
    y_ref = ref(x)
    y_ref.backward(g)
    gx_ref = x.grad.clone()
    gw_ref = {n: getattr(ref, n).grad.clone() for n in PARAM_NAMES[1:]}
    y_ref = y_ref.detach()
    tol = 1e-4 * _max_abs(y_ref)
    _clear_grads(kc, x)
    y = kc(x)
    y.backward(g)
    y = y.detach()
    diff = _max_abs(y - y_ref)
    if not torch.allclose(y, y_ref, rtol=1e-4, atol=tol):
        raise AssertionError(f"{KANCORE} disagrees with the dense basis: max |diff| = {diff:.3e} "
                             f"(atol {tol:.3e})")
    report = {"reference": DENSE, "atol": tol, "rtol": 1e-4, "fwd_max_abs_diff": diff,
              "fwd_max_abs": _max_abs(y_ref)}
    grads_close = True
    grads = {"x": (x.grad, gx_ref)}
    grads.update({n: (getattr(kc, n).grad, gw_ref[n]) for n in PARAM_NAMES[1:]})
    for name, (got, want) in grads.items():
        if got is None:
            report[f"grad_{name}_max_abs_diff"] = None
            grads_close = False
            continue
        d, m = _max_abs(got - want), _max_abs(want)
        report[f"grad_{name}_max_abs_diff"] = d
        report[f"grad_{name}_max_abs"] = m
        grads_close = grads_close and d <= 1e-4 * m + 1e-6
    report["grads_close"] = grads_close
    _clear_grads(kc, x)
    _clear_grads(ref, x)
    return report


def _update_grid_check(shape, x, seed: int) -> dict:
    """One update_grid of each implementation on fresh layers with the same weights: knots and
    outputs compared, and each layer's function before vs after on the batch (not asserted)."""
    B, I, O, G, k = shape
    layers = _make_layers(B, I, O, G, k, seed)
    xd = x.detach()
    with torch.no_grad():
        before = layers[DENSE](xd)
        scale = max(_max_abs(before), 1e-30)
        layers[KANCORE].update_grid(xd, margin=MARGIN)
        layers[DENSE].update_grid(xd, margin=MARGIN)
        y_kc, y_dn = layers[KANCORE](xd), layers[DENSE](xd)
        grid_kc, grid_dn = layers[KANCORE].grid, layers[DENSE].grid
    return {
        "knots_max_abs_diff": _max_abs(grid_kc - grid_dn),
        "out_max_abs_diff_kancore_vs_dense": _max_abs(y_kc - y_dn),
        "kancore_preservation_max_rel_diff": _max_abs(y_kc - before) / scale,
        "dense_preservation_max_rel_diff": _max_abs(y_dn - before) / scale,
        "dense_nonfinite": bool(not torch.isfinite(y_dn).all()),
        "kancore_nonfinite": bool(not torch.isfinite(y_kc).all()),
        "out_max_abs_before": scale,
    }


# --------------------------------------------------------------------------------------------
# output


def _ms(t: dict | None) -> str:
    if t is None:
        return "—"
    return f"{t['median_ms']:.3f} ({t['min_ms']:.3f})" + ("*" if t.get("disturbed") else "")


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _targets(results: list[dict]) -> list[dict]:
    """One entry per (shape, target) that applies."""
    out = []
    for res in results:
        shape = tuple(res["shape"])
        name = _shape_name(shape)
        s = res["summary"]
        want = SPEEDUP_TARGETS.get(shape)
        if want is not None:
            out.append({"shape": name, "target": f"kancore fwd+bwd >= {want:g}x faster than the dense basis",
                        "value": f"{s['speedup_fwd_bwd']:.2f}x", "met": s["speedup_fwd_bwd"] >= want})
        if s.get("memory_ratio") is not None:
            out.append({"shape": name, "target": f"kancore peak extra memory >= {MEMORY_TARGET:g}x lower",
                        "value": f"{s['memory_ratio']:.1f}x", "met": s["memory_ratio"] >= MEMORY_TARGET})
        out.append({"shape": name, "target": f"kancore update_grid <= {UPDATE_GRID_TARGET:g}x its fwd+bwd",
                    "value": f"{s['kancore_update_grid_vs_fwd_bwd']:.2f}x",
                    "met": s["kancore_update_grid_vs_fwd_bwd"] <= UPDATE_GRID_TARGET})
    return out


def _markdown(meta: dict, results: list[dict], targets: list[dict]) -> str:
    lines = [
        "# B-spline KAN layer on the CPU: kancore KANLinear vs a dense-basis PyTorch layer vs nn.Linear",
        "",
        f"- date: {meta['date']}; total {meta['total_s']} s",
        f"- CPU: {meta['cpu_model']}; torch threads: {meta['threads']} (os.cpu_count() = {meta['cpu_count']}); "
        f"load average at start / end: {meta['loadavg_start']} / {meta['loadavg_end']}",
        f"- torch {meta['torch_version']}, kancore {meta['kancore_version']}"
        + (f" (git {meta['git']})" if meta.get("git") else ""),
        f"- mode: {'quick' if meta['quick'] else 'full'}; float32; x ~ U(-1, 1) with requires_grad=True; "
        "the dense-basis layer (Cox-de Boor recursion on (batch, in, G+2k) tensors, written in the "
        "script) loads kancore's grid/base_weight/spline_weight/spline_scaler and its output was "
        "checked to agree",
        "- fwd: `layer(x)` under `torch.no_grad()`; fwd+bwd: `layer(x).backward(g)` with a fixed random g "
        "(grads of x and of the weights); update_grid: `layer.update_grid(x, margin=0.01)` on the same "
        "batch (dense basis: sort + quantile/uniform knots + `torch.linalg.lstsq` of the dense basis). "
        "Times: median (min) in ms of repeated `time.perf_counter` runs after warm-up, about "
        f"{meta['target_s']} s per cell; `*` = other processes used >= {CONTENDED_CPUS} CPU during "
        "that cell (numbers disturbed)",
        "- vs Linear: fwd+bwd median / nn.Linear's fwd+bwd median. kancore speed-up: dense-basis median / "
        "kancore median, for fwd and for fwd+bwd. update_grid / fwd+bwd: the row's own medians",
        f"- peak extra MiB: {meta['memory_method_text']}",
        "",
    ]
    for res in results:
        B, I, O, G, k = res["shape"]
        s = res["summary"]
        u = res["update_grid_check"]
        lines += [
            f"## batch={B}, in={I}, out={O}, G={G}, k={k}",
            "",
            "| implementation | fwd ms | fwd+bwd ms | fwd+bwd vs Linear | kancore speed-up fwd / fwd+bwd "
            "| peak extra MiB | update_grid ms | update_grid / fwd+bwd |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in res["rows"]:
            sp = row.get("speedup_vs_dense")
            sp_text = "—" if sp is None else f"{sp['fwd']:.2f}× / {sp['fwd_bwd']:.2f}×"
            mem = row.get("peak_extra_mib")
            ug = row.get("update_grid")
            ratio = row.get("update_grid_vs_fwd_bwd")
            lines.append(
                f"| {row['label']} | {_ms(row['fwd'])} | {_ms(row['fwd_bwd'])} "
                f"| {row['fwd_bwd_vs_linear']:.1f}× | {sp_text} "
                f"| {'—' if mem is None else f'{mem:.1f}'} | {_ms(ug)} "
                f"| {'—' if ratio is None else f'{ratio:.2f}×'} |")
        mr = s.get("memory_ratio")
        lines += [
            "",
            f"Peak extra memory, dense basis / kancore: {'—' if mr is None else f'{mr:.1f}×'}. "
            f"One update_grid of each on the same weights: knots differ by at most "
            f"{u['knots_max_abs_diff']:.2e}, outputs after the update by {u['out_max_abs_diff_kancore_vs_dense']:.2e} "
            f"(max |y| {u['out_max_abs_before']:.2e}); output change on the batch, relative to max |y|: "
            f"kancore {u['kancore_preservation_max_rel_diff']:.2e}, dense basis "
            f"{u['dense_preservation_max_rel_diff']:.2e}.",
            "",
        ]
    lines += [
        "## Targets" + (" (quick shapes: only the memory and update_grid targets apply)" if meta["quick"] else ""),
        "",
        "| shape | target | measured | |",
        "|---|---|---:|---|",
    ]
    for t in targets:
        lines.append(f"| {t['shape']} | {t['target']} | {t['value']} | {_met(t['met'])} |")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------


def _parse_shape(text: str):
    parts = text.replace(",", "x").lower().split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 5 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"shape must be BATCHxINxOUTxGxK (all >= 1), got {text!r}")
    return shape


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="shape 256x64x64x5x3, small repeat counts, no idle waits or retries "
                         "(CI smoke run, < 60 s)")
    ap.add_argument("--shapes", nargs="+", type=_parse_shape, metavar="BxINxOUTxGxK",
                    help="shapes to run (default: " + " ".join(map(_shape_name, DEFAULT_SHAPES))
                         + "; quick: " + " ".join(map(_shape_name, QUICK_SHAPES)) + ")")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                    help="directory for bench_bspline_cpu.json / .md (default: benchmarks/results)")
    add_harness_args(ap)
    args = ap.parse_args(argv)

    if KANLinear is None:
        print(f"error: kancore.KANLinear is not available ({type(_KANLINEAR_ERROR).__name__}: "
              f"{_KANLINEAR_ERROR})", file=sys.stderr)
        return 2

    shapes = args.shapes or list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    setup = HarnessSetup(args, ap)
    timer = setup.timer

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch_version": torch.__version__,
        "kancore_version": str(kancore.__version__),
        "kancore_dist_version": _version("kancore", kancore),
        "git": _git_rev(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "loadavg_start": _loadavg(),
        "dtype": "float32",
        "input": "x ~ U(-1, 1), requires_grad=True",
        **setup.meta,
        "update_grid_margin": MARGIN,
        "targets": {"speedup_fwd_bwd": {_shape_name(s): v for s, v in SPEEDUP_TARGETS.items()},
                    "memory_ratio_min": MEMORY_TARGET, "update_grid_vs_fwd_bwd_max": UPDATE_GRID_TARGET},
    }
    print(f"# torch {meta['torch_version']} | kancore {meta['kancore_version']} | {meta['cpu_model']} | "
          f"{meta['threads']} threads | load {meta['loadavg_start']}", flush=True)

    t_start = time.perf_counter()
    results = []
    # Phase 1: correctness check and timing, default glibc malloc behaviour.
    for shape in shapes:
        B, I, O, G, k = shape
        x, g = _inputs(B, I, O, args.seed)
        ug_check = _update_grid_check(shape, x, args.seed)
        layers = _make_layers(B, I, O, G, k, args.seed)
        sanity = _sanity_check(layers, x, g)
        print(f"\n## {_shape_name(shape)}: kancore agrees with the dense basis "
              f"(max |diff| {sanity['fwd_max_abs_diff']:.2e}, atol {sanity['atol']:.2e}; grads close: "
              f"{sanity['grads_close']}); update_grid: knots differ by {ug_check['knots_max_abs_diff']:.2e}, "
              f"outputs after by {ug_check['out_max_abs_diff_kancore_vs_dense']:.2e}; timing", flush=True)
        xd = x.detach()
        rows = []
        for label, family in IMPLS:
            layer = layers[label]
            clear = lambda layer=layer: _clear_grads(layer, x)  # noqa: E731
            fwd = timer(lambda: _fwd(layer, x), clear)
            fwd_bwd = timer(lambda: _fwd_bwd(layer, x, g), clear)
            _clear_grads(layer, x)
            ug = None
            if family != "linear":  # after fwd/fwd+bwd: it changes the layer's grid
                ug = timer(lambda: layer.update_grid(xd, margin=MARGIN), lambda: None)
            rows.append({"label": label, "family": family, "fwd": fwd, "fwd_bwd": fwd_bwd, "update_grid": ug})
            print(f"  {label:22s} fwd {_ms(fwd):>22s} ms   fwd+bwd {_ms(fwd_bwd):>22s} ms   "
                  f"update_grid {_ms(ug):>22s} ms   (reps {fwd['reps']}/{fwd_bwd['reps']}"
                  f"{'' if ug is None else '/' + str(ug['reps'])}, others' CPU "
                  f"{fwd['foreign_cpus'] or 0:.2f}/{fwd_bwd['foreign_cpus'] or 0:.2f})", flush=True)
        by = {r["label"]: r for r in rows}
        lin = by[LINEAR]["fwd_bwd"]["median_ms"]
        for r in rows:
            r["fwd_bwd_vs_linear"] = r["fwd_bwd"]["median_ms"] / lin
            if r["update_grid"] is not None:
                r["update_grid_vs_fwd_bwd"] = r["update_grid"]["median_ms"] / r["fwd_bwd"]["median_ms"]
        by[KANCORE]["speedup_vs_dense"] = {
            "fwd": by[DENSE]["fwd"]["median_ms"] / by[KANCORE]["fwd"]["median_ms"],
            "fwd_bwd": by[DENSE]["fwd_bwd"]["median_ms"] / by[KANCORE]["fwd_bwd"]["median_ms"]}
        summary = {"speedup_fwd": by[KANCORE]["speedup_vs_dense"]["fwd"],
                   "speedup_fwd_bwd": by[KANCORE]["speedup_vs_dense"]["fwd_bwd"],
                   "kancore_update_grid_vs_fwd_bwd": by[KANCORE]["update_grid_vs_fwd_bwd"],
                   "update_grid_speedup": by[DENSE]["update_grid"]["median_ms"] / by[KANCORE]["update_grid"]["median_ms"]}
        results.append({"shape": list(shape), "batch": B, "in_features": I, "out_features": O,
                        "grid_size": G, "spline_order": k, "sanity": sanity,
                        "update_grid_check": ug_check, "summary": summary, "rows": rows})
        del layers, x, g, xd, rows, by
        gc.collect()

    # Phase 2: peak extra memory of one fwd+bwd, with large blocks returned to the OS on free.
    setup.start_memory_phase(meta)
    for res in results:
        B, I, O, G, k = res["shape"]
        layers = _make_layers(B, I, O, G, k, args.seed)
        x, g = _inputs(B, I, O, args.seed)
        setup.measure_memory(res, layers, x, g)
        by = {r["label"]: r for r in res["rows"]}
        kc_mib = by[KANCORE]["peak_extra_mib"]
        res["summary"]["memory_ratio"] = by[DENSE]["peak_extra_mib"] / kc_mib if kc_mib > 0 else None
        del layers, x, g
        gc.collect()

    meta["loadavg_end"] = _loadavg()
    meta["wait_retry_budget_left_s"] = round(timer.budget_left, 1)
    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    targets = _targets(results)
    md = _markdown(meta, results, targets)
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_bspline_cpu.json").write_text(
        json.dumps({"meta": meta, "results": results, "targets": targets}, indent=2) + "\n")
    (args.out / "bench_bspline_cpu.md").write_text(md + "\n")
    print(f"wrote {args.out / 'bench_bspline_cpu.json'} and {args.out / 'bench_bspline_cpu.md'} "
          f"({meta['total_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
