"""pykan's sample-based (edge-scale) regulariser for both layer kinds.

Oracles: a float64 NumPy re-statement of the definition (it builds every edge output, which the
native code never does) with central finite differences for the gradients; a plain-torch
re-statement written the way pykan computes it (torch.std over materialised postacts, autograd);
torch.autograd.gradcheck; and, when the pykan package is installed, pykan's own MultKAN.reg.
"""
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KAN, KANLayer, KANLinear  # noqa: E402
from kancore import functional as KF  # noqa: E402

from conftest import reference_segments  # noqa: E402

LAMBS = dict(lamb_l1=0.7, lamb_entropy=1.3, lamb_coef=0.4, lamb_coefdiff=0.25)


# ---- float64 NumPy re-statement ------------------------------------------------------------------

def np_scale_loss(phi, x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff, coefs):
    """Loss and A from edge outputs phi (B, out, in), inputs x (B, in), coefficients (edges, Kc)."""
    A = phi.std(axis=0, ddof=1) / (x.std(axis=0, ddof=1) + 0.1)[None, :]
    p_row = A / (A.sum(axis=1, keepdims=True) + 1)
    p_col = A / (A.sum(axis=0, keepdims=True) + 1)
    e_row = -np.mean(np.sum(p_row * np.log2(p_row + 1e-4), axis=1))
    e_col = -np.mean(np.sum(p_col * np.log2(p_col + 1e-4), axis=0))
    # pykan 0.2.8 averages |coef| over the out axis of its (in, out, G+k) coef: sum / out.
    out = phi.shape[1]
    coef_l1 = np.sum(np.abs(coefs)) / out
    coef_diff = np.sum(np.abs(np.diff(coefs, axis=1))) / out
    loss = lamb_l1 * A.sum() + lamb_entropy * (e_row + e_col) + lamb_coef * coef_l1 + lamb_coefdiff * coef_diff
    return loss, A


def np_c0_phi(x, C, W):
    I, K, O = C.shape
    k, t = reference_segments(x, K, W, np.float64)
    i = np.arange(I)[None, :]
    lo, hi = C[i, k], C[i, k + 1]  # (B, in, out)
    return ((1 - t)[..., None] * lo + t[..., None] * hi).transpose(0, 2, 1)


def np_c0_loss(x, C, W, **lambs):
    coefs = C.transpose(0, 2, 1).reshape(-1, C.shape[1])  # edge (i, o) -> C[i, :, o]
    return np_scale_loss(np_c0_phi(x, C, W), x, coefs=coefs, **lambs)


def np_basis(x, t, k):
    """Cox-de Boor basis (n, len(t)-k-1) at x (n,) on knots t; a 0/0 term counts as 0."""
    x = x[:, None]
    B = ((x >= t[None, :-1]) & (x < t[None, 1:])).astype(np.float64)
    for p in range(1, k + 1):
        d1 = t[p:-1] - t[:-(p + 1)]
        d2 = t[p + 1:] - t[1:-p]
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(d1 > 0, (x - t[None, :-(p + 1)]) / np.where(d1 > 0, d1, 1), 0.0)
            right = np.where(d2 > 0, (t[None, p + 1:] - x) / np.where(d2 > 0, d2, 1), 0.0)
        B = left * B[:, :-1] + right * B[:, 1:]
    return B


def np_bspline_phi(x, grid, bw, sw, sc):
    O, I, C = sw.shape
    k = grid.shape[1] - 1 - C
    phi = np.empty((x.shape[0], O, I))
    for i in range(I):
        spl = np_basis(x[:, i], grid[i], k) @ sw[:, i, :].T  # (B, O)
        scale = sc[:, i] if sc is not None else 1.0
        base = bw[:, i] * (x[:, i] / (1 + np.exp(-x[:, i])))[:, None] if bw is not None else 0.0
        phi[:, :, i] = base + scale * spl
    return phi


def np_bspline_loss(x, grid, bw, sw, sc, **lambs):
    return np_scale_loss(np_bspline_phi(x, grid, bw, sw, sc), x, coefs=sw.reshape(-1, sw.shape[2]), **lambs)


def fd_grad(f, a, h=1e-6):
    """Central differences of the scalar f() wrt every entry of a (changed in place, restored)."""
    g = np.empty_like(a)
    for j in np.ndindex(a.shape):
        keep = a[j]
        a[j] = keep + h
        up = f()
        a[j] = keep - h
        dn = f()
        a[j] = keep
        g[j] = (up - dn) / (2 * h)
    return g


