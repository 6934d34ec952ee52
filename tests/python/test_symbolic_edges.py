"""Symbolic (fixed) edges: ``fix_symbolic`` / ``unfix_symbolic`` in the torch layers, the NumPy
front end and the model file.

Oracles: a float64 NumPy re-statement of ``a * f(b x + c) + d`` added to the layer with the
edge's parameters zeroed by hand; finite differences (gradcheck); the C++ ``Network`` (through
``NumpyKAN``) against the torch layers on the same file; and formula recovery, where the truth is
the formula the data came from."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sympy = pytest.importorskip("sympy")

import kancore  # noqa: E402
from kancore import symbolic  # noqa: E402
from kancore.symbolic_edges import FUNCTIONS  # noqa: E402

# NumPy statements of the native functions, written out again.
NUMPY = {"x": lambda u: u, "x^2": lambda u: u ** 2, "x^3": lambda u: u ** 3, "x^4": lambda u: u ** 4,
         "1/x": lambda u: 1 / u, "1/x^2": lambda u: u ** -2.0, "sqrt": np.sqrt, "exp": np.exp, "log": np.log,
         "sin": np.sin, "tanh": np.tanh, "abs": np.abs, "gaussian": lambda u: np.exp(-u ** 2),
         "arctan": np.arctan}
POSITIVE = ("sqrt", "log", "1/x", "1/x^2")  # given c = 3 so that b x + c > 0 for |x| <= 2


def test_the_library_is_the_same_everywhere():
    assert list(FUNCTIONS) == list(NUMPY) == list(symbolic.LIBRARY) == kancore._core.symbolic_functions()


def _layers():
    torch.manual_seed(0)
    c0 = kancore.KANLayer(3, 4, num_control_points=7, dtype=torch.float64)
    fitted = kancore.KANLayer(3, 4, num_control_points=7, dtype=torch.float64)
    fitted.update_grid(torch.rand(64, 3, dtype=torch.float64) * 3 - 1)
    dct = kancore.KANLayer(3, 4, num_control_points=7, variant="DCT", dtype=torch.float64)
    scan = kancore.KANLayer(3, 4, num_control_points=7, variant="parallel_scan", dtype=torch.float64)
    bs = kancore.KANLinear(3, 4, grid_size=5, dtype=torch.float64)
    return {"c0": c0, "c0-fitted": fitted, "c0-DCT": dct, "c0-scan": scan, "bspline": bs}


def _zeroed(layer, i, o):
    """A copy of the layer with edge (i, o)'s numeric parameters set to zero by hand."""
    z = copy.deepcopy(layer)
    with torch.no_grad():
        if isinstance(z, kancore.KANLinear):
            z.base_weight[o, i] = 0
            z.spline_weight[o, i] = 0
        else:
            table = z._table().clone()
            table[i, :, o] = 0
            z._set_table(table)
    return z


@pytest.mark.parametrize("kind", ["c0", "c0-fitted", "c0-DCT", "c0-scan", "bspline"])
def test_forward_is_the_zeroed_layer_plus_the_formula(kind):
    layer = _layers()[kind]
    x = torch.rand(50, 3, dtype=torch.float64) * 4 - 2
    edges = [(0, 1, "sin", 1.5, 2.0, 0.3, -0.2), (2, 1, "sqrt", 0.7, 0.5, 3.0, 0.1), (1, 3, "exp", -0.4, 0.8, 0.0, 1.0)]
    reference = layer
    for i, o, name, *abcd in edges:
        reference = _zeroed(reference, i, o)
        layer.fix_symbolic(i, o, name, *abcd)
    want = reference(x).detach().numpy().copy()
    xn = x.numpy()
    for i, o, name, a, b, c, d in edges:
        want[:, o] += a * NUMPY[name](b * xn[:, i] + c) + d
    np.testing.assert_allclose(layer(x).detach().numpy(), want, rtol=1e-12, atol=1e-12)
    assert {(e.i, e.o, e.name) for e in layer.symbolic_edges()} == {(i, o, n) for i, o, n, *_ in edges}


