#!/usr/bin/env python
"""kancore against pykan 0.2.8 on formula fitting, side by side in one process.

Formulas of the Feynman data set's kind and pykan's examples (inputs uniform on the ranges
given, 1000 training and 1000 test points, fixed seeds). Every KAN has width [n, 5, 1], cubic
splines, and trains pykan's way: LBFGS (strong-Wolfe line search) on the full batch for 50 steps
on grid 5, then refine to grid 10 and 50 steps, then grid 20 and 50 steps, with grid updates
from the samples every 5 steps (pykan's fit defaults).

* pykan: ``MultKAN(width, grid=5, k=3).fit(opt="LBFGS", steps=50)``, ``refine(10)``, ``fit``,
  ``refine(20)``, ``fit`` (float32, pykan's default dtype);
* kancore: ``kancore.fit(KAN([n, 5, 1], scale_noise=0.3, spline_scaler_init="constant"),
  optimizer="lbfgs", grid_schedule=[5, 10, 20], steps=150, grid_update_every=5)``, in float32 and
  in float64. The two initialisation arguments are pykan's initialisation (efficient-kan's
  defaults, 0.1 and Kaiming-uniform scalers, gave 2-10x higher RMSE on some formulas);
* MLPs with the parameter count of kancore's final KAN (``kancore.mlp_with_same_parameters``),
  one hidden layer and two, SiLU, trained by the same LBFGS for 150 steps.

Reports the test RMSE (median over seeds), the training time of pykan and of kancore, their
ratios, and the share of formulas where kancore's better KAN is within 1.2x of pykan's RMSE.
CPU, one thread for every library.

    python benchmarks/vs_pykan.py [--seeds 2] [--quick] [--only NAME ...] [--out benchmarks/results]
"""
import argparse
import io
import json
import math
import platform
import statistics
import tempfile
import time
from contextlib import redirect_stdout, redirect_stderr
from pathlib import Path

import torch

import kancore

# name: (ranges per variable, f)
FORMULAS = {
    "x cos y + y sin x": ([(-1, 1)] * 2, lambda x: x[:, 0] * torch.cos(x[:, 1]) + x[:, 1] * torch.sin(x[:, 0])),
    "exp(sin(pi x) + y^2)": ([(-1, 1)] * 2, lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)),
    "sin(x)/x": ([(-3, 3)], lambda x: torch.sinc(x[:, 0] / math.pi)),
    "x y": ([(-1, 1)] * 2, lambda x: x[:, 0] * x[:, 1]),
    "I.6.20a exp(-t^2/2)/sqrt(2 pi)": ([(-3, 3)], lambda x: torch.exp(-x[:, 0] ** 2 / 2) / math.sqrt(2 * math.pi)),
    "I.12.4 q/(4 pi r^2)": ([(-1, 1), (1, 2)], lambda x: x[:, 0] / (4 * math.pi * x[:, 1] ** 2)),
    "I.29.16 sqrt(a^2 + b^2 - 2ab cos t)": ([(1, 2), (1, 2), (0, math.pi)],
                                           lambda x: torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2
                                                                - 2 * x[:, 0] * x[:, 1] * torch.cos(x[:, 2]))),
    "I.14.3 m g z": ([(1, 2), (1, 2), (-1, 1)], lambda x: x[:, 0] * x[:, 1] * x[:, 2]),
    "II.6.15a p z sqrt(x^2+y^2) / r^5": ([(1, 2), (-1, 1), (1, 2)],
                                          lambda x: x[:, 0] * x[:, 1] * torch.sqrt(x[:, 1] ** 2 + 1) / x[:, 2] ** 5),
    "tanh(x + y)": ([(-1, 1)] * 2, lambda x: torch.tanh(x[:, 0] + x[:, 1])),
}
GRIDS = (5, 10, 20)
CKPT = tempfile.mkdtemp(prefix="vs_pykan_")  # pykan logs its fits there even without auto_save
STEPS = 50  # per grid


def dataset(name, seed, dtype=torch.float32):
    ranges, f = FORMULAS[name]
    return kancore.create_dataset(f, n_var=len(ranges), ranges=ranges, train_num=1000, test_num=1000,
                                  seed=seed, dtype=dtype)


def rmse(model, data):
    with torch.no_grad():
        return float(torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)))


def grid_range(data):
    # pykan and efficient-kan start on [-1, 1]; grid updates then follow the data. Both start
    # from the data's range here so neither depends on its first update.
    lo, hi = data["train_input"].min().item(), data["train_input"].max().item()
    return (lo, hi)


def run_pykan(name, seed, steps):
    from kan import MultKAN

    data = dataset(name, seed)
    n = data["train_input"].shape[1]
    torch.manual_seed(seed)
    sink = io.StringIO()
    t0 = time.perf_counter()
    with redirect_stdout(sink), redirect_stderr(sink):  # pykan prints a progress bar per fit
        model = MultKAN(width=[n, 5, 1], grid=GRIDS[0], k=3, seed=seed, auto_save=False,
                        grid_range=list(grid_range(data)), ckpt_path=CKPT)
        for j, g in enumerate(GRIDS):
            if j:
                model = model.refine(g)
            model.fit(data, opt="LBFGS", steps=steps, lamb=0.0, log=steps)
    seconds = time.perf_counter() - t0
    return rmse(model, data), seconds


