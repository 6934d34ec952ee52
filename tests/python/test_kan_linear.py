"""kancore.KANLinear / kancore.KAN (efficient-kan's B-spline layer, docs/layer_math.md,
"The B-spline layer") against an independent float64 NumPy oracle written from the textbook
Cox-de Boor recursion.

The oracle (``oracle_*`` below) evaluates the order-0 indicators t_j <= x < t_{j+1} on all G+2k
intervals of each feature's knots, then k levels of

    B_{j,p}(x) = (x - t_j) / (t_{j+p} - t_j) B_{j,p-1}(x) + (t_{j+p+1} - x) / (t_{j+p+1} - t_{j+1}) B_{j+1,p-1}(x)

where a term whose denominator is 0 counts as 0 (its B_{.,p-1} factor is 0 there anyway). The
layer is y = act(x) @ base_weight.T + B(x).flatten(-2) @ (spline_weight * spline_scaler[..., None]).flatten(-2).T.
"""
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import assert_compiles_without_breaks  # noqa: E402
from kancore import KAN, KANLinear  # noqa: E402

SHAPES = [(3, 5), (17, 33), (64, 7)]
ORDERS = [(1, 1), (5, 3), (16, 3), (3, 5)]  # (grid_size G, spline_order k)
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Forward tolerance relative to the output scale sum_i |act(x) w| + sum_ic |B w| (the largest row).
FWD_RTOL = {"float32": 1e-5, "float64": 1e-12}


# --------------------------------------------------------------------------------------------
# The float64 NumPy oracle.
# --------------------------------------------------------------------------------------------
def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def silu_np(x):
    return 0.5 * x * (1.0 + np.tanh(0.5 * x))  # x * sigmoid(x), no overflow


def silu_grad_np(x):
    s = 0.5 * (1.0 + np.tanh(0.5 * x))
    return s * (1.0 + x * (1.0 - s))


