"""KANLayer behaviour beyond parity: gradients by finite differences, torch.compile, inputs of
every shape and kind, non-finite values, repr, plotting."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from kancore import KANLayer
from kancore.kan_layer import KANLayer as KANLayerFromModule
from conftest import assert_compiles_without_breaks, reference_forward

IMPLS = ["embedding_bag", "embedding", "sparse_matmul_csr"]


def test_both_import_paths_name_the_same_class():
    assert KANLayer is KANLayerFromModule


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", ["B-spline", "parallel_scan", "DCT"])
def test_gradcheck_float64(device, impl, variant):
    torch.manual_seed(0)
    layer = KANLayer(3, 4, num_control_points=6, spline_width=2.0, variant=variant, impl=impl,
                     dtype=torch.float64, device=device)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    # Keep points away from knots, where the layer is not differentiable.
    x = torch.rand(5, 3, dtype=torch.float64, device=device) * 3 - 1.5
    u = (x + 1.0) * 5 / 2.0
    x = torch.where((u - u.round()).abs() < 0.05, x + 0.02, x).requires_grad_(True)
    params = tuple(layer.parameters())

    def fn(x, *ps):
        return torch.func.functional_call(layer, dict(zip([n for n, _ in layer.named_parameters()], ps)), (x,))

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-8)


def test_matches_float64_numpy_oracle_with_leading_dims():
    torch.manual_seed(1)
    layer = KANLayer(4, 3, num_control_points=11, spline_width=3.0, dtype=torch.float64)
    with torch.no_grad():
        layer.kan_weight.normal_()
    x = torch.randn(2, 5, 4, dtype=torch.float64) * 3
    y = layer(x)
    assert y.shape == (2, 5, 3)
    ref = reference_forward(x.reshape(-1, 4).numpy(), layer.kan_weight.detach().numpy(), 3.0)
    np.testing.assert_allclose(y.detach().reshape(-1, 3).numpy(), ref, rtol=0, atol=1e-12 * 4 * 10)
    one = layer(x[0, 0])  # a single sample without batch dimension
    assert one.shape == (3,)
    torch.testing.assert_close(one, y[0, 0])


def test_torch_compile_has_no_graph_breaks():
    torch.manual_seed(0)
    model = torch.nn.Sequential(KANLayer(4, 8, num_control_points=8), KANLayer(8, 2, num_control_points=8))
    assert_compiles_without_breaks(model, torch.randn(16, 4))


def test_impl_is_read_at_every_call():
    torch.manual_seed(0)
    layer = KANLayer(3, 2, num_control_points=4)
    x = torch.randn(5, 3)
    outs = []
    for impl in IMPLS:
        layer.impl = impl
        outs.append(layer(x))
    for y in outs[1:]:
        torch.testing.assert_close(y, outs[0], rtol=0, atol=1e-6)
    layer.impl = "dense"
    with pytest.raises(ValueError, match="impl must be one of"):
        layer(x)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(in_features=0, out_features=2), ValueError, "in_features"),
        (dict(in_features=2.0, out_features=2), ValueError, "in_features"),
        (dict(in_features=True, out_features=2), ValueError, "in_features"),
        (dict(in_features=2, out_features=-1), ValueError, "out_features"),
        (dict(in_features=2, out_features=2, init="ones"), ValueError, "init"),
        (dict(in_features=2, out_features=3, init="identity"), ValueError, "identity"),
        (dict(in_features=2, out_features=2, num_control_points=1), ValueError, ">= 2"),
        (dict(in_features=2, out_features=2, num_control_points=0), ValueError, "num_control_points"),
        (dict(in_features=2, out_features=2, num_control_points=4.0), ValueError, "num_control_points"),
        (dict(in_features=2, out_features=2, spline_width=0), ValueError, "spline_width"),
        (dict(in_features=2, out_features=2, spline_width=math.inf), ValueError, "spline_width"),
        (dict(in_features=2, out_features=2, variant="Chebyshev"), ValueError, "variant"),
        (dict(in_features=2, out_features=2, impl="dense"), ValueError, "impl"),
        (dict(in_features=2, out_features=2, dtype=torch.float16), TypeError, "dtype"),
    ],
)
def test_constructor_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        KANLayer(**kwargs)


def test_bad_inputs_raise_clear_errors():
    layer = KANLayer(3, 2)
    with pytest.raises(ValueError, match=r"expected x of shape \(\.\.\., 3\)"):
        layer(torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"expected x of shape"):
        layer(torch.tensor(1.0))
    with pytest.raises(TypeError, match="dtype torch.float32"):
        layer(torch.randn(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype torch.float32"):
        layer(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        layer(np.zeros((4, 3), np.float32))


@pytest.mark.parametrize("out", [2, 40])  # 40: whole vector tiles of outputs, not only a ragged one
def test_empty_batch(out):
    layer = KANLayer(3, out)
    x = torch.zeros(0, 3, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, out)
    y.sum().backward()
    assert x.grad.shape == (0, 3)
    assert torch.count_nonzero(layer.kan_weight.grad) == 0


@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_inputs(impl):
    # K=5, W=2, C=[1,3,2,0,5] on edge 0; edge 1 is flat at its ends.
    layer = KANLayer(2, 1, "zero", num_control_points=5, spline_width=2.0, impl=impl, dtype=torch.float64)
    with torch.no_grad():
        layer.kan_weight[0, :, 0] = torch.tensor([1.0, 3, 2, 0, 5])
        layer.kan_weight[1, :, 0] = torch.tensor([4.0, 4, 1, 7, 7])
    inf = math.inf
    x = torch.tensor([[math.nan, 0.0], [inf, 0.0], [-inf, 0.0], [0.0, inf], [0.0, -inf], [-3.0, 0.0],
                      [inf, -inf]], dtype=torch.float64, requires_grad=True)
    y = layer(x).squeeze(1)
    assert torch.isnan(y[0])
    assert y[1] == inf and y[2] == -inf          # end segments 0->5 (up) and 1->3 extended
    # Edge 0 at x=0 is C[2] = 2; edge 1 at x=0 is C[2] = 1; edge 1's end segments are flat.
    assert y[3] == 2 + 7 and y[4] == 2 + 4
    assert y[5] == -7 + 1
    assert y[6] == inf
    y_finite_rows = y[[5]]
    y_finite_rows.sum().backward()
    assert torch.isfinite(x.grad[5]).all()
    x2 = x.detach().clone().requires_grad_(True)
    layer(x2).sum().backward()
    # NaN input -> NaN gradient; edge 1 at x=0 (k=2): slope (C[3]-C[2]) * (K-1)/W = 6 * 2.
    assert torch.isnan(x2.grad[0, 0]) and x2.grad[0, 1] == 12
    layer.check_finite = True
    with pytest.raises(ValueError, match="NaN"):
        layer(x.detach())


def test_custom_ops_called_directly_validate_their_operands():
    from kancore import _ops

    ops = _ops.torch_ops()
    x, table = torch.zeros(4, 3), torch.zeros(3, 5, 2)
    assert ops.c0_forward(x, table, 4.0, "embedding").shape == (4, 2)
    with pytest.raises(ValueError, match="expected x"):
        torch.ops.kancore.c0_forward(torch.zeros(4, 7), table, 4.0, "embedding_bag")
    with pytest.raises(TypeError, match="one dtype"):
        torch.ops.kancore.c0_forward(x.double(), table, 4.0, "embedding_bag")
    with pytest.raises(ValueError, match="impl"):
        torch.ops.kancore.c0_forward(x, table, 4.0, "dense")
    with pytest.raises(ValueError, match="grad_y"):
        torch.ops.kancore.c0_backward(torch.zeros(4, 3), x, table, 4.0, "embedding_bag", True, True)
    with pytest.raises(ValueError, match="spline_width"):
        torch.ops.kancore.c0_forward(x, table, float("nan"), "embedding_bag")
