"""Measurement helpers shared by the CPU benchmarks (bench_c0_cpu.py, bench_bspline_cpu.py).

Import this module before torch: with ``--mallopt-at-startup`` on the command line it fixes
glibc's mmap threshold first, so the peak-memory numbers are not inflated by freed heap memory.
What it offers: CPU-contention bookkeeping from /proc (other processes' CPU use during a
timing), a warm-up-then-repeat Timer reporting median and min, peak extra RSS of one run
(VmHWM after clear_refs, or in a forked child), run metadata (CPU model, load, versions), and
the options and set-up both drivers share (add_harness_args, HarnessSetup).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
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
CONTENDED_CPUS = 0.1  # other processes' average CPU use above which a timing counts as disturbed


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()
_MALLOC_TRIM = getattr(_LIBC, "malloc_trim", None)
if _MALLOC_TRIM is not None:
    _MALLOC_TRIM.argtypes = (ctypes.c_size_t,)
    _MALLOC_TRIM.restype = ctypes.c_int


def _trim_heap() -> None:
    """Give the malloc arenas' free pages back to the OS (glibc malloc_trim(0)), so that memory
    freed earlier but still resident cannot be reused during a measurement without showing up
    in the RSS."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _set_mmap_threshold() -> str:
    """Fix glibc's mmap threshold so freed large blocks go back to the OS.
    Returns a description of what happened."""
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is None:  # not glibc (e.g. musl, macOS)
        return "mallopt unavailable; RSS may include freed heap memory"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return "mallopt(M_MMAP_THRESHOLD) failed; RSS may include freed heap memory"
    return f"glibc mallopt(M_MMAP_THRESHOLD, {MMAP_THRESHOLD_BYTES})"


MALLOPT_AT_STARTUP = "--mallopt-at-startup" in sys.argv[1:]
MALLOPT_STATUS = _set_mmap_threshold() if MALLOPT_AT_STARTUP else None

import torch  # noqa: E402  (after the mallopt above)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # "VmRSS:   1234 kB"
    raise RuntimeError(f"{field} not found in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _clear_refs_writable() -> bool:
    try:
        _reset_peak_rss()
        return True
    except OSError:
        return False


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_snapshot():
    """(machine busy CPU seconds, this process's CPU seconds, wall time), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    t = os.times()
    return busy / _CLK_TCK, t.user + t.system, time.perf_counter()


def _foreign_cpus(start, end) -> float | None:
    """Average number of CPUs other processes kept busy between two snapshots."""
    if start is None or end is None or end[2] <= start[2]:
        return None
    foreign = (end[0] - start[0]) - (end[1] - start[1])
    return max(0.0, foreign / (end[2] - start[2]))


def _wait_idle(max_wait: float, window: float = 0.3) -> float:
    """Sleep until other processes use < CONTENDED_CPUS over a window; returns seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        a = _cpu_snapshot()
        time.sleep(window)
        load = _foreign_cpus(a, _cpu_snapshot())
        if load is None or load < CONTENDED_CPUS:
            break
    return time.perf_counter() - t0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _loadavg() -> str | None:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return None


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


def _clear_grads(layer, x) -> None:
    x.grad = None
    layer.zero_grad(set_to_none=True)


def _fwd(layer, x) -> None:
    with torch.no_grad():
        layer(x)


def _fwd_bwd(layer, x, g) -> None:
    layer(x).backward(g)


class Timer:
    """Times one callable per call; see the module docstring. ``budget_s`` caps the total time
    spent waiting for a quiet machine and re-running disturbed cells over the whole run."""

    def __init__(self, warmup: int, target_s: float, min_reps: int, max_reps: int,
                 retries: int, idle_wait: float, budget_s: float):
        self.warmup, self.target_s = warmup, target_s
        self.min_reps, self.max_reps = min_reps, max_reps
        self.retries, self.idle_wait = retries, idle_wait
        self.budget_left = budget_s

    def _attempt(self, fn, clear, reps=None) -> dict:
        waited = 0.0
        if self.idle_wait > 0 and self.budget_left > 0:
            waited = _wait_idle(min(self.idle_wait, self.budget_left))
            self.budget_left -= waited
        t_warm = time.perf_counter()
        for _ in range(self.warmup):  # at most ~target/2 of warm-up for slow cells, at least one
            clear()
            fn()
            if time.perf_counter() - t_warm > 0.5 * self.target_s:
                break
        start = _cpu_snapshot()
        times = []

        def one():
            clear()
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)

        one()  # calibration run; it counts as a sample
        if reps is None:
            reps = int(min(self.max_reps, max(self.min_reps, round(self.target_s / max(times[0], 1e-7)))))
        while len(times) < reps:
            one()
        end = _cpu_snapshot()
        return {
            "median_ms": statistics.median(times) * 1e3,
            "min_ms": min(times) * 1e3,
            "reps": len(times),
            "foreign_cpus": _foreign_cpus(start, end),
            "idle_wait_s": round(waited, 2),
            "duration_s": (end[2] - start[2]) if start and end else None,
        }

    def __call__(self, fn, clear) -> dict:
        best = None
        attempts = 0
        while True:
            res = self._attempt(fn, clear, None if best is None else best["reps"])
            if attempts > 0:  # re-runs are paid from the budget
                self.budget_left -= res["duration_s"] or 0.0
            attempts += 1
            load = res["foreign_cpus"]
            if best is None or (load is not None and load < (best["foreign_cpus"] or 0.0)):
                best = res
            if (load is None or load < CONTENDED_CPUS or attempts > self.retries
                    or self.budget_left < (res["duration_s"] or 0.0)):
                break
        best["attempts"] = attempts
        best["disturbed"] = best["foreign_cpus"] is not None and best["foreign_cpus"] >= CONTENDED_CPUS
        return best