def gelu_np(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_grad_np(x):
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


ACTIVATIONS = {
    "SiLU": (torch.nn.SiLU, silu_np, silu_grad_np),
    "Identity": (torch.nn.Identity, lambda x: x, np.ones_like),
    "GELU": (torch.nn.GELU, gelu_np, gelu_grad_np),
}


def _safe_div(num, den):
    """num / den, with 0 wherever den == 0 (the 0/0 := 0 rule of Cox-de Boor)."""
    den = np.asarray(den, dtype=np.float64)
    nonzero = den != 0
    return np.where(nonzero, num / np.where(nonzero, den, 1.0), 0.0)


def oracle_basis(x, knots, k):
    """Cox-de Boor basis: x (batch, in), knots (in, n+1) -> (batch, in, n-k), float64."""
    x = np.asarray(x, dtype=np.float64)[:, :, None]
    t = np.asarray(knots, dtype=np.float64)[None, :, :]
    n = t.shape[-1] - 1  # number of knot intervals, G + 2k
    basis = ((t[..., :n] <= x) & (x < t[..., 1:])).astype(np.float64)
    for p in range(1, k + 1):
        m = n - p  # basis functions of order p
        left = _safe_div(x - t[..., :m], t[..., p:p + m] - t[..., :m])
        right = _safe_div(t[..., p + 1:p + 1 + m] - x, t[..., p + 1:p + 1 + m] - t[..., 1:1 + m])
        basis = left * basis[..., :m] + right * basis[..., 1:m + 1]
    return basis


def oracle_basis_derivative(x, knots, k):
    """d/dx of oracle_basis: k B_{j,k-1}/(t_{j+k}-t_j) - k B_{j+1,k-1}/(t_{j+k+1}-t_{j+1})."""
    t = np.asarray(knots, dtype=np.float64)[None, :, :]
    n = t.shape[-1] - 1
    m = n - k
    lower = oracle_basis(x, knots, k - 1)
    a = _safe_div(float(k), t[..., k:k + m] - t[..., :m])
    c = _safe_div(float(k), t[..., k + 1:k + 1 + m] - t[..., 1:1 + m])
    return a * lower[..., :m] - c * lower[..., 1:m + 1]


def layer_np(layer):
    """The layer's state as float64 NumPy arrays; spline_scaler is None when absent."""
    sd = {name: t.detach().cpu().to(torch.float64).numpy() for name, t in layer.state_dict().items()}
    return sd["grid"], sd["base_weight"], sd["spline_weight"], sd.get("spline_scaler")


def oracle_forward(x, grid, base_weight, spline_weight, spline_scaler, k, act=silu_np):
    """(y, scale): y (..., out) in float64, scale = the largest row of sum |terms|."""
    x = np.asarray(x, dtype=np.float64)
    n_in = grid.shape[0]
    x2 = x.reshape(-1, n_in)
    basis = oracle_basis(x2, grid, k)
    ws = spline_weight if spline_scaler is None else spline_weight * spline_scaler[..., None]
    a = act(x2)
    y = a @ base_weight.T + np.einsum("bic,oic->bo", basis, ws)
    terms = np.abs(a) @ np.abs(base_weight).T + np.einsum("bic,oic->bo", np.abs(basis), np.abs(ws))
    scale = float(terms.max()) if terms.size else 1.0
    return y.reshape(*x.shape[:-1], base_weight.shape[0]), max(scale, 1e-300)


def oracle_layer(layer, x, act=silu_np):
    grid, bw, sw, sc = layer_np(layer)
    return oracle_forward(x, grid, bw, sw, sc, layer_order(layer), act)


def layer_order(layer):
    return (layer.grid.shape[1] - 1 - layer.spline_weight.shape[2])


def oracle_grads(x, grid, bw, sw, sc, k, g, act=silu_np, act_grad=silu_grad_np):
    """Analytic float64 gradients of sum(g * y) w.r.t. x, base_weight, spline_weight, spline_scaler."""
    basis = oracle_basis(x, grid, k)
    dbasis = oracle_basis_derivative(x, grid, k)
    scaler = np.ones(bw.shape) if sc is None else sc
    ws = sw * scaler[..., None]
    grad_x = act_grad(x) * (g @ bw) + np.einsum("bo,bic,oic->bi", g, dbasis, ws)
    grad_bw = g.T @ act(x)
    gb = np.einsum("bo,bic->oic", g, basis)
    grad_sw = gb * scaler[..., None]
    grad_sc = (gb * sw).sum(-1)
    return grad_x, grad_bw, grad_sw, grad_sc


def oracle_reg_loss(sw, a, e):
    l1 = np.abs(sw).mean(-1)
    total = l1.sum()
    p = l1 / total
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return a * total + e * (-plogp.sum())


# --------------------------------------------------------------------------------------------
# Helpers.
# --------------------------------------------------------------------------------------------
def make_layer(n_in, n_out, G, k, dtype=torch.float64, seed=0, **kwargs):
    """A layer with O(1) random parameters (the default init makes the spline part ~1e-2)."""
    torch.manual_seed(seed)
    layer = KANLinear(n_in, n_out, grid_size=G, spline_order=k, dtype=dtype, **kwargs)
    with torch.no_grad():
        layer.base_weight.normal_()
        layer.spline_weight.normal_()
        if getattr(layer, "spline_scaler", None) is not None:
            layer.spline_scaler.uniform_(0.5, 2.0)
    return layer


def to_t(a, dtype):
    return torch.tensor(np.asarray(a), dtype=dtype)


def sample_x(kind, batch, grid, k, rng):
    """x (batch, in) in float64: inside the core interval, anywhere incl. far outside, or on knots."""
    n_in = grid.shape[0]
    lo_core, hi_core = grid[:, k], grid[:, -k - 1]
    lo_ext, hi_ext = grid[:, 0], grid[:, -1]
    if kind == "inside":
        return rng.uniform(lo_core, hi_core, size=(batch, n_in))
    if kind == "outside":
        width = hi_ext - lo_ext
        x = rng.uniform(lo_ext - 0.5 * width, hi_ext + 0.5 * width, size=(batch, n_in))
        x[0], x[1] = lo_ext - 0.25, hi_ext + 0.25  # surely beyond the extended knots
        return x
    if kind == "knots":
        idx = rng.integers(0, grid.shape[1], size=(batch, n_in))
        x = grid[np.arange(n_in)[None, :], idx]
        x[0], x[1] = grid[:, 0], grid[:, -1]  # first and last knots exactly
        return x
    raise AssertionError(kind)


def assert_close_scaled(actual, expected, scale, rtol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert np.isfinite(actual).all(), what
    err = np.abs(actual - expected).max() if actual.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} * scale {scale:.3e}"


def assert_grad_close(actual, expected, rtol, what=""):
    """|actual - expected| <= rtol * max(1, max|expected|) elementwise."""
    np.testing.assert_allclose(actual.detach().numpy(), expected, rtol=0,
                               atol=rtol * max(1.0, float(np.abs(expected).max())), err_msg=what)


def rel_change(before, after):
    before = np.asarray(before, dtype=np.float64)
    after = np.asarray(after, dtype=np.float64)
    return float(np.abs(after - before).max() / np.abs(before).max())


def uniform_knots(G, k, lo, hi):
    h = (hi - lo) / G
    return lo + h * np.arange(-k, G + k + 1, dtype=np.float64)


def refined_knots(G, G2, k, lo, hi):
    """refine's knots: G2 uniform intervals over [lo, hi], the k old extension knots kept."""
    old = uniform_knots(G, k, lo, hi)
    return np.concatenate([old[:k], np.linspace(lo, hi, G2 + 1), old[G + k + 1:]])


# --------------------------------------------------------------------------------------------
# Oracle self-checks (they test this file, not kancore).
# --------------------------------------------------------------------------------------------
def test_oracle_partition_of_unity_and_scipy():
    rng = np.random.default_rng(0)
    k = 3
    t = np.sort(rng.uniform(-2, 2, size=(2, 5 + 2 * k + 1)), axis=1)
    x = rng.uniform(t[:, k], t[:, -k - 1], size=(50, 2))
    basis = oracle_basis(x, t, k)
    np.testing.assert_allclose(basis.sum(-1), 1.0, rtol=0, atol=1e-13)
    interpolate = pytest.importorskip("scipy.interpolate")
    for i in range(2):
        coef = rng.normal(size=t.shape[1] - k - 1)
        ref = interpolate.BSpline(t[i], coef, k, extrapolate=False)(x[:, i])
        np.testing.assert_allclose(basis[:, i] @ coef, ref, rtol=0, atol=1e-12)


def test_oracle_derivative_matches_finite_differences():
    rng = np.random.default_rng(1)
    for k in (1, 2, 3, 5):
        t = np.sort(rng.uniform(-2, 2, size=(3, 4 + 2 * k + 1)), axis=1)
        x = rng.uniform(-2.5, 2.5, size=(40, 3))
        h = 1e-6
        fd = (oracle_basis(x + h, t, k) - oracle_basis(x - h, t, k)) / (2 * h)
        an = oracle_basis_derivative(x, t, k)
        # Points within h of a knot (where the derivative jumps for k = 1) are skipped.
        near = (np.abs(x[:, :, None] - t[None]) < 1e-5).any(-1)
        np.testing.assert_allclose(an[~near], fd[~near], rtol=0, atol=1e-6 * (1 + np.abs(an).max()))


# --------------------------------------------------------------------------------------------
# Construction, state and defaults.
# --------------------------------------------------------------------------------------------
def test_default_grid_and_attributes():
    layer = KANLinear(4, 3, grid_size=5, spline_order=3, grid_range=[-2, 1], dtype=torch.float64)
    assert (layer.in_features, layer.out_features, layer.grid_size, layer.spline_order) == (4, 3, 5, 3)
    assert layer.grid.shape == (4, 5 + 2 * 3 + 1)
    expected = np.tile(uniform_knots(5, 3, -2.0, 1.0), (4, 1))
    np.testing.assert_allclose(layer.grid.numpy(), expected, rtol=0, atol=1e-14)
    for dtype in (torch.float32, torch.float64):
        lay = KANLinear(2, 2, dtype=dtype)
        assert all(t.dtype == dtype for t in lay.state_dict().values())
    assert KANLinear(2, 2).base_weight.dtype == torch.float32


def test_parameters_buffers_and_state_dict_names():
    layer = KANLinear(5, 3, grid_size=4, spline_order=2)
    sd = layer.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "grid": (5, 4 + 2 * 2 + 1), "base_weight": (3, 5), "spline_weight": (3, 5, 4 + 2),
        "spline_scaler": (3, 5)}
    assert set(dict(layer.named_parameters())) == {"base_weight", "spline_weight", "spline_scaler"}
    assert set(dict(layer.named_buffers())) == {"grid"}
    no_scaler = KANLinear(5, 3, grid_size=4, spline_order=2, enable_standalone_scale_spline=False)
    assert set(no_scaler.state_dict()) == {"grid", "base_weight", "spline_weight"}


def test_default_init_matches_efficient_kan_distribution():
    # efficient-kan: base_weight and spline_scaler ~ kaiming_uniform(a=sqrt(5)*scale) -> bound
    # sqrt(6 / ((1 + 5 scale^2) in)); spline_weight fitted to noise of size scale_noise/(2G) at
    # the G+1 grid points, so the (unscaled) spline at those points is within that bound.
    torch.manual_seed(0)
    n_in, n_out, G, k = 64, 48, 5, 3
    layer = KANLinear(n_in, n_out, grid_size=G, spline_order=k, scale_base=0.5, scale_spline=2.0,
                      dtype=torch.float64)
    for name, scale in (("base_weight", 0.5), ("spline_scaler", 2.0)):
        w = getattr(layer, name).detach().abs().max().item()
        bound = math.sqrt(6.0 / ((1 + 5 * scale**2) * n_in))
        assert 0.9 * bound <= w <= bound * (1 + 1e-9), (name, w, bound)
    grid, _, sw, _ = layer_np(layer)
    pts = grid[:, k:-k].T  # (G+1, in) the core knots
    values = np.einsum("bic,oic->boi", oracle_basis(pts, grid, k), sw)
    assert np.abs(values).max() <= 0.1 / (2 * G) * (1 + 1e-6)
    assert np.abs(values).max() > 0.1 / (2 * G) * 0.5  # noise is there
    quiet = KANLinear(3, 2, scale_noise=0.0)
    assert torch.count_nonzero(quiet.spline_weight) == 0


