"""Symbolic fits of edges: exact recovery of every library function's parameters on synthetic
data, robustness (flat, one-sided and singular data: no NaN), and a trained network read back as
its formula."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sympy = pytest.importorskip("sympy")

import kancore  # noqa: E402
from kancore import symbolic  # noqa: E402

CASES = {"x": (0.0, 0.0), "x^2": (0.7, -0.2), "x^3": (0.5, 0.1), "sin": (2.0, 0.5), "exp": (0.8, -0.3),
         "tanh": (1.7, -0.4), "gaussian": (1.3, 0.2), "arctan": (2.5, 0.3), "log": (0.9, 2.5), "sqrt": (1.1, 2.6),
         "1/x": (0.6, 2.4), "abs": (1.0, 0.35)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_library_function_is_recovered_exactly(name):
    b, c = CASES[name]
    b = b or 1.0
    x = np.linspace(-2, 2, 400)
    f = symbolic.LIBRARY[name][0]
    y = 1.5 * f(b * x + c) - 0.25
    r2, a, bb, cc, d = symbolic.fit_symbolic(x, y, name)
    assert r2 > 1 - 1e-10, (name, r2)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(a * f(bb * x + cc) + d, y, rtol=1e-5, atol=1e-6)


def test_flat_one_sided_and_singular_data_give_finite_answers():
    x = np.linspace(-2, 2, 200)
    assert symbolic.fit_symbolic(x, np.full_like(x, 3.0), "sin") == (1.0, 0.0, 1.0, 0.0, 3.0)
    for name in symbolic.LIBRARY:  # log, sqrt, 1/x on data crossing 0 must shift, not fail
        r2, a, b, c, d = symbolic.fit_symbolic(x, np.sin(x), name)
        assert all(math.isfinite(v) for v in (a, b, c, d)) and (r2 == -math.inf or r2 <= 1.0)
    xs = np.linspace(0.0, 1.0, 50)  # one-sided, touching 0
    r2, *_ = symbolic.fit_symbolic(xs, np.sqrt(xs), "sqrt")
    assert r2 > 1 - 1e-8


def test_a_trained_network_reads_back_as_its_formula():
    torch.manual_seed(0)
    f = lambda x: torch.sin(torch.pi * x[:, 0]) + x[:, 1] ** 2  # noqa: E731
    data = kancore.create_dataset(f, n_var=2, ranges=(-1, 1), train_num=1000, dtype=torch.float64)
    model = kancore.KAN([2, 1], grid_size=10, dtype=torch.float64)
    kancore.fit(model, data, steps=600, lr=2e-2, grid_schedule=[10, 20], progress=False)
    choices = kancore.auto_symbolic(model, data["train_input"])
    assert choices[(0, 0, 0)].name == "sin" and choices[(0, 1, 0)].name == "x^2"
    assert min(c.r2 for c in choices.values()) > 0.999
    (expr,) = kancore.symbolic_formula(model, choices, ["x", "y"])
    fn = sympy.lambdify(sympy.symbols("x y"), expr, "numpy")
    xt = data["test_input"].numpy()
    got = fn(xt[:, 0], xt[:, 1])
    want = f(data["test_input"]).numpy()
    assert np.sqrt(np.mean((got - want) ** 2)) < 1e-2
    # Rounded to 3 digits, the recovered formula is the target's (pi as 3.14).
    (short,) = kancore.symbolic_formula(model, choices, ["x", "y"], digits=3)
    x, y = sympy.symbols("x y")
    assert sympy.simplify(short - (y ** 2 + sympy.sin(sympy.Float(3.14, 3) * x))) == 0, short
    ranked = kancore.suggest_symbolic(model, 0, 0, 0, data["train_input"], lib=["x", "sin", "x^2"])
    assert [r.name for r in ranked][0] == "sin" and ranked == sorted(ranked, key=lambda r: -r.score)


def test_bad_requests_are_refused():
    model = kancore.KAN([2, 3, 1])
    x = torch.rand(20, 2)
    with pytest.raises(ValueError, match="outside layer"):
        kancore.suggest_symbolic(model, 0, 5, 0, x)
    with pytest.raises(ValueError, match="unknown library"):
        kancore.suggest_symbolic(model, 0, 0, 0, x, lib=["cosh"])
    with pytest.raises(ValueError, match="LayerNorm"):
        kancore.symbolic_formula(kancore.KAN([2, 3, 1], layernorm=True), {})
    with pytest.raises(ValueError, match="no symbolic choice"):
        kancore.symbolic_formula(model, {})


def test_the_main_jobs_formula_discovery_recovers_the_distance_law(tmp_path):
    # examples/discover_formula.py (make demo): sparsify, prune, refine, read back Feynman I.8.14.
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = subprocess.run([sys.executable, os.path.join(root, "examples", "discover_formula.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    recovered = text.split("recovered formula:")[1].splitlines()[0].split("=", 1)[1]
    dx, dy = sympy.symbols("dx dy")
    expr = sympy.sympify(recovered)
    assert expr.free_symbols == {dx, dy} and expr.has(sympy.sqrt(dx).func)
    for px, py in ((0.5, 0.7), (1.9, 1.2), (1.1, 0.6)):  # the law, to the rounding of 3 digits
        assert abs(float(expr.subs({dx: px, dy: py})) - math.hypot(px, py)) < 1e-2 * math.hypot(px, py)
    formula_rmse = float(text.split("the recovered formula (8 digits)")[1].split()[0])
    assert formula_rmse <= 1e-4
    symbolic_rmse = float(text.split("symbolic network (edges fixed)")[1].split()[0])
    assert symbolic_rmse <= 1e-4
    saved = kancore.load(tmp_path / "kan_distance.safetensors")  # the symbolic network, as saved
    assert sum(len(L.symbolic_edges()) for L in saved.layers) == 3
    (short,) = kancore.symbolic_formula(saved, in_vars=["dx", "dy"], digits=2)  # the law, to 2 digits
    assert sympy.simplify(short - sympy.sqrt(dx ** 2 + dy ** 2)) == 0, short
    x = torch.tensor([[0.5, 0.7], [1.9, 1.2]], dtype=torch.float64)
    torch.testing.assert_close(saved(x).flatten(), torch.hypot(x[:, 0], x[:, 1]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kancore.NumpyKAN.load(tmp_path / "kan_distance.safetensors").predict(x.numpy()),
                               saved(x).detach().numpy(), rtol=1e-12)
    for name in ("kan_distance.safetensors", "kan_distance_formula.txt", "kan_distance_sparse.png",
                 "kan_distance_pruned.png"):
        assert (tmp_path / name).stat().st_size > 0
