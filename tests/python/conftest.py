"""Shared oracles and tolerances for the Python tests.

The oracle for the C0 layer is a float64 NumPy re-statement of the math in docs/layer_math.md,
"The C0 layer" (``reference_*`` below); the published kanditioned package is the second oracle
(see test_parity_kanditioned.py).
"""
import numpy as np
import pytest

try:
    import torch
except ImportError:  # the NumPy-only tests still run
    torch = None

# Named tolerances. float32 parity: ~1e-6 * in_features * max|C| (kanditioned's own impls differ
# by that much); float64: 1e-12 relative to the same scale.
RTOL = {"float32": 1e-6, "float64": 1e-12}


def devices():
    """Devices the per-device tests run on: cpu always, cuda when torch sees a GPU."""
    out = ["cpu"]
    if torch is not None and torch.cuda.is_available():
        out.append("cuda")
    return out


@pytest.fixture(params=devices())
def device(request):
    return request.param


def scale_tol(dtype_name, terms, magnitude):
    """Absolute tolerance for a sum of `terms` products of size `magnitude`."""
    return RTOL[dtype_name] * max(terms, 1) * max(float(magnitude), 1e-30) * 4


def reference_segments(x, K, W, dtype):
    """(k, t) of each input, with u computed in `dtype` exactly as kanditioned's op order."""
    x = np.asarray(x, dtype=dtype)
    u = ((x + dtype(W / 2)) * dtype(K - 1)) / dtype(W)
    with np.errstate(invalid="ignore"):
        kf = np.clip(np.floor(np.nan_to_num(u, nan=0.0, posinf=K - 2, neginf=0.0)), 0, K - 2)
    t = u.astype(np.float64) - kf
    return kf.astype(np.int64), t


def reference_forward(x, C, W):
    """float64 y (batch, out) for finite x (batch, in) and table C (in, K, out)."""
    C = np.asarray(C)
    I, K, O = C.shape
    k, t = reference_segments(x, K, W, C.dtype.type)
    C64 = C.astype(np.float64)
    i = np.arange(I)[None, :]
    lo = C64[i, k]          # (batch, in, out)
    hi = C64[i, k + 1]
    return ((1 - t)[..., None] * lo + t[..., None] * hi).sum(axis=1)


def reference_backward(x, C, W, g):
    """float64 (grad_x, grad_table) for finite x, table C and output gradient g."""
    C = np.asarray(C)
    I, K, O = C.shape
    k, t = reference_segments(x, K, W, C.dtype.type)
    C64 = C.astype(np.float64)
    g = np.asarray(g, dtype=np.float64)
    i = np.arange(I)[None, :]
    slope = (C64[i, k + 1] - C64[i, k]) * ((K - 1) / W)        # (batch, in, out)
    grad_x = np.einsum("bio,bo->bi", slope, g)
    grad_table = np.zeros((I, K, O))
    for b in range(x.shape[0]):
        for ii in range(I):
            grad_table[ii, k[b, ii]] += (1 - t[b, ii]) * g[b]
            grad_table[ii, k[b, ii] + 1] += t[b, ii] * g[b]
    return grad_x, grad_table


def assert_same_as_cpu(got, want, tol, what, relative=False):
    """A device result against the CPU's: the same NaN pattern, the same infinities, finite where
    the CPU is finite, and max |got - want| (divided by 1 + |want| when relative) <= tol."""
    got, want = got.detach().cpu(), want.detach().cpu()
    assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: NaN pattern differs"
    inf = torch.isinf(want)
    assert torch.equal(got[inf], want[inf]), f"{what}: inf values differ"
    finite = torch.isfinite(want)
    assert torch.isfinite(got[finite]).all(), f"{what}: non-finite where the CPU is finite"
    if finite.any():
        diff = (got[finite] - want[finite]).abs()
        if relative:
            diff = diff / (1 + want[finite].abs())
        err = diff.max().item()
        assert err <= tol, f"{what}: max {'relative ' if relative else ''}|cuda - cpu| = {err:.3e} > {tol:.3e}"


def assert_compiles_without_breaks(model, x, backend="inductor"):
    """torch.compile(model) traces with zero graph breaks (dynamo.explain) and, compiled with
    fullgraph=True, gives the eager output and the eager parameter gradients."""
    import torch
    import torch._dynamo as dynamo

    eager = model(x)
    dynamo.reset()
    explanation = dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    y = compiled(x)
    torch.testing.assert_close(y, eager)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    eager.square().sum().backward()
    for a, p in zip(grads, model.parameters()):
        torch.testing.assert_close(a, p.grad)
