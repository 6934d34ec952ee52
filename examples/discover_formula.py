"""The workflow KANs are for: recover a physical law from samples.

Feynman I.8.14, the distance between two points, d = sqrt(dx^2 + dy^2), written with the
coordinate differences dx, dy in [0.5, 2] as inputs (1000 training and 1000 test samples).

1. Train a B-spline KAN [2, 3, 1] with a sparsity penalty that ramps up (``reg_schedule``).
2. Prune: keep the hidden nodes whose outgoing edges matter (``kancore.prune``).
3. Refine the grid 5 -> 10 -> 20 while training on (``grid_schedule``).
4. Read every edge as a formula (``auto_symbolic``), fix the edges to those formulas inside the
   network (``fix_symbolic``: evaluated natively, forward and backward) and polish their
   constants with LBFGS; compose them (``symbolic_formula``).

Prints the recovered formula next to the true one, and the test RMSE of the sparse KAN, the
pruned and refined KAN, the symbolic network and an MLP of the same size trained as long. Saves
the symbolic network (``examples/output/kan_distance.safetensors``, loadable from Python, NumPy
and C++), the formula (``examples/output/kan_distance_formula.txt``) and the network figures
before and after pruning.

    python examples/discover_formula.py [--out examples/output] [--seed 0]
"""
import argparse
import time
from pathlib import Path

import numpy as np
import sympy
import torch

import kancore


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="examples/output")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    def law(x):
        return torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)

    data = kancore.create_dataset(law, n_var=2, ranges=[(0.5, 2), (0.5, 2)], train_num=1000, test_num=1000,
                                  dtype=torch.float64, seed=1)
    x_train = data["train_input"]

    def rmse(predict):
        with torch.no_grad():
            return float(torch.sqrt(torch.mean((predict(data["test_input"]) - data["test_label"]) ** 2)))

    start = time.perf_counter()
    torch.manual_seed(a.seed)
    kan = kancore.KAN([2, 3, 1], grid_size=5, grid_range=(0.5, 2), dtype=torch.float64)
    kancore.fit(kan, data, steps=1500, lr=1e-2, reg="edge_scale", reg_weight=0.01, reg_schedule="linear",
                grid_update_every=100, grid_update_until=600, progress=False)
    sparse_rmse = rmse(kan)
    kancore.plot_network(kan, x_train, in_vars=["dx", "dy"], out_vars=["d"],
                         save_path=out / "kan_distance_sparse.png")

    # Keep the hidden nodes whose outgoing edge carries at least 60 % of the largest one.
    threshold = 0.6 * float(kancore.edge_importance(kan, x_train)[-1].max())
    small, report = kancore.prune(kan, x_train, threshold)
    kancore.fit(small, data, steps=3000, lr=1e-2, grid_schedule=[5, 10, 20], grid_update_every=100,
                progress=False)
    kan_rmse = rmse(small)
    kan_params = kancore.count_parameters(small)  # before fixing adds the symbolic constants
    kancore.plot_network(small, x_train, in_vars=["dx", "dy"], out_vars=["d"],
                         save_path=out / "kan_distance_pruned.png")

    choices = kancore.auto_symbolic(small, x_train)
    kancore.fix_symbolic(small, choices)  # every edge now computes its formula
    kancore.fit(small, data, steps=50, optimizer="lbfgs", lr=1, progress=False)  # polish the constants
    symbolic_rmse = rmse(small)
    (formula,) = kancore.symbolic_formula(small, in_vars=["dx", "dy"], digits=3)  # to read
    (precise,) = kancore.symbolic_formula(small, in_vars=["dx", "dy"], digits=8)  # to evaluate
    dx, dy = sympy.symbols("dx dy")
    evaluate = sympy.lambdify((dx, dy), precise, "numpy")
    formula_rmse = rmse(lambda x: torch.from_numpy(np.asarray(evaluate(x[:, 0].numpy(), x[:, 1].numpy()),
                                                              dtype=np.float64)).reshape(-1, 1))
    seconds = time.perf_counter() - start

    torch.manual_seed(a.seed)
    mlp = kancore.mlp_with_same_parameters([2, 3, 1], kan_params).double()
    kancore.fit(mlp, data, steps=4500, lr=1e-2, progress=False)
    mlp_rmse = rmse(mlp)

    print(f"true law (Feynman I.8.14): d = {sympy.sqrt(dx ** 2 + dy ** 2)}")
    print(f"recovered formula:         d = {formula}")
    print(f"pruned {kan.widths} -> {small.widths}, then grid 5 -> {small.layers[0].grid_size} "
          f"({report['parameters'][0]} -> {kan_params} parameters)")
    print("test RMSE:")
    print(f"  sparse KAN [2, 3, 1]              {sparse_rmse:.2e}")
    print(f"  pruned and refined KAN {small.widths}  {kan_rmse:.2e}")
    print(f"  symbolic network (edges fixed)    {symbolic_rmse:.2e}")
    print(f"  the recovered formula (8 digits)  {formula_rmse:.2e}")
    print(f"  MLP with {kancore.count_parameters(mlp)} parameters           {mlp_rmse:.2e}")
    print(f"KAN workflow: {seconds:.1f} s")
    kancore.save(small, out / "kan_distance.safetensors")
    (out / "kan_distance_formula.txt").write_text(f"{formula}\n")
    print(f"saved {out / 'kan_distance.safetensors'}, {out / 'kan_distance_formula.txt'}, "
          f"{out / 'kan_distance_sparse.png'}, {out / 'kan_distance_pruned.png'}")


if __name__ == "__main__":
    main()
