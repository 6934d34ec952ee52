"""visualize_all_mappings (headless, returns the Figure, not registered with pyplot) and repr."""
import pytest

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kancore import KANLayer  # noqa: E402


def test_writes_png_and_returns_figure(tmp_path):
    torch.manual_seed(0)
    layer = KANLayer(2, 3, num_control_points=6)
    figs_before = plt.get_fignums()
    path = tmp_path / "mappings.png"
    fig = layer.visualize_all_mappings(save_path=str(path), x_axis="control_points")
    assert isinstance(fig, matplotlib.figure.Figure)
    # Not registered with pyplot, so a notebook shows it once (as the cell value), never twice.
    assert plt.get_fignums() == figs_before
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = fig.get_axes()
    assert len(axes) == 6
    assert tuple(fig.get_size_inches()) == (12.0, 6.0)  # (4 * out, 3 * in)
    assert axes[1].get_title() == "In 0 → Out 1"
    assert axes[0].get_xlabel() == "Control Points" and axes[0].get_ylabel() == "Value"
    line = axes[4].get_lines()[0]  # In 1 -> Out 1
    np.testing.assert_allclose(line.get_ydata(), layer.kan_weight[1, :, 1].detach().numpy())
    np.testing.assert_array_equal(line.get_xdata(), np.arange(6))


def test_default_x_axis_is_the_input_value_through_a_fitted_domain():
    torch.manual_seed(0)
    layer = KANLayer(2, 3, num_control_points=6)
    layer.update_grid(torch.randn(300, 2) * torch.tensor([3.0, 0.5]) + torch.tensor([5.0, -1.0]))
    fig = layer.visualize_all_mappings()
    axes = fig.get_axes()
    assert axes[0].get_xlabel() == "Input" and axes[0].get_ylabel() == "Value"
    points = layer.control_point_inputs()
    assert not np.allclose(points[0], points[1])  # each input has its own domain
    for n, ax in enumerate(axes):
        i, o = divmod(n, 3)
        line = ax.get_lines()[0]
        np.testing.assert_allclose(line.get_xdata(), points[i])
        np.testing.assert_allclose(line.get_ydata(), layer.kan_weight[i, :, o].detach().numpy())


def test_against_input_value_and_size_guard():
    layer = KANLayer(1, 1, num_control_points=5, spline_width=2.0)
    fig = layer.visualize_all_mappings(x_axis="input")
    xs = fig.get_axes()[0].get_lines()[0].get_xdata()
    np.testing.assert_allclose(xs, [-1.0, -0.5, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="x_axis"):
        layer.visualize_all_mappings(x_axis="time")
    with pytest.raises(ValueError, match="max_edges"):
        layer.visualize_all_mappings(max_edges=0)


def test_feature_names_in_titles_and_labels():
    layer = KANLayer(3, 2, num_control_points=4)
    fig = layer.visualize_all_mappings(in_vars=["age", "bmi", "bp"], out_vars=["risk", "cost"])
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["age → risk", "age → cost", "bmi → risk",
                                               "bmi → cost", "bp → risk", "bp → cost"]
    assert axes[2].get_xlabel() == "bmi" and axes[3].get_ylabel() == "contribution to cost"
    fig = layer.visualize_all_mappings(x_axis="control_points", in_vars=["a", "b", "c"])
    assert fig.get_axes()[1].get_title() == "a → Out 1"
    assert fig.get_axes()[1].get_xlabel() == "Control Points"  # the index axis keeps its name
    with pytest.raises(ValueError, match="expected 3 in_vars, got 2"):
        layer.visualize_all_mappings(in_vars=["a", "b"])
    with pytest.raises(ValueError, match="expected 2 out_vars, got 3"):
        layer.visualize_all_mappings(out_vars=["a", "b", "c"])


def test_large_layer_shows_its_most_important_edges(tmp_path):
    torch.manual_seed(0)
    layer = KANLayer(in_features=64, out_features=32, init="random_normal", num_control_points=32,
                     spline_width=4.0)  # the README's first example
    path = tmp_path / "big.png"
    fig = layer.visualize_all_mappings(str(path))
    axes = fig.get_axes()
    assert len(axes) == 64
    imp = layer.edge_importance()  # (out, in)
    top = np.argsort(-imp.T.reshape(-1), kind="stable")[:64]
    expected = [f"In {j // 32} → Out {j % 32}" for j in top]
    assert [ax.get_title() for ax in axes] == expected  # most important first
    shown = sorted(imp[o, i] for i, o in (divmod(int(j), 32) for j in top))
    assert shown[0] >= np.sort(imp.reshape(-1))[-64]  # none left out is more important
    assert "the 64 most important of 2048 edges, by coefficient importance" in fig.get_suptitle()
    w, h = fig.get_size_inches()
    assert w <= 24 and h <= 24
    from PIL import Image
    with Image.open(path) as im:
        assert max(im.size) <= 3700  # bounded pixels too (300 dpi only for small figures)
    # Ranked by edge scale on samples when they are given; fewer edges with max_edges.
    x = torch.randn(64, 64)
    fig = layer.visualize_all_mappings(x=x, max_edges=10)
    scales = layer.edge_scales(x).numpy()
    top = np.argsort(-scales.T.reshape(-1), kind="stable")[:10]
    assert [ax.get_title() for ax in fig.get_axes()] == [f"In {j // 32} → Out {j % 32}" for j in top]
    assert "by edge scale on x" in fig.get_suptitle()


def test_long_thin_layer_wraps_instead_of_shrinking_to_a_strip():
    layer = KANLayer(48, 1, num_control_points=4)
    fig = layer.visualize_all_mappings()
    axes = fig.get_axes()
    assert len(axes) == 48 and axes[47].get_title() == "In 47 → Out 0"
    w, h = fig.get_size_inches()
    assert 12 <= w <= 24 and 12 <= h <= 24  # not 4 x 144 inches, nor shrunk to 0.67 x 24
    assert KANLayer(4, 3).visualize_all_mappings().get_size_inches().tolist() == [12.0, 12.0]


def test_repr_is_readable():
    layer = KANLayer(3, 4, num_control_points=8, spline_width=2.0, dtype=torch.float64)
    text = repr(layer)
    assert text == ("KANLayer(in_features=3, out_features=4, num_control_points=8, spline_width=2.0, "
                    "variant='B-spline', impl='embedding_bag', dtype=torch.float64)")


def test_device_and_dtype_arguments(device):
    layer = KANLayer(3, 2, device=device, dtype=torch.float64)
    assert layer.kan_weight.dtype == torch.float64
    assert layer.kan_weight.device.type == device and layer.local_bias.device.type == device
    assert layer.local_bias.dtype == torch.int64
    y = layer(torch.randn(4, 3, dtype=torch.float64, device=device))
    assert y.device.type == device and y.dtype == torch.float64
    moved = KANLayer(3, 2).double()
    assert moved(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64


def test_kan_repr_names_kind_and_widths_and_omits_an_empty_norms_list():
    from kancore import KAN

    plain = repr(KAN([2, 3, 1]))
    assert "kind='bspline', widths=[2, 3, 1]" in plain and "norms" not in plain
    with_norms = repr(KAN([2, 3, 1], kind="c0", layernorm=True))
    assert "(norms): ModuleList" in with_norms and "LayerNorm((3,)" in with_norms
