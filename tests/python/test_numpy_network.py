"""kancore.NumpyKAN (no torch): predictions against a NumPy re-statement of the model-format
forward, training, save/load, and the file read back by the PyPI safetensors package."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kancore
from kancore import NumpyKAN


def _basis(t, k, x):
    """Cox-de Boor over one feature's knots t (0/0 counts as 0): (n, len(t)-k-1)."""
    x = x[:, None]
    B = ((x >= t[None, :-1]) & (x < t[None, 1:])).astype(np.float64)
    for p in range(1, k + 1):
        n = len(t) - 1 - p
        nb = np.zeros((x.shape[0], n))
        for j in range(n):
            d1, d2 = t[j + p] - t[j], t[j + p + 1] - t[j + 1]
            if d1 != 0:
                nb[:, j] += (x[:, 0] - t[j]) / d1 * B[:, j]
            if d2 != 0:
                nb[:, j] += (t[j + p + 1] - x[:, 0]) / d2 * B[:, j + 1]
        B = nb
    return B


def reference_forward(net, X):
    """docs/model_format.md's forward, in float64, from the network's own tensors."""
    c = net.config
    P = {k: v.astype(np.float64) for k, v in net.parameters().items()}
    h = np.asarray(X, dtype=np.float64)
    n = len(c["layers"])
    for j, layer in enumerate(c["layers"]):
        p = f"layers.{j}."
        if layer["kind"] == "c0":
            C = P[p + "kan_weight"]
            K, W = layer["num_control_points"], layer["spline_width"]
            if layer["fitted_domain"]:
                h = h * P[p + "input_scale"] + P[p + "input_offset"]
            u = ((h + W / 2) * (K - 1)) / W
            k = np.clip(np.floor(u), 0, K - 2).astype(np.int64)
            t = u - k
            i = np.arange(h.shape[1])[None, :]
            y = ((1 - t)[..., None] * C[i, k] + t[..., None] * C[i, k + 1]).sum(axis=1)
        else:
            g, bw, sw, ss = (P[p + s] for s in ("grid", "base_weight", "spline_weight", "spline_scaler"))
            silu = h / (1 + np.exp(-h))
            y = silu @ bw.T
            for i in range(h.shape[1]):
                Bi = _basis(g[i], layer["spline_order"], h[:, i])
                y += Bi @ (sw[:, i, :] * ss[:, i, None]).T
        if c["layernorm"] and j < n - 1:
            m = y.mean(axis=1, keepdims=True)
            v = ((y - m) ** 2).mean(axis=1, keepdims=True)
            y = (y - m) / np.sqrt(v + c["layernorm_eps"]) * P[f"norms.{j}.weight"] + P[f"norms.{j}.bias"]
        h = y
    return h


def _perturb(net, seed):
    rng = np.random.default_rng(seed)
    for name, group in net.parameter_groups().items():
        if group != "buffer":
            value = net[name]
            net.set_parameter(name, value + rng.uniform(-0.3, 0.3, value.shape))


@pytest.mark.parametrize("kind", ["bspline", "c0", ["bspline", "c0", "bspline"]])
@pytest.mark.parametrize("layernorm", [False, True])
def test_predict_matches_numpy_restatement_float64(kind, layernorm):
    net = NumpyKAN([3, 4, 5, 2], kind=kind, dtype="float64", layernorm=layernorm, grid_size=4,
                   num_control_points=6, spline_width=3.0, seed=1)
    _perturb(net, 2)
    X = np.random.default_rng(0).uniform(-1.5, 1.5, (20, 3))
    net.update_grids(X)  # fitted C0 domains and data-driven knots
    np.testing.assert_allclose(net.predict(X), reference_forward(net, X), rtol=1e-10, atol=1e-12)