@pytest.mark.parametrize("kind", ["c0-fitted", "bspline"])
def test_gradients_match_finite_differences_for_every_function(kind):
    layer = _layers()[kind]
    names = list(FUNCTIONS)
    for k, name in enumerate(names[:12]):  # 12 edges of the 3 x 4 layer
        layer.fix_symbolic(k % 3, k // 3, name, 0.8, 0.6, 3.0 if name in POSITIVE else 0.2, 0.1)
    x = (torch.rand(6, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    params = [p for p in layer.parameters()]
    assert any(p is layer.symbolic.affine for p in params)
    torch.autograd.gradcheck(lambda x, *p: layer(x), (x, *params))
    layer2 = _layers()[kind]
    for k, name in enumerate(names[12:]):
        layer2.fix_symbolic(k, 0, name, 0.8, 0.6, 0.2, 0.1)
    torch.autograd.gradcheck(lambda x, *p: layer2(x), (x, *layer2.parameters()))


def test_fixed_edges_numeric_parameters_are_not_trained_and_unfix_restores_them():
    layer = _layers()["bspline"]
    x = torch.rand(40, 3, dtype=torch.float64) * 2 - 1
    before = layer(x).detach()
    spline = layer.spline_weight.detach().clone()
    layer.fix_symbolic(1, 2, "tanh", 1.0, 1.0, 0.0, 0.0)
    layer.fix_symbolic(1, 2, "sin")  # refixing replaces
    assert [(e.i, e.o, e.name) for e in layer.symbolic_edges()] == [(1, 2, "sin")]
    layer(x).pow(2).sum().backward()
    assert torch.all(layer.spline_weight.grad[2, 1] == 0) and layer.base_weight.grad[2, 1] == 0
    assert torch.all(layer.symbolic.affine.grad != 0)
    # edge_scale_loss and the regularisers ignore the fixed edge's (unused) coefficients
    layer.zero_grad()
    (layer.regularization_loss() + layer.smoothness_loss() + layer.edge_scale_loss(x)).backward()
    assert torch.all(layer.spline_weight.grad[2, 1] == 0)
    assert layer.unfix_symbolic(1, 2) and not layer.unfix_symbolic(1, 2)
    assert layer.symbolic is None and "symbolic.affine" not in layer.state_dict()
    assert torch.equal(layer.spline_weight, spline)
    assert torch.equal(layer(x), before)


def test_state_dict_copy_and_dtype_moves_keep_the_fixed_edges():
    layer = _layers()["c0"]
    layer.fix_symbolic(2, 0, "x^2", 0.5, 1.5, -0.2, 0.3)
    layer.fix_symbolic(0, 3, "arctan", 1.0, 2.0, 0.0, 0.0)
    assert "(symbolic): SymbolicEdges(2->0: x^2, 0->3: arctan)" in repr(layer)
    x = torch.rand(20, 3, dtype=torch.float64)
    y = layer(x)
    fresh = kancore.KANLayer(3, 4, num_control_points=7, dtype=torch.float64)
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh(x), y)
    assert torch.equal(copy.deepcopy(layer)(x), y)
    single = copy.deepcopy(layer).float()
    torch.testing.assert_close(single(x.float()), y.float(), rtol=1e-5, atol=1e-5)
    # A state_dict without symbolic edges (an older checkpoint) removes them.
    plain = kancore.KANLayer(3, 4, num_control_points=7, dtype=torch.float64)
    layer.load_state_dict(plain.state_dict())
    assert layer.symbolic is None and torch.equal(layer(x), plain(x))


def test_bad_requests_are_refused():
    layer = kancore.KANLinear(2, 3)
    with pytest.raises(ValueError, match="unknown symbolic function"):
        layer.fix_symbolic(0, 0, "cosh")
    with pytest.raises(ValueError, match=r"edge index i"):
        layer.fix_symbolic(2, 0, "sin")
    with pytest.raises(ValueError, match=r"edge index o"):
        layer.fix_symbolic(0, -1, "sin")
    with pytest.raises(ValueError, match="finite"):
        layer.fix_symbolic(0, 0, "sin", float("nan"))
    assert layer.symbolic is None or len(layer.symbolic) == 0
    model = kancore.KAN([2, 1])
    x = torch.rand(30, 2)
    with pytest.raises(ValueError, match="pass x"):
        kancore.fix_symbolic(model, {(0, 0, 0): "sin"})
    user = symbolic.SymbolicFit("cosh", 1.0, 1.0, 1.0, 0.0, 0.0, 3, 1.0)
    with pytest.raises(ValueError, match="not native"):
        kancore.fix_symbolic(model, {(0, 0, 0): user})
    with pytest.raises(ValueError, match="layer must index"):
        kancore.fix_symbolic(model, {(3, 0, 0): "sin"}, x)
    net = kancore.NumpyKAN([2, 3, 1])
    with pytest.raises(ValueError, match="unknown symbolic function"):
        net.fix_symbolic(0, 0, 0, "cosh")
    with pytest.raises(ValueError, match="outside the layer"):
        net.fix_symbolic(0, 2, 0, "sin")
    with pytest.raises(ValueError, match="finite"):
        net.fix_symbolic(0, 0, 0, "sin", np.inf)
    assert net.symbolic_edges() == []


def test_files_carry_fixed_edges_between_torch_and_numpy(tmp_path):
    torch.manual_seed(1)
    model = kancore.KAN([3, 4, 2], grid_size=6, dtype=torch.float64)
    model.layers[0].fix_symbolic(1, 2, "sin", 1.2, 2.0, 0.1, -0.3)
    model.layers[0].fix_symbolic(0, 0, "log", 0.5, 0.4, 3.0, 0.0)
    model.layers[1].fix_symbolic(3, 1, "x^3", -0.2, 1.1, 0.0, 0.05)
    x = torch.rand(64, 3, dtype=torch.float64) * 2 - 1
    path = tmp_path / "sym.safetensors"
    kancore.save(model, path)
    from kancore.model_io import read_safetensors
    _, meta = read_safetensors(path)
    assert meta["format_version"] == "2"
    back = kancore.load(path)
    assert torch.equal(back(x), model(x))
    assert sorted(back.layers[0].symbolic_edges()) == sorted(model.layers[0].symbolic_edges())
    net = kancore.NumpyKAN.load(path)  # the C++ implementation of the same edges
    np.testing.assert_allclose(net.predict(x.numpy()), model(x).detach().numpy(), rtol=1e-12, atol=1e-12)
    assert {(j, i, o, f) for j, i, o, f, *_ in net.symbolic_edges()} == {(0, 1, 2, "sin"), (0, 0, 0, "log"),
                                                                         (1, 3, 1, "x^3")}
    # NumPy -> file -> torch, after unfixing one edge and fixing another there
    assert net.unfix_symbolic(0, 0, 0)
    net.fix_symbolic(1, 0, 0, "gaussian", 1.0, 0.5, 0.0, 0.0)
    net.save(tmp_path / "np.safetensors")
    again = kancore.load(tmp_path / "np.safetensors")
    np.testing.assert_allclose(again(x).detach().numpy(), net.predict(x.numpy()), rtol=1e-12, atol=1e-12)
    # A network without fixed edges is still written as version 1 (older readers read it).
    kancore.save(kancore.KAN([2, 1]), tmp_path / "plain.safetensors")
    assert read_safetensors(tmp_path / "plain.safetensors")[1]["format_version"] == "1"


def test_numpy_training_moves_the_constants_toward_the_truth():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(512, 1))
    y = 2.0 * np.sin(3.0 * X) + 0.5
    net = kancore.NumpyKAN([1, 1], dtype="float64", seed=0)
    net.fix_symbolic(0, 0, 0, "sin", 1.0, 2.5, 0.0, 0.0)
    net.fit(X, y, epochs=300, batch_size=512, lr=0.05)
    (_, _, _, _, a, b, c, d), = net.symbolic_edges()
    assert abs(a - 2.0) < 1e-2 and abs(b - 3.0) < 1e-2 and abs(c) < 1e-2 and abs(d - 0.5) < 1e-2


def test_pruning_keeps_fixed_edges_between_kept_nodes():
    torch.manual_seed(2)
    model = kancore.KAN([2, 3, 1], dtype=torch.float64)
    model.layers[1].fix_symbolic(2, 0, "tanh", 0.8, 1.0, 0.0, 0.0)
    model.layers[0].fix_symbolic(1, 1, "sin", 1.0, 1.0, 0.0, 0.0)
    small = kancore.prune_nodes(model, [[0, 2]])
    assert [(e.i, e.o, e.name) for e in small.layers[1].symbolic_edges()] == [(1, 0, "tanh")]
    assert small.layers[0].symbolic_edges() == []
    x = torch.rand(30, 2, dtype=torch.float64)
    imp = kancore.edge_importance(model, x)
    h = model.layers[0](x).detach()
    np.testing.assert_allclose(float(imp[1][0, 2]), float(torch.tanh(0.8 * 0 + h[:, 2]).mul(0.8).pow(2).mean().sqrt()),
                               rtol=1e-12)


def _rmse(model, data):
    with torch.no_grad():
        return float((model(data["test_input"]) - data["test_label"]).pow(2).mean().sqrt())


def test_x_times_y_is_recovered_and_exact_after_fixing():
    torch.manual_seed(0)
    data = kancore.create_dataset(lambda x: x[:, [0]] * x[:, [1]], n_var=2, ranges=(-1, 1), train_num=1000,
                                  dtype=torch.float64, seed=0)
    model = kancore.KAN([2, 2, 1], grid_size=5, dtype=torch.float64)
    # A light smoothness penalty: the first layer's edges are then lines, not curves that the
    # second layer undoes (the product has many KAN forms; this one reads back as x * y).
    kancore.fit(model, data, steps=300, optimizer="lbfgs", lr=1, grid_schedule=[5, 10, 20], reg="smoothness",
                reg_weight=1e-3, progress=False)
    choices = kancore.auto_symbolic(model, data["train_input"])
    assert [choices[(0, i, o)].name for i in range(2) for o in range(2)] == ["x"] * 4
    assert {choices[(1, i, 0)].name for i in range(2)} == {"x^2"}
    kancore.fix_symbolic(model, choices)
    kancore.fit(model, data, steps=50, optimizer="lbfgs", lr=1, progress=False)  # polishes (a, b, c, d)
    assert _rmse(model, data) <= 1e-4
    (expr,) = kancore.symbolic_formula(model, in_vars=["x", "y"], digits=3)
    x, y = sympy.symbols("x y")
    assert sympy.simplify(expr - x * y) == 0, expr


def test_exp_sin_plus_square_is_recovered_after_pruning():
    data = kancore.create_dataset(lambda x: torch.exp(torch.sin(torch.pi * x[:, [0]]) + x[:, [1]] ** 2), n_var=2,
                                  ranges=(-1, 1), train_num=1000, dtype=torch.float64, seed=1)
    xt = data["train_input"]
    torch.manual_seed(0)
    kan = kancore.KAN([2, 3, 1], grid_size=5, dtype=torch.float64)
    kancore.fit(kan, data, steps=1500, lr=1e-2, reg="edge_scale", reg_weight=0.01, reg_schedule="linear",
                grid_update_every=100, grid_update_until=600, progress=False)
    small, _ = kancore.prune(kan, xt, 0.6 * float(kancore.edge_importance(kan, xt)[-1].max()))
    assert small.widths == [2, 1, 1]
    kancore.fit(small, data, steps=3000, lr=1e-2, grid_schedule=[5, 10, 20], grid_update_every=100, progress=False)
    choices = kancore.auto_symbolic(small, xt)
    assert [choices[k].name for k in [(0, 0, 0), (0, 1, 0), (1, 0, 0)]] == ["sin", "x^2", "exp"]
    kancore.fix_symbolic(small, choices)
    kancore.fit(small, data, steps=50, optimizer="lbfgs", lr=1, progress=False)
    assert _rmse(small, data) <= 1e-4
    (expr,) = kancore.symbolic_formula(small, in_vars=["x", "y"], digits=3)
    x, y = sympy.symbols("x y")
    target = sympy.exp(sympy.sin(sympy.Float(3.14, 3) * x) + y ** 2)
    assert sympy.simplify(sympy.powsimp(expr) - target) == 0, expr
