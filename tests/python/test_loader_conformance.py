"""One corpus, two loaders: the torch front end's kancore.load (Python) and NumpyKAN.load (the
C++ loader) must give the same verdict on every file, valid or not, and the same predictions on
the valid ones. The corpus is built here from files kancore.save writes, edited one way each."""
import json
import math
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import kancore  # noqa: E402
from kancore import KAN, NumpyKAN  # noqa: E402


def _split(raw: bytes):
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header, data: bytes, text: bytes = None) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode() if text is None else text
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data


def _with_config(header, edit):
    header = json.loads(json.dumps(header))
    cfg = json.loads(header["__metadata__"]["config"])
    edit(cfg)
    header["__metadata__"]["config"] = json.dumps(cfg)
    return header


def _models():
    torch.manual_seed(0)
    c0 = KAN([2, 3, 1], kind="c0", num_control_points=5, layernorm=True)
    c0(torch.randn(64, 2) * 2, update_grid=True)  # fitted domains: input_scale / input_offset
    b64 = KAN([2, 3, 1], grid_size=4, dtype=torch.float64)
    b64(torch.randn(64, 2, dtype=torch.float64), update_grid=True)
    sym = KAN([2, 3, 1], kind="c0", num_control_points=5)  # format version 2: symbolic edges
    sym(torch.randn(64, 2) * 2, update_grid=True)
    sym.layers[0].fix_symbolic(1, 2, "sin", 1.5, 2.0, 0.1, -0.2)
    sym.layers[1].fix_symbolic(0, 0, "exp", 0.3, 0.5, 0.0, 0.1)
    return {"c0": c0, "bspline64": b64, "symbolic": sym}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = {}
    for name, model in _models().items():
        kancore.save(model, d / f"{name}.safetensors")
        files[name] = (d / f"{name}.safetensors").read_bytes()
    return files


def _invalid_cases(base):
    c0_header, c0_data = _split(base["c0"])
    b_header, b_data = _split(base["bspline64"])
    text = json.dumps(c0_header, separators=(",", ":")).encode()
    cases = {}
    cases["truncated"] = base["c0"][:-3]
    cases["header longer than the file"] = (10 ** 6).to_bytes(8, "little") + base["c0"][8:]
    cases["invalid UTF-8 in the header"] = _join(None, c0_data, text.replace(b'"format"', b'"fo\xffrmat"'))
    meta = dict(c0_header, __metadata__=dict(c0_header["__metadata__"], note="x"))
    note = json.dumps(meta, separators=(",", ":")).encode().replace(b'"note":"x"', b'"note":"\\ud800"')
    cases["lone surrogate in metadata"] = _join(None, c0_data, note)
    cases["config dtype given as a list"] = _join(_with_config(b_header, lambda c: c.update(dtype=["float64"])),
                                                  b_data)
    cases["missing layernorm_eps"] = _join(_with_config(b_header, lambda c: c.pop("layernorm_eps")), b_data)
    # The config is itself a JSON string inside the header: its quotes appear escaped there.
    with_nan = json.dumps(_with_config(c0_header, lambda c: c["layers"][0].update(extra=1.5)),
                          separators=(",", ":")).encode()
    assert with_nan.count(b'\\"extra\\": 1.5') == 1
    cases["bare NaN in the config"] = _join(None, c0_data, with_nan.replace(b'\\"extra\\": 1.5', b'\\"extra\\": NaN'))
    deep = _with_config(c0_header, lambda c: c.update(extra=json.loads("[" * 10 + "1" + "]" * 10)))
    cases["config nested too deeply"] = _join(deep, c0_data)
    many = dict(b_header, __metadata__=dict(b_header["__metadata__"], **{f"k{i}": "v" for i in range(300_000)}))
    cases["300k metadata entries"] = _join(many, b_data)
    name = next(k for k in c0_header if k.endswith("input_scale"))
    extra_key = json.loads(json.dumps(c0_header))
    extra_key[name]["note"] = "x"
    cases["extra key in a tensor entry"] = _join(extra_key, c0_data)
    list_dtype = json.loads(json.dumps(c0_header))
    list_dtype[name]["dtype"] = ["F32"]
    cases["dtype given as a list"] = _join(list_dtype, c0_data)
    begin = c0_header[name]["data_offsets"][0]
    cases["inf input_scale"] = _join(c0_header, c0_data[:begin] + struct.pack("<f", math.inf) + c0_data[begin + 4:])
    grid = next(k for k in b_header if k.endswith(".grid"))
    g0 = b_header[grid]["data_offsets"][0]
    cases["decreasing knots"] = _join(b_header, b_data[:g0] + struct.pack("<d", 1e9) + b_data[g0 + 8:])
    s_header, s_data = _split(base["symbolic"])
    edit = lambda f: _join(_with_config(s_header, f), s_data)  # noqa: E731
    cases["symbolic edge outside its layer"] = edit(lambda c: c["layers"][0]["symbolic"][0].update({"in": 2}))
    cases["unknown symbolic function"] = edit(lambda c: c["layers"][0]["symbolic"][0].update(function="cosh"))
    cases["symbolic edge fixed twice"] = edit(lambda c: c["layers"][1]["symbolic"].append(
        dict(c["layers"][1]["symbolic"][0], function="sin")))
    cases["symbolic edges without their tensor"] = edit(lambda c: c["layers"][1].pop("symbolic"))
    cases["symbolic not a list"] = edit(lambda c: c["layers"][0].update(symbolic={"in": 0}))
    v1 = json.loads(json.dumps(s_header))
    v1["__metadata__"]["format_version"] = "1"
    cases["symbolic edges in a version-1 file"] = _join(v1, s_data)
    return cases


