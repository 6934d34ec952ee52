"""KANLayer variant="DCT" and the second-difference smoothness penalty, against float64 NumPy."""
import numpy as np
import pytest
import torch

from kancore import KANLayer
from kancore.kan_layer import dct_matrix


def numpy_dct_matrix(K):
    # Orthonormal DCT-II written from its definition.
    M = np.zeros((K, K))
    for j in range(K):
        s = np.sqrt(1.0 / K) if j == 0 else np.sqrt(2.0 / K)
        for n in range(K):
            M[j, n] = s * np.cos(np.pi * (n + 0.5) * j / K)
    return M


@pytest.mark.parametrize("K", [2, 5, 32])
def test_dct_matrix_is_orthonormal_dct2(K):
    M = dct_matrix(K).numpy()
    np.testing.assert_allclose(M, numpy_dct_matrix(K), atol=1e-14)
    np.testing.assert_allclose(M @ M.T, np.eye(K), atol=1e-13)


def test_dct_variant_starts_as_the_bspline_lines_and_maps_coefficients_to_the_table():
    torch.manual_seed(3)
    a = KANLayer(4, 3, num_control_points=7, variant="B-spline", dtype=torch.float64)
    torch.manual_seed(3)
    d = KANLayer(4, 3, num_control_points=7, variant="DCT", dtype=torch.float64)
    assert set(d.state_dict()) == {"local_bias", "feature_offset", "dct_weight"}
    torch.testing.assert_close(d.get_interp_tensor(), a.get_interp_tensor(), rtol=0, atol=1e-12)
    x = torch.rand(9, 4, dtype=torch.float64) * 5 - 2.5
    torch.testing.assert_close(d(x), a(x), rtol=0, atol=1e-12)
    with torch.no_grad():
        d.dct_weight.normal_()
    table = np.einsum("jk,ijo->iko", numpy_dct_matrix(7), d.dct_weight.detach().numpy())
    np.testing.assert_allclose(d.get_interp_tensor().detach().numpy(), table.reshape(-1, 3), atol=1e-13)


def numpy_smoothness(C):
    # C: (in, K, out); mean over the in*out edges of the summed squared second differences.
    d2 = C[:, 2:, :] - 2 * C[:, 1:-1, :] + C[:, :-2, :]
    return (d2 ** 2).sum() / (C.shape[0] * C.shape[2])


@pytest.mark.parametrize("variant", ["B-spline", "parallel_scan", "DCT"])
def test_smoothness_loss_value_and_gradient(variant):
    torch.manual_seed(0)
    layer = KANLayer(3, 5, num_control_points=9, variant=variant, dtype=torch.float64)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    value = layer.smoothness_loss()
    table = layer.get_interp_tensor().detach().numpy().reshape(3, 9, 5)
    assert value.item() == pytest.approx(numpy_smoothness(table), rel=1e-12)
    # Gradients reach every parameter as autograd of the same formula written in torch.
    value.backward()
    native = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    t = layer._table()
    d2 = t[:, 2:, :] - 2 * t[:, 1:-1, :] + t[:, :-2, :]
    ((d2 ** 2).sum() / (3 * 5)).backward()
    for got, want in zip(native, [p.grad for p in layer.parameters()]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_smoothness_op_gradcheck():
    c = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: torch.ops.kancore.smoothness(c, 2, 6, 3)[0], (c,))


def test_smoothness_of_straight_lines_is_zero_and_small_K_is_zero():
    layer = KANLayer(2, 2, num_control_points=8, init="random_normal")  # straight lines at init
    assert layer.smoothness_loss().item() == pytest.approx(0.0, abs=1e-10)
    assert KANLayer(2, 2, num_control_points=2).smoothness_loss().item() == 0.0
