"""Inspection: figures for every layer kind and the whole network (headless, bare Figures, PNGs),
parameter counts against a count by hand, the memory estimate, and the same-size MLP."""
import pytest

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import kancore  # noqa: E402
from kancore import KAN, KANLayer, KANLinear  # noqa: E402
from kancore.inspection import edge_functions, memory_estimate, mlp_with_same_parameters  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def test_kanlinear_mappings_plot_the_edge_function(tmp_path):
    torch.manual_seed(0)
    layer = KANLinear(2, 3, grid_size=4, spline_order=2, grid_range=(-2, 2))
    before = plt.get_fignums()
    fig = layer.visualize_all_mappings(save_path=str(tmp_path / "b.png"))
    assert plt.get_fignums() == before  # not registered with pyplot: shown once in notebooks
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG
    axes = fig.get_axes()
    assert len(axes) == 6 and axes[1].get_title() == "In 0 → Out 1" and axes[0].get_xlabel() == "Input"
    line = axes[5].get_lines()[0]  # In 1 -> Out 2
    xs, ys = line.get_xdata(), line.get_ydata()
    assert xs[0] == pytest.approx(-2.0) and xs[-1] == pytest.approx(2.0)  # the grid's inner range
    # The curve is the layer's own edge: vary input 1 with input 0 at zero; the output moves by
    # phi_{1,2}(x) - phi_{1,2}(0).
    x = torch.zeros(len(xs), 2)
    x[:, 1] = torch.from_numpy(xs).float()
    with torch.no_grad():
        y = layer(x)[:, 2] - layer(torch.zeros(1, 2))[:, 2]
    np.testing.assert_allclose(y.numpy(), ys - _edge_at_zero(layer, 1, 2), atol=1e-5)
    fig = layer.visualize_all_mappings(x_axis="control_points")
    np.testing.assert_allclose(fig.get_axes()[0].get_lines()[0].get_ydata(),
                               layer.scaled_spline_weight[0, 0].detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="x_axis"):
        layer.visualize_all_mappings(x_axis="knots")


def _edge_at_zero(layer, i, o):
    xs, ys = edge_functions(layer, n=3, x=torch.tensor([[0.0, 0.0], [0.0, 0.0]]))
    return ys[i, o, 0]


def test_c0_edge_functions_follow_a_fitted_domain():
    torch.manual_seed(0)
    layer = KANLayer(2, 2, num_control_points=5)
    x = torch.randn(200, 2) * 3 + 1
    layer.update_grid(x)
    xs, ys = edge_functions(layer, n=17, x=x)
    probe = torch.zeros(17, 2)
    probe[:, 0] = torch.from_numpy(xs[0]).float()
    with torch.no_grad():
        y = layer(probe)[:, 1] - layer(torch.zeros(1, 2))[:, 1]
    zero = edge_functions(layer, n=1, x=torch.zeros(1, 2))[1][0, 1, 0]
    np.testing.assert_allclose(y.numpy(), ys[0, 1] - zero, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(), dict(kind="c0", num_control_points=6, layernorm=True)])
def test_plot_network_renders_with_and_without_data(tmp_path, kw):
    torch.manual_seed(0)
    model = KAN([2, 3, 1], **kw)
    x = torch.randn(100, 2)
    before = plt.get_fignums()
    fig = kancore.plot_network(model, save_path=str(tmp_path / "net.png"))
    assert (tmp_path / "net.png").read_bytes()[:8] == PNG
    fig2 = kancore.plot_network(model, x)
    assert plt.get_fignums() == before
    ax = fig2.get_axes()[0]
    # Per edge: two wires and one curve; 2*3 + 3*1 = 9 edges, plus the node markers.
    assert len(ax.get_lines()) == 9 * 3
    # Importance from data: each first-layer edge's opacity is 0.08 + 0.92 * its edge scale on x
    # relative to the layer's largest (lines come per edge, input-major, three per edge).
    alphas = [line.get_alpha() for line in ax.get_lines()]
    assert max(alphas) == pytest.approx(1.0) and min(alphas) >= 0.08
    scales = model.layers[0].edge_scales(x).numpy()  # (out, in)
    expected = [0.08 + 0.92 * scales[o, i] / scales.max() for i in range(2) for o in range(3)]
    np.testing.assert_allclose(alphas[0:18:3], expected, rtol=1e-6)
    fig2.savefig(tmp_path / "net2.png")
    assert (tmp_path / "net2.png").read_bytes()[:8] == PNG
    with pytest.raises(TypeError, match="plot_network"):
        kancore.plot_network(torch.nn.Linear(2, 2))
    # Past max_edges, each layer keeps its most important edges (an equal share, at least one)
    # and the title says so; nothing raises.
    small = kancore.plot_network(model, x, max_edges=3)
    lines = small.get_axes()[0].get_lines()
    assert len(lines) == 3 * 3  # shares: 3 // 2 = 1 edge of the second layer, then 2 of the first
    first = np.sort(scales.T.reshape(-1))[::-1][:2] / scales.max()
    np.testing.assert_allclose(sorted(line.get_alpha() for line in lines[:6:3]),
                               sorted(0.08 + 0.92 * first), rtol=1e-6)
    assert any("the 3 most important of 9 edges" in t.get_text() for t in small.get_axes()[0].texts)