def test_pykan_style_initialisation():
    # spline_scaler_init="constant": pykan's scale_sp / sqrt(in) on every edge; the rest as usual.
    layer = KANLinear(9, 4, scale_noise=0.3, scale_spline=1.5, spline_scaler_init="constant", dtype=torch.float64)
    assert torch.equal(layer.spline_scaler, torch.full((4, 9), 0.5, dtype=torch.float64))
    model = KAN([9, 4, 1], scale_noise=0.3, spline_scaler_init="constant")
    assert all(torch.all(L.spline_scaler == L.in_features ** -0.5) for L in model.layers)
    with pytest.raises(ValueError, match="spline_scaler_init"):
        KANLinear(2, 2, spline_scaler_init="pykan")


@pytest.mark.parametrize(
    "kwargs",
    [dict(grid_size=0), dict(spline_order=0), dict(grid_size=-1), dict(spline_order=-2)],
)
def test_constructor_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError):
        KANLinear(3, 2, **kwargs)


# --------------------------------------------------------------------------------------------
# 1. Forward against the oracle.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["inside", "outside", "knots"])
@pytest.mark.parametrize("G,k", ORDERS)
@pytest.mark.parametrize("n_in,n_out", SHAPES)
def test_forward_matches_oracle(n_in, n_out, G, k, kind, dtype_name):
    dtype = DTYPES[dtype_name]
    layer = make_layer(n_in, n_out, G, k, dtype=dtype, seed=n_in * 100 + G * 10 + k)
    rng = np.random.default_rng(n_in + 7 * G + k)
    x = sample_x(kind, 37, layer_np(layer)[0], k, rng)
    xt = to_t(x, dtype)
    y = layer(xt)
    assert y.shape == (37, n_out) and y.dtype == dtype
    ref, scale = oracle_layer(layer, xt.to(torch.float64).numpy())
    assert_close_scaled(y.detach().numpy(), ref, scale, FWD_RTOL[dtype_name], "forward")


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("G,k", [(5, 3), (3, 5), (1, 1)])
def test_b_splines_matches_oracle(G, k, dtype_name):
    dtype = DTYPES[dtype_name]
    layer = make_layer(6, 2, G, k, dtype=dtype)
    rng = np.random.default_rng(3)
    grid = layer_np(layer)[0]
    x = np.concatenate([sample_x(kind, 20, grid, k, rng) for kind in ("inside", "outside", "knots")])
    xt = to_t(x, dtype)
    basis = layer.b_splines(xt)
    assert basis.shape == (60, 6, G + k)
    ref = oracle_basis(xt.to(torch.float64).numpy(), grid, k)
    tol = 1e-6 if dtype_name == "float32" else 1e-13
    np.testing.assert_allclose(basis.detach().to(torch.float64).numpy(), ref, rtol=0, atol=tol)


@pytest.mark.parametrize("G,k", [(5, 3), (1, 1)])
def test_spline_part_is_zero_beyond_the_extended_knots(G, k):
    layer = make_layer(4, 3, G, k)
    with torch.no_grad():
        layer.base_weight.zero_()
        layer.spline_weight.normal_(0, 10)
    grid = layer_np(layer)[0]
    x = np.concatenate([grid[None, :, 0] - np.array([[1e-9], [0.3], [50.0]]),
                        grid[None, :, -1] + np.array([[0.0], [1e-9], [0.3], [50.0]])])  # incl. the last knot
    y = layer(to_t(x, torch.float64)).detach().numpy()
    np.testing.assert_array_equal(np.abs(y) <= 1e-12, True)
    # ... and just inside the knots the spline is not zero (the test above can fail).
    inside = layer(to_t(grid[:, k:k + 1].T + 1e-3, torch.float64)).detach().numpy()
    assert np.abs(inside).max() > 1e-3


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_leading_batch_dims(dtype_name):
    dtype = DTYPES[dtype_name]
    layer = make_layer(7, 5, 5, 3, dtype=dtype)
    rng = np.random.default_rng(4)
    x = to_t(rng.uniform(-1.6, 1.6, size=(2, 3, 7)), dtype)
    y = layer(x)
    assert y.shape == (2, 3, 5)
    ref, scale = oracle_layer(layer, x.to(torch.float64).numpy())
    assert_close_scaled(y.detach().numpy(), ref, scale, FWD_RTOL[dtype_name], "leading dims")
    torch.testing.assert_close(layer(x[1, 2]), y[1, 2], rtol=0, atol=FWD_RTOL[dtype_name] * scale)


def test_double_converts_the_whole_layer():
    layer = make_layer(4, 3, 5, 3, dtype=torch.float32).double()
    assert layer.grid.dtype == torch.float64
    x = torch.linspace(-1.3, 1.3, 12, dtype=torch.float64).reshape(3, 4)
    ref, scale = oracle_layer(layer, x.numpy())
    assert_close_scaled(layer(x).detach().numpy(), ref, scale, 1e-12, ".double()")


@pytest.mark.parametrize("G,k", [(64, 3), (2, 10), (1, 7), (40, 1)])
def test_forward_fine_grids_and_high_orders(G, k):
    layer = make_layer(5, 4, G, k, seed=G + k)
    rng = np.random.default_rng(G * k)
    grid = layer_np(layer)[0]
    x = np.concatenate([sample_x(kind, 30, grid, k, rng) for kind in ("inside", "outside", "knots")])
    ref, scale = oracle_layer(layer, x)
    assert_close_scaled(layer(to_t(x, torch.float64)).detach().numpy(), ref, scale, 1e-12, "fine/high order")


def test_forward_rejects_invalid_knots():
    for bad in (5.0, math.nan, math.inf):
        layer = make_layer(3, 2, 5, 3)
        with torch.no_grad():
            layer.grid[1, 4] = bad  # decreasing, NaN or inf
        with pytest.raises(ValueError, match="knots"):
            layer(torch.zeros(2, 3, dtype=torch.float64))