def run_kancore(name, seed, steps, dtype):
    data = dataset(name, seed, dtype)
    n = data["train_input"].shape[1]
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model = kancore.KAN([n, 5, 1], grid_size=GRIDS[0], spline_order=3, grid_range=grid_range(data), dtype=dtype,
                        scale_noise=0.3, spline_scaler_init="constant")
    kancore.fit(model, data, optimizer="lbfgs", lr=1.0, steps=steps * len(GRIDS), grid_schedule=list(GRIDS),
                grid_update_every=5, progress=False, eval_every=steps * len(GRIDS), restore_best=False)
    seconds = time.perf_counter() - t0
    return rmse(model, data), seconds, kancore.count_parameters(model)


def run_mlp(name, seed, steps, params, hidden_layers):
    data = dataset(name, seed)
    n = data["train_input"].shape[1]
    torch.manual_seed(seed)
    widths = [n, 5, 1] if hidden_layers == 1 else [n, 5, 5, 1]
    mlp = kancore.mlp_with_same_parameters(widths, params)
    kancore.fit(mlp, data, optimizer="lbfgs", lr=1.0, steps=steps * len(GRIDS), progress=False,
                eval_every=steps * len(GRIDS), restore_best=False)
    return rmse(mlp, data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 formulas, 5 steps per grid, one seed")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these formulas (exact names)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    kancore.set_num_threads(1)
    names = list(FORMULAS)[:3] if a.quick else list(FORMULAS)
    if a.only:
        unknown = [n for n in a.only if n not in FORMULAS]
        if unknown:
            ap.error(f"unknown formulas {unknown}; known: {list(FORMULAS)}")
        names = [n for n in names if n in a.only]
    steps, seeds = (5, 1) if a.quick else (STEPS, a.seeds)
    rows = {}
    for name in names:
        r = {k: [] for k in ("pykan", "pykan_s", "k32", "k32_s", "k64", "k64_s", "mlp1", "mlp2")}
        for seed in range(seeds):
            e, s = run_pykan(name, seed, steps)
            r["pykan"].append(e)
            r["pykan_s"].append(s)
            e, s, params = run_kancore(name, seed, steps, torch.float32)
            r["k32"].append(e)
            r["k32_s"].append(s)
            e, s, _ = run_kancore(name, seed, steps, torch.float64)
            r["k64"].append(e)
            r["k64_s"].append(s)
            r["mlp1"].append(run_mlp(name, seed, steps, params, 1))
            r["mlp2"].append(run_mlp(name, seed, steps, params, 2))
        rows[name] = {k: statistics.median(v) for k, v in r.items()}
        m = rows[name]
        print(f"{name:40s} pykan {m['pykan']:.2e} ({m['pykan_s']:.1f} s)  kancore f32 {m['k32']:.2e} "
              f"({m['k32_s']:.1f} s) f64 {m['k64']:.2e} ({m['k64_s']:.1f} s)  MLP {m['mlp1']:.2e} / {m['mlp2']:.2e}",
              flush=True)
    within = [min(m["k32"], m["k64"]) <= 1.2 * m["pykan"] for m in rows.values()]
    speed = [m["pykan_s"] / max(m["k32_s"], m["k64_s"]) for m in rows.values()]
    lines = [f"Test RMSE (median of {seeds} seeds): KAN [n, 5, 1], LBFGS {steps} steps on each of the grids "
             f"{', '.join(map(str, GRIDS))}; MLPs of the same parameter count, LBFGS {steps * len(GRIDS)} steps. "
             "CPU, 1 thread.", "",
             "| formula | pykan | kancore f32 | kancore f64 | best / pykan | pykan s | kancore s (f32 / f64) "
             "| speed-up | MLP 1 hidden | MLP 2 hidden |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows.items():
        best = min(m["k32"], m["k64"])
        lines.append(f"| {name} | {m['pykan']:.2e} | {m['k32']:.2e} | {m['k64']:.2e} | {best / m['pykan']:.2f} "
                     f"| {m['pykan_s']:.1f} | {m['k32_s']:.1f} / {m['k64_s']:.1f} "
                     f"| {m['pykan_s'] / max(m['k32_s'], m['k64_s']):.1f}x | {m['mlp1']:.2e} | {m['mlp2']:.2e} |")
    lines += ["", f"kancore's better KAN within 1.2x of pykan's RMSE (or better): {sum(within)} of {len(within)} "
              f"formulas; kancore's slower run is {min(speed):.1f}x to {max(speed):.1f}x faster than pykan."]
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    import kan
    meta = {"seeds": seeds, "steps_per_grid": steps, "torch": torch.__version__,
            "pykan": getattr(kan, "__version__", "0.2.8"), "machine": platform.machine()}
    (out / "vs_pykan.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    (out / "vs_pykan.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
