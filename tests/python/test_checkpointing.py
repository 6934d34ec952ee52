"""Gradient checkpointing: the same gradients as a plain backward pass (KAN(checkpoint=...) and
torch.utils.checkpoint in both reentrant modes, with and without grid updates), and a lower
peak memory for a deep network (benchmarks/checkpoint_memory.py, a fresh process per setting)."""
import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch.utils.checkpoint import checkpoint  # noqa: E402

import kancore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIONS = {"c0": dict(kind="c0", num_control_points=7, layernorm=True),
           "bspline": dict(grid_size=4, spline_order=3),
           "c0-dct": dict(kind="c0", variant="DCT", num_control_points=6)}


def _pair(kind, setting, widths=(3, 6, 5, 6, 4, 2)):
    torch.manual_seed(0)
    plain = kancore.KAN(list(widths), dtype=torch.float64, **OPTIONS[kind])
    ckpt = kancore.KAN(list(widths), dtype=torch.float64, checkpoint=setting, **OPTIONS[kind])
    ckpt.load_state_dict(plain.state_dict())
    return plain, ckpt


def _step(model, x, update_grid=False):
    model.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    loss = model(xg, update_grid=update_grid).sin().sum()
    loss.backward()
    return loss.detach(), xg.grad, {n: p.grad for n, p in model.named_parameters()}


def _assert_same_step(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-13, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=1e-12, atol=1e-14)
    assert a[2].keys() == b[2].keys()
    for name in a[2]:
        torch.testing.assert_close(a[2][name], b[2][name], rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("kind", sorted(OPTIONS))
@pytest.mark.parametrize("setting", [True, 1, 2, 5, 9])
def test_kan_checkpoint_option_gives_the_plain_gradients(kind, setting):
    plain, ckpt = _pair(kind, setting)
    x = torch.randn(40, 3, dtype=torch.float64) * 2
    _assert_same_step(_step(plain, x), _step(ckpt, x))


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_checkpointed_grid_updates_move_the_grids_once(kind):
    plain, ckpt = _pair(kind, True)
    x = torch.randn(50, 3, dtype=torch.float64) * 3
    _assert_same_step(_step(plain, x, update_grid=True), _step(ckpt, x, update_grid=True))
    for (name, a), b in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15, msg=name)


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_torch_utils_checkpoint_in_both_modes_gives_the_plain_gradients(kind, use_reentrant):
    plain, other = _pair(kind, False)
    x = torch.randn(30, 3, dtype=torch.float64)
    want = _step(plain, x)

    def segment(h, start, stop):
        return other._run_layers(h, start, stop)

    other.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)  # the reentrant mode needs an input that requires grad
    h = checkpoint(segment, xg, 0, 3, use_reentrant=use_reentrant)
    h = checkpoint(segment, h, 3, 5, use_reentrant=use_reentrant)
    loss = h.sin().sum()
    loss.backward()
    _assert_same_step(want, (loss.detach(), xg.grad, {n: p.grad for n, p in other.named_parameters()}))


def test_checkpointing_is_off_without_gradients_and_under_a_trace():
    _, ckpt = _pair("c0", True)
    x = torch.randn(8, 3, dtype=torch.float64)
    with torch.no_grad():
        y = ckpt(x)
    assert y.grad_fn is None
    traced = torch.jit.trace(ckpt, (x,), check_trace=False)
    assert torch.equal(traced(x), y)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "yes", None])
def test_bad_checkpoint_values_are_refused(bad):
    with pytest.raises(ValueError, match="checkpoint"):
        kancore.KAN([2, 3], checkpoint=bad)


def test_segment_length_and_repr():
    assert kancore.KAN([2] * 17, checkpoint=True).checkpoint_segment_length() == 4
    assert kancore.KAN([2] * 18, checkpoint=True).checkpoint_segment_length() == 5
    assert kancore.KAN([2, 2], checkpoint=3).checkpoint_segment_length() == 3
    assert kancore.KAN([2, 2]).checkpoint_segment_length() == 0
    assert "checkpoint=True" in repr(kancore.KAN([2, 3], checkpoint=True))
    assert "checkpoint" not in repr(kancore.KAN([2, 3]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_checkpointing_lowers_the_peak_memory_of_a_deep_network():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "checkpoint_memory.py"),
                          "--layers", "9", "--width", "128", "--batch", "8192", "--settings", "False,True",
                          "--json"], check=True, capture_output=True, text=True).stdout
    peaks = json.loads(out)["peak_mib"]
    activation = 8192 * 128 * 4 / 2**20
    for kind, row in peaks.items():
        # Plain keeps at least the nine layer inputs; segments of three keep three of them plus
        # one segment's recomputation.
        assert row["False"] >= 8 * activation, (kind, row)
        assert row["True"] <= 0.75 * row["False"], (kind, row)
