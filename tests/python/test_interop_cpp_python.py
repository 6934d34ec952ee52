"""Model files cross between the C++ Network (through ``kancore.NumpyKAN``) and the torch
``KAN`` in both directions: a network trained and saved by C++ loads in Python with the same
predictions, and the reverse; also the file the C++ example program writes (when CI has built
and run it, KANCORE_EXAMPLE_MODEL points at it).

"The same predictions": both sides run the same native layer kernels, so without LayerNorm the
outputs agree to the last bit in most cases; LayerNorm is computed by each side's own code, so
the comparison allows a few ulps (1e-12 relative in float64, 1e-5 in float32).
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KAN, NumpyKAN  # noqa: E402

TOL = {"float64": 1e-12, "float32": 1e-5}


def _close(a, b, dtype):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(b).max()))
    assert np.abs(a - b).max() <= TOL[dtype] * scale, np.abs(a - b).max()


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 2))
    y = (np.sin(X[:, 0]) * np.cos(X[:, 1]))[:, None]
    return X, y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["bspline", "c0", ["c0", "bspline"]])
@pytest.mark.parametrize("layernorm", [False, True])
def test_cpp_trained_model_loads_in_torch(tmp_path, dtype, kind, layernorm):
    X, y = _data()
    net = NumpyKAN([2, 5, 1], kind=kind, dtype=dtype, layernorm=layernorm, num_control_points=9,
                   grid_size=4, seed=3)
    net.fit(X.astype(dtype), y.astype(dtype), epochs=5, batch_size=64, lr=1e-2, grid_update_every=2,
            grid_update_until=5)  # grid updates give fitted C0 domains and moved knots
    path = tmp_path / "cpp.safetensors"
    net.save(path)
    model = kancore.load(path)
    want = net.predict(X.astype(dtype))
    with torch.no_grad():
        got = model(torch.from_numpy(X.astype(dtype))).numpy()
    assert got.dtype == want.dtype
    _close(got, want, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["bspline", "c0"])
@pytest.mark.parametrize("layernorm", [False, True])
def test_torch_trained_model_loads_in_cpp(tmp_path, dtype, kind, layernorm):
    X, y = _data(seed=1)
    torch.manual_seed(4)
    extra = dict(num_control_points=8) if kind == "c0" else {}
    model = KAN([2, 6, 1], kind=kind, layernorm=layernorm, **extra).to(dtype)
    Xt, yt = torch.from_numpy(X).to(dtype), torch.from_numpy(y).to(dtype)
    kancore.fit(model, Xt, yt, steps=20, batch_size=64, lr=1e-2, progress=False,
                grid_update_every=10, grid_update_until=20)
    path = tmp_path / "torch.safetensors"
    kancore.save(model, path)
    net = NumpyKAN.load(path)
    name = "float64" if dtype == torch.float64 else "float32"
    with torch.no_grad():
        want = model(Xt).numpy()
    _close(net.predict(X.astype(name)), want, name)
    # and back again: C++ re-saves it, torch reads the C++ file
    again = tmp_path / "again.safetensors"
    net.save(again)
    with torch.no_grad():
        _close(kancore.load(again)(Xt).numpy(), want, name)


@pytest.mark.skipif("KANCORE_EXAMPLE_MODEL" not in os.environ,
                    reason="set by CI after building and running examples/cpp (make example-cpp)")
def test_the_cpp_example_programs_model_loads_in_python():
    path = os.environ["KANCORE_EXAMPLE_MODEL"]
    net = NumpyKAN.load(path)
    model = kancore.load(path)
    X = np.random.default_rng(5).uniform(-2, 2, size=(500, 2)).astype(net.dtype)
    with torch.no_grad():
        got = model(torch.from_numpy(X)).numpy()
    _close(got, net.predict(X), str(np.dtype(net.dtype)))
    rmse = float(np.sqrt(np.mean((got[:, 0] - np.sin(X[:, 0]) * np.cos(X[:, 1])) ** 2)))
    assert rmse < 0.05, rmse  # the example trained sin(x0) cos(x1)