def test_non_contiguous_inputs():
    layer = make_layer(7, 5, 5, 3)
    base = torch.randn(7, 40, dtype=torch.float64) * 1.5
    for x in (base.T, torch.randn(40, 14, dtype=torch.float64)[:, ::2], base.T.reshape(5, 8, 7)[:, ::2]):
        assert not x.is_contiguous()
        ref, scale = oracle_layer(layer, x.numpy())
        assert_close_scaled(layer(x).detach().numpy(), ref, scale, 1e-12, "non-contiguous")


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_non_finite_inputs_stay_in_their_rows(dtype_name):
    dtype = DTYPES[dtype_name]
    layer = make_layer(3, 2, 5, 3, dtype=dtype)
    nan, inf = math.nan, math.inf
    x = torch.tensor([[0.1, 0.2, 0.3], [nan, 0.0, 0.0], [inf, 0.0, 0.0], [-inf, 0.5, 0.0], [0.5, -0.5, 0.2],
                      [0.0, nan, -inf]], dtype=dtype, requires_grad=True)
    y = layer(x)
    finite = [0, 4]
    assert torch.isnan(y[1]).all()
    ref, scale = oracle_layer(layer, x.detach()[finite].double().numpy())
    assert_close_scaled(y.detach()[finite].double().numpy(), ref, scale, FWD_RTOL[dtype_name], "finite rows")
    y[finite].sum().backward()
    assert torch.isfinite(x.grad[finite]).all()
    x2 = x.detach()[finite].clone().requires_grad_(True)
    layer(x2).sum().backward()
    torch.testing.assert_close(x.grad[finite], x2.grad, rtol=0, atol=1e-12 if dtype_name == "float64" else 1e-5)


def _grad_scales(x, grid, bw, sw, sc, k, g, act=silu_np, act_grad=silu_grad_np):
    """Largest entry of each gradient computed with absolute values (no cancellation)."""
    basis, dbasis = oracle_basis(x, grid, k), np.abs(oracle_basis_derivative(x, grid, k))
    scaler = np.abs(np.ones(bw.shape) if sc is None else sc)
    g, bw, sw = np.abs(g), np.abs(bw), np.abs(sw)
    gx = np.abs(act_grad(x)) * (g @ bw) + np.einsum("bo,bic,oic->bi", g, dbasis, sw * scaler[..., None])
    gb = np.einsum("bo,bic->oic", g, basis)
    return [float(v.max()) for v in (gx, g.T @ np.abs(act(x)), gb * scaler[..., None], (gb * sw).sum(-1))]


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_large_batch_forward_and_backward(dtype_name):
    # Big enough for the multi-threaded paths of the native kernels.
    dtype = DTYPES[dtype_name]
    n_in, n_out, G, k, batch = 64, 48, 5, 3, 1536
    layer = make_layer(n_in, n_out, G, k, dtype=dtype, seed=4)
    rng = np.random.default_rng(17)
    x_np = rng.uniform(-2.5, 2.5, size=(batch, n_in))
    x = to_t(x_np, dtype).requires_grad_(True)
    x_np = x.detach().double().numpy()
    y = layer(x)
    ref, scale = oracle_layer(layer, x_np)
    assert_close_scaled(y.detach().double().numpy(), ref, scale, FWD_RTOL[dtype_name], "large forward")
    g = rng.normal(size=(batch, n_out))
    y.backward(to_t(g, dtype))
    g = to_t(g, dtype).double().numpy()
    params = layer_np(layer)
    refs = oracle_grads(x_np, *params, k, g)
    scales = _grad_scales(x_np, *params, k, g)
    got = (x.grad, layer.base_weight.grad, layer.spline_weight.grad, layer.spline_scaler.grad)
    rtol = 1e-5 if dtype_name == "float32" else 1e-12
    for name, a, r, sc in zip(("x", "base_weight", "spline_weight", "spline_scaler"), got, refs, scales):
        assert_close_scaled(a.double().numpy(), r, sc, rtol, f"large grad {name}")


def test_backward_with_frozen_parameters_or_constant_input():
    layer = make_layer(4, 3, 5, 3)
    rng = np.random.default_rng(3)
    x_np = rng.uniform(-1.5, 1.5, size=(10, 4))
    g = rng.normal(size=(10, 3))
    refs = oracle_grads(x_np, *layer_np(layer), 3, g)
    for p in layer.parameters():
        p.requires_grad_(False)
    x = to_t(x_np, torch.float64).requires_grad_(True)
    layer(x).backward(to_t(g, torch.float64))
    assert_grad_close(x.grad, refs[0], 1e-11)
    assert all(p.grad is None for p in layer.parameters())
    for p in layer.parameters():
        p.requires_grad_(True)
    layer.spline_scaler.requires_grad_(False)
    layer(to_t(x_np, torch.float64)).backward(to_t(g, torch.float64))  # x without grad
    assert_grad_close(layer.spline_weight.grad, refs[2], 1e-11)
    assert_grad_close(layer.base_weight.grad, refs[1], 1e-11)
    assert layer.spline_scaler.grad is None


def test_torch_compile_has_no_graph_breaks():
    # aot_eager traces the custom ops' fake kernels and autograd formulas without inductor's
    # C++ build (which tests torch, not kancore, and costs ~20 s).
    torch.manual_seed(0)
    model = torch.nn.Sequential(KANLinear(4, 8), KANLinear(8, 2, base_activation=torch.nn.GELU))
    assert_compiles_without_breaks(model, torch.randn(16, 4), backend="aot_eager")


# --------------------------------------------------------------------------------------------
# 2. Gradients.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["inside", "outside"])
@pytest.mark.parametrize("G,k", [(1, 1), (5, 3), (3, 5)])
@pytest.mark.parametrize("n_in,n_out", [(3, 5), (17, 33)])
def test_gradients_match_oracle(n_in, n_out, G, k, kind):
    layer = make_layer(n_in, n_out, G, k, seed=G + k)
    rng = np.random.default_rng(11)
    grid, bw, sw, sc = layer_np(layer)
    x_np = sample_x(kind, 23, grid, k, rng)
    g = rng.normal(size=(23, n_out))
    x = to_t(x_np, torch.float64).requires_grad_(True)
    layer(x).backward(to_t(g, torch.float64))
    ref = oracle_grads(x_np, grid, bw, sw, sc, k, g)
    got = (x.grad, layer.base_weight.grad, layer.spline_weight.grad, layer.spline_scaler.grad)
    for name, a, r in zip(("x", "base_weight", "spline_weight", "spline_scaler"), got, ref):
        scale = max(np.abs(r).max(), 1.0)
        np.testing.assert_allclose(a.numpy(), r, rtol=0, atol=1e-11 * scale, err_msg=name)


