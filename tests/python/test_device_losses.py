"""The coefficient L1+entropy and smoothness losses on CUDA run as torch expressions on the
device (no host copy). Their formulas are checked here against the native float64 kernels on
the CPU (values and gradients, zero edges, all-zero weights, K < 3), and on CUDA (skipped
without a device) a CUDA model's losses against the same model on the CPU."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import _ops  # noqa: E402


def _native(name):
    ops = _ops.torch_bspline_ops()
    return getattr(ops, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 4, 8), (3, 1), (2, 6, 3)])
def test_l1_entropy_expressions_match_the_native_loss(dtype, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    w = torch.randn(*shape, generator=gen, dtype=dtype)
    w.reshape(-1, shape[-1])[0] = 0  # an edge of zeros: no entropy term, zero gradient
    w.reshape(-1)[-1] = 0  # a single zero entry: subgradient 0
    for act, ent in ((1.0, 1.0), (0.3, 2.5), (0.0, 1.0)):
        value, grad = _native("coefficient_l1_entropy")(w, act, ent)
        v2, g2 = _ops.coefficient_l1_entropy_torch(w, act, ent)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        np.testing.assert_allclose(v2.double().numpy(), value.double().numpy(), rtol=tol)
        np.testing.assert_allclose(g2.double().numpy(), grad.double().numpy(), rtol=tol, atol=tol)
        assert v2.dtype == dtype and g2.shape == w.shape


def test_l1_entropy_of_all_zero_weights_is_zero_with_zero_gradient():
    w = torch.zeros(3, 4, 5)
    value, grad = _ops.coefficient_l1_entropy_torch(w, 1.0, 1.0)
    assert value.item() == 0 and torch.equal(grad, torch.zeros_like(w))
    nv, ng = _native("coefficient_l1_entropy")(w, 1.0, 1.0)
    assert nv.item() == 0 and torch.equal(ng, grad)


@pytest.mark.parametrize("outer, K, inner", [(4, 7, 3), (6, 5, 1), (2, 2, 3), (3, 3, 2)])
def test_smoothness_expressions_match_the_native_loss(outer, K, inner):
    c = torch.randn(outer, K, inner, generator=torch.Generator().manual_seed(K), dtype=torch.float64)
    value, grad = _native("smoothness")(c, outer, K, inner)
    v2, g2 = _ops.smoothness_torch(c, outer, K, inner)
    np.testing.assert_allclose(v2.numpy(), value.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g2.numpy(), grad.numpy(), rtol=1e-12, atol=1e-15)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


@cuda
@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_cuda_model_losses_match_the_cpu_model(kind):
    torch.manual_seed(0)
    cpu = kancore.KAN([3, 5, 2], kind=kind)
    with torch.no_grad():
        for p in cpu.parameters():
            p.normal_()
    gpu = kancore.KAN([3, 5, 2], kind=kind).cuda()
    gpu.load_state_dict(cpu.state_dict())
    for model in (cpu, gpu):
        (model.regularization_loss(1.0, 2.0) + model.smoothness_loss()).backward()
    torch.testing.assert_close((gpu.regularization_loss(1.0, 2.0) + gpu.smoothness_loss()).cpu(),
                               cpu.regularization_loss(1.0, 2.0) + cpu.smoothness_loss())
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad.cpu(), p.grad, msg=name)
