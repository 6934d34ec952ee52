"""kancore.flops: kancore layers counted by their stated formulas inside torch's FlopCounterMode,
torch layers as torch counts them, and MLPs matched by FLOPs."""
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402


def test_kan_layers_follow_the_stated_formulas():
    N, I, O = 16, 5, 7
    c0 = kancore.KAN([I, O], kind="c0")
    got = kancore.flops(c0, (N, I))
    assert got["forward"] == N * (3 * I + 4 * I * O)  # locate per input; 4 per edge
    assert got["backward"] == N * I * O * 4  # the first layer: no input gradient, the table's
    bs = kancore.KAN([I, O], grid_size=6, spline_order=2)
    got = kancore.flops(bs, (N, I))
    k, G = 2, 6
    assert got["forward"] == N * I * (4 + 3 * k * (k + 3)) + N * I * O * (2 * k + 4) + O * I * (G + k)
    assert got["backward"] == N * I * (6 + 3 * k * (k + 3)) + N * I * O * (4 * k + 8) + 2 * O * I * (G + k)
    deep = kancore.KAN([I, O, 3], kind="c0")
    got = kancore.flops(deep, (N, I))
    assert got["forward"] == N * (3 * I + 4 * I * O) + N * (3 * O + 4 * O * 3)
    assert got["backward"] == N * I * O * 4 + N * (O + 6 * O * 3)  # the second layer: both gradients


def test_torch_layers_are_counted_alongside():
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              kancore.nn.KANClassifierHead(4 * 6 * 6, 10, hidden=(), kind="c0"))
    got = kancore.flops(cnn, (2, 1, 8, 8), backward=False)
    conv = 2 * 2 * 4 * 6 * 6 * 1 * 3 * 3  # 2 per multiply-add of each output
    head = 2 * (3 * 144 + 4 * 144 * 10)
    assert got["forward"] == conv + head and got["backward"] == 0
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))
    assert kancore.flops(mlp, (3, 4))["forward"] == 2 * 3 * (4 * 8 + 8 * 2)


@pytest.mark.parametrize("hidden_layers", [None, 2])
def test_mlp_with_same_flops_matches_a_kan(hidden_layers):
    kan = kancore.KAN([6, 10, 2], grid_size=5)
    target = kancore.flops(kan, (1, 6), backward=False)["forward"]
    mlp = kancore.mlp_with_same_flops([6, 10, 2], target, hidden_layers=hidden_layers)
    got = kancore.flops(mlp, (1, 6), backward=False)["forward"]
    widths = [m.out_features for m in mlp if isinstance(m, torch.nn.Linear)][:-1]
    step = 2 * (6 + 2) if hidden_layers is None else 2 * (6 + 2 * max(widths) + 2)  # one hidden unit more
    assert abs(got - target) <= step
    assert len(widths) == (1 if hidden_layers is None else 2)


def test_bad_input_shapes_are_refused():
    kan = kancore.KAN([3, 2])
    for bad in ((), (0, 3), (2, -1)):
        with pytest.raises(ValueError, match="input_shape"):
            kancore.flops(kan, bad)
    with pytest.raises(ValueError, match="target_flops"):
        kancore.mlp_with_same_flops([3, 2], 0)


def test_counting_leaves_the_model_and_its_gradients_alone():
    model = kancore.KAN([3, 4, 2])
    x = torch.randn(5, 3)
    model(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    kancore.flops(model, (5, 3))
    kancore.memory_estimate(model, 5, input_shape=(3,))
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