def assert_close(actual, expected, rtol, what):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= rtol * scale, f"{what}: max error {err:.3e} > {rtol:.1e} * {scale:.3g}"


# ---- NumPy entry points against the re-statement --------------------------------------------------

C0_SHAPES = [(2, 1, 1, 2, 4.0), (2, 3, 2, 5, 2.0), (9, 3, 4, 6, 4.0), (33, 2, 5, 12, 3.0)]


@pytest.mark.parametrize("B,I,O,K,W", C0_SHAPES)
def test_c0_numpy_matches_reference(B, I, O, K, W):
    rng = np.random.default_rng(B * 100 + K)
    x = rng.normal(scale=1.5, size=(B, I))  # some samples beyond ±W/2: the linear extension
    C = rng.normal(size=(I, K, O))
    res = KF.edge_scale_c0(x, C, W, grads=True, **LAMBS)
    ref, A = np_c0_loss(x, C, W, **LAMBS)
    assert math.isclose(res.loss, ref, rel_tol=1e-12, abs_tol=1e-12)
    assert_close(res.scales, A, 1e-12, "A")
    f = lambda: np_c0_loss(x, C, W, **LAMBS)[0]  # noqa: E731
    assert_close(res.grads["x"], fd_grad(f, x), 1e-7, "grad x")
    assert_close(res.grads["table"], fd_grad(f, C), 1e-7, "grad table")
    # Loss only: the same value, no gradients.
    plain = KF.edge_scale_c0(x, C, W, **LAMBS)
    assert plain.loss == res.loss and plain.grads is None


BS_CASES = [(2, 2, 3, 3, 1, True, True), (10, 3, 2, 5, 3, True, True), (12, 2, 4, 4, 2, False, True),
            (7, 3, 3, 5, 3, True, False), (25, 4, 2, 6, 3, False, False)]


@pytest.mark.parametrize("B,I,O,G,k,base,scaler", BS_CASES)
def test_bspline_numpy_matches_reference(B, I, O, G, k, base, scaler):
    rng = np.random.default_rng(B + 7 * k)
    x = rng.normal(scale=0.8, size=(B, I))  # a few outside the knots: the basis is 0 there
    h = 2.0 / G
    grid = np.tile(-1 + h * np.arange(-k, G + k + 1), (I, 1))
    bw = rng.normal(size=(O, I)) if base else None
    sw = rng.normal(size=(O, I, G + k))
    sc = rng.normal(size=(O, I)) if scaler else None
    res = KF.edge_scale_bspline(x, grid, bw, sw, sc, grads=True, **LAMBS)
    ref, A = np_bspline_loss(x, grid, bw, sw, sc, **LAMBS)
    assert math.isclose(res.loss, ref, rel_tol=1e-12, abs_tol=1e-12)
    assert_close(res.scales, A, 1e-12, "A")
    f = lambda: np_bspline_loss(x, grid, bw, sw, sc, **LAMBS)[0]  # noqa: E731
    assert_close(res.grads["x"], fd_grad(f, x), 1e-7, "grad x")
    assert_close(res.grads["spline_weight"], fd_grad(f, sw), 1e-7, "grad spline_weight")
    if base:
        assert_close(res.grads["base_weight"], fd_grad(f, bw), 1e-7, "grad base_weight")
    else:
        assert "base_weight" not in res.grads
    if scaler:
        assert_close(res.grads["spline_scaler"], fd_grad(f, sc), 1e-7, "grad spline_scaler")


def test_numpy_leading_dims_and_float32():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2))
    C = rng.normal(size=(2, 5, 3))
    flat = KF.edge_scale_c0(x.reshape(-1, 2), C, grads=True)
    nd = KF.edge_scale_c0(x, C, grads=True)
    assert nd.loss == flat.loss and nd.grads["x"].shape == x.shape
    np.testing.assert_array_equal(nd.grads["x"].reshape(-1, 2), flat.grads["x"])
    r32 = KF.edge_scale_c0(x.astype(np.float32), C.astype(np.float32), grads=True)
    assert r32.grads["table"].dtype == np.float32
    assert math.isclose(r32.loss, flat.loss, rel_tol=1e-5)
    np.testing.assert_allclose(r32.grads["table"], flat.grads["table"], rtol=1e-4, atol=1e-5)