def test_predict_float32_and_leading_dims():
    net = NumpyKAN([2, 3, 1], kind=["c0", "bspline"], layernorm=True, seed=3)
    X = np.random.default_rng(1).uniform(-2, 2, (4, 5, 2)).astype(np.float32)
    y = net.predict(X)
    assert y.shape == (4, 5, 1) and y.dtype == np.float32
    np.testing.assert_allclose(y.reshape(-1, 1), reference_forward(net, X.reshape(-1, 2)), rtol=1e-4, atol=1e-5)


def test_gradients_against_finite_differences():
    net = NumpyKAN([2, 3, 1], kind=["bspline", "c0"], dtype="float64", layernorm=True, seed=4)
    _perturb(net, 5)
    X = np.random.default_rng(2).uniform(-1, 1, (5, 2))
    gy = np.random.default_rng(3).normal(size=(5, 1))
    gx = net.forward_backward(X, gy)
    h = 1e-6
    for name in ["norms.0.weight", "layers.1.kan_weight", "layers.0.base_weight"]:
        g, w = net.gradient(name), net[name]
        flat = w.reshape(-1)
        for e in range(0, flat.size, max(1, flat.size // 7)):
            up, down = flat.copy(), flat.copy()
            up[e] += h
            down[e] -= h
            net.set_parameter(name, up.reshape(w.shape))
            fu = (net.predict(X) * gy).sum()
            net.set_parameter(name, down.reshape(w.shape))
            fd = (net.predict(X) * gy).sum()
            net.set_parameter(name, w)
            assert g.reshape(-1)[e] == pytest.approx((fu - fd) / (2 * h), rel=1e-5, abs=1e-7), (name, e)
    Xp = X.copy()
    Xp[1, 0] += h
    Xm = X.copy()
    Xm[1, 0] -= h
    assert gx[1, 0] == pytest.approx(((net.predict(Xp) - net.predict(Xm)) * gy).sum() / (2 * h), rel=1e-5)


@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_fit_reduces_the_loss(kind):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (400, 2))
    y = np.sin(X[:, 0]) * np.cos(X[:, 1])
    net = NumpyKAN([2, 6, 1], kind=kind, layernorm=True, seed=0)
    before = np.mean((net.predict(X)[:, 0] - y) ** 2)
    logs = []
    hist = net.fit(X, y, epochs=30, batch_size=32, lr=0.02, val_fraction=0.2, grid_update_every=10,
                   grid_update_until=11, callback=logs.append, seed=1)
    after = np.mean((net.predict(X)[:, 0] - y) ** 2)
    assert len(hist["train_loss"]) == 30 == len(hist["val_loss"]) == len(logs)
    assert logs[0]["grid_updated"] and not logs[1]["grid_updated"]
    assert after < 0.3 * before
    assert hist["stop_reason"] == "completed"
    assert hist["epoch"] == [float(e + 1) for e in range(30)]


# kancore.fit's history keys (kancore.training.HISTORY_KEYS), written out: this file runs without torch.
HISTORY_KEYS = {"step", "epoch", "train_loss", "val_loss", "test_loss", "reg", "lr", "grid_update_steps",
                "refine_steps", "best", "best_step", "best_epoch", "best_loss", "stop_reason"}


def test_fit_history_has_the_torch_front_end_keys():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (100, 2))
    net = NumpyKAN([2, 3, 1], seed=0)
    hist = net.fit(X, X[:, 0] * X[:, 1], epochs=4, batch_size=32, val_fraction=0.2, grid_update_every=2)
    assert set(hist) == HISTORY_KEYS
    assert hist["val_loss"][hist["best"]] == hist["best_loss"]
    try:
        from kancore.training import HISTORY_KEYS as torch_keys
    except ImportError:  # no torch here
        return
    assert set(torch_keys) == HISTORY_KEYS


