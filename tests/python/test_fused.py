"""The fused training objective (kancore/fused.py): one native call for a KAN's MSE loss and
gradients must equal autograd's, and kancore.fit must fall back to autograd whenever the model
or the step is outside what the native Network computes."""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import kancore  # noqa: E402
from kancore.fused import FusedMSE  # noqa: E402


def _models():
    torch.manual_seed(0)
    x = torch.rand(300, 3, dtype=torch.float64) * 3 - 1.5
    bs = kancore.KAN([3, 4, 2], grid_size=6, dtype=torch.float64)
    bs(x, update_grid=True)  # non-uniform knots
    c0 = kancore.KAN([3, 5, 2], kind="c0", num_control_points=9, layernorm=True, dtype=torch.float64)
    c0(x, update_grid=True)  # fitted input domains
    with torch.no_grad():
        for n in c0.norms:
            n.weight.uniform_(0.5, 1.5)
            n.bias.uniform_(-0.2, 0.2)
    f32 = kancore.KAN([3, 4, 2], grid_size=5)
    return x, {"bspline": bs, "c0-layernorm": c0, "float32": f32}


@pytest.mark.parametrize("name", ["bspline", "c0-layernorm", "float32"])
def test_loss_and_gradients_equal_autograd(name):
    x, models = _models()
    model = models[name]
    dtype = next(model.parameters()).dtype
    x = x.to(dtype)
    y = torch.sin(x[:, :2] * 2) + 0.1
    assert FusedMSE.supports(model, x, y)
    ref = copy.deepcopy(model)
    loss = F.mse_loss(ref(x), y)
    loss.backward()
    loss_ref = loss.detach()
    value = FusedMSE()(model, x, y)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert abs(value - float(loss_ref)) <= tol * max(1.0, float(loss_ref))
    for (pname, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=tol * 10, atol=tol, msg=pname)


def test_unsupported_models_and_steps_go_through_autograd():
    x, models = _models()
    y = torch.zeros(300, 2, dtype=torch.float64)
    model = models["bspline"]
    assert not FusedMSE.supports(model, x.requires_grad_(), y)
    x = x.detach()
    assert not FusedMSE.supports(model, x.float(), y.float())  # dtype mismatch
    assert not FusedMSE.supports(model, x, y[:, :1])
    sym = copy.deepcopy(model)
    sym.layers[0].fix_symbolic(0, 0, "sin")
    assert not FusedMSE.supports(sym, x, y)
    other = kancore.KAN([3, 4, 2], base_activation=torch.nn.Tanh, dtype=torch.float64)
    assert not FusedMSE.supports(other, x, y)
    checkpointed = copy.deepcopy(model)
    checkpointed.checkpoint = True
    assert not FusedMSE.supports(checkpointed, x, y)
    hooked = copy.deepcopy(model)
    hooked.layers[1].register_forward_hook(lambda m, i, o: o * 2)
    assert not FusedMSE.supports(hooked, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not FusedMSE.supports(model, x, y)
    dct = kancore.KAN([3, 2], kind="c0", dtype=torch.float64)
    dct.layers[0] = kancore.KANLayer(3, 2, variant="DCT", dtype=torch.float64)
    assert not FusedMSE.supports(dct, x, y)


def test_fit_gives_the_same_training_with_and_without_fusing():
    data = kancore.create_dataset(lambda x: x[:, [0]] * torch.exp(x[:, [1]]), n_var=2, train_num=200,
                                  dtype=torch.float64, seed=3)
    runs = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = kancore.KAN([2, 3, 1], grid_size=5, dtype=torch.float64)
        # Few steps: LBFGS amplifies rounding differences (1e-16 here) over a long run.
        kancore.fit(model, data, steps=4, optimizer="lbfgs", lr=1, grid_schedule=[5, 10], grid_update_every=1,
                    lbfgs_max_iter=5, progress=False, fused=fused)
        runs.append(model(data["test_input"]).detach())
    np.testing.assert_allclose(runs[0].numpy(), runs[1].numpy(), rtol=1e-6, atol=1e-9)