# ---- torch layers: against a plain-torch (pykan-style) re-statement, autograd and gradcheck ------

def torch_scale_loss(phi, x, coefs, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff):
    """pykan's formula, as MultKAN.reg writes it, on materialised postacts phi (B, out, in) and
    coefficients (in, out, Kc); differentiable by autograd."""
    A = torch.std(phi, dim=0) / (torch.std(x, dim=0) + 0.1)[None, :]
    p_row = A / (A.sum(dim=1, keepdim=True) + 1)
    p_col = A / (A.sum(dim=0, keepdim=True) + 1)
    e_row = -torch.mean(torch.sum(p_row * torch.log2(p_row + 1e-4), dim=1))
    e_col = -torch.mean(torch.sum(p_col * torch.log2(p_col + 1e-4), dim=0))
    reg = lamb_l1 * A.sum() + lamb_entropy * (e_row + e_col)
    # coefs as pykan holds them, (in, out, Kc): the mean runs over the out axis (dim=1).
    reg = reg + lamb_coef * torch.sum(torch.mean(torch.abs(coefs), dim=1))
    return reg + lamb_coefdiff * torch.sum(torch.mean(torch.abs(torch.diff(coefs)), dim=1))


def torch_c0_phi(layer, x):
    """Every edge output (B, out, in) of a KANLayer, one single-input/single-output lookup each."""
    table = layer._table()
    I, K, O = table.shape
    cols = []
    for i in range(I):
        onehot = torch.zeros(I, 1, dtype=x.dtype)
        onehot[i] = 1
        # phi_oi(x_i) = forward of the layer restricted to input i (the table's other rows zeroed).
        masked = table * onehot[:, :, None]
        y = kancore._ops.torch_ops().c0_forward(x, masked, float(layer.spline_width), "embedding_bag")
        cols.append(y)
    return torch.stack(cols, dim=2)


def torch_bspline_phi(layer, x):
    """Every edge output (B, out, in) of a KANLinear from its dense basis (autograd through x)."""
    G, k = layer.grid_size, layer.spline_order
    grid = layer.grid
    xe = x.unsqueeze(-1)
    B = ((xe >= grid[None, :, :-1]) & (xe < grid[None, :, 1:])).to(x.dtype)
    for p in range(1, k + 1):
        B = ((xe - grid[None, :, :-(p + 1)]) / (grid[None, :, p:-1] - grid[None, :, :-(p + 1)]) * B[:, :, :-1]
             + (grid[None, :, p + 1:] - xe) / (grid[None, :, p + 1:] - grid[None, :, 1:-p]) * B[:, :, 1:])
    spl = torch.einsum("bic,oic->boi", B, layer.spline_weight) * layer.spline_scaler[None]
    return layer.base_weight[None] * torch.nn.functional.silu(x)[:, None, :] + spl


@pytest.mark.parametrize("variant", ["B-spline", "DCT", "parallel_scan"])
def test_kan_layer_matches_torch_restatement(variant):
    torch.manual_seed(1)
    layer = KANLayer(3, 4, num_control_points=7, variant=variant, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = (torch.randn(2, 5, 3, dtype=torch.float64) * 1.5).requires_grad_()
    ours = layer.edge_scale_loss(x, **LAMBS)
    g_ours = torch.autograd.grad(ours, [x] + list(layer.parameters()))
    x2 = x.detach().reshape(-1, 3).requires_grad_()
    table = layer._table()
    ref = torch_scale_loss(torch_c0_phi(layer, x2), x2, table.permute(0, 2, 1), **LAMBS)
    g_ref = torch.autograd.grad(ref, [x2] + list(layer.parameters()))
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(g_ours[0].reshape(-1, 3), g_ref[0], rtol=1e-9, atol=1e-10)
    for a, b in zip(g_ours[1:], g_ref[1:]):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(layer.edge_scales(x).numpy(),
                               np_c0_loss(x2.detach().numpy(), table.detach().numpy(), 4.0, **LAMBS)[1],
                               rtol=1e-12)


def test_kan_stack_matches_torch_restatement():
    torch.manual_seed(2)
    model = KAN([3, 4, 2], grid_size=4, spline_order=3, dtype=torch.float64)
    x = (torch.rand(16, 3, dtype=torch.float64) * 2 - 1).requires_grad_()
    loss, y = model.edge_scale_loss(x, return_output=True, **LAMBS)
    assert torch.equal(y, model(x))
    params = list(model.parameters())
    g_ours = torch.autograd.grad(loss, [x] + params)
    ref, h = 0.0, x
    for layer in model.layers:
        ref = ref + torch_scale_loss(torch_bspline_phi(layer, h), h, layer.spline_weight.permute(1, 0, 2),
                                     **LAMBS)
        h = layer(h)
    g_ref = torch.autograd.grad(ref, [x] + params)
    assert torch.allclose(loss, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_ours, g_ref):  # gradients reach layer 0 through layer 1's input
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-10)
    assert torch.equal(model.edge_scale_loss(x, **LAMBS), loss)


