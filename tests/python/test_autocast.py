"""Mixed precision on the CPU: torch.autocast around models with kancore layers, and clear errors
for bfloat16/float16 tensors outside it (issue 12, item 7).

The contract (docs/precision.md): under autocast a bfloat16/float16 input runs in the layer's own
dtype, exactly, as autocast's float32 ops do; the output is in the layer's dtype. The oracle is
the layer run outside autocast on the same values upcast by hand (and kanditioned for the C0
layer), so a layer that rounds its tables or its result to bfloat16 fails here.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import kancore  # noqa: E402

BUILDERS = {
    "KANLayer": lambda: kancore.KANLayer(8, 4, num_control_points=12),
    "KANLinear": lambda: kancore.KANLinear(8, 4),
    "KAN-bspline": lambda: kancore.KAN([8, 5, 2]),
    "KAN-c0-layernorm": lambda: kancore.KAN([8, 5, 2], kind="c0", layernorm=True),
}


@pytest.fixture(params=sorted(BUILDERS))
def head(request):
    torch.manual_seed(0)
    return BUILDERS[request.param]()


def _randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_linear_then_kan_under_cpu_autocast_matches_fp32_run_on_the_same_values(head, low):
    torch.manual_seed(1)
    front = torch.nn.Linear(3, 8)
    _randomise(head)
    x = torch.randn(64, 3)
    with torch.autocast("cpu", dtype=low):
        h = front(x)
        y = head(h)
    assert h.dtype == low  # autocast ran the Linear in low precision ...
    assert y.dtype == torch.float32  # ... and the kancore layer in its own dtype
    with torch.no_grad():
        expected = head(h.detach().float())
    torch.testing.assert_close(y.detach(), expected, rtol=0, atol=0)


def test_autocast_backward_is_the_fp32_backward_at_the_low_precision_activations(head):
    """The kancore gradients under autocast are exactly those of the fp32 layer at the (rounded)
    activations it received; the Linear's own gradients are its bf16 matmuls of that gradient."""
    torch.manual_seed(2)
    front = torch.nn.Linear(3, 8)
    _randomise(head)
    x = torch.randn(128, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = front(x)
        h.retain_grad()
        loss = head(h).float().square().mean()
    loss.backward()
    mixed = {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    grad_h = h.grad.float()

    head.zero_grad()
    leaf = h.detach().float().requires_grad_()
    head(leaf).square().mean().backward()
    assert mixed and set(mixed) == {n for n, p in head.named_parameters() if p.grad is not None}
    for name, p in head.named_parameters():
        if name in mixed:
            torch.testing.assert_close(mixed[name], p.grad, rtol=0, atol=0)
    # grad_h reached the Linear rounded to bf16 (8 significant bits)
    torch.testing.assert_close(grad_h, leaf.grad, rtol=2 ** -7, atol=1e-6 * leaf.grad.abs().max().item())
    expected_w = leaf.grad.t() @ x
    scale = expected_w.abs().max().item()
    assert (front.weight.grad - expected_w).abs().max().item() <= 0.02 * scale


def test_autocast_c0_layer_agrees_with_kanditioned_on_the_upcast_input():
    kd = pytest.importorskip("KANditioned")
    torch.manual_seed(3)
    theirs = kd.KANLayer(6, 3, "random_normal", num_control_points=10, spline_width=4.0,
                         impl="embedding_bag")
    with torch.no_grad():
        theirs.kan_weight.normal_()
    ours = kancore.KANLayer(6, 3, num_control_points=10, spline_width=4.0)
    ours.load_state_dict(theirs.state_dict())
    x = (torch.randn(50, 6) * 2).to(torch.bfloat16)
    x[0, 0] = 2.0  # exactly on the end control point
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        y = ours(x)
    with torch.no_grad():
        ref = theirs(x.float())
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_float64_layer_under_autocast_stays_float64():
    layer = kancore.KANLinear(4, 2).double()
    x = torch.randn(5, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, layer(x.double()), rtol=0, atol=0)


def test_grid_update_and_edge_scale_loss_accept_low_precision_input_under_autocast():
    torch.manual_seed(4)
    front, net = torch.nn.Linear(2, 3), kancore.KAN([3, 4, 1])
    x = torch.randn(200, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = front(x)
        net(h, update_grid=True)  # knots move to the (upcast) samples
        loss = net.edge_scale_loss(h)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    grid = net.layers[0].grid
    hf = h.detach().float()
    # update_grid spreads the knots over the samples' range (plus a margin) in float32
    assert grid[:, 3].min() <= hf.min() + 1e-3 and grid[:, -4].max() >= hf.max() - 1e-3


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_low_precision_input_outside_autocast_is_a_clear_type_error(head, low):
    x = torch.randn(4, 8, dtype=low)
    with pytest.raises(TypeError, match="autocast"):
        head(x)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_low_precision_parameters_are_a_clear_type_error(head, low):
    head = head.to(low)
    with pytest.raises(TypeError, match="float32 or float64 param.*autocast"):
        head(torch.randn(4, 8, dtype=low))
    with pytest.raises(TypeError, match="autocast"), torch.autocast("cpu", dtype=low):
        head(torch.randn(4, 8))


def test_autocast_under_torch_compile():
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), kancore.KANLayer(8, 2))
    x = torch.randn(16, 3)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        eager, traced = model(x), compiled(x)
    assert traced.dtype == torch.float32
    torch.testing.assert_close(traced, eager, rtol=0, atol=0)
