"""kancore.KANLayer against the published kanditioned 1.0.4 (installed from PyPI) at run time.

Never skipped in CI: KANCORE_REQUIRE_PEERS=1 turns a missing kanditioned into a failure.
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

if os.environ.get("KANCORE_REQUIRE_PEERS") == "1":
    import KANditioned as kd  # noqa: N813  (fails loudly in CI if missing)
else:
    kd = pytest.importorskip("KANditioned", reason="kanditioned==1.0.4 is not installed")

from kancore import KANLayer
from conftest import RTOL

OUR_IMPLS = ["embedding_bag", "embedding", "sparse_matmul_csr"]
THEIR_IMPLS = ["embedding_bag", "embedding"]  # kanditioned's sparse_matmul_csr raises (known defect)
SHAPES = [(16, 3, 4, 5, 2.0), (64, 20, 33, 32, 4.0), (9, 7, 1, 2, 1.5), (32, 40, 50, 100, 6.0)]


def tol(dtype, terms, magnitude):
    name = "float32" if dtype == torch.float32 else "float64"
    return RTOL[name] * terms * max(float(magnitude), 1e-30) * 4


def make_pair(I, O, K, W, init, dtype, variant="B-spline", seed=0):
    torch.manual_seed(seed)
    ours = KANLayer(I, O, init, num_control_points=K, spline_width=W, variant=variant, dtype=dtype)
    torch.manual_seed(seed)
    theirs = kd.KANLayer(I, O, init, num_control_points=K, spline_width=W, variant=variant,
                         impl="embedding_bag").to(dtype)
    return ours, theirs


@pytest.mark.parametrize("init", ["random_normal", "identity", "zero"])
def test_same_seed_gives_same_initial_weights(init):
    ours, theirs = make_pair(6, 6, 9, 4.0, init, torch.float32)
    torch.testing.assert_close(ours.kan_weight, theirs.kan_weight, rtol=0, atol=0)
    for name in ("local_bias", "feature_offset"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("their_impl", THEIR_IMPLS)
def test_forward_and_gradients_match(dtype, shape, their_impl):
    N, I, O, K, W = shape
    torch.manual_seed(N + I)
    ours, theirs = make_pair(I, O, K, W, "random_normal", dtype)
    with torch.no_grad():  # random tables exercise every segment, not only straight lines
        theirs.kan_weight.normal_()
    ours.load_state_dict(theirs.state_dict())
    theirs.impl = their_impl
    x = (torch.rand(N, I, dtype=dtype) - 0.5) * (1.6 * W)  # inside and outside [-W/2, W/2]
    x[0, 0] = -W / 2  # exactly on the end control points and on an interior one
    x[-1, -1] = W / 2
    if N > 2:
        x[1, 0] = -W / 2 + 1 * W / (K - 1)
    g = torch.randn(N, O, dtype=dtype)
    xt = x.clone().requires_grad_(True)
    y_ref = theirs(xt)
    y_ref.backward(g)
    cmax = theirs.kan_weight.detach().abs().max()
    for impl in OUR_IMPLS:
        ours.impl = impl
        ours.zero_grad()
        xo = x.clone().requires_grad_(True)
        y = ours(xo)
        y.backward(g)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=tol(dtype, I, cmax))
        slope = cmax * (K - 1) / W
        torch.testing.assert_close(xo.grad, xt.grad, rtol=0, atol=tol(dtype, 2 * O, slope * g.abs().max()))
        torch.testing.assert_close(ours.kan_weight.grad, theirs.kan_weight.grad, rtol=0,
                                   atol=tol(dtype, N, g.abs().max()))


@pytest.mark.parametrize("init", ["random_normal", "identity", "zero"])
def test_every_init_matches_in_forward(init):
    ours, theirs = make_pair(5, 5, 8, 4.0, init, torch.float32)
    x = torch.randn(50, 5) * 3
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=tol(torch.float32, 5, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parallel_scan_matches(dtype, capsys):
    I, O, K, W = 4, 3, 7, 3.0
    ours, theirs = make_pair(I, O, K, W, "zero", dtype, variant="parallel_scan")
    capsys.readouterr()  # kanditioned prints a note about parallel_scan init
    with torch.no_grad():
        theirs.r_weight.normal_()
        theirs.l_weight.normal_()
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours.get_interp_tensor(), theirs.get_interp_tensor(), rtol=0,
                               atol=tol(dtype, K * K, 1.0))
    x = torch.randn(30, I, dtype=dtype, requires_grad=True) * 2
    g = torch.randn(30, O, dtype=dtype)
    theirs.impl = "embedding_bag"
    x1 = x.detach().clone().requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    theirs(x1).backward(g)
    y = ours(x2)
    y.backward(g)
    for a, b in [(ours.r_weight.grad, theirs.r_weight.grad), (ours.l_weight.grad, theirs.l_weight.grad),
                 (x2.grad, x1.grad)]:
        torch.testing.assert_close(a, b, rtol=0, atol=tol(dtype, 30 * K * K, 1.0 * g.abs().max()))


def test_state_dicts_load_both_ways():
    for variant in ["B-spline", "parallel_scan"]:
        ours, theirs = make_pair(3, 4, 6, 2.0, "random_normal", torch.float32, variant=variant)
        sd_ours, sd_theirs = ours.state_dict(), theirs.state_dict()
        assert list(sd_ours) == list(sd_theirs)
        for k in sd_ours:
            assert sd_ours[k].shape == sd_theirs[k].shape and sd_ours[k].dtype == sd_theirs[k].dtype, k
        with torch.no_grad():
            for p in ours.parameters():
                p.normal_()
        theirs.load_state_dict(ours.state_dict())  # ours -> theirs
        fresh, _ = make_pair(3, 4, 6, 2.0, "zero", torch.float32, variant=variant, seed=1)
        fresh.load_state_dict(theirs.state_dict())  # theirs -> ours
        x = torch.randn(10, 3)
        torch.testing.assert_close(fresh(x), ours(x), rtol=0, atol=0)
        theirs.impl = "embedding_bag"
        torch.testing.assert_close(theirs(x), ours(x), rtol=0, atol=tol(torch.float32, 3, 10))


def test_extrapolation_example():
    # K=5, W=2, C=[1,3,2,0,5]: y(-3) = -7 and y(2) = 15, in both libraries.
    ours, theirs = make_pair(1, 1, 5, 2.0, "zero", torch.float64)
    with torch.no_grad():
        ours.kan_weight.copy_(torch.tensor([1.0, 3, 2, 0, 5]).view(1, 5, 1))
    theirs.load_state_dict(ours.state_dict())
    x = torch.tensor([[-3.0], [2.0]], dtype=torch.float64)
    expected = torch.tensor([[-7.0], [15.0]], dtype=torch.float64)
    for impl in OUR_IMPLS:
        ours.impl = impl
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(theirs(x), expected, rtol=0, atol=1e-12)
