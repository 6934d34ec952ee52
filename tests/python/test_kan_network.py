"""kancore.KAN's extensions: kind="c0" and layernorm, against the network forward of
docs/model_format.md re-stated in float64 NumPy, plus the efficient-kan compatible surface."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import reference_forward  # noqa: E402
from kancore import KAN, KANLayer, KANLinear, functional  # noqa: E402


def _spec_forward(model, x):
    """The spec's network forward in float64 NumPy, from the model's state_dict alone."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    h = x.double().numpy()
    n = len(model.layers)
    for j, layer in enumerate(model.layers):
        p = f"layers.{j}."
        if isinstance(layer, KANLayer):
            if p + "input_scale" in sd:
                h = h * sd[p + "input_scale"] + sd[p + "input_offset"]
            y = reference_forward(h, sd[p + "kan_weight"], layer.spline_width)
        else:
            y = functional.bspline_forward(h, sd[p + "grid"], sd[p + "base_weight"], sd[p + "spline_weight"],
                                           sd[p + "spline_scaler"])
        if model.layernorm and j < n - 1:
            mu = y.mean(-1, keepdims=True)
            var = ((y - mu) ** 2).mean(-1, keepdims=True)
            y = (y - mu) / np.sqrt(var + 1e-5) * sd[f"norms.{j}.weight"] + sd[f"norms.{j}.bias"]
        h = y
    return h


@pytest.mark.parametrize("kw", [dict(kind="c0", num_control_points=6), dict(kind="c0", layernorm=True),
                                dict(layernorm=True), dict()], ids=["c0", "c0-ln", "bspline-ln", "bspline"])
def test_forward_matches_the_spec(kw):
    torch.manual_seed(0)
    model = KAN([3, 4, 4, 2], dtype=torch.float64, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(50, 3, dtype=torch.float64) * 1.5
    if model.kind == "c0":
        model(x, update_grid=True)  # fitted domains on every layer
        assert all(layer.input_scale is not None for layer in model.layers)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), _spec_forward(model, x), rtol=1e-10, atol=1e-10)


def test_state_dict_names_and_efficient_kan_surface():
    b = KAN([3, 4, 2])
    assert sorted(b.state_dict()) == sorted(f"layers.{j}.{n}" for j in range(2)
                                            for n in ("grid", "base_weight", "spline_weight", "spline_scaler"))
    assert all(isinstance(layer, KANLinear) for layer in b.layers) and b.kind == "bspline"
    ln = KAN([3, 4, 5, 2], kind="c0", layernorm=True, num_control_points=5)
    names = set(ln.state_dict())
    assert {"norms.0.weight", "norms.0.bias", "norms.1.weight", "norms.1.bias"} <= names
    assert "norms.2.weight" not in names and ln.norms[1].eps == 1e-5 and ln.norms[1].weight.shape == (5,)
    assert {"layers.0.kan_weight", "layers.2.kan_weight"} <= names
    assert ln.widths == [3, 4, 5, 2]
    # regularization_loss and refine work for both kinds; refine keeps the C0 function.
    assert torch.isfinite(b.regularization_loss()) and torch.isfinite(ln.regularization_loss())
    x = torch.randn(20, 3)
    with torch.no_grad():
        before = ln(x)
        ln.refine(9)
        torch.testing.assert_close(ln(x), before, rtol=1e-5, atol=1e-5)
    assert ln.num_control_points == 9 and ln.layers[0].kan_weight.shape == (3, 9, 4)
    with pytest.raises(ValueError, match="kind"):
        KAN([2, 1], kind="mlp")
    with pytest.raises(ValueError, match="layernorm"):
        KAN([2, 1], layernorm=1)