@pytest.mark.parametrize(
    "G,k,kwargs",
    [(5, 3, {}), (2, 1, {}), (3, 2, dict(enable_standalone_scale_spline=False, base_activation=torch.nn.GELU))],
)
def test_gradcheck_float64(G, k, kwargs):
    layer = make_layer(3, 4, G, k, **kwargs)
    grid = layer_np(layer)[0]
    rng = np.random.default_rng(5)
    x = rng.uniform(grid[:, 0] - 0.3, grid[:, -1] + 0.3, size=(6, 3))
    # Move points off knots (k = 1 is not differentiable there).
    step = grid[0, 1] - grid[0, 0]
    near = (np.abs(x[:, :, None] - grid[None]) < 0.02 * step).any(-1)
    x = np.where(near, x + 0.05 * step, x)
    xt = to_t(x, torch.float64).requires_grad_(True)
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters())

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(fn, (xt, *params), eps=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# 3. Non-uniform and repeated knots.
# --------------------------------------------------------------------------------------------
def _random_knots(rng, n_in, G, k, lo=-2.0, hi=2.0):
    return np.sort(rng.uniform(lo, hi, size=(n_in, G + 2 * k + 1)), axis=1)


def _set_grid(layer, knots):
    with torch.no_grad():
        layer.grid.copy_(to_t(knots, layer.grid.dtype))


@pytest.mark.parametrize("G,k", [(5, 3), (4, 1), (3, 2), (6, 5)])
def test_non_uniform_knots_match_oracle(G, k):
    layer = make_layer(5, 4, G, k, seed=3)
    rng = np.random.default_rng(G * 10 + k)
    knots = _random_knots(rng, 5, G, k)
    _set_grid(layer, knots)
    x = np.concatenate([sample_x("outside", 40, knots, k, rng), sample_x("knots", 20, knots, k, rng)])
    xt = to_t(x, torch.float64)
    ref, scale = oracle_layer(layer, x)
    assert_close_scaled(layer(xt).detach().numpy(), ref, scale, 1e-12, "non-uniform forward")
    np.testing.assert_allclose(layer.b_splines(xt).detach().numpy(), oracle_basis(x, knots, k), rtol=0,
                               atol=1e-12)
    # Gradients on the non-uniform grid (points off the knots).
    xg = sample_x("outside", 15, knots, k, rng)
    g = rng.normal(size=(15, 4))
    x_req = to_t(xg, torch.float64).requires_grad_(True)
    layer(x_req).backward(to_t(g, torch.float64))
    ref_gx = oracle_grads(xg, *layer_np(layer), k, g)[0]
    assert_grad_close(x_req.grad, ref_gx, 1e-10)


def _repeated_knots(rng, G=5, k=3):
    knots = _random_knots(rng, 5, G, k)
    knots[0, 5] = knots[0, 4]                 # a double knot inside
    knots[1, 4:7] = knots[1, 4]               # a triple knot (multiplicity k: still continuous)
    knots[2, 3:7] = knots[2, 3]               # multiplicity k+1: a jump
    knots[3, :3] = knots[3, 0]                # repeated at both ends
    knots[3, -3:] = knots[3, -1]
    knots[4, :] = np.sort(np.round(knots[4] * 2) / 2)  # many coincident knots
    return knots


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
def test_repeated_knots_are_finite_and_match_oracle(dtype_name):
    dtype = DTYPES[dtype_name]
    G, k = 5, 3
    rng = np.random.default_rng(21)
    knots = _repeated_knots(rng, G, k)
    layer = make_layer(5, 3, G, k, dtype=dtype)
    _set_grid(layer, knots)
    knots = layer_np(layer)[0]  # as stored (float32 rounding)
    x = np.concatenate([sample_x("outside", 40, knots, k, rng), sample_x("knots", 40, knots, k, rng)])
    xt = to_t(x, dtype)
    y = layer(xt).detach()
    assert torch.isfinite(y).all()
    ref, scale = oracle_layer(layer, xt.to(torch.float64).numpy())
    assert_close_scaled(y.numpy(), ref, scale, FWD_RTOL[dtype_name], "repeated knots")
    basis = layer.b_splines(xt).detach().to(torch.float64).numpy()
    assert np.isfinite(basis).all()
    np.testing.assert_allclose(basis, oracle_basis(xt.to(torch.float64).numpy(), knots, k), rtol=0,
                               atol=1e-6 if dtype_name == "float32" else 1e-12)
    # Backward is finite too, and matches the oracle off the knots.
    xg = sample_x("outside", 20, knots, k, rng)
    xr = to_t(xg, dtype).requires_grad_(True)
    g = rng.normal(size=(20, 3))
    layer(xr).backward(to_t(g, dtype))
    for p in (xr, *layer.parameters()):
        assert torch.isfinite(p.grad).all()
    if dtype_name == "float64":
        ref_gx = oracle_grads(xg, *layer_np(layer), k, g)[0]
        assert_grad_close(xr.grad, ref_gx, 1e-9)


# --------------------------------------------------------------------------------------------
# 4. state_dict in efficient-kan's naming.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("standalone", [True, False])
def test_load_hand_built_efficient_kan_state_dict(standalone):
    G, k, n_in, n_out = 4, 2, 6, 3
    rng = np.random.default_rng(8)
    sd = {
        "grid": torch.tensor(_random_knots(rng, n_in, G, k)),
        "base_weight": torch.tensor(rng.normal(size=(n_out, n_in))),
        "spline_weight": torch.tensor(rng.normal(size=(n_out, n_in, G + k))),
    }
    if standalone:
        sd["spline_scaler"] = torch.tensor(rng.uniform(0.5, 3, size=(n_out, n_in)))
    layer = KANLinear(n_in, n_out, grid_size=G, spline_order=k, enable_standalone_scale_spline=standalone,
                      dtype=torch.float64)
    layer.load_state_dict(sd, strict=True)
    x = rng.uniform(-2.5, 2.5, size=(30, n_in))
    ref, scale = oracle_forward(x, *(sd[n].numpy() if n in sd else None
                                     for n in ("grid", "base_weight", "spline_weight", "spline_scaler")), k)
    assert_close_scaled(layer(to_t(x, torch.float64)).detach().numpy(), ref, scale, 1e-12, "loaded")
    # And back out with the same names and values.
    out = layer.state_dict()
    assert set(out) == set(sd)
    for name in sd:
        torch.testing.assert_close(out[name], sd[name], rtol=0, atol=0)
    # A float32 layer loads the float64 dict too (load_state_dict copies with a cast).
    layer32 = KANLinear(n_in, n_out, grid_size=G, spline_order=k, enable_standalone_scale_spline=standalone)
    layer32.load_state_dict(sd)
    assert_close_scaled(layer32(to_t(x, torch.float32)).detach().numpy(), ref, scale, 1e-5, "loaded f32")


def test_kan_structure_state_dict_and_forward():
    torch.manual_seed(0)
    model = KAN([3, 5, 2], grid_size=4, spline_order=2, grid_range=[-2, 2])
    assert len(model.layers) == 2 and isinstance(model.layers, torch.nn.ModuleList)
    assert all(isinstance(m, KANLinear) for m in model.layers)
    assert (model.layers[0].in_features, model.layers[0].out_features) == (3, 5)
    assert (model.layers[1].in_features, model.layers[1].out_features) == (5, 2)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "layers.0.grid": (3, 9), "layers.0.base_weight": (5, 3), "layers.0.spline_weight": (5, 3, 6),
        "layers.0.spline_scaler": (5, 3),
        "layers.1.grid": (5, 9), "layers.1.base_weight": (2, 5), "layers.1.spline_weight": (2, 5, 6),
        "layers.1.spline_scaler": (2, 5),
    }
    np.testing.assert_allclose(model.layers[1].grid[0].numpy(), uniform_knots(4, 2, -2.0, 2.0), atol=1e-6)
    for layer in model.layers:
        with torch.no_grad():
            layer.spline_weight.normal_()
    x = torch.randn(9, 3, dtype=torch.float32) * 1.5
    y = model(x)
    assert y.shape == (9, 2)
    h, s0 = oracle_layer(model.layers[0], x.double().numpy())
    ref, s1 = oracle_layer(model.layers[1], h)
    # float32 error of layer 0 propagates through layer 1: bound it by the first layer's scale too.
    tol = 1e-5 * s1 * (1 + s0)
    assert np.abs(y.detach().double().numpy() - ref).max() <= tol


