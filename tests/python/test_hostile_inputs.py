"""Hostile inputs: each case must end in a clear exception or a documented result, never a crash,
a hang, a silent wrong result or a lost file. Cases that could hang run in a subprocess with a
timeout."""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KANLayer, KANLinear, NumpyKAN  # noqa: E402

TIMEOUT = 60


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT)


# -- devices ------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [KANLinear(4, 3), KANLayer(4, 3)], ids=["bspline", "c0"])
def test_meta_input_with_real_parameters_is_refused(layer):
    x = torch.empty(5, 4, device="meta")
    with pytest.raises(ValueError, match="device"):
        layer(x)


def test_ops_called_directly_with_mixed_devices_are_refused():
    layer = KANLinear(4, 3)
    KANLayer(1, 1)  # registers the C0 ops
    x = torch.empty(5, 4, device="meta")
    with pytest.raises(ValueError, match="one device"):
        torch.ops.kancore.bspline_forward(x, layer.grid, layer.base_weight, layer.spline_weight,
                                          layer.spline_scaler)
    with pytest.raises(ValueError, match="one device"):
        torch.ops.kancore.bspline_backward(torch.empty(5, 3, device="meta"), x, layer.grid, layer.base_weight,
                                           layer.spline_weight, layer.spline_scaler, [True, True, True, True])
    with pytest.raises(ValueError, match="one device"):
        torch.ops.kancore.c0_forward(x, torch.zeros(4, 5, 3), 4.0, "embedding_bag")


# -- hangs and unbounded work ---------------------------------------------------------------------