def test_fit_rejects_targets_of_the_wrong_shape():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    Y = np.stack([X[:, 0], X[:, 1]], axis=1)
    net = NumpyKAN([2, 3, 2], seed=0)
    with pytest.raises(ValueError, match=r"\(200, 2\)"):
        net.fit(X, Y.T, epochs=1)  # (2, 200): the same number of values, scrambled
    with pytest.raises(ValueError, match="targets of shape"):
        net.fit(X, Y[:, 0], epochs=1)  # (n,) only for one output
    with pytest.raises(ValueError, match="at least two outputs"):
        NumpyKAN([2, 1]).fit(X, np.zeros(200, np.int64), loss="cross_entropy", epochs=1)
    NumpyKAN([2, 1]).fit(X, X[:, 0], epochs=1)  # (n,) is fine for one output


def test_fit_deprecated_grid_samples_warns():
    X = np.random.default_rng(0).uniform(-1, 1, (64, 2))
    net = NumpyKAN([2, 1], seed=0)
    with pytest.warns(FutureWarning, match="grid_update_samples"):
        net.fit(X, X[:, 0], epochs=1, grid_update_every=1, grid_samples=16)


def test_fit_cross_entropy_and_early_stopping():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (200, 2))
    labels = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    net = NumpyKAN([2, 4, 2], seed=2)
    hist = net.fit(X, labels, loss="cross_entropy", epochs=300, lr=0.05, validation=(X[:50], labels[:50]),
                   patience=5, optimizer="adamw", weight_decay=1e-4)
    assert hist["train_loss"][-1] < 0.7 * hist["train_loss"][0]
    val = hist["val_loss"]
    assert min(val) == hist["best_loss"] == val[hist["best_epoch"]]


def test_bad_inputs_raise_value_error():
    net = NumpyKAN([2, 1])
    with pytest.raises(ValueError):
        net.predict(np.zeros((3, 4)))
    X = np.zeros((4, 2))
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        net.fit(X, np.zeros(4), epochs=1)
    with pytest.raises(ValueError):
        net.fit(np.zeros((0, 2)), np.zeros(0), epochs=1)
    with pytest.raises(ValueError):
        NumpyKAN([2, 1], kind="relu")
    with pytest.raises(KeyError):
        net["layers.7.grid"]


def test_save_load_round_trip(tmp_path):
    net = NumpyKAN([3, 4, 2], kind=["c0", "bspline"], dtype="float64", layernorm=True, seed=5)
    X = np.random.default_rng(4).uniform(-1, 1, (16, 3))
    net.update_grids(X)
    path = tmp_path / "m.safetensors"
    net.save(path)
    back = NumpyKAN.load(path)
    assert back.config == net.config
    for name, value in net.parameters().items():
        assert np.array_equal(back[name], value), name
    assert np.array_equal(back.predict(X), net.predict(X))
    assert back.to_bytes() == net.to_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="model file"):
        NumpyKAN.from_bytes(path.read_bytes()[:-3])


def test_file_is_read_by_the_safetensors_package(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    net = NumpyKAN([2, 3, 1], kind=["c0", "bspline"], dtype="float32", layernorm=True, num_control_points=5,
                   grid_size=3, spline_order=2, seed=6)
    net.update_grids(np.random.default_rng(5).uniform(-1, 1, (10, 2)))
    path = tmp_path / "m.safetensors"
    net.save(path)
    tensors = load_file(str(path))
    expected = {
        "layers.0.kan_weight": (2, 5, 3), "layers.0.input_scale": (2,), "layers.0.input_offset": (2,),
        "layers.1.grid": (3, 3 + 2 * 2 + 1), "layers.1.base_weight": (1, 3),
        "layers.1.spline_weight": (1, 3, 3 + 2), "layers.1.spline_scaler": (1, 3),
        "norms.0.weight": (3,), "norms.0.bias": (3,),
    }
    assert {k: v.shape for k, v in tensors.items()} == expected
    for name, value in tensors.items():
        assert value.dtype == np.float32
        assert np.array_equal(value, net[name]), name
    with safetensors.safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    assert meta["format"] == "kancore.network" and meta["format_version"] == "1"
    cfg = json.loads(meta["config"])
    assert cfg["dtype"] == "float32" and cfg["layernorm"] is True and cfg["layernorm_eps"] == 1e-5
    assert cfg["layers"] == [
        {"kind": "c0", "in_features": 2, "out_features": 3, "num_control_points": 5, "spline_width": 4,
         "fitted_domain": True},
        {"kind": "bspline", "in_features": 3, "out_features": 1, "grid_size": 3, "spline_order": 2},
    ]
    # And a file written by the safetensors package with our metadata loads back.
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata=meta)
    assert np.array_equal(NumpyKAN.load(other).predict(np.ones((1, 2))), net.predict(np.ones((1, 2))))


