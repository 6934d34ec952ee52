"""The C0 layer's rounded precision modes ("tf32", "bf16"): the CPU oracle of the CUDA tensor-core
path against a float64 NumPy restatement with independently written rounding, its error against
the exact layer (the figures docs/precision.md quotes), the torch plumbing, how a layer picks its
mode, and on CUDA (skipped without a device) the tensor-core path against the CPU oracle."""
import types

import numpy as np
import pytest

import kancore
from kancore import functional

MODES = {"tf32": 10, "bf16": 7}  # mantissa bits kept


def round_oracle(v, mode):
    """v (float32) rounded to the nearest multiple of the format's spacing at its binade, ties to
    even (np.rint), in float64. Independent of the core's bit manipulation."""
    v = np.asarray(v, dtype=np.float32).astype(np.float64)
    out = v.copy()
    finite = np.isfinite(v) & (v != 0)
    _, e = np.frexp(v[finite])
    spacing = np.ldexp(1.0, np.maximum(e - 1, -126) - MODES[mode])
    out[finite] = np.rint(v[finite] / spacing) * spacing
    return out


def locate(x, K, W):
    u = ((x.astype(np.float32) + np.float32(W / 2)) * np.float32(K - 1)) / np.float32(W)
    k = np.clip(np.floor(u), 0, K - 2)
    return k.astype(np.int64), (u - k.astype(np.float32)).astype(np.float32)


def forward_oracle(x, table, W, mode):
    N, I = x.shape
    _, K, O = table.shape
    k, t = locate(x, K, W)
    w0, w1 = round_oracle(np.float32(1) - t, mode), round_oracle(t, mode)
    C = round_oracle(table, mode)
    y = np.zeros((N, O))
    mag = np.zeros((N, O))
    for i in range(I):
        a = w0[:, i, None] * C[i, k[:, i]]
        b = w1[:, i, None] * C[i, k[:, i] + 1]
        y += a + b
        mag += np.abs(a) + np.abs(b)
    return y, mag


def case(seed, N=96, I=7, O=11, K=16, W=4.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.7 * W, 0.7 * W, (N, I)).astype(np.float32)
    x[:4, 0] = (-W / 2 + np.arange(4) * W / (K - 1)).astype(np.float32)  # on control points
    table = rng.standard_normal((I, K, O)).astype(np.float32)
    return x, table, W


@pytest.mark.parametrize("mode", sorted(MODES))
def test_cpu_oracle_matches_the_float64_restatement(mode):
    x, table, W = case(1)
    want, mag = forward_oracle(x, table, W, mode)
    got = functional.c0_forward(x, table, W, precision=mode)
    assert got.dtype == np.float32
    # float32 sums of 2*in products: a few ulps of the sum of magnitudes
    assert np.all(np.abs(got - want) <= 4 * x.shape[1] * 6e-8 * mag + 1e-30)


@pytest.mark.parametrize("mode, bound", [("tf32", 2e-3), ("bf16", 1.5e-2)])
def test_error_against_the_exact_layer_is_the_formats_rounding(mode, bound):
    x, table, W = case(2, N=512, I=32, O=32, K=32)
    exact = functional.c0_forward(x.astype(np.float64), table.astype(np.float64), W)
    got = functional.c0_forward(x, table, W, precision=mode)
    err = np.abs(got - exact).max() / np.abs(exact).max()
    assert 0 < err <= bound


@pytest.mark.parametrize("mode", sorted(MODES))
def test_backward_rounds_the_table_gradient_and_keeps_the_input_gradient_exact(mode):
    x, table, W = case(3)
    g = np.random.default_rng(4).standard_normal((x.shape[0], table.shape[2])).astype(np.float32)
    gx_exact, gt_exact = functional.c0_backward(x, table, g, W)
    gx, gt = functional.c0_backward(x, table, g, W, precision=mode)
    # the exact input gradient (summed in another order than the fused exact backward)
    np.testing.assert_allclose(gx, gx_exact, rtol=1e-5, atol=1e-6 * np.abs(gx_exact).max())
    K = table.shape[1]
    k, t = locate(x, K, W)
    w0, w1 = round_oracle(np.float32(1) - t, mode), round_oracle(t, mode)
    gr = round_oracle(g, mode)
    want = np.zeros(table.shape)
    for i in range(x.shape[1]):
        np.add.at(want[i], k[:, i], w0[:, i, None] * gr)
        np.add.at(want[i], k[:, i] + 1, w1[:, i, None] * gr)
    np.testing.assert_allclose(gt, want, rtol=0, atol=4 * x.shape[0] * 6e-8 * np.abs(gr).max() + 1e-30)
    assert np.abs(gt - gt_exact).max() > 0  # the mode was not ignored


