"""KANLayer.update_grid / refine: the C0 layer's grid adaptation against a float64 NumPy
re-statement (quantile domain, hat-function least squares) and function preservation."""
import numpy as np
import pytest
import torch

from kancore import KANLayer
from kancore.kan_layer import C0GridReport

VARIANTS = ["B-spline", "DCT", "parallel_scan"]


def perturbed_layer(I, O, K, variant="B-spline", seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    layer = KANLayer(I, O, num_control_points=K, variant=variant).to(dtype)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return layer


def np_edges(table, W, x, scale=None, offset=None):
    """phi[b, i, o] of a C0 table (in, K, out) at raw x (batch, in), float64."""
    I, K, O = table.shape
    xp = x if scale is None else x * scale + offset
    u = (xp + W / 2) * (K - 1) / W
    k = np.clip(np.floor(u), 0, K - 2).astype(int)
    t = u - k
    rows = np.arange(I)[None, :]
    return (1 - t)[..., None] * table[rows, k] + t[..., None] * table[rows, k + 1]


def np_fit(table, W, x, K_new, quantile=0.0, margin=0.01, ridge=1e-6):
    """The documented fit: domain from quantiles, then least squares of hat functions plus the
    pull (weight ridge * mean diagonal of A^T A) toward the old function at the new points."""
    I, K, O = table.shape
    old = np_edges(table, W, x)
    new_table = np.empty((I, K_new, O))
    scale, offset = np.empty(I), np.empty(I)
    for i in range(I):
        lo, hi = np.quantile(x[:, i], [quantile, 1 - quantile])
        width = hi - lo
        scale[i] = W / (width * (1 + 2 * margin))
        offset[i] = -W / 2 - (lo - margin * width) * scale[i]
        u = (x[:, i] * scale[i] + offset[i] + W / 2) * (K_new - 1) / W
        inside = (u >= 0) & (u <= K_new - 1)
        k = np.clip(np.floor(u[inside]), 0, K_new - 2).astype(int)
        t = u[inside] - k
        A = np.zeros((inside.sum(), K_new))
        A[np.arange(len(k)), k] = 1 - t
        A[np.arange(len(k)), k + 1] = t
        lam = ridge * np.mean(np.sum(A * A, axis=0))
        z = ((-W / 2 + np.arange(K_new) * W / (K_new - 1)) - offset[i]) / scale[i]  # new points, raw x
        pull = np_edges(table[i:i + 1], W, z[:, None])[:, 0, :]
        A = np.vstack([A, np.sqrt(lam) * np.eye(K_new)])
        rhs = np.vstack([old[inside, i, :], np.sqrt(lam) * pull])
        new_table[i] = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return new_table, scale, offset


def test_update_grid_matches_the_numpy_least_squares():
    layer = perturbed_layer(3, 4, 6, seed=1)
    rng = np.random.default_rng(2)
    x = rng.normal(0.3, 0.8, size=(400, 3))
    table = layer.get_interp_tensor().detach().numpy().reshape(3, 6, 4).copy()
    expected, scale, offset = np_fit(table, 4.0, x, 9)
    report = layer.update_grid(torch.from_numpy(x), 9)
    assert report == C0GridReport(0, 0, 0)
    assert layer.num_control_points == 9
    np.testing.assert_allclose(layer.input_scale.numpy(), scale, rtol=1e-13)
    np.testing.assert_allclose(layer.input_offset.numpy(), offset, rtol=1e-12, atol=1e-13)
    got = layer.get_interp_tensor().detach().numpy().reshape(3, 9, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("K_new", [5, 12, 64])
def test_straight_lines_are_preserved_exactly(variant, K_new):
    layer = KANLayer(4, 3, num_control_points=5, variant=variant).double()
    gen = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 4, 1, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        layer._set_table(a + b * torch.arange(5, dtype=torch.float64).view(1, 5, 1))  # lines in float64
    x = torch.randn(300, 4, dtype=torch.float64, generator=gen) * 2 + 1
    far = torch.tensor([[40.0] * 4, [-40.0] * 4], dtype=torch.float64)
    before, before_far = layer(x), layer(far)
    layer.update_grid(x, K_new)
    rel = ((layer(x) - before).abs().max() / before.abs().max()).item()
    assert rel <= 1e-12, rel
    # Lines extend linearly: far outside the new domain the function is still the same.
    torch.testing.assert_close(layer(far), before_far, rtol=1e-7, atol=1e-7)  # 300 spacings out


@pytest.mark.parametrize("variant", VARIANTS)
def test_update_grid_then_refine_preserve_the_function(variant):
    layer = perturbed_layer(3, 2, 5, variant=variant, seed=4)
    x = torch.rand(800, 3, dtype=torch.float64) * 3 - 1
    before = layer(x)
    layer.update_grid(x, 33)  # a finer grid: the old kinks are approximated, not kept
    mid = layer(x)
    assert ((mid - before).abs().max() / before.abs().max()).item() < 0.02
    layer.refine(65)  # 64 = 2 * 32: exact
    after = layer(x)
    assert ((after - mid).abs().max() / mid.abs().max()).item() <= 1e-12
    probe = torch.linspace(-50, 50, 101, dtype=torch.float64).unsqueeze(1).expand(-1, 3)
    assert torch.isfinite(layer(probe)).all()


def test_float32_agrees_with_float64():
    layer64 = perturbed_layer(4, 4, 8, seed=5)
    layer32 = perturbed_layer(4, 4, 8, seed=5)
    layer32.float()
    layer32.load_state_dict({k: v.float() for k, v in layer64.state_dict().items()})
    x = torch.randn(1000, 4, dtype=torch.float64)
    layer64.update_grid(x, 12)
    layer32.update_grid(x.float(), 12)
    assert layer32.kan_weight.dtype == torch.float32 and layer32.input_scale.dtype == torch.float32
    torch.testing.assert_close(layer32(x.float()).double(), layer64(x), rtol=1e-4, atol=1e-4)
    layer32.refine(23)
    assert layer32.kan_weight.shape == (4, 23, 4)


def test_state_dicts_carry_k_and_the_domain():
    layer = perturbed_layer(3, 2, 5, seed=6)
    x = torch.randn(200, 3, dtype=torch.float64)
    layer.update_grid(x, 11)
    fresh = KANLayer(3, 2, num_control_points=5).double()
    fresh.load_state_dict(layer.state_dict())
    assert fresh.num_control_points == 11
    torch.testing.assert_close(fresh(x), layer(x), rtol=0, atol=0)
    # An unfitted (kanditioned-layout) state_dict loads into a fitted layer and drops its domain.
    plain = KANLayer(3, 2, num_control_points=5).double()
    layer.load_state_dict(plain.state_dict())
    assert layer.input_scale is None and layer.num_control_points == 5
    torch.testing.assert_close(layer(x), plain(x), rtol=0, atol=0)


def test_gradients_flow_through_the_fitted_domain():
    layer = perturbed_layer(2, 3, 6, seed=7)
    layer.update_grid(torch.randn(100, 2, dtype=torch.float64), 7)
    x = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: torch.nn.functional.linear(layer(x), torch.eye(3, dtype=x.dtype)),
                                    (x, layer.kan_weight))
    assert torch.autograd.gradcheck(lambda x: layer(x), (x,))


def test_constant_nan_and_outliers():
    layer = perturbed_layer(3, 2, 5, seed=8)
    x = torch.randn(100, 3, dtype=torch.float64)
    x[:, 0] = 0.7
    x[5, 1] = float("nan")
    x[6, 1] = float("inf")
    x[0, 2], x[1, 2] = 1e6, -1e6
    report = layer.update_grid(x, 9, quantile=0.02)
    assert report.features_kept == 1
    assert report.samples_skipped == 2
    assert report.samples_outside >= 2
    assert layer.input_scale[0].item() == 1.0 and layer.input_offset[0].item() == 0.0
    assert 4.0 / layer.input_scale[2].item() < 10  # the outliers did not set the width
    assert torch.isfinite(layer.get_interp_tensor()).all()


def test_bad_arguments():
    layer = perturbed_layer(3, 2, 5, seed=9)
    x = torch.randn(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        layer.update_grid(torch.randn(10, 4, dtype=torch.float64))
    with pytest.raises(ValueError):
        layer.update_grid(x, 1)
    with pytest.raises(ValueError):
        layer.update_grid(x, quantile=0.5)
    with pytest.raises(ValueError):
        layer.update_grid(x, margin=-1.0)
    with pytest.raises(ValueError):
        layer.refine(1)
    with pytest.raises(ValueError):
        layer.refine(0)
    assert layer.num_control_points == 5 and layer.input_scale is None  # untouched


def test_plot_against_input_after_fit(tmp_path):
    pytest.importorskip("matplotlib")
    layer = perturbed_layer(2, 2, 5, seed=10)
    layer.update_grid(torch.randn(50, 2, dtype=torch.float64) * 3 + 10)
    fig = layer.visualize_all_mappings(save_path=tmp_path / "m.png", x_axis="input")
    xs = fig.axes[0].lines[0].get_xdata()
    assert xs.min() > 0  # the control points sit on the data (around 10), not on [-2, 2]
    assert (tmp_path / "m.png").stat().st_size > 0


def test_partial_state_dict_keeps_other_layers_domains():
    from kancore import KAN

    torch.manual_seed(11)
    model = KAN([2, 3, 2], kind="c0", num_control_points=6).double()
    x = torch.randn(64, 2, dtype=torch.float64)
    model(x, update_grid=True)
    assert model.layers[1].input_scale is not None
    before = model(x)
    part = {k: v for k, v in model.state_dict().items() if k.startswith("layers.0.")}
    model.load_state_dict(part, strict=False)
    assert model.layers[1].input_scale is not None  # not covered by the state_dict: untouched
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("K2", [63, 40, 12])
def test_refine_to_a_finer_grid_keeps_the_linear_extension(K2):
    # Outside [-W/2, W/2] the C0 layer extends its end segments; refine(40) from K = 32 used to
    # change the outputs at x = 6 by about 10 (the end slopes of the least-squares fit).
    torch.manual_seed(0)
    layer = KANLayer(2, 3, num_control_points=9, spline_width=4.0, dtype=torch.float64)
    with torch.no_grad():
        layer.kan_weight.normal_()
    x = torch.cat([torch.linspace(-9, -2, 50), torch.linspace(2, 9, 50)]).to(torch.float64).unsqueeze(1).repeat(1, 2)
    with torch.no_grad():
        y0 = layer(x).clone()
        layer.refine(K2)
        change = float((layer(x) - y0).abs().max() / y0.abs().max())
    assert change <= 1e-12, change