def _peak_clear_refs(run, clear) -> int:
    gc.collect()
    _trim_heap()
    _reset_peak_rss()
    base = _status_kib("VmRSS")
    run()
    return _status_kib("VmHWM") - base


def _peak_fork(run, clear, timeout_s: float = 300.0) -> int:
    # The child's VmHWM starts at its RSS at fork time, so anything that lowers the RSS in the
    # child (trimming the heap) would inflate the result: collect and trim here, before forking.
    gc.collect()
    _trim_heap()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: measure, report through the pipe, never return
        code = 0
        try:
            os.close(read_fd)
            # GNU OpenMP's thread pool does not survive fork(): a multi-threaded parallel region
            # in the child waits for threads that only exist in the parent. Run single-threaded.
            torch.set_num_threads(1)
            # fork() does not copy the page tables of file-backed mappings, so the child's first
            # run faults in library code and would count it. Run once first: its peak cannot
            # exceed the second run's baseline + peak, so VmHWM ends at the second run's peak.
            run()
            clear()
            gc.collect()
            _trim_heap()
            base = _status_kib("VmRSS")
            run()
            os.write(write_fd, str(_status_kib("VmHWM") - base).encode())
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)  # our own child only
        os.waitpid(pid, 0)
        os.close(read_fd)
        raise RuntimeError(f"forked memory measurement did not finish in {timeout_s} s")
    with os.fdopen(read_fd) as f:
        text = f.read()
    if not text or os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("forked memory measurement failed")
    return int(text)


def _peak_extra_kib(layer, x, g, method: str, repeats: int) -> list[int]:
    measure = _peak_clear_refs if method == "clear_refs" else _peak_fork
    runs = []
    for _ in range(repeats):
        _clear_grads(layer, x)
        runs.append(measure(lambda: _fwd_bwd(layer, x, g), lambda: _clear_grads(layer, x)))
        _clear_grads(layer, x)
    return runs


def _shape_name(shape) -> str:
    return "x".join(str(s) for s in shape)


# ---- the command line and set-up both benchmark drivers share ----------------------------------