def test_gradcheck_c0_and_bspline():
    torch.manual_seed(3)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    table = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    lambs = list(LAMBS.values())
    ops = kancore._ops.torch_edge_scale_ops()
    f = lambda x, t: ops.edge_scale_c0(x, t, 4.0, lambs, [True, True])[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, table), eps=1e-6, atol=1e-6)

    layer = KANLinear(3, 2, grid_size=4, spline_order=2, dtype=torch.float64)
    xb = (torch.rand(8, 3, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    params = [layer.base_weight, layer.spline_weight, layer.spline_scaler]
    g = lambda x, bw, sw, sc: ops.edge_scale_bspline(x, layer.grid, bw, sw, sc, lambs,  # noqa: E731
                                                     [True, True, True, True])[0]
    assert torch.autograd.gradcheck(g, (xb, *[p.detach().clone().requires_grad_() for p in params]),
                                    eps=1e-6, atol=1e-6)
    # And through the layer method (needs computed from requires_grad).
    assert torch.autograd.gradcheck(lambda x: layer.edge_scale_loss(x, **LAMBS), (xb,), eps=1e-6, atol=1e-6)


def test_float32_layer_close_to_float64():
    torch.manual_seed(4)
    l64 = KANLinear(4, 3, dtype=torch.float64)
    l32 = KANLinear(4, 3, dtype=torch.float32)
    l32.load_state_dict({k: v.float() for k, v in l64.state_dict().items()})
    x = torch.rand(50, 4, dtype=torch.float64) * 2 - 1
    a = l64.edge_scale_loss(x).detach()
    b = l32.edge_scale_loss(x.float()).detach()
    assert b.dtype == torch.float32 and math.isclose(a.item(), b.item(), rel_tol=1e-5)


def test_no_grad_and_frozen_parameters():
    layer = KANLayer(2, 3, dtype=torch.float64)
    x = torch.randn(10, 2, dtype=torch.float64)
    with torch.no_grad():
        v = layer.edge_scale_loss(x)
    assert v.grad_fn is None
    layer.kan_weight.requires_grad_(False)
    xr = x.clone().requires_grad_()
    layer.edge_scale_loss(xr).backward()
    assert xr.grad is not None and layer.kan_weight.grad is None


# ---- std = 0, NaN, errors --------------------------------------------------------------------------

def test_constant_inputs_and_zero_edges_have_finite_gradients():
    layer = KANLinear(3, 2, dtype=torch.float64)
    with torch.no_grad():
        layer.spline_weight[0, 2].zero_()   # edge (o=0, i=2): zero spline ...
        layer.base_weight[0, 2] = 0.0       # ... and zero base: phi = 0, s_phi = 0
    x = torch.rand(12, 3, dtype=torch.float64)
    x[:, 1] = 0.25                          # constant input: s_x = 0 and s_phi = 0 on its edges
    x.requires_grad_()
    loss = layer.edge_scale_loss(x, **LAMBS)
    grads = torch.autograd.grad(loss, [x] + list(layer.parameters()))
    loss = loss.detach()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.all(grads[0][:, 1] == 0)  # subgradient 0 through both stds
    A = layer.edge_scales(x)
    assert A[0, 2] == 0 and torch.all(A[:, 1] == 0)
    ref, A_ref = np_bspline_loss(x.detach().numpy(), layer.grid.numpy(), layer.base_weight.detach().numpy(),
                                 layer.spline_weight.detach().numpy(), layer.spline_scaler.detach().numpy(), **LAMBS)
    assert math.isclose(loss.item(), ref, rel_tol=1e-12)

    c0 = KANLayer(2, 2, init="zero", dtype=torch.float64)  # every edge identically 0
    xc = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    v = c0.edge_scale_loss(xc)
    v.backward()
    assert v.item() == 0.0 and torch.all(xc.grad == 0) and torch.all(c0.kan_weight.grad == 0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_gives_nan(bad):
    layer = KANLayer(2, 3, dtype=torch.float64)
    x = torch.randn(6, 2, dtype=torch.float64)
    x[2, 0] = bad
    x.requires_grad_()
    loss = layer.edge_scale_loss(x)
    loss.backward()
    assert torch.isnan(loss) and torch.isnan(x.grad).all() and torch.isnan(layer.kan_weight.grad).all()
    res = KF.edge_scale_bspline(x.detach().numpy(), np.tile(np.linspace(-2, 2, 8), (2, 1)), None,
                                np.ones((3, 2, 5)), None, grads=True)
    assert math.isnan(res.loss) and np.isnan(res.grads["spline_weight"]).all()


def test_errors():
    layer = KANLayer(2, 3)
    with pytest.raises(ValueError, match="at least 2 samples"):
        layer.edge_scale_loss(torch.randn(1, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        KANLinear(2, 3).edge_scale_loss(torch.randn(1, 1, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        KF.edge_scale_c0(np.zeros((1, 2)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        layer.edge_scale_loss(torch.randn(5, 3))
    with pytest.raises(ValueError, match="finite lamb_l1"):
        layer.edge_scale_loss(torch.randn(5, 2), lamb_l1=float("nan"))
    with pytest.raises(TypeError):
        KF.edge_scale_c0(np.zeros((4, 2), np.float32), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError):
        KF.edge_scale_bspline(np.zeros((4, 2)), np.zeros((2, 8)), None, np.zeros((3, 2, 7)))  # k = 0
    with pytest.raises(ValueError, match="non-decreasing"):
        KF.edge_scale_bspline(np.zeros((4, 2)), np.tile(np.linspace(1, -1, 8), (2, 1)), None, np.zeros((3, 2, 5)))
    with pytest.raises(NotImplementedError, match="SiLU"):
        KANLinear(2, 3, base_activation=torch.nn.GELU).edge_scale_loss(torch.randn(5, 2))
    ops = kancore._ops.torch_edge_scale_ops()
    with pytest.raises(ValueError):
        ops.edge_scale_c0(torch.randn(5, 2), torch.randn(3, 4, 3), 4.0, [1.0, 2.0, 0.0, 0.0], [False, False])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_is_not_yet_supported():
    layer = KANLayer(2, 3).cuda() if kancore.built_with_cuda() else None
    if layer is None:
        pytest.skip("kancore built without CUDA")
    with pytest.raises(NotImplementedError, match="not yet on CUDA"):
        layer.edge_scale_loss(torch.randn(5, 2, device="cuda"))


# ---- pykan itself (required in CI) -------------------------------------------------------------------------

def test_parity_with_pykan():
    """pykan's MultKAN.reg('edge_forward_spline_n', ...) on a KAN whose weights we copy into a
    kancore KAN stack (pykan's coef (in, out, G+k), scale_base and scale_sp (in, out) are
    spline_weight, base_weight and spline_scaler transposed). Skips without pykan, except in CI
    (KANCORE_REQUIRE_PEERS=1), where it must run."""
    if os.environ.get("KANCORE_REQUIRE_PEERS") == "1":
        import kan as pykan  # noqa: F401  (a missing peer is a failure in CI)
    else:
        pykan = pytest.importorskip("kan")
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ref_model = pykan.MultKAN(width=[3, 4, 2], grid=5, k=3, seed=0, auto_save=False,
                                  symbolic_enabled=False, noise_scale=0.5)
        x = torch.rand(40, 3) * 2 - 1
        ref_model(x)  # save_act=True stores the per-layer edge scales
        ref = ref_model.reg("edge_forward_spline_n", 0.7, 1.3, 0.4, 0.25).detach()
    finally:
        torch.set_default_dtype(prev)
    model = KAN([3, 4, 2], grid_size=5, spline_order=3, dtype=torch.float64)
    with torch.no_grad():
        for ours, theirs in zip(model.layers, ref_model.act_fun):
            ours.grid.copy_(theirs.grid)
            ours.spline_weight.copy_(theirs.coef.permute(1, 0, 2))
            ours.base_weight.copy_(theirs.scale_base.T)
            ours.spline_scaler.copy_((theirs.scale_sp * theirs.mask).T)
    ours = model.edge_scale_loss(x, **LAMBS).detach()
    assert math.isclose(ours.item(), ref.item(), rel_tol=1e-10)