def _texts(fig):
    return [t.get_text() for t in fig.get_axes()[0].texts]


def test_plot_network_labels_nodes_and_stays_bounded(tmp_path):
    torch.manual_seed(0)
    model = KAN([4, 8, 8, 1], kind="c0", num_control_points=8)
    fig = kancore.plot_network(model, save_path=str(tmp_path / "n.png"))
    texts = _texts(fig)
    for name in ["x0", "x1", "x2", "x3", "y0"]:
        assert name in texts
    assert texts.count("7") == 2 and texts.count("0") == 2  # two hidden layers of 8, by index
    ax = fig.get_axes()[0]
    assert len(ax.get_lines()) == (32 + 64 + 8) * 3  # every edge is drawn (104 <= 128)
    assert not any("most important" in t for t in texts)
    w, h = fig.get_size_inches()
    assert w <= 24 and h <= 24
    # Thumbnails are sized to the figure: each box at least 0.45 in wide, none wider than its slot.
    boxes = [p for p in ax.patches]
    assert len(boxes) == 104
    inches_per_unit = w / (ax.get_xlim()[1] - ax.get_xlim()[0])
    assert min(b.get_width() for b in boxes) * inches_per_unit >= 0.45
    fig = kancore.plot_network(model, in_vars=["age", "sex", "bmi", "bp"], out_vars=["progression"])
    texts = _texts(fig)
    assert {"age", "sex", "bmi", "bp", "progression"} <= set(texts) and "x0" not in texts
    with pytest.raises(ValueError, match="expected 4 in_vars, got 3"):
        kancore.plot_network(model, in_vars=["a", "b", "c"])
    with pytest.raises(ValueError, match="expected 1 out_vars, got 2"):
        kancore.plot_network(model, out_vars=["a", "b"])
    # A wide network: bounded size, the most important edges per layer, and the title says so.
    big = KAN([64, 32, 1], kind="c0", num_control_points=4)
    fig = kancore.plot_network(big)
    w, h = fig.get_size_inches()
    assert w <= 24 and h <= 24
    assert any("the 128 most important of 2080 edges" in t for t in _texts(fig))
    # The 32-edge output layer is under its share (64): all drawn; the first layer gets the rest.
    assert len(fig.get_axes()[0].patches) == 128
    fig.savefig(tmp_path / "big.png", dpi=40)


def test_feature_names_on_kanlinear_and_kan():
    layer = KANLinear(2, 2, grid_size=3)
    fig = layer.visualize_all_mappings(in_vars=["u", "v"], out_vars=["p", "q"])
    assert [ax.get_title() for ax in fig.get_axes()] == ["u → p", "u → q", "v → p", "v → q"]
    assert fig.get_axes()[3].get_xlabel() == "v"
    with pytest.raises(ValueError, match="expected 2 in_vars, got 1"):
        layer.visualize_all_mappings(in_vars=["u"])
    model = KAN([2, 3, 1], kind="c0", num_control_points=4)
    fig = model.visualize_all_mappings(layer=-1, in_vars=["h0", "h1", "h2"], out_vars=["y"])
    assert [ax.get_title() for ax in fig.get_axes()] == ["h0 → y", "h1 → y", "h2 → y"]
    big = KANLinear(20, 10, grid_size=3)
    fig = big.visualize_all_mappings(max_edges=12)
    imp = big.edge_importance()
    top = np.argsort(-imp.T.reshape(-1), kind="stable")[:12]
    assert [ax.get_title() for ax in fig.get_axes()] == [f"In {j // 10} → Out {j % 10}" for j in top]