def test_kan_forward_with_update_grid():
    torch.manual_seed(1)
    model = KAN([4, 3, 2], grid_size=5, spline_order=3)
    x = torch.rand(64, 4) * 1.2 - 0.7
    grids = [layer.grid.clone() for layer in model.layers]
    y = model(x, update_grid=True)
    assert y.shape == (64, 2) and torch.isfinite(y).all()
    for old, layer in zip(grids, model.layers):
        assert not torch.equal(old, layer.grid)
        assert all(torch.isfinite(t).all() for t in layer.state_dict().values())
    # The output returned is the one of the updated model.
    torch.testing.assert_close(model(x), y, rtol=0, atol=1e-6)
    # Layer 0's new core interval spans the data of feature 0 (efficient-kan: min - eps*margin).
    k, eps, margin = 3, 0.02, 0.01
    np.testing.assert_allclose(model.layers[0].grid[:, k].numpy(), x.min(0).values.numpy() - eps * margin,
                               rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# 5. No standalone scaler; other base activations.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act_name", ["SiLU", "Identity", "GELU"])
@pytest.mark.parametrize("standalone", [True, False])
def test_activation_and_scaler_options(act_name, standalone):
    act_cls, act_np, act_grad_np = ACTIVATIONS[act_name]
    layer = make_layer(6, 4, 5, 3, base_activation=act_cls, enable_standalone_scale_spline=standalone)
    assert (getattr(layer, "spline_scaler", None) is not None) == standalone
    rng = np.random.default_rng(2)
    x = rng.uniform(-3, 3, size=(25, 6))
    xt = to_t(x, torch.float64).requires_grad_(True)
    y = layer(xt)
    ref, scale = oracle_layer(layer, x, act_np)
    assert_close_scaled(y.detach().numpy(), ref, scale, 1e-12, act_name)
    g = rng.normal(size=(25, 4))
    y.backward(to_t(g, torch.float64))
    grid, bw, sw, sc = layer_np(layer)
    gx, gbw, gsw, gsc = oracle_grads(x, grid, bw, sw, sc, 3, g, act_np, act_grad_np)
    assert_grad_close(xt.grad, gx, 1e-10)
    assert_grad_close(layer.base_weight.grad, gbw, 1e-10)
    assert_grad_close(layer.spline_weight.grad, gsw, 1e-10)
    if standalone:
        assert_grad_close(layer.spline_scaler.grad, gsc, 1e-10)


# --------------------------------------------------------------------------------------------
# 6. update_grid.
# --------------------------------------------------------------------------------------------
def _polynomial_layer(n_in, n_out, G, k, dtype, seed, **kwargs):
    """A layer whose spline part on each edge is a random polynomial of degree k on the core
    interval (exactly representable), with spline_scaler in [0.5, 3]. Returns (layer, poly)."""
    rng = np.random.default_rng(seed)
    layer = make_layer(n_in, n_out, G, k, dtype=torch.float64, seed=seed, **kwargs)
    grid = layer_np(layer)[0]
    coeffs = rng.normal(size=(n_out, n_in, k + 1))  # poly_oi(x) = sum_d coeffs[o,i,d] x^d

    def poly(x):  # x (batch, in) -> (batch, out, in)
        powers = np.stack([x**d for d in range(k + 1)], -1)  # (batch, in, k+1)
        return np.einsum("bid,oid->boi", powers, coeffs)

    xs = rng.uniform(grid[:, k], grid[:, -k - 1], size=(400, n_in))
    basis = oracle_basis(xs, grid, k)
    values = poly(xs)
    spline_coef = np.empty((n_out, n_in, G + k))
    for i in range(n_in):
        sol, *_ = np.linalg.lstsq(basis[:, i, :], values[:, :, i], rcond=None)
        spline_coef[:, i, :] = sol.T
    scaler = rng.uniform(0.5, 3.0, size=(n_out, n_in))
    with torch.no_grad():
        layer.spline_scaler.copy_(to_t(scaler, torch.float64))
        layer.spline_weight.copy_(to_t(spline_coef / scaler[..., None], torch.float64))
    # Sanity: the layer's spline part is the polynomial on the core interval.
    _, bw, _, _ = layer_np(layer)
    y = layer(to_t(xs, torch.float64)).detach().numpy()
    expect = silu_np(xs) @ bw.T + values.sum(-1)
    assert np.abs(y - expect).max() <= 1e-9 * np.abs(expect).max()
    return layer.to(dtype), poly


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("G,k", [(5, 3), (8, 3), (3, 2), (10, 1)])
def test_update_grid_preserves_the_function(G, k, dtype_name):
    dtype = DTYPES[dtype_name]
    n_in, n_out = 5, 4
    layer, _ = _polynomial_layer(n_in, n_out, G, k, dtype, seed=G * 10 + k)
    rng = np.random.default_rng(99)
    lo = rng.uniform(-0.95, -0.3, size=n_in)
    hi = rng.uniform(0.2, 0.95, size=n_in)
    x = to_t(rng.uniform(lo, hi, size=(256, n_in)), dtype)
    # Points between the samples, not used for the fit (inside [min, max] of each feature, where
    # the new core interval reproduces polynomials of degree k exactly).
    x64 = x.double().numpy()
    x_between = to_t(rng.uniform(x64.min(0), x64.max(0), size=(100, n_in)), dtype)
    scaler_before = layer.spline_scaler.detach().clone()
    old_grid = layer.grid.detach().clone()
    with torch.no_grad():
        before, before_between = layer(x), layer(x_between)
    layer.update_grid(x)
    with torch.no_grad():
        after, after_between = layer(x), layer(x_between)
    change = rel_change(before.double().numpy(), after.double().numpy())
    change_between = rel_change(before_between.double().numpy(), after_between.double().numpy())
    print(f"update_grid G={G} k={k} {dtype_name}: max relative change {change:.3e} on the samples, "
          f"{change_between:.3e} between them")
    assert change <= 1e-4
    assert change_between <= 1e-4
    # The grid did move (the check above is not vacuous): efficient-kan's core ends are
    # min - grid_eps*margin and max + grid_eps*margin of each feature.
    assert not torch.equal(old_grid, layer.grid)
    xmin, xmax = x.double().min(0).values.numpy(), x.double().max(0).values.numpy()
    tol = 1e-6 if dtype_name == "float32" else 1e-12
    np.testing.assert_allclose(layer.grid[:, k].double().numpy(), xmin - 0.02 * 0.01, rtol=0, atol=tol)
    np.testing.assert_allclose(layer.grid[:, G + k].double().numpy(), xmax + 0.02 * 0.01, rtol=0, atol=tol)
    assert layer.grid.shape == old_grid.shape and layer.spline_weight.shape == (n_out, n_in, G + k)
    # Parameters keep their identity (an optimizer holding them keeps working) and stay finite.
    assert isinstance(layer.spline_weight, torch.nn.Parameter)
    assert all(torch.isfinite(t).all() for t in layer.state_dict().values())
    assert layer.spline_scaler.shape == scaler_before.shape


def test_update_grid_knots_follow_efficient_kan_formula():
    # batch = G*m + 1 makes the G+1 evenly spaced order statistics unambiguous (indices j*m).
    G, k, n_in, m = 5, 3, 4, 20
    batch = G * m + 1
    layer = make_layer(n_in, 2, G, k)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(batch, n_in)) * np.array([0.3, 1.0, 2.0, 0.05]) + np.array([0.0, 0.5, -1.0, 3.0])
    margin, eps = 0.05, 0.02
    layer.update_grid(to_t(x, torch.float64), margin=margin)
    xs = np.sort(x, axis=0)
    adaptive = xs[np.arange(G + 1) * m]                                    # (G+1, in)
    step = (xs[-1] - xs[0] + 2 * margin) / G
    uniform = xs[0] - margin + np.arange(G + 1)[:, None] * step
    core = eps * uniform + (1 - eps) * adaptive
    expected = np.concatenate([core[:1] - step * np.arange(k, 0, -1)[:, None], core,
                               core[-1:] + step * np.arange(1, k + 1)[:, None]]).T
    np.testing.assert_allclose(layer.grid.numpy(), expected, rtol=0, atol=1e-12)