def test_float64_and_bad_modes():
    x, table, W = case(5)
    x64, t64 = x.astype(np.float64), table.astype(np.float64)
    np.testing.assert_array_equal(functional.c0_forward(x64, t64, W, precision="bf16"),
                                  functional.c0_forward(x64, t64, W))
    with pytest.raises(ValueError, match="precision"):
        functional.c0_forward(x, table, W, precision="fp8")


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_torch_op_runs_the_mode_with_gradients(mode):
    x, table, W = case(6)
    xt = torch.from_numpy(x).requires_grad_()
    tt = torch.from_numpy(table).requires_grad_()
    from kancore import _ops

    y = _ops.torch_ops().c0_forward(xt, tt, W, "embedding_bag", False, mode)
    np.testing.assert_array_equal(y.detach().numpy(), functional.c0_forward(x, table, W, precision=mode))
    g = torch.randn_like(y)
    y.backward(g)
    gx, gt = functional.c0_backward(x, table, g.numpy(), W, precision=mode)
    np.testing.assert_array_equal(xt.grad.numpy(), gx)
    np.testing.assert_array_equal(tt.grad.numpy(), gt)


def _fake(device_type):
    return types.SimpleNamespace(device=types.SimpleNamespace(type=device_type))


@pytest.mark.parametrize("setting, mode", [("highest", "highest"), ("high", "tf32"), ("medium", "bf16")])
def test_layers_follow_float32_matmul_precision_on_cuda_only(setting, mode):
    from kancore import _ops

    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision(setting)
        assert _ops.matmul_precision(_fake("cuda"), torch.float32) == mode
        assert _ops.matmul_precision(_fake("cuda"), torch.float64) == "highest"
        assert _ops.matmul_precision(_fake("cpu"), torch.float32) == "highest"  # the exact CPU path is fastest
        layer = kancore.KANLayer(5, 3)
        x = torch.randn(8, 5)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), _ops.torch_ops().c0_forward(
                x, layer._table(), float(layer.spline_width), layer.impl), rtol=0, atol=0)
    finally:
        torch.set_float32_matmul_precision(before)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


@cuda
@pytest.mark.parametrize("setting, mode", [("high", "tf32"), ("medium", "bf16")])
def test_cuda_layer_matches_the_cpu_oracle(setting, mode):
    x, table, W = case(7, N=700, I=24, O=40, K=32)
    layer = kancore.KANLayer(24, 40, num_control_points=32, spline_width=W).cuda()
    with torch.no_grad():
        layer.kan_weight.copy_(torch.from_numpy(table))
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision(setting)
        xt = torch.from_numpy(x).cuda().requires_grad_()
        y = layer(xt)
        g = torch.randn_like(y)
        y.backward(g)
    finally:
        torch.set_float32_matmul_precision(before)
    want = functional.c0_forward(x, table, W, precision=mode)
    np.testing.assert_allclose(y.detach().cpu().numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    gx, gt = functional.c0_backward(x, table, g.cpu().numpy(), W, precision=mode)
    np.testing.assert_allclose(xt.grad.cpu().numpy(), gx, rtol=1e-5, atol=1e-5 * np.abs(gx).max())
    np.testing.assert_allclose(layer.kan_weight.grad.cpu().numpy(), gt, rtol=1e-5, atol=1e-5 * np.abs(gt).max())


@cuda
def test_cuda_autocast_bf16_uses_the_bf16_mode():
    x, table, W = case(8, N=300, I=16, O=20, K=32)
    layer = kancore.KANLayer(16, 20, num_control_points=32, spline_width=W).cuda()
    with torch.no_grad():
        layer.kan_weight.copy_(torch.from_numpy(table))
    with torch.autocast("cuda", dtype=torch.bfloat16), torch.no_grad():
        y = layer(torch.from_numpy(x).cuda())
    assert y.dtype == torch.float32
    want = functional.c0_forward(x, table, W, precision="bf16")
    np.testing.assert_allclose(y.cpu().numpy(), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