def test_loading_a_fifo_or_dev_zero_returns_at_once(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        run = _run(f"import kancore\ntry:\n    kancore.load({str(path)!r})\nexcept ValueError as e:\n    print(e)")
        assert run.returncode == 0 and "not a regular file" in run.stdout, run.stderr


def test_absurd_mlp_target_is_refused_at_once():
    run = _run("import kancore\ntry:\n    kancore.mlp_with_same_parameters([3, 4, 2], 10**15)\n"
               "except ValueError as e:\n    print('ValueError', e)")
    assert run.returncode == 0 and run.stdout.startswith("ValueError"), run.stderr


# -- silent wrong results -------------------------------------------------------------------------

def test_numpykan_fit_refuses_transposed_targets():
    X = np.random.default_rng(0).uniform(-1, 1, (200, 2))
    with pytest.raises(ValueError, match="targets of shape"):
        NumpyKAN([2, 3, 2]).fit(X, X.T.copy(), epochs=1)


@pytest.mark.parametrize("kw", [dict(widths=[2, 2.7, 1]), dict(kind="c0", num_control_points=2.9),
                                dict(seed=1.5)])
def test_numpykan_refuses_non_integers(kw):
    widths = kw.pop("widths", [2, 2, 1])
    with pytest.raises(ValueError, match="must be an int"):
        NumpyKAN(widths, **kw)


def test_fit_refuses_non_finite_data_like_numpykan():
    X = torch.randn(32, 2)
    X[3, 1] = float("nan")
    model = kancore.KAN([2, 3, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="NaN"):
        kancore.fit(model, X, torch.zeros(32), steps=2, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="finite"):
        NumpyKAN([2, 3, 1]).fit(X.numpy(), np.zeros(32), epochs=1)


# -- files --------------------------------------------------------------------------------------

def test_save_never_replaces_a_good_file_with_an_unreadable_one(tmp_path):
    path = tmp_path / "good.safetensors"
    model = kancore.KAN([2, 3, 1])
    kancore.save(model, path)
    good = path.read_bytes()
    with torch.no_grad():
        model.layers[0].grid[0, 2] = float("nan")  # set by hand (or by an overflowing update)
    with pytest.raises(ValueError, match="would not load back"):
        kancore.save(model, path)
    assert path.read_bytes() == good
    with torch.no_grad():
        model.layers[0].grid[0, 2] = model.layers[0].grid[0, 1] - 1  # decreasing knots
    with pytest.raises(ValueError, match="non-decreasing"):
        kancore.save(model, path)
    with pytest.raises(ValueError, match="too wide"):  # its knots would overflow to inf
        kancore.KAN([2, 1], grid_range=(-1e308, 1e308))
    with pytest.raises(ValueError, match="too wide"):  # representable in float64, not in float32
        kancore.KANLinear(2, 1, grid_range=(-1e38, 3e38))
    assert path.read_bytes() == good
    kancore.load(path)


def test_save_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "private.safetensors"
    kancore.save(kancore.KAN([2, 1]), path)
    os.chmod(path, 0o600)
    kancore.save(kancore.KAN([2, 1]), path)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    net = NumpyKAN([2, 1])
    net.save(str(path))
    assert (os.stat(path).st_mode & 0o777) == 0o600


@pytest.mark.parametrize("front", ["torch", "numpy"])
def test_paths_with_nul_are_refused(tmp_path, front):
    bad = str(tmp_path / "model.safetensors") + "\0.txt"
    if front == "torch":
        with pytest.raises(ValueError, match="NUL|null"):
            kancore.save(kancore.KAN([2, 1]), bad)
        with pytest.raises(ValueError, match="NUL|null"):
            kancore.load(bad)
    else:
        with pytest.raises(ValueError, match="NUL"):
            NumpyKAN([2, 1]).save(bad)
        with pytest.raises(ValueError, match="NUL"):
            NumpyKAN.load(bad)
    assert not (tmp_path / "model.safetensors").exists()


def _misaligned(shape, dtype):
    """An array of `shape` whose data address is not a multiple of its itemsize."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.zeros(n * dtype.itemsize + 1, np.uint8)
    a = np.frombuffer(raw.data, dtype=dtype, count=n, offset=1).reshape(shape)
    assert a.__array_interface__["data"][0] % dtype.itemsize != 0 and not a.flags.aligned
    return a


def test_functional_passes_only_aligned_buffers_to_the_core(monkeypatch):
    from kancore import _core, functional

    seen = []
    real = _core.c0_forward

    def spy(*args, **kwargs):
        seen.extend(a for a in args[:3] if isinstance(a, int))
        return real(*args, **kwargs)

    monkeypatch.setattr(_core, "c0_forward", spy)
    rng = np.random.default_rng(0)
    x = _misaligned((6, 3), np.float32)
    x[...] = rng.standard_normal((6, 3))
    table = _misaligned((3, 5, 2), np.float32)
    table[...] = rng.standard_normal((3, 5, 2))
    y = functional.c0_forward(x, table)
    assert seen and all(addr % 4 == 0 for addr in seen), seen
    np.testing.assert_array_equal(y, functional.c0_forward(x.copy(), table.copy()))
    grid = np.tile(np.linspace(-2.2, 2.2, 12), (3, 1))
    xb = _misaligned((4, 3), np.float64)
    xb[...] = 0.5
    sw = _misaligned((2, 3, 8), np.float64)
    sw[...] = 1.0
    np.testing.assert_allclose(functional.bspline_forward(xb, grid, None, sw), 3.0)


@pytest.mark.parametrize("width,dtype", [(1e-320, torch.float64), (1e-40, torch.float32), (1e38, torch.float32),
                                         (1e308, torch.float64)])
def test_spline_widths_the_arithmetic_cannot_carry_are_refused(width, dtype):
    with pytest.raises(ValueError, match="spline_width"):
        KANLayer(2, 2, spline_width=width, dtype=dtype)
    npdt = np.float32 if dtype == torch.float32 else np.float64
    with pytest.raises(ValueError, match="spline_width"):
        kancore.functional.c0_forward(np.zeros((3, 2), npdt), np.ones((2, 4, 2), npdt), spline_width=width)
    with pytest.raises(ValueError, match="spline_width"):
        NumpyKAN([2, 1], kind="c0", spline_width=width, dtype="float32" if npdt is np.float32 else "float64")


def test_wide_but_representable_widths_still_work():
    y = kancore.functional.c0_forward(np.ones((3, 2)), np.ones((2, 4, 2)), spline_width=1e30)
    assert np.isfinite(y).all()
    assert torch.isfinite(KANLayer(2, 2, spline_width=1e-30, dtype=torch.float64)(torch.ones(3, 2, dtype=torch.float64))).all()


def test_numpykan_saves_under_a_long_file_name(tmp_path):
    path = tmp_path / ("m" * 235 + ".safetensors")  # 247 characters, under NAME_MAX
    net = NumpyKAN([2, 1], seed=3)
    net.save(path)
    assert np.array_equal(NumpyKAN.load(path)["layers.0.spline_weight"], net["layers.0.spline_weight"])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kancore-")]


# -- crashes: allocation failures inside parallel regions ------------------------------------------

def _limited(code: str, address_space: int) -> subprocess.CompletedProcess:
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)


@pytest.mark.skipif(bool(os.environ.get("KANCORE_SANITIZED")),
                    reason="ASan reserves terabytes of address space: an address-space limit cannot apply")
def test_refine_out_of_memory_is_a_python_error_not_an_abort():
    code = ("import kancore\n"
            "try:\n    kancore.KANLinear(4, 3).refine(10**7)\n    print('ok')\n"
            "except (MemoryError, ValueError) as e:\n    print(type(e).__name__)\n")
    run = _limited(code, 4_500_000_000)
    assert run.returncode == 0, f"died with {run.returncode}: {run.stderr[-2000:]}"
    assert run.stdout.strip() in ("ok", "MemoryError", "ValueError")


def test_absurd_grid_update_is_refused_up_front():
    net = NumpyKAN([1, 1], grid_size=2 ** 16)
    before = net["layers.0.grid"].copy()
    with pytest.raises(ValueError, match="smaller grid_size"):
        net.update_grids(np.zeros((4, 1), np.float32))
    assert np.array_equal(net["layers.0.grid"], before)


# -- grid updates that would write ±inf knots ------------------------------------------------------

def test_update_grid_near_the_dtype_limit_raises_and_changes_nothing():
    layer = KANLinear(2, 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    x = torch.tensor([[-3e38, 3e38], [3e38, -3e38], [1e38, 0.0]])
    with pytest.raises(ValueError, match="overflow"):
        layer.update_grid(x)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())
    with pytest.raises(ValueError, match="overflow"):
        layer.update_grid(torch.randn(16, 2), margin=3e38)
    assert torch.isfinite(layer(torch.randn(4, 2))).all()


def test_numpykan_fit_with_an_overflowing_grid_update_leaves_a_usable_network():
    X = np.tile(np.array([[-3e38], [3e38]], np.float32), (8, 1))
    net = NumpyKAN([1, 2, 1], seed=0)
    before = net.parameters()
    with pytest.raises(ValueError, match="overflow"):
        net.fit(X, np.zeros(16, np.float32), epochs=2, grid_update_every=1)
    after = net.parameters()
    for name, value in after.items():
        assert np.isfinite(value).all(), name
    assert np.array_equal(after["layers.0.grid"], before["layers.0.grid"])


def test_numpykan_save_never_replaces_a_good_file_with_an_unreadable_one(tmp_path):
    path = tmp_path / "good.safetensors"
    net = NumpyKAN([2, 2, 1], seed=0)
    net.save(path)
    good = path.read_bytes()
    grid = net["layers.0.grid"]
    grid[0, 3] = np.nan
    net.set_parameter("layers.0.grid", grid)
    with pytest.raises(ValueError, match="would not load back"):
        net.save(path)
    assert path.read_bytes() == good


@pytest.mark.parametrize("kw", [dict(seed=1.5), dict(batch_size=2.5), dict(grid_update_every=1.5),
                                dict(grid_update_samples=0), dict(epochs=True)])
def test_numpykan_fit_refuses_non_integer_settings(kw):
    X = np.zeros((8, 2))
    with pytest.raises(ValueError, match="must be an int"):
        NumpyKAN([2, 1]).fit(X, X[:, 0], **{"epochs": 1, **kw})
