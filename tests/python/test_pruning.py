"""Attribution and pruning: edge importance (torch against the C++ core, which GoogleTest checks
against a float64 restatement), the stated bound of prune_edges, prune_nodes keeping the function
of silent nodes with really smaller tensors, in torch and NumPy, for both layer kinds and every C0
variant."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402


def _silence(layer, node):
    """Make input ``node`` of ``layer`` contribute exactly nothing."""
    with torch.no_grad():
        if isinstance(layer, kancore.KANLinear):
            layer.base_weight[:, node] = 0
            layer.spline_weight[:, node] = 0
        else:
            table = layer._table().clone()
            table[node] = 0
            layer._set_table(table)


def _model(kind, variant="B-spline", layernorm=False, seed=0):
    torch.manual_seed(seed)
    if kind == "c0":
        m = kancore.KAN([3, 6, 4, 2], kind="c0", num_control_points=7, variant=variant, layernorm=layernorm,
                        dtype=torch.float64)
    else:
        m = kancore.KAN([3, 6, 4, 2], grid_size=4, layernorm=layernorm, dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return m


def _x(n=200, seed=1):
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 5 - 2.5


@pytest.mark.parametrize("kind,layernorm", [("c0", False), ("c0", True), ("bspline", False), ("bspline", True)])
def test_edge_importance_agrees_with_the_cpp_core(tmp_path, kind, layernorm):
    model = _model(kind, layernorm=layernorm)
    x = _x()
    if kind == "c0":
        with torch.no_grad():
            model(x, update_grid=True)  # a fitted input affine too
    got = kancore.edge_importance(model, x)
    kancore.save(model, tmp_path / "m.safetensors")
    want = kancore.NumpyKAN.load(tmp_path / "m.safetensors").edge_importance(x.numpy())
    assert [tuple(g.shape) for g in got] == [w.shape for w in want] == [(6, 3), (4, 6), (2, 4)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-9, atol=1e-12)


def test_prune_edges_moves_each_output_by_less_than_the_removed_importances():
    torch.manual_seed(3)
    model = kancore.KAN([5, 3], grid_size=5, dtype=torch.float64)
    with torch.no_grad():
        model.layers[0].base_weight[:, :2] *= 1e-3  # two weak inputs
        model.layers[0].spline_weight[:, :2] *= 1e-3
    x = _x(300).repeat(1, 2)[:, :5]
    imp = kancore.edge_importance(model, x)[0]
    threshold = float(imp[:, 2:].min()) * 0.5
    pruned = kancore.prune_edges(model, x, threshold)
    removed = imp < threshold
    assert removed[:, :2].all() and not removed[:, 2:].any()
    with torch.no_grad():
        change = torch.sqrt(((pruned(x) - model(x)) ** 2).mean(0))  # per output
    bound = torch.where(removed, imp, torch.zeros_like(imp)).sum(1)
    assert (change <= bound + 1e-12).all() and (change > 0).all()
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("kind,variant", [("bspline", None), ("c0", "B-spline"), ("c0", "DCT"), ("c0", "parallel_scan")])
def test_prune_nodes_removes_silent_nodes_exactly(tmp_path, kind, variant):
    model = _model(kind, variant or "B-spline")
    x = _x()
    if kind == "c0":
        with torch.no_grad():
            model(x, update_grid=True)
    _silence(model.layers[1], 2)  # hidden node 2 of layer 0 feeds nothing
    _silence(model.layers[2], 1)
    small = kancore.prune_nodes(model, [[0, 1, 3, 4, 5], [0, 2, 3]])
    assert small.widths == [3, 5, 3, 2] and model.widths == [3, 6, 4, 2]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-12, atol=1e-12)
    small(x).sum().backward()  # still a trainable network
    kancore.save(small, tmp_path / "s.safetensors")  # and a model file like any other
    back = kancore.load(tmp_path / "s.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(back(x), small(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(kancore.NumpyKAN.load(tmp_path / "s.safetensors")(x.numpy()), small(x).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_prune_finds_the_silent_nodes_and_reports(tmp_path):
    model = _model("bspline")
    x = _x()
    _silence(model.layers[1], 4)
    small, report = kancore.prune(model, x, threshold=1e-9)
    assert report["kept_nodes"] == [[0, 1, 2, 3, 5], [0, 1, 2, 3]]
    assert report["removed_edges"][1] == 4 and report["parameters"][1] < report["parameters"][0]
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-12, atol=1e-12)
    fig = kancore.plot_network(small, x)  # the pruned network draws like any other
    assert fig is not None
    import matplotlib.pyplot as plt
    plt.close(fig)
    # NumPy: the same nodes from the C++ importance, the same function.
    kancore.save(model, tmp_path / "m.safetensors")
    numpy_small = kancore.NumpyKAN.load(tmp_path / "m.safetensors").prune(x.numpy(), 1e-9)
    assert numpy_small.num_parameters == report["parameters"][1]
    np.testing.assert_allclose(numpy_small(x.numpy()), small(x).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_layernorm_networks_keep_their_nodes_and_bad_input_is_refused():
    model = _model("c0", layernorm=True)
    x = _x()
    with pytest.raises(ValueError, match="LayerNorm"):
        kancore.prune_nodes(model, [[0, 1], [0]])
    small, report = kancore.prune(model, x, threshold=1e-3)
    assert small.widths == model.widths and report["kept_nodes"] == [list(range(6)), list(range(4))]
    plain = _model("c0")
    for bad in ([[0, 1]], [[1, 0], [0]], [[], [0]], [[0, 6], [0]], [[0, 1.5], [0]]):
        with pytest.raises(ValueError, match="prune_nodes|hidden layer"):
            kancore.prune_nodes(plain, bad)
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="threshold"):
            kancore.prune(plain, x, bad)
    with pytest.raises(ValueError, match="samples"):
        kancore.edge_importance(plain, x[:, :2])
    with pytest.raises(TypeError, match="kancore.KAN"):
        kancore.prune(torch.nn.Linear(3, 2), x, 0.1)
