"""Function-fitting suite: test RMSE of KANs and of MLPs with the same parameter count.

Five functions of two variables on [-2, 2]^2 (4000 training and 1000 test points, uniform, fixed
seeds). Each KAN (a C0 KAN and a B-spline KAN, both 2 -> 8 -> 1) is paired with an MLP of the same
parameter count (``kancore.mlp_with_same_parameters``: one hidden SiLU layer); every model is
trained by ``kancore.fit`` for the same number of steps with the same optimiser settings (Adam,
lr 1e-2, warmup then cosine, mini-batches of 512, same data order; no grid updates, no penalty).
CPU, one thread.

Writes benchmarks/results/function_suite.json and .md and prints the markdown table.

    python benchmarks/function_suite.py [--steps 5000] [--quick] [--out benchmarks/results]
"""
import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

import kancore
from kancore import KAN

FUNCTIONS = {
    "x0^3 + 2 x1^2 - x0 x1": lambda x: x[:, 0] ** 3 + 2 * x[:, 1] ** 2 - x[:, 0] * x[:, 1],
    "sin(x0) cos(x1)": lambda x: torch.sin(x[:, 0]) * torch.cos(x[:, 1]),
    "exp(-x0^2 - x1^2)": lambda x: torch.exp(-x[:, 0] ** 2 - x[:, 1] ** 2),
    "sign(x0) |x1|": lambda x: torch.sign(x[:, 0]) * torch.abs(x[:, 1]),
    "sin(10 x0) sin(10 x1)": lambda x: torch.sin(10 * x[:, 0]) * torch.sin(10 * x[:, 1]),
}

KANS = {
    # LayerNorm between the C0 layers keeps the hidden values inside the splines' span [-2, 2]
    # (kanditioned's initial lines have slope (K-1)/W, so hidden values would otherwise spread).
    "KAN C0 (K=16, LayerNorm)": lambda: KAN([2, 8, 1], kind="c0", num_control_points=16, spline_width=4.0,
                                            layernorm=True),
    "KAN B-spline (G=10, k=3)": lambda: KAN([2, 8, 1], grid_size=10, spline_order=3, grid_range=(-2, 2)),
}


def rmse(model, x, y) -> float:
    with torch.no_grad():
        return math.sqrt(float(torch.mean((model(x) - y) ** 2)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--quick", action="store_true", help="smoke run: 40 steps, 400 training points")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    steps, train_num = (40, 400) if args.quick else (args.steps, 4000)
    torch.set_num_threads(1)  # the numbers are RMSEs; one thread keeps runs repeatable and cheap
    settings = dict(steps=steps, lr=args.lr, warmup_steps=max(1, steps // 30), batch_size=args.batch_size,
                    eval_every=max(1, steps // 10), progress=False, seed=args.seed)

    rows = []
    for fi, (fname, f) in enumerate(FUNCTIONS.items()):
        ds = kancore.create_dataset(f, n_var=2, ranges=(-2, 2), train_num=train_num, test_num=1000,
                                    seed=args.seed + fi)
        label_std = float(ds["test_label"].std())
        row = {"function": fname, "test_label_std": label_std, "models": {}}
        for kname, make in KANS.items():
            torch.manual_seed(args.seed)
            kan = make()
            n = kancore.count_parameters(kan)
            torch.manual_seed(args.seed)
            mlp = kancore.mlp_with_same_parameters([2, 8, 1], n)
            for name, model in [(kname, kan), (f"MLP ~ {kname}", mlp)]:
                start = time.perf_counter()
                kancore.fit(model, ds, **settings)
                row["models"][name] = {"params": kancore.count_parameters(model),
                                       "test_rmse": rmse(model, ds["test_input"], ds["test_label"]),
                                       "train_seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"done: {fname}", flush=True)

    names = list(rows[0]["models"])
    head = "| function | " + " | ".join(f"{n} ({rows[0]['models'][n]['params']} p)" for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for r in rows:
        best = min(r["models"][n]["test_rmse"] for n in names)
        cells = [(f"**{r['models'][n]['test_rmse']:.4f}**" if r["models"][n]["test_rmse"] == best
                  else f"{r['models'][n]['test_rmse']:.4f}") for n in names]
        lines.append(f"| {r['function'].replace('|', chr(92) + '|')} | " + " | ".join(cells) + " |")
    note = (f"Test RMSE on 1000 points, {train_num} training points on [-2, 2]^2, {steps} Adam steps "
            f"(lr {args.lr}, batch {args.batch_size}, warmup + cosine), seed {args.seed}; best per row in bold.")
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "function_suite_quick" if args.quick else "function_suite"
    meta = {"steps": steps, "train_num": train_num, "test_num": 1000, "settings": settings,
            "kancore": kancore.__version__, "torch": torch.__version__, "machine": platform.platform()}
    (args.out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / f"{name}.md").write_text(table + "\n\n" + note + "\n")
    print(table)
    print(note)


if __name__ == "__main__":
    main()