def test_import_does_not_need_torch():
    code = ("import sys, numpy as np, kancore; net = kancore.NumpyKAN([2, 1]); net.predict(np.zeros((1, 2)));"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.skipif(bool(os.environ.get("KANCORE_SANITIZED")),
                    reason="make sanitize runs a staged copy of the package without the C++ package")
def test_cmake_dir_is_printed():
    out = subprocess.run([sys.executable, "-m", "kancore", "--cmake-dir"], check=True, capture_output=True, text=True)
    from pathlib import Path

    d = Path(out.stdout.strip())
    assert (d / "kancoreConfig.cmake").is_file() and (d / "kancoreTargets.cmake").is_file()
    assert Path(kancore.__file__).parent in d.parents


def test_failed_grid_update_leaves_the_network_unchanged():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(64, 2))
    net = NumpyKAN([2, 3, 1], kind=["bspline", "c0"], dtype="float64", seed=1)
    net.update_grids(X)  # layer 1 now has a fitted domain
    net.set_parameter("layers.1.input_scale", np.zeros(3))  # invalid: the next fit must refuse it
    before = {k: v.copy() for k, v in net.parameters().items()}
    with pytest.raises(ValueError):
        net.update_grids(X)
    after = net.parameters()
    assert sorted(after) == sorted(before)
    for k in before:  # layer 0 (updated first) must not have moved either
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)


def test_loading_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises((RuntimeError, ValueError), match="not a regular file"):
        NumpyKAN.load(tmp_path)


def test_loading_a_missing_file_raises_file_not_found(tmp_path):
    path = tmp_path / "no_such_model.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        NumpyKAN.load(path)
    assert info.value.filename == str(path)
    assert info.value.errno == 2  # ENOENT, as open() reports it
    assert "no such model file" in str(info.value)


def _pickle_like_bytes():
    """What torch.save writes for a legacy (non-zip) pickle: protocol-2 opcodes up front."""
    import pickle

    return pickle.dumps({"state_dict": {"w": [0.5] * 64}, "protocol_version": 1001}, protocol=2)


@pytest.mark.parametrize("kind", ["pickle", "random", "text", "other_safetensors"])
def test_loading_a_foreign_file_says_it_is_not_a_kancore_model(tmp_path, kind):
    if kind == "pickle":
        data = _pickle_like_bytes()
    elif kind == "random":
        data = np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    elif kind == "text":
        data = b"x,y\n0.1,0.2\n0.3,0.4\n"
    else:  # a valid safetensors file without kancore's metadata
        header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
        header += b" " * (-len(header) % 8)
        data = len(header).to_bytes(8, "little") + header + np.zeros(2, np.float32).tobytes()
    path = tmp_path / f"{kind}.bin"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"not a kancore model file \(.+\)") as info:
        NumpyKAN.load(path)
    assert str(info.value).startswith(f"{path}: not a kancore model file (")


def test_a_corrupt_kancore_file_keeps_its_precise_message(tmp_path):
    net = NumpyKAN([2, 1], kind="c0", dtype="float32", seed=0)
    path = tmp_path / "model.safetensors"
    net.save(path)
    data = path.read_bytes()
    path.write_bytes(data[:-4])  # one float short: a kancore file, truncated
    with pytest.raises(ValueError, match="model file") as info:
        NumpyKAN.load(path)
    assert "not a kancore model file" not in str(info.value)