def _check_finite_after_update(layer, x, clean_rows, expect_preserved):
    before = layer(x[clean_rows]).detach().double().numpy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a warning about the data is an acceptable report
            layer.update_grid(x)
    except ValueError as exc:  # a clear refusal is acceptable ...
        assert str(exc)
        raised = True
    else:
        raised = False
    for name, t in layer.state_dict().items():  # ... but never NaN parameters
        assert torch.isfinite(t).all(), name
    assert (layer.grid[:, 1:] >= layer.grid[:, :-1]).all()
    after = layer(x[clean_rows]).detach().double().numpy()
    assert np.isfinite(after).all()
    change = rel_change(before, after)
    if expect_preserved and not raised:
        assert change <= 1e-3, change
    return change, raised


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("case", ["constant_feature", "repeated_values", "repeated_values_eps0", "batch_of_2",
                                  "nan_rows"])
def test_update_grid_degenerate_data(case, dtype_name):
    dtype = DTYPES[dtype_name]
    G, k, n_in = 5, 3, 3
    rng = np.random.default_rng(7)
    # Polynomial edges: a refit on the new knots is exact wherever the data allow one.
    layer, _ = _polynomial_layer(n_in, 2, G, k, dtype, seed=7, grid_eps=0.0 if case.endswith("eps0") else 0.02)
    x = rng.uniform(-0.8, 0.8, size=(60, n_in))
    clean = np.ones(len(x), dtype=bool)
    if case == "constant_feature":
        x[:, 1] = 0.3
    elif case.startswith("repeated_values"):
        x = rng.choice(np.array([-0.5, 0.125, 0.625]), size=(60, n_in))
    elif case == "batch_of_2":
        x = x[:2]
        clean = clean[:2]
    elif case == "nan_rows":
        x[[3, 10, 11], :] = np.nan
        x[20, 1] = np.nan
        clean[[3, 10, 11, 20]] = False
    change, raised = _check_finite_after_update(layer, to_t(x, dtype), torch.tensor(clean),
                                                expect_preserved=case != "nan_rows")
    print(f"update_grid {case} {dtype_name}: relative change {change:.3e}, raised={raised}")


def test_update_grid_rejects_wrong_shapes():
    layer = KANLinear(3, 2)
    with pytest.raises(ValueError):
        layer.update_grid(torch.rand(10, 4))


# --------------------------------------------------------------------------------------------
# 7. refine.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("G,k", [(5, 3), (4, 1), (3, 2)])
def test_refine_doubling_is_exact(G, k):
    layer = make_layer(4, 3, G, k, seed=5)
    with torch.no_grad():
        layer.spline_scaler.uniform_(0.5, 3.0)
    rng = np.random.default_rng(12)
    x = to_t(rng.uniform(-1, 1, size=(300, 4)), torch.float64)
    before = layer(x).detach().numpy()
    layer.refine(2 * G)
    after = layer(x).detach().numpy()
    change = rel_change(before, after)
    print(f"refine {G}->{2 * G} k={k}: max relative change {change:.3e}")
    assert change <= 1e-6
    assert layer.grid.shape == (4, 2 * G + 2 * k + 1)
    assert layer.spline_weight.shape == (3, 4, 2 * G + k)
    assert layer.spline_scaler.shape == (3, 4)
    assert layer.grid_size == 2 * G
    np.testing.assert_allclose(layer.grid.numpy(), np.tile(refined_knots(G, 2 * G, k, -1.0, 1.0), (4, 1)),
                               rtol=0, atol=1e-12)
    # Still a trainable layer.
    assert isinstance(layer.spline_weight, torch.nn.Parameter)
    assert {n for n, _ in layer.named_parameters()} == {"base_weight", "spline_weight", "spline_scaler"}
    layer(x).sum().backward()
    assert layer.spline_weight.grad.shape == (3, 4, 2 * G + k)


