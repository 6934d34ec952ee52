#!/usr/bin/env python
"""Grid schedules in ``kancore.fit``: which optimizer state and learning-rate schedule to use
across the stages of a grid extension, measured.

Formulas of pykan's kind (two or one variables on [-1, 1], 1000 training and 1000 test points,
fixed seeds), a B-spline KAN [n, 5, 1] of efficient-kan's layers (grid_range (-1, 1), k = 3),
Adam at lr 1e-2 with full batches, the same number of steps in every row:

* ``G=5`` and ``G=20``: one fixed grid, no schedule;
* ``5->10->20 continue``: ``grid_schedule=[5, 10, 20]``, one warmup + cosine over the whole
  run, Adam state kept for the parameters refine does not replace (``stage_lr="continue"``);
* ``5->10->20 restart``: the same stages, a fresh optimizer and a new warmup + cosine in each
  (``stage_lr="restart"``).

Reports the test RMSE (geometric mean over seeds) per formula and row, and the row's median
rank. CPU, one thread.

    python benchmarks/grid_schedule.py [--steps 1500] [--seeds 3] [--quick] [--out benchmarks/results]
"""
import argparse
import json
import math
import platform
import statistics
import time
from pathlib import Path

import torch

import kancore

FORMULAS = {
    "x cos y + y sin x": (2, lambda x: x[:, 0] * torch.cos(x[:, 1]) + x[:, 1] * torch.sin(x[:, 0])),
    "exp(sin(pi x) + y^2)": (2, lambda x: torch.exp(torch.sin(math.pi * x[:, 0]) + x[:, 1] ** 2)),
    "x y": (2, lambda x: x[:, 0] * x[:, 1]),
    "sin(3x)/(3x)": (1, lambda x: torch.sinc(3 * x[:, 0] / math.pi)),
}

ROWS = {
    "G=5": dict(grid=5),
    "G=20": dict(grid=20),
    "5->10->20 continue": dict(grid=5, grid_schedule=[5, 10, 20], stage_lr="continue"),
    "5->10->20 restart": dict(grid=5, grid_schedule=[5, 10, 20], stage_lr="restart"),
}


def run(formula, row, steps, seed):
    n_var, f = FORMULAS[formula]
    data = kancore.create_dataset(f, n_var=n_var, ranges=(-1, 1), train_num=1000, test_num=1000, seed=seed)
    torch.manual_seed(seed)
    opts = dict(ROWS[row])
    model = kancore.KAN([n_var, 5, 1], grid_size=opts.pop("grid"), spline_order=3)
    t0 = time.perf_counter()
    kancore.fit(model, data, steps=steps, lr=1e-2, warmup_steps=steps // 20, progress=False,
                eval_every=steps, restore_best=False, **opts)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        rmse = float(torch.sqrt(torch.mean((model(data["test_input"]) - data["test_label"]) ** 2)))
    return rmse, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="100 steps, one seed (a smoke run)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = ap.parse_args()
    if a.quick:
        a.steps, a.seeds = 100, 1
    torch.set_num_threads(1)
    kancore.set_num_threads(1)
    results = {}
    for formula in FORMULAS:
        for row in ROWS:
            runs = [run(formula, row, a.steps, seed) for seed in range(a.seeds)]
            rmse = math.exp(statistics.fmean(math.log(max(r, 1e-300)) for r, _ in runs))
            results.setdefault(formula, {})[row] = {"rmse": rmse, "seconds": statistics.fmean(s for _, s in runs)}
            print(f"{formula:24s} {row:22s} test RMSE {rmse:.3e}", flush=True)
    ranks = {row: [] for row in ROWS}
    for formula, rows in results.items():
        for rank, row in enumerate(sorted(rows, key=lambda r: rows[r]["rmse"]), 1):
            ranks[row].append(rank)
    lines = [f"Test RMSE (geometric mean of {a.seeds} seeds), {a.steps} Adam steps, KAN [n, 5, 1], CPU, 1 thread", "",
             "| formula | " + " | ".join(ROWS) + " |", "|---|" + "---:|" * len(ROWS)]
    for formula, rows in results.items():
        lines.append(f"| {formula} | " + " | ".join(f"{rows[r]['rmse']:.2e}" for r in ROWS) + " |")
    lines.append("| median rank | " + " | ".join(f"{statistics.median(ranks[r]):g}" for r in ROWS) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"steps": a.steps, "seeds": a.seeds, "torch": torch.__version__, "machine": platform.machine()}
    (out / "grid_schedule.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    (out / "grid_schedule.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
