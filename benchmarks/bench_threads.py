#!/usr/bin/env python
"""How the CPU thread count changes the time of small and medium models.

Each configuration runs in a fresh child process (so OpenMP environment variables take effect
before any runtime starts) and times, per case, the median of repeated calls:

* ``KAN([2, 8, 1], kind="c0")`` and ``kind="bspline"``: forward + backward, batch 64 and 1024;
* ``KANLayer(256, 256, num_control_points=32)``: forward + backward, batch 1024;
* ``NumpyKAN([2, 8, 1]).fit``: 1024 rows, batch 64, 3 epochs (no torch).

Configurations (thread counts): ``default`` (nothing set), ``1`` (``OMP_NUM_THREADS=1``, and
``kancore.set_num_threads(1)`` / ``torch.set_num_threads(1)`` where they exist), and
``kancore=N`` (only ``kancore.set_num_threads(N)``; needs a kancore that has it).
With ``--busy`` every configuration is also run while a busy-loop process (pure Python
``while True``, one core) competes for the machine. The configurations run in turn, ``--rounds``
times over (so a change in other processes' load hits them alike); each cell is the fastest
round's median. The table shows milliseconds per call and the ratio to 1 thread (> 1: slower
than one thread). The 1-minute load average is printed: on a machine others use, "idle" only
means no busy loop of ours.

    python benchmarks/bench_threads.py [--busy] [--torch-first] [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = ["c0 [2,8,1] b64", "c0 [2,8,1] b1024", "bspline [2,8,1] b64", "bspline [2,8,1] b1024",
         "KANLayer 1024x256x256 K32", "NumpyKAN.fit [2,8,1] 1024 rows"]


def _time(fn, target: float) -> float:
    """Median seconds per call of fn over about `target` seconds (after a short warm-up)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    for _ in range(min(3, int(0.1 * target / one))):
        fn()
    reps = max(5, min(2000, int(target / one)))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def child(config: str, target: float, torch_first: bool) -> dict:
    if torch_first:
        import torch  # noqa: F401  (import order decides whether torch's libgomp is shared)
    import numpy as np
    import kancore

    if config == "1" or config.startswith("kancore="):
        n = 1 if config == "1" else int(config.split("=")[1])
        if hasattr(kancore, "set_num_threads"):
            kancore.set_num_threads(n)
        elif config != "1":
            raise SystemExit("this kancore has no set_num_threads")
    out = {}
    rng = np.random.default_rng(0)

    # Torch-free first, so its runtime is the only one loaded unless torch_first.
    X = rng.uniform(-1, 1, (1024, 2)).astype(np.float32)
    y = np.sin(3 * X[:, :1]) * X[:, 1:]
    net = kancore.NumpyKAN([2, 8, 1], kind="bspline")
    out[CASES[5]] = _time(lambda: net.fit(X, y, epochs=3, batch_size=64), target)

    import torch

    if config == "1":
        torch.set_num_threads(1)
    torch.manual_seed(0)

    def fwd_bwd(model, x):
        def run():
            for p in model.parameters():
                p.grad = None
            x.grad = None
            model(x).sum().backward()
        return run

    for kind in ("c0", "bspline"):
        model = kancore.KAN([2, 8, 1], kind=kind)
        for batch in (64, 1024):
            x = torch.rand(batch, 2).mul(2).sub(1).requires_grad_()
            out[f"{kind} [2,8,1] b{batch}"] = _time(fwd_bwd(model, x), target)
    layer = kancore.KANLayer(256, 256, num_control_points=32)
    x = torch.rand(1024, 256).mul(4).sub(2).requires_grad_()
    out[CASES[4]] = _time(fwd_bwd(layer, x), target)
    out["_threads"] = {"torch": torch.get_num_threads(),
                       "kancore": kancore.get_num_threads() if hasattr(kancore, "get_num_threads") else None}
    return out


def run_child(config: str, args) -> dict:
    env = dict(os.environ)
    if config == "1":
        env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, __file__, "--child", config, "--target", str(args.target)]
    if args.torch_first:
        cmd.append("--torch-first")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--target", type=float, default=0.5, help="seconds of timed calls per case")
    ap.add_argument("--busy", action="store_true", help="also run with a busy-loop process competing")
    ap.add_argument("--torch-first", action="store_true", help="import torch before kancore")
    ap.add_argument("--configs", default="default,1", help="comma-separated: default, 1, kancore=N")
    ap.add_argument("--rounds", type=int, default=3, help="runs of every configuration, in turn")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.target, args.torch_first)))
        return

    configs = args.configs.split(",")
    with open("/proc/loadavg") as f:
        load0 = f.read().split()[0]
    scenarios = ["idle"] + (["busy"] if args.busy else [])
    results = {}
    for scenario in scenarios:
        hog = None
        if scenario == "busy":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)
        try:
            for _ in range(args.rounds):
                for config in configs:
                    res = run_child(config, args)
                    best = results.setdefault((scenario, config), res)
                    for case in CASES:
                        best[case] = min(best[case], res[case])
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()

    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"cpus: {os.cpu_count()}  load average (1 min) at the start: {load0}, at the end: {load}  "
          f"torch first: {args.torch_first}  rounds: {args.rounds}")
    for scenario in scenarios:
        base = results.get((scenario, "1"))
        head = f"| {scenario:<32} |" + "".join(f" {c + ' ms':>12} |" for c in configs)
        if base is not None:
            head += "".join(f" {c + ' / 1':>12} |" for c in configs if c != "1")
        print()
        print(head)
        print("|" + "-" * 34 + "|" + "--------------|" * (head.count("|") - 2))
        for case in CASES:
            row = f"| {case:<32} |"
            row += "".join(f" {1e3 * results[(scenario, c)][case]:>12.3f} |" for c in configs)
            if base is not None:
                row += "".join(f" {results[(scenario, c)][case] / base[case]:>12.2f} |"
                               for c in configs if c != "1")
            print(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{s}/{c}": v for (s, c), v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