def test_empty_validation_set_is_rejected():
    X = np.zeros((8, 2))
    net = NumpyKAN([2, 1], dtype="float64")
    with pytest.raises(ValueError, match="non-empty"):
        net.fit(X, np.zeros(8), epochs=1, validation=(X[:0], np.zeros(0)))


def test_two_threads_on_one_network_do_not_crash():
    import threading

    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, size=(256, 2))
    y = np.sin(X[:, :1])
    net = NumpyKAN([2, 4, 1], kind="c0", dtype="float64")
    errors = []

    def train():
        try:
            for _ in range(5):
                net.fit(X, y, epochs=2, grid_update_every=1, grid_update_until=2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=train)
    t.start()
    for _ in range(200):
        assert np.isfinite(net.predict(X)).all()
    t.join()
    assert not errors


@pytest.mark.parametrize("kw", [dict(widths=[2, 2.7, 1]), dict(num_control_points=2.9, kind="c0"),
                                dict(grid_size=5.5), dict(spline_order=True), dict(seed=1.5), dict(seed=-1)])
def test_non_integer_sizes_are_rejected_not_truncated(kw):
    widths = kw.pop("widths", [2, 3, 1])
    with pytest.raises(ValueError, match="must be an int"):
        NumpyKAN(widths, **kw)


def test_fit_rejects_non_integer_epochs():
    X = np.zeros((8, 2))
    with pytest.raises(ValueError, match="epochs must be an int"):
        NumpyKAN([2, 1]).fit(X, X[:, 0], epochs=1.5)


@pytest.mark.parametrize("kind", ["bspline", "c0"])
def test_refine_keeps_the_function_and_a_grid_schedule_extends_the_grid(kind):
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(256, 2))
    y = np.sin(X[:, 0]) * np.cos(X[:, 1])
    net = NumpyKAN([2, 4, 1], kind=kind, dtype="float64", seed=2, **({"grid_size": 3} if kind == "bspline"
                                                                     else {"num_control_points": 4}))
    before = net(X * 2)  # far outside the grids too
    net.refine(6 if kind == "bspline" else 7)  # multiples of the old sizes: the same function
    np.testing.assert_allclose(net(X * 2), before, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        net.refine(0)
    seen = []
    small = [3, 6, 12] if kind == "bspline" else [4, 7, 13]
    hist = net.fit(X, y, epochs=30, batch_size=256, lr=0.02, grid_schedule=small, restore_best=False,
                   callback=lambda log: seen.append(log["refined_to"]))
    # 6 / 7 already: the first stage refines back down to 3 / 4 at epoch 0, then 10 and 20.
    assert [size for _, size in hist["refine_steps"]] == small
    assert [s for s in seen if s] == small
    assert [step for step, _ in hist["refine_steps"]] == [0, 10, 20]
    with pytest.raises(ValueError, match="stage_epochs"):
        net.fit(X, y, grid_schedule=[3, 6], stage_epochs=[2])
    hist = net.fit(X, y, grid_schedule=small[:2], stage_epochs=[2, 3], batch_size=256)
    assert len(hist["train_loss"]) == 5


def test_numpy_fit_linear_reg_schedule():
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(128, 2))
    y = np.sin(X[:, 0]) * X[:, 1]
    ends = {}
    for name, w, sched in (("none", 0.0, "constant"), ("linear", 0.5, "linear"), ("constant", 0.5, "constant")):
        net = NumpyKAN([2, 4, 1], dtype="float64", seed=3)
        net.fit(X, y, epochs=40, batch_size=128, lr=0.02, reg_weight=w, reg_schedule=sched, restore_best=False)
        ends[name] = net.regularization(1.0)
    assert ends["linear"] < ends["none"] and ends["constant"] < ends["none"]
    with pytest.raises(ValueError, match="reg_schedule"):
        net.fit(X, y, epochs=1, reg_schedule="exponential")
