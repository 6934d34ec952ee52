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
    fig = layer.visualize_all_mappings(save_path=str(path))
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


def test_against_input_value_and_size_guard():
    layer = KANLayer(1, 1, num_control_points=5, spline_width=2.0)
    fig = layer.visualize_all_mappings(x_axis="input")
    xs = fig.get_axes()[0].get_lines()[0].get_xdata()
    np.testing.assert_allclose(xs, [-1.0, -0.5, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="x_axis"):
        layer.visualize_all_mappings(x_axis="time")
    with pytest.raises(ValueError, match="max_edges"):
        KANLayer(40, 40).visualize_all_mappings()


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