def add_harness_args(ap) -> None:
    """Timing, memory and seed options (each benchmark adds --quick, --shapes and --out)."""
    ap.add_argument("--target", type=float, help="seconds of timed runs per cell (default 1.0; quick 0.05)")
    ap.add_argument("--retries", type=int, help="re-runs of a cell disturbed by other processes (default 2; quick 0)")
    ap.add_argument("--idle-wait", type=float,
                    help="max seconds to wait for a quiet machine before each cell (default 20; quick 0)")
    ap.add_argument("--budget", type=float,
                    help="max total seconds spent on idle waits and re-runs (default 240; quick 0)")
    ap.add_argument("--mem-method", choices=("auto", "clear_refs", "fork"), default="auto",
                    help="peak-RSS method (default: clear_refs if writable, else fork)")
    ap.add_argument("--mem-repeats", type=int, help="memory runs per row, max reported (default 2; quick 1)")
    ap.add_argument("--mallopt-at-startup", action="store_true",
                    help="fix the mmap threshold before timing too (slows allocation-heavy code)")
    ap.add_argument("--seed", type=int, default=0)


class HarnessSetup:
    """The Timer, memory method and repeat counts chosen from the parsed arguments."""

    def __init__(self, args, ap):
        if args.quick:
            # no warm-up: the correctness check has just run every layer's fwd+bwd once
            warmup, target, min_reps, max_reps, retries, idle_wait, mem_reps, budget = 0, 0.05, 2, 50, 0, 0.0, 1, 0.0
        else:
            warmup, target, min_reps, max_reps, retries, idle_wait, mem_reps, budget = 3, 1.0, 3, 2000, 2, 20.0, 2, 240.0
        target = target if args.target is None else args.target
        retries = retries if args.retries is None else max(0, args.retries)
        idle_wait = idle_wait if args.idle_wait is None else max(0.0, args.idle_wait)
        budget = budget if args.budget is None else max(0.0, args.budget)
        self.mem_reps = mem_reps if args.mem_repeats is None else max(1, args.mem_repeats)
        self.timer = Timer(warmup, target, min_reps, max_reps, retries, idle_wait, budget)
        self.writable = _clear_refs_writable()
        if args.mem_method == "auto":
            self.mem_method = "clear_refs" if self.writable else "fork"
        else:
            self.mem_method = args.mem_method
            if self.mem_method == "clear_refs" and not self.writable:
                ap.error("/proc/self/clear_refs is not writable; use --mem-method fork or auto")
        self.meta = {  # the run's settings, for the JSON
            "quick": args.quick, "seed": args.seed, "warmup": warmup, "target_s": target,
            "min_reps": min_reps, "max_reps": max_reps, "retries": retries,
            "idle_wait_s": idle_wait, "wait_retry_budget_s": budget,
            "contended_cpus_threshold": CONTENDED_CPUS, "memory_method": self.mem_method,
            "mallopt_at_startup": MALLOPT_AT_STARTUP,
        }

    def start_memory_phase(self, meta: dict) -> None:
        """Fixes the mmap threshold (if not done at start-up) and records how memory is measured."""
        mallopt_status = MALLOPT_STATUS or _set_mmap_threshold()
        if self.mem_method == "clear_refs":
            text = ("VmHWM - VmRSS around one fwd+bwd, peak RSS reset by writing 5 to "
                    "/proc/self/clear_refs after gc.collect() and malloc_trim(0)")
        else:
            text = ("VmHWM - VmRSS around one fwd+bwd in a child made with os.fork() after "
                    "gc.collect() and malloc_trim(0); the child first runs and frees one fwd+bwd "
                    "to page in library code, and runs with 1 thread (/proc/self/clear_refs "
                    + ("not writable" if not self.writable else "not used") + ")")
        text += (f"; {mallopt_status}" + (" at start-up" if MALLOPT_AT_STARTUP else " after timing")
                 + f"; max of {self.mem_reps} run(s)")
        meta["memory_method_text"] = text
        meta["mallopt"] = mallopt_status
        print(f"\n# memory: {text}", flush=True)

    def measure_memory(self, res: dict, layers: dict, x, g) -> None:
        """Peak extra MiB of one fwd+bwd for every row of a shape's results (printed)."""
        for row in res["rows"]:
            runs = _peak_extra_kib(layers[row["label"]], x, g, self.mem_method, self.mem_reps)
            row["peak_extra_kib_runs"] = runs
            row["peak_extra_mib"] = max(runs) / 1024.0
        print(f"  {_shape_name(res['shape'])}: " + ", ".join(
            f"{r['label']} {r['peak_extra_mib']:.1f} MiB" for r in res["rows"]), flush=True)
