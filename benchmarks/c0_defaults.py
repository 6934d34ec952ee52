"""Which defaults make ``KAN(kind="c0")`` train well? Test RMSE of C0 KAN variants against the
B-spline KAN on the function suite's five functions, every model trained by ``kancore.fit`` with
its default settings (Adam, lr 1e-2, 1000 full-batch steps) on ``create_dataset``'s default data
(1000 training and 1000 test points on [-2, 2]^2). CPU, one thread. Prints a markdown table and
writes it with the raw numbers to benchmarks/results/c0_defaults.{md,json}.

    python benchmarks/c0_defaults.py [--steps 1000] [--seeds 3] [--quick]
"""
import argparse
import json
import statistics
from pathlib import Path

import torch

import kancore
from kancore import KAN

from function_suite import FUNCTIONS, rmse

VARIANTS = {
    "C0 default (unit init)": lambda: KAN([2, 8, 1], kind="c0"),
    "C0 + LayerNorm": lambda: KAN([2, 8, 1], kind="c0", layernorm=True),
    "C0 kanditioned init (old default)": lambda: KAN([2, 8, 1], kind="c0", init_scale="kanditioned"),
    "C0 kanditioned init + LayerNorm": lambda: KAN([2, 8, 1], kind="c0", init_scale="kanditioned",
                                                   layernorm=True),
    "B-spline default": lambda: KAN([2, 8, 1]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 steps, one seed")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    steps, seeds = (20, 1) if args.quick else (args.steps, args.seeds)
    torch.set_num_threads(1)
    results = {}
    for fi, (fname, f) in enumerate(FUNCTIONS.items()):
        ds = kancore.create_dataset(f, n_var=2, seed=fi)
        results[fname] = {"std": float(ds["test_label"].std())}
        for vname, make in VARIANTS.items():
            start, end = [], []
            for seed in range(seeds):
                torch.manual_seed(seed)
                model = make()
                start.append(rmse(model, ds["test_input"], ds["test_label"]))
                kancore.fit(model, ds, steps=steps, progress=False, seed=seed)
                end.append(rmse(model, ds["test_input"], ds["test_label"]))
            results[fname][vname] = {"start": statistics.median(start), "end": statistics.median(end)}
        print(f"done: {fname}", flush=True)
    names = list(VARIANTS)
    lines = ["| function (target std) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for fname, r in results.items():
        cells = [f"{r[n]['start']:.3g} → {r[n]['end']:.3g}" for n in names]
        lines.append(f"| {fname.replace('|', chr(92) + '|')} ({r['std']:.2f}) | " + " | ".join(cells) + " |")
    note = (f"Test RMSE before → after `kancore.fit(model, data, steps={steps})` (defaults otherwise), "
            f"median of {seeds} seeds.")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "c0_defaults_quick" if args.quick else "c0_defaults"
    (args.out / f"{name}.json").write_text(json.dumps({"steps": steps, "seeds": seeds, "results": results}, indent=2))
    (args.out / f"{name}.md").write_text(table + "\n\n" + note + "\n")
    print(table)
    print(note)


if __name__ == "__main__":
    main()