def test_kan_visualize_all_mappings_picks_a_layer(tmp_path):
    model = KAN([2, 3, 1], kind="c0", num_control_points=4)
    fig = model.visualize_all_mappings(save_path=str(tmp_path / "l1.png"), layer=1)
    assert len(fig.get_axes()) == 3 and (tmp_path / "l1.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="layer"):
        model.visualize_all_mappings(layer=2)


def test_count_parameters_matches_a_count_by_hand():
    b = KAN([3, 4, 2], grid_size=5, spline_order=3, layernorm=True)
    # per B-spline edge: base weight, scaler, G+k coefficients; LayerNorm: weight and bias.
    assert kancore.count_parameters(b) == (3 * 4 + 4 * 2) * (1 + 1 + 8) + 2 * 4
    c = KAN([3, 4, 2], kind="c0", num_control_points=7)
    assert kancore.count_parameters(c) == (3 * 4 + 4 * 2) * 7
    d = KAN([3, 4, 2], kind="c0", num_control_points=7, variant="parallel_scan")
    assert kancore.count_parameters(d) == 2 * (3 * 4 + 4 * 2) * 7
    c.layers[0].kan_weight.requires_grad_(False)
    assert kancore.count_parameters(c, trainable_only=True) == 4 * 2 * 7


def test_memory_estimate_adds_up():
    model = KAN([3, 4, 2], kind="c0", num_control_points=7)
    est = memory_estimate(model, batch_size=10)
    n = kancore.count_parameters(model)
    assert est["parameters"] == 4 * n and est["gradients"] == 4 * n and est["optimizer_state"] == 8 * n
    assert est["activations"] == 10 * ((3 + 4) + (4 + 2)) * 4
    assert est["total"] == sum(v for k, v in est.items() if k != "total")
    assert kancore.memory_estimate(model, 10, optimizer="sgd")["optimizer_state"] == 0
    with pytest.raises(ValueError, match="batch_size"):
        memory_estimate(model, batch_size=0)


@pytest.mark.parametrize("widths,target", [((10, 1), 165), ((2, 5, 1), 1000), ((4, 8, 8, 3), 500), ((2, 1), 3),
                                           ((4, 8, 4, 1), 2000), ((3, 2, 6, 1), 777)])
def test_mlp_with_same_parameters_keeps_the_shape_and_is_closest(widths, target):
    mlp = mlp_with_same_parameters(widths, target)
    got = kancore.count_parameters(mlp)
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    shape = list(widths[1:-1]) or [1]
    assert len(linears) == len(shape) + 1
    assert linears[0].in_features == widths[0] and linears[-1].out_features == widths[-1]
    hidden = [m.out_features for m in linears[:-1]]
    # The hidden widths are the KAN's, all scaled by one factor (rounded).
    lo = max((h - 0.5) / w for h, w in zip(hidden, shape))
    hi = min((h + 0.5) / w for h, w in zip(hidden, shape))
    assert lo <= hi, f"{hidden} is not one scaling of {shape}"
    # No scaling of the shape comes closer to the target (every breakpoint of the rounding tried,
    # at and just after it: where two widths' breakpoints meet, rounding half to even at the
    # breakpoint itself gives a combination of its own).
    scales = sorted({(k + 0.5) / w + d for w in shape for k in range(0, 4 * max(hidden) * w + 2)
                     for d in (0.0, 1e-9)})
    best = min(abs(_count(widths[0], widths[-1], [max(1, round(w * s)) for w in shape]) - target)
               for s in [1e-9] + scales)
    assert abs(got - target) == best


def test_mlp_with_same_parameters_equal_widths_and_bad_targets():
    mlp = mlp_with_same_parameters((4, 8, 4, 1), 2000, hidden_layers=3)
    hidden = [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)][:-1]
    assert len(hidden) == 3 and len(set(hidden)) == 1
    with pytest.raises(ValueError):
        mlp_with_same_parameters((3,), 10)
    with pytest.raises(ValueError, match="beyond any MLP"):
        mlp_with_same_parameters([3, 4, 2], 10 ** 15)  # answered at once, not by a long search
    with pytest.raises(ValueError, match="hidden_layers"):
        mlp_with_same_parameters([3, 4, 2], 100, hidden_layers=0)


def _count(n_in, n_out, hidden):
    sizes = [n_in] + list(hidden) + [n_out]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
