"""kancore.save / kancore.load: the safetensors model file of format of docs/model_format.md.

Oracles: the PyPI ``safetensors`` package (an independent parser and writer of the container),
the spec's tensor names and config written out by hand here, and bitwise-equal predictions after
a round trip. A catalogue of corrupt and hostile files must raise ValueError, never crash or
allocate what the file does not hold.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KAN, KANLayer, KANLinear  # noqa: E402
from kancore.model_io import read_safetensors, write_safetensors  # noqa: E402

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import safe_open  # noqa: E402

CONFIGS = [
    dict(),
    dict(layernorm=True),
    dict(kind="c0", num_control_points=7, spline_width=3.0),
    dict(kind="c0", layernorm=True, variant="DCT"),
    dict(kind="c0", variant="parallel_scan", dtype=torch.float64),
    dict(dtype=torch.float64, layernorm=True, grid_size=4, spline_order=2),
]


def _model(fit_grid=False, **kw):
    torch.manual_seed(0)
    m = KAN([3, 5, 2], **kw)
    dtype = kw.get("dtype", torch.float32)
    with torch.no_grad():  # move off the initial lines so the weights are generic
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(64, 3, dtype=dtype)
    if fit_grid:
        m(x, update_grid=True)
    return m, x


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
@pytest.mark.parametrize("fit_grid", [False, True])
def test_round_trip_is_bitwise(tmp_path, kw, fit_grid):
    m, x = _model(fit_grid, **kw)
    path = tmp_path / "m.safetensors"
    kancore.save(m, path)
    m2 = kancore.load(path)
    assert isinstance(m2, KAN)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    # Saving again gives the same bytes (the file is a function of the model).
    kancore.save(m, tmp_path / "m2.safetensors")
    assert (tmp_path / "m2.safetensors").read_bytes() == path.read_bytes()
    # Loaded C0 layers are variant B-spline holding the table; dtype is kept.
    for layer in m2.layers:
        if isinstance(layer, KANLayer):
            assert layer.variant == "B-spline"
    assert next(m2.parameters()).dtype == kw.get("dtype", torch.float32)


def test_names_metadata_and_layout_match_the_spec(tmp_path):
    m, x = _model(True, kind="c0", layernorm=True, num_control_points=6)
    path = tmp_path / "c0.safetensors"
    kancore.save(m, path)
    with safe_open(str(path), "np") as f:
        meta = f.metadata()
        names = set(f.keys())
        arrays = {k: f.get_tensor(k) for k in names}
    assert meta["format"] == "kancore.network" and meta["format_version"] == "1"
    cfg = json.loads(meta["config"])
    assert cfg["dtype"] == "float32" and cfg["layernorm"] is True and cfg["layernorm_eps"] == 1e-5
    assert [L["kind"] for L in cfg["layers"]] == ["c0", "c0"]
    L0 = cfg["layers"][0]
    assert (L0["in_features"], L0["out_features"], L0["num_control_points"], L0["spline_width"],
            L0["fitted_domain"]) == (3, 5, 6, 4.0, True)
    assert names == {"layers.0.kan_weight", "layers.0.input_scale", "layers.0.input_offset",
                     "layers.1.kan_weight", "layers.1.input_scale", "layers.1.input_offset",
                     "norms.0.weight", "norms.0.bias"}
    assert arrays["layers.0.kan_weight"].shape == (3, 6, 5) and arrays["layers.0.kan_weight"].dtype == np.float32
    assert arrays["norms.0.weight"].shape == (5,)
    np.testing.assert_array_equal(arrays["layers.1.kan_weight"], m.layers[1].kan_weight.detach().numpy())
    np.testing.assert_array_equal(arrays["layers.0.input_scale"], m.layers[0].input_scale.numpy())
    # Header padded to a multiple of 8, tensors back to back covering the data section.
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - n
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))

    b, _ = _model(False)
    kancore.save(b, tmp_path / "b.safetensors")
    with safe_open(str(tmp_path / "b.safetensors"), "np") as f:
        cfg = json.loads(f.metadata()["config"])
        shapes = {k: f.get_tensor(k).shape for k in f.keys()}
    assert cfg["layernorm"] is False
    assert cfg["layers"][1] == {**cfg["layers"][1], "kind": "bspline", "in_features": 5, "out_features": 2,
                                "grid_size": 5, "spline_order": 3}
    assert shapes == {"layers.0.grid": (3, 12), "layers.0.base_weight": (5, 3), "layers.0.spline_weight": (5, 3, 8),
                      "layers.0.spline_scaler": (5, 3), "layers.1.grid": (5, 12), "layers.1.base_weight": (2, 5),
                      "layers.1.spline_weight": (2, 5, 8), "layers.1.spline_scaler": (2, 5)}


def test_file_written_by_the_safetensors_package_loads(tmp_path):
    # The other direction: an independent writer, our reader.
    m, x = _model(False, kind="c0", num_control_points=5, layernorm=False)
    cfg = {"dtype": "float32", "layernorm": False, "layernorm_eps": 1e-5,
           "layers": [{"kind": "c0", "in_features": 3, "out_features": 5, "num_control_points": 5,
                       "spline_width": 4.0, "fitted_domain": False, "future_key": [1, 2]},
                      {"kind": "c0", "in_features": 5, "out_features": 2, "num_control_points": 5,
                       "spline_width": 4.0, "fitted_domain": False}],
           "training": {"note": "unknown keys are ignored"}}
    tensors = {f"layers.{j}.kan_weight": layer.kan_weight.detach().numpy() for j, layer in enumerate(m.layers)}
    path = tmp_path / "ext.safetensors"
    safetensors_numpy.save_file(tensors, str(path), metadata={"format": "kancore.network", "format_version": "1",
                                                               "config": json.dumps(cfg)})
    with torch.no_grad():
        assert torch.equal(kancore.load(path)(x), m(x))


def test_single_layers_sequential_and_mixed_kinds(tmp_path):
    torch.manual_seed(1)
    x = torch.randn(10, 3)
    for model in (KANLayer(3, 2, num_control_points=4), KANLinear(3, 2),
                  torch.nn.Sequential(KANLayer(3, 4, num_control_points=4), KANLinear(4, 2, grid_size=3))):
        kancore.save(model, tmp_path / "s.safetensors")
        loaded = kancore.load(tmp_path / "s.safetensors")
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    assert loaded.kind == "mixed"


def test_standalone_scale_off_saves_ones(tmp_path):
    torch.manual_seed(2)
    layer = KANLinear(2, 3, enable_standalone_scale_spline=False)
    kancore.save(layer, tmp_path / "n.safetensors")
    arrays, _ = read_safetensors(tmp_path / "n.safetensors")
    np.testing.assert_array_equal(arrays["layers.0.spline_scaler"], np.ones((3, 2), np.float32))
    x = torch.randn(7, 2)
    with torch.no_grad():
        assert torch.allclose(kancore.load(tmp_path / "n.safetensors")(x), layer(x), atol=1e-6)


def test_save_rejects_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="KAN"):
        kancore.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="SiLU"):
        kancore.save(KAN([2, 2], base_activation=torch.nn.Tanh), tmp_path / "x.safetensors")
    m = KAN([2, 3, 1])
    m.layers[1].double()
    with pytest.raises(ValueError, match="float32"):
        kancore.save(m, tmp_path / "x.safetensors")
    with pytest.raises(ValueError, match="reserved"):
        kancore.save(KAN([2, 1]), tmp_path / "x.safetensors", metadata={"config": "{}"})
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    kancore.save(KAN([2, 1]), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        kancore.save(KAN([2, 3, 1]), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_saved_file_has_the_usual_permissions(tmp_path):
    path = tmp_path / "m.safetensors"
    kancore.save(KAN([2, 1]), path)
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert (path.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)


# -- the corrupt-file catalogue ---------------------------------------------------------------------

def _good_file(tmp_path):
    m, _ = _model(False, kind="c0", num_control_points=4, layernorm=True)
    path = tmp_path / "good.safetensors"
    kancore.save(m, path)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write(tmp_path, header, body, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def _edit_config(header, fn):
    cfg = json.loads(header["__metadata__"]["config"])
    fn(cfg)
    header["__metadata__"]["config"] = json.dumps(cfg)


def _corruptions():
    def name(h):
        return "layers.0.kan_weight"

    cases = {
        "offset past end": lambda h, b: (h[name(h)].__setitem__("data_offsets", [0, 10 ** 9]), b),
        "negative offset": lambda h, b: (h[name(h)].__setitem__("data_offsets", [-4, h[name(h)]["data_offsets"][1]]), b),
        # same-size tensors, so only the layout check (not the size check) can catch it
        "overlap": lambda h, b: (h["norms.0.bias"].__setitem__("data_offsets", h["norms.0.weight"]["data_offsets"]), b),
        "wrong dtype F16": lambda h, b: (h[name(h)].__setitem__("dtype", "F16"), b),
        "dtype F64 in a float32 file": lambda h, b: (
            h.update({k: {**v, "dtype": "F64", "shape": v["shape"][:-1] + [v["shape"][-1]],
                          "data_offsets": [2 * v["data_offsets"][0], 2 * v["data_offsets"][1]]}
                      for k, v in h.items() if k != "__metadata__"}), b + b),
        "shape not matching bytes": lambda h, b: (h[name(h)].__setitem__("shape", [3, 4, 6]), b),
        "shape not matching config": lambda h, b: (
            _edit_config(h, lambda c: c["layers"][0].__setitem__("num_control_points", 5)), b),
        "bool in shape": lambda h, b: (h[name(h)].__setitem__("shape", [True, 4, 5]), b),
        "trailing bytes": lambda h, b: (h, b + b"\0" * 8),
        "missing tensor": lambda h, b: (h.pop("norms.0.bias"), b),
        "extra tensor": lambda h, b: (h.__setitem__("layers.0.extra", {"dtype": "F32", "shape": [0],
                                                                      "data_offsets": [len(b), len(b)]}), b),
        "unknown kind": lambda h, b: (_edit_config(h, lambda c: c["layers"][0].__setitem__("kind", "relu")), b),
        "format version 3": lambda h, b: (h["__metadata__"].__setitem__("format_version", "3"), b),
        "wrong format": lambda h, b: (h["__metadata__"].__setitem__("format", "other"), b),
        "no metadata": lambda h, b: (h.pop("__metadata__"), b),
        "config not JSON": lambda h, b: (h["__metadata__"].__setitem__("config", "{layers:"), b),
        "config dtype": lambda h, b: (_edit_config(h, lambda c: c.__setitem__("dtype", "float16")), b),
        "layers do not chain": lambda h, b: (
            _edit_config(h, lambda c: c["layers"][1].__setitem__("in_features", 4)), b),
        "K below 2": lambda h, b: (_edit_config(h, lambda c: c["layers"][0].__setitem__("num_control_points", 1)), b),
        "negative spline_width": lambda h, b: (_edit_config(h, lambda c: c["layers"][0].__setitem__("spline_width", -4)), b),
        "fitted_domain not bool": lambda h, b: (_edit_config(h, lambda c: c["layers"][0].__setitem__("fitted_domain", 1)), b),
        "layernorm flag off": lambda h, b: (_edit_config(h, lambda c: c.__setitem__("layernorm", False)), b),
        "no layers": lambda h, b: (_edit_config(h, lambda c: c.__setitem__("layers", [])), b),
        "metadata value not string": lambda h, b: (h["__metadata__"].__setitem__("extra", 3), b),
    }
    return cases


@pytest.mark.parametrize("case", sorted(_corruptions()))
def test_corrupt_header_raises_value_error(tmp_path, case):
    header, body = _good_file(tmp_path)
    body = _corruptions()[case](header, body)[1]  # each case edits the header in place
    assert isinstance(header, dict) and "__metadata__" in header or case == "no metadata"
    path = _write(tmp_path, header, body)
    with pytest.raises(ValueError) as info:
        kancore.load(path)
    # The rejection must be about the edit, not about a header that stopped being an object.
    assert "must be a JSON object" not in str(info.value), str(info.value)


@pytest.mark.parametrize("cut", [0, 4, 8, 20, -1, -100])
def test_truncated_file_raises_value_error(tmp_path, cut):
    m, _ = _model(False)
    path = tmp_path / "m.safetensors"
    kancore.save(m, path)
    raw = path.read_bytes()
    path.write_bytes(raw[:cut] if cut >= 0 else raw[:len(raw) + cut])
    with pytest.raises(ValueError):
        kancore.load(path)


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"a": 1, "a": 2}', b"null"])
def test_bad_header_json_raises_value_error(tmp_path, raw):
    path = _write(tmp_path, None, b"", raw_header=raw)
    with pytest.raises(ValueError):
        kancore.load(path)


def test_hostile_header_length_and_non_finite_knots(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    with pytest.raises(ValueError, match="header length"):
        kancore.load(path)
    m, _ = _model(False)
    kancore.save(m, tmp_path / "m.safetensors")
    arrays, meta = read_safetensors(tmp_path / "m.safetensors")
    arrays["layers.0.grid"][0, 3] = np.nan
    write_safetensors(tmp_path / "nan.safetensors", arrays, meta)
    with pytest.raises(ValueError, match="finite"):
        kancore.load(tmp_path / "nan.safetensors")
    arrays["layers.0.grid"][0, 3] = 10.0  # knots out of order
    write_safetensors(tmp_path / "order.safetensors", arrays, meta)
    with pytest.raises(ValueError, match="non-decreasing"):
        kancore.load(tmp_path / "order.safetensors")


def test_good_file_of_the_catalogue_loads(tmp_path):
    # The catalogue's starting point is valid: each case fails because of its edit alone.
    header, body = _good_file(tmp_path)
    assert isinstance(kancore.load(_write(tmp_path, header, body)), KAN)


def test_loading_draws_no_random_numbers_and_skips_the_initial_fit(tmp_path):
    m, _ = _model(False, grid_size=200)  # efficient-kan's initial fit would be a (201 x 203) lstsq per input
    path = tmp_path / "b.safetensors"
    kancore.save(m, path)
    torch.manual_seed(123)
    kancore.load(path)
    after_load = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after_load, torch.rand(3))


def test_many_entries_over_one_data_block_are_rejected_before_copying(tmp_path):
    body = b"\0" * (1 << 20)
    header = {f"t{j}": {"dtype": "F32", "shape": [1 << 18], "data_offsets": [0, 1 << 20]} for j in range(64)}
    path = _write(tmp_path, header, body)
    with pytest.raises(ValueError, match="back to back"):
        kancore.load(path)


def test_metadata_the_cpp_reader_would_reject_is_refused_on_save(tmp_path):
    m, _ = _model(False)
    with pytest.raises(ValueError, match="Unicode"):
        kancore.save(m, tmp_path / "a.safetensors", metadata={"note": "\ud800"})
    with pytest.raises(ValueError, match="header"):
        kancore.save(m, tmp_path / "b.safetensors", metadata={"history": "x" * (17 << 20)})
    assert not list(tmp_path.iterdir())  # nothing written, no temporary file left


def test_deeply_nested_json_is_a_value_error(tmp_path):
    path = _write(tmp_path, None, b"", raw_header=b"[" * 100000 + b"]" * 100000)
    with pytest.raises(ValueError):
        kancore.load(path)


def test_missing_fifo_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        kancore.load(tmp_path / "nope.safetensors")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: refused first
    with pytest.raises(ValueError, match="not a regular file"):
        kancore.load(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        kancore.load(tmp_path)
    pickle_path = tmp_path / "model.pt"
    torch.save(KAN([2, 1]).state_dict(), pickle_path)
    for path in (pickle_path, _bytes_file(tmp_path / "text.safetensors", b"hello, this is text" * 10),
                 _bytes_file(tmp_path / "tiny", b"abc")):
        with pytest.raises(ValueError, match="not a kancore model file"):
            kancore.load(path)
    # A safetensors file of someone else's (no kancore metadata) is foreign too.
    other = tmp_path / "other.safetensors"
    safetensors_numpy.save_file({"w": np.ones(3, np.float32)}, str(other))
    with pytest.raises(ValueError, match="not a kancore model file"):
        kancore.load(other)


def _bytes_file(path, data: bytes):
    path.write_bytes(data)
    return path


def test_torchless_load_points_to_numpykan(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "import kancore\n"
            "try:\n    kancore.load('x')\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "needs PyTorch" in out.stdout and "NumpyKAN.load" in out.stdout