def test_refine_to_a_non_multiple_is_close():
    G, k, new = 5, 3, 7
    layer = make_layer(4, 3, G, k, seed=6)
    grid = layer_np(layer)[0]
    greville = np.stack([grid[:, j + 1:j + k + 1].mean(1) for j in range(G + k)], -1)  # (in, G+k)
    rng = np.random.default_rng(13)
    freq = rng.uniform(0.5, 2.0, size=(3, 4, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(3, 4, 1))
    with torch.no_grad():
        layer.base_weight.zero_()  # the spline part only
        layer.spline_weight.copy_(to_t(np.sin(freq * greville[None] + phase), torch.float64))
        layer.spline_scaler.uniform_(0.5, 3.0)
    x = to_t(rng.uniform(-1, 1, size=(300, 4)), torch.float64)
    before = layer(x).detach().numpy()
    layer.refine(new)
    after = layer(x).detach().numpy()
    change = rel_change(before, after)
    print(f"refine {G}->{new} k={k}: max relative change {change:.3e}")
    assert 0 < change < 5e-2  # not exact (spaces not nested) but close
    assert layer.grid.shape == (4, new + 2 * k + 1)
    assert layer.spline_weight.shape == (3, 4, new + k)
    np.testing.assert_allclose(layer.grid.numpy(), np.tile(refined_knots(G, new, k, -1.0, 1.0), (4, 1)),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("new", [10, 15, 7])
def test_refine_keeps_the_function_outside_the_grid_range(new):
    # The example: refine(10) used to change outputs beyond [-1, 1] by up to 0.35,
    # because the extension knots moved in to the new spacing and the support shrank.
    torch.manual_seed(0)
    layer = KANLinear(1, 1, grid_size=5, spline_order=3, dtype=torch.float64)
    with torch.no_grad():
        layer.spline_weight.normal_()
    x = torch.linspace(-2.5, 2.5, 401, dtype=torch.float64).unsqueeze(1)  # support [-2.2, 2.2] and beyond
    with torch.no_grad():
        y0 = layer(x).clone()
        layer.refine(new)
        change = float((layer(x) - y0).abs().max() / y0.abs().max())
    print(f"refine 5 -> {new}: max change on [-2.5, 2.5] / output scale {change:.2e}")
    assert change <= (1e-12 if new % 5 == 0 else 5e-2)


def test_refine_after_update_grid_is_exact():
    # On a non-uniform grid, doubling keeps every old core knot (midpoints inserted): exact.
    G, k = 5, 3
    layer = make_layer(4, 3, G, k, seed=8)
    rng = np.random.default_rng(14)
    layer.update_grid(to_t(rng.normal(size=(200, 4)) * 0.5, torch.float64))
    old = layer_np(layer)[0]
    x = to_t(rng.uniform(old[:, k], old[:, G + k], size=(300, 4)), torch.float64)
    before = layer(x).detach().numpy()
    layer.refine(2 * G)
    change = rel_change(before, layer(x).detach().numpy())
    print(f"refine {G}->{2 * G} after update_grid: max relative change {change:.3e}")
    assert change <= 1e-6
    new = layer_np(layer)[0]
    np.testing.assert_allclose(new[:, k:2 * G + k + 1:2], old[:, k:G + k + 1], rtol=0, atol=1e-12)


def test_kan_refine():
    torch.manual_seed(2)
    model = KAN([3, 4, 2], grid_size=4, spline_order=3)
    x = torch.rand(50, 3) * 1.6 - 0.8
    before = model(x).detach().double().numpy()
    model.refine(8)
    assert all(layer.grid_size == 8 and layer.spline_weight.shape[-1] == 11 for layer in model.layers)
    assert rel_change(before, model(x).detach().double().numpy()) <= 1e-5


def test_refine_float32():
    layer = make_layer(6, 5, 4, 3, dtype=torch.float32, seed=2)
    x = torch.rand(200, 6) * 2 - 1
    before = layer(x).detach().double().numpy()
    layer.refine(8)
    assert layer.spline_weight.dtype == torch.float32 and layer.grid.dtype == torch.float32
    change = rel_change(before, layer(x).detach().double().numpy())
    assert change <= 1e-5, change


# --------------------------------------------------------------------------------------------
# 8. regularization_loss.
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,e", [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)])
@pytest.mark.parametrize("zero_rows", [False, True])
def test_regularization_loss_value_and_gradient(a, e, zero_rows):
    layer = make_layer(4, 3, 3, 2, seed=9)
    with torch.no_grad():
        if zero_rows:
            layer.spline_weight[1] = 0.0        # a whole output row of edges
            layer.spline_weight[0, 2] = 0.0     # one more edge
    sw = layer.spline_weight.detach().numpy().copy()
    loss = layer.regularization_loss(regularize_activation=a, regularize_entropy=e)
    assert loss.dim() == 0 and torch.isfinite(loss)
    np.testing.assert_allclose(loss.item(), oracle_reg_loss(sw, a, e), rtol=1e-12, atol=1e-14)
    loss.backward()
    grad = layer.spline_weight.grad.numpy()
    assert np.isfinite(grad).all()
    # Central differences of the oracle on the non-zero entries (|w| is not differentiable at 0).
    h = 1e-6
    fd = np.zeros_like(sw)
    for idx in np.ndindex(sw.shape):
        if sw[idx] == 0:
            continue
        plus, minus = sw.copy(), sw.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (oracle_reg_loss(plus, a, e) - oracle_reg_loss(minus, a, e)) / (2 * h)
    nz = sw != 0
    np.testing.assert_allclose(grad[nz], fd[nz], rtol=0, atol=1e-7)
    assert layer.base_weight.grad is None or torch.count_nonzero(layer.base_weight.grad) == 0


def test_regularization_loss_all_zero_is_finite():
    layer = make_layer(3, 2, 4, 3)
    with torch.no_grad():
        layer.spline_weight.zero_()
    loss = layer.regularization_loss()
    assert torch.isfinite(loss) and loss.item() >= 0
    loss.backward()
    assert torch.isfinite(layer.spline_weight.grad).all()


def test_regularization_loss_defaults_and_kan_sum():
    torch.manual_seed(3)
    model = KAN([3, 4, 2], grid_size=4, spline_order=3)
    for layer in model.layers:
        with torch.no_grad():
            layer.spline_weight.normal_()
    expect = sum(oracle_reg_loss(layer.spline_weight.detach().double().numpy(), 1.0, 1.0)
                 for layer in model.layers)
    np.testing.assert_allclose(model.regularization_loss().item(), expect, rtol=1e-5)
    expect2 = sum(oracle_reg_loss(layer.spline_weight.detach().double().numpy(), 0.3, 2.0)
                  for layer in model.layers)
    np.testing.assert_allclose(model.regularization_loss(0.3, 2.0).item(), expect2, rtol=1e-5)
    np.testing.assert_allclose(model.layers[0].regularization_loss().item(),
                               oracle_reg_loss(model.layers[0].spline_weight.detach().double().numpy(), 1, 1),
                               rtol=1e-5)


# --------------------------------------------------------------------------------------------
# 9. Bad inputs.
# --------------------------------------------------------------------------------------------
def test_wrong_last_dim_raises_value_error():
    layer = KANLinear(3, 2)
    with pytest.raises(ValueError):
        layer(torch.randn(4, 5))
    with pytest.raises(ValueError):
        layer(torch.randn(2, 4, 2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.int64, torch.int32])
def test_bad_dtype_raises_type_error(dtype):
    layer = KANLinear(3, 2)
    with pytest.raises(TypeError):
        layer(torch.ones(4, 3, dtype=dtype))


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_empty_batch(dtype_name):
    dtype = DTYPES[dtype_name]
    layer = make_layer(3, 2, 5, 3, dtype=dtype)
    x = torch.zeros(0, 3, dtype=dtype, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 2) and y.dtype == dtype
    y.sum().backward()
    assert x.grad.shape == (0, 3)
    grad = layer.spline_weight.grad
    assert grad is None or torch.count_nonzero(grad) == 0
    assert layer(torch.zeros(2, 0, 3, dtype=dtype)).shape == (2, 0, 2)
