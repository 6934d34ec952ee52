"""memory_estimate traced on a meta copy (any model, nothing allocated) and fit_to_memory's choice
under budgets."""
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402


def test_traced_activations_count_what_autograd_keeps():
    kan = kancore.KAN([3, 4, 2], kind="c0", num_control_points=7)
    est = kancore.memory_estimate(kan, 10, input_shape=(3,))
    assert est["activations"] == 10 * (3 + 4) * 4  # each C0 layer keeps only its input
    scratch = max(kancore._ops.layer_workspace_bytes("c0", 10, i, o, 7, 1, 4.0, "float32", "embedding_bag", back)
                  for i, o in ((3, 4), (4, 2)) for back in (False, True))
    assert est["workspace"] == 10 * 4 * 4 + scratch  # the widest output and one kernel's scratch
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2))
    est = kancore.memory_estimate(mlp, 10, input_shape=(4,))
    assert est["activations"] == 10 * (4 + 8 + 8) * 4  # Linear: input; SiLU: input; Linear: input
    n = kancore.count_parameters(mlp)
    assert est["parameters"] == est["gradients"] == 4 * n and est["optimizer_state"] == 8 * n
    assert est["total"] == sum(v for k, v in est.items() if k != "total")
    inference = kancore.memory_estimate(mlp, 10, input_shape=(4,), training=False)
    assert inference["gradients"] == inference["optimizer_state"] == inference["activations"] == 0
    assert inference["workspace"] == 2 * 10 * 8 * 4
    # Nothing of the model was touched or moved.
    assert next(mlp.parameters()).device.type == "cpu"


def test_checkpointing_shows_in_the_traced_estimate():
    plain = kancore.KAN([32] * 10, kind="c0", layernorm=True)
    ckpt = kancore.KAN([32] * 10, kind="c0", layernorm=True, checkpoint=True)
    a = kancore.memory_estimate(plain, 256, input_shape=(32,))
    b = kancore.memory_estimate(ckpt, 256, input_shape=(32,))
    assert b["activations"] < 0.5 * a["activations"]
    assert b["activations"] + b["workspace"] < a["activations"] + a["workspace"]


@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_fit_to_memory_picks_the_largest_that_fits(kind):
    widths, batch = [16, 128, 128, 4], 512
    chosen = []
    for budget in (2 ** 26, 2 ** 23, 2 ** 21):
        model, report = kancore.fit_to_memory(widths, budget, batch, kind=kind)
        assert report["estimate"]["total"] <= budget
        assert kancore.count_parameters(model) == report["parameters"]
        assert model.widths == report["widths"] and next(model.parameters()).device.type == "cpu"
        rows = -(-batch // report["micro_batches"])
        assert kancore.memory_estimate(model, rows, input_shape=(16,))["total"] == report["estimate"]["total"]
        chosen.append(report["parameters"])
    assert chosen[0] >= chosen[1] >= chosen[2] and chosen[0] > chosen[2]
    with pytest.raises(ValueError, match="no candidate trains"):
        kancore.fit_to_memory(widths, 2 ** 10, batch, kind=kind)
    with pytest.raises(ValueError, match="budget_bytes"):
        kancore.fit_to_memory(widths, 0, batch, kind=kind)


def test_fit_to_memory_refuses_before_allocating_a_huge_network():
    # Half a trillion parameters: estimated on meta tensors, refused without touching memory.
    with pytest.raises(ValueError, match="no candidate trains"):
        kancore.fit_to_memory([1000, 100000, 100000, 10], 2 ** 30, 64, width_scales=(1.0,), grid_sizes=(20,))


def test_fit_to_memory_chunks_the_batch_when_activations_dominate():
    # A narrow network on a huge batch: its activations, not its parameters, exceed the budget.
    widths, batch = [64, 32, 1], 1 << 16
    whole = kancore.memory_estimate(kancore.KAN(widths, grid_size=3), batch, input_shape=(64,))["total"]
    model, report = kancore.fit_to_memory(widths, whole // 2, batch, width_scales=(1.0,), grid_sizes=(3,),
                                          checkpoint=(False,))
    assert report["micro_batches"] > 1 and report["estimate"]["total"] <= whole // 2
    _, report = kancore.fit_to_memory(widths, 2 * whole, batch, width_scales=(1.0,), grid_sizes=(3,),
                                      checkpoint=(False,))
    assert report["micro_batches"] == 1  # no chunks when the whole batch fits