def test_valid_files_load_in_both_with_the_same_predictions(base, tmp_path):
    x = np.random.default_rng(0).uniform(-2, 2, (16, 2))
    for name, raw in base.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(raw)
        model, net = kancore.load(path), NumpyKAN.load(path)
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            y_torch = model(torch.as_tensor(x, dtype=dtype)).numpy()
        np.testing.assert_allclose(net.predict(x), y_torch, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["truncated", "header longer than the file", "invalid UTF-8 in the header",
                                  "lone surrogate in metadata", "missing layernorm_eps", "config dtype given as a list", "bare NaN in the config",
                                  "config nested too deeply", "300k metadata entries",
                                  "extra key in a tensor entry", "dtype given as a list", "inf input_scale",
                                  "decreasing knots", "symbolic edge outside its layer", "unknown symbolic function",
                                  "symbolic edge fixed twice", "symbolic edges without their tensor",
                                  "symbolic not a list", "symbolic edges in a version-1 file"])
def test_both_loaders_refuse_the_same_files(base, tmp_path, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(_invalid_cases(base)[case])
    verdicts = {}
    for loader_name, loader in (("kancore.load", kancore.load), ("NumpyKAN.load", NumpyKAN.load)):
        try:
            loader(path)
            verdicts[loader_name] = "accepted"
        except ValueError:
            verdicts[loader_name] = "ValueError"
    assert verdicts == {"kancore.load": "ValueError", "NumpyKAN.load": "ValueError"}, verdicts


def test_the_writer_refuses_what_the_readers_refuse(tmp_path):
    model = KAN([2, 1])
    with pytest.raises(ValueError, match="JSON values"):
        kancore.save(model, tmp_path / "m.safetensors", metadata={f"k{i}": "v" for i in range(300_000)})
    with pytest.raises(ValueError, match="not valid Unicode"):
        kancore.save(model, tmp_path / "m.safetensors", metadata={"note": "\ud800"})
    assert not (tmp_path / "m.safetensors").exists()


def test_paths_that_are_not_utf8_work_and_report_cleanly(tmp_path):
    import os

    raw_dir = os.fsencode(tmp_path)
    missing = raw_dir + b"/no-\xff-such.safetensors"
    with pytest.raises(FileNotFoundError) as info:
        NumpyKAN.load(missing)
    assert info.value.filename == os.fsdecode(missing)
    path = raw_dir + b"/model-\xfe.safetensors"
    net = NumpyKAN([2, 1], seed=1)
    net.save(path)
    assert np.array_equal(NumpyKAN.load(path)["layers.0.spline_weight"], net["layers.0.spline_weight"])
