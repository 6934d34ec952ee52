"""kancore.set_num_threads / get_num_threads: what is set is what is read, bad counts raise, and
results are bitwise identical for any count (behaviour only; benchmarks/bench_threads.py times)."""
import numpy as np
import pytest

import kancore
from kancore import functional as KF


@pytest.fixture
def keep_threads():
    saved = kancore.get_num_threads()
    yield
    kancore.set_num_threads(saved)


def test_exported():
    assert "set_num_threads" in kancore.__all__ and "get_num_threads" in kancore.__all__
    assert "torch" in kancore.set_num_threads.__doc__  # says what the count follows


def test_default_is_at_least_one():
    assert isinstance(kancore.get_num_threads(), int) and kancore.get_num_threads() >= 1


def test_get_returns_what_was_set(keep_threads):
    for n in (1, 2, 5, 1):
        assert kancore.set_num_threads(n) is None
        assert kancore.get_num_threads() == n
    kancore.set_num_threads(np.int64(3))  # any integer type
    assert kancore.get_num_threads() == 3


@pytest.mark.parametrize("bad", [0, -1, -(2**70), 2**70])
def test_out_of_range_counts_raise_value_error(keep_threads, bad):
    kancore.set_num_threads(2)
    with pytest.raises(ValueError, match="expected an int"):
        kancore.set_num_threads(bad)
    assert kancore.get_num_threads() == 2


@pytest.mark.parametrize("bad", [1.0, 2.5, "2", None, True, np.float32(2)])
def test_non_integers_raise_type_error(keep_threads, bad):
    kancore.set_num_threads(2)
    with pytest.raises(TypeError, match="expected an int"):
        kancore.set_num_threads(bad)
    assert kancore.get_num_threads() == 2


def test_results_identical_for_any_count(keep_threads):
    # Large enough for several threads (over two 2^20 multiply-add grains per call).
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (2048, 32)).astype(np.float32)
    C = rng.normal(size=(32, 16, 64)).astype(np.float32)
    g = rng.normal(size=(2048, 64)).astype(np.float32)
    X = rng.uniform(-1, 1, (4096, 16)).astype(np.float32)

    def run(n):
        kancore.set_num_threads(n)
        net = kancore.NumpyKAN([16, 64, 8], kind="bspline", seed=1)
        return [KF.c0_forward(x, C), *KF.c0_backward(x, C, g), net.predict(X)]

    one = run(1)
    for n in (2, 3):
        for a, b in zip(one, run(n)):
            assert a.tobytes() == b.tobytes()
