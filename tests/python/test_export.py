"""Deployment formats: ONNX (both exporters, run in onnxruntime), torch.export and TorchScript.

The oracle for ONNX is the native layer run in PyTorch on the same inputs: random inputs, inputs
beyond the grid (extrapolation), exactly on control points / knots, and (for the C0 layer,
whose extension is linear) ±inf and NaN. float32 within 1e-5 relative to the output scale.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import kancore  # noqa: E402
from kancore import portable  # noqa: E402

C0_VARIANTS = ["B-spline", "parallel_scan", "DCT"]


def _c0_layer(variant="B-spline", impl="embedding_bag", I=6, O=4, K=9, W=3.0, seed=0):
    torch.manual_seed(seed)
    layer = kancore.KANLayer(I, O, num_control_points=K, spline_width=W, variant=variant, impl=impl)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    return layer


def _models():
    torch.manual_seed(1)
    c0_net = kancore.KAN([5, 7, 3], kind="c0", layernorm=True)
    bs_net = kancore.KAN([5, 7, 3], grid_size=5, spline_order=3)
    lin = kancore.KANLinear(5, 3, grid_size=4, spline_order=2)
    for m in (c0_net, bs_net, lin):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.3)
    return {"KAN-c0": c0_net, "KAN-bspline": bs_net, "KANLinear": lin}


def _inputs(I, W=3.0, K=9, n=64, nonfinite=False, seed=2):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, I, generator=gen) - 0.5) * 2 * W  # inside and well outside the grid
    x[0] = -W / 2
    x[1, : min(I, K)] = torch.tensor([-W / 2 + j * W / (K - 1) for j in range(min(I, K))])  # control points
    x[2] = W / 2
    if nonfinite:
        x[3, 0], x[4, -1], x[5, 1] = float("inf"), float("-inf"), float("nan")
    return x


def _export(model, x, path, dynamo):
    model.eval()
    if dynamo:
        batch = torch.export.Dim("batch", min=1)
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"],
                          dynamic_shapes=({0: batch},), verbose=False)
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, x):
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def _assert_same(got, want, what):
    want = want.detach().numpy()
    assert got.shape == want.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN pattern differs"
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf]), f"{what}: infinities differ"
    fin = np.isfinite(want)
    scale = max(float(np.abs(want[fin]).max()), 1e-30)
    err = float(np.abs(got[fin] - want[fin]).max()) / scale
    assert err <= 1e-5, f"{what}: max |onnx - torch| / scale = {err:.2e}"


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("variant", C0_VARIANTS)
@pytest.mark.parametrize("impl", ["embedding_bag", "embedding", "sparse_matmul_csr"])
def test_c0_layer_exports_to_onnx_and_matches_in_onnxruntime(tmp_path, dynamo, variant, impl):
    if dynamo and impl != "embedding_bag" and variant != "B-spline":
        pytest.skip("the impl does not change the exported graph; one variant covers it")
    layer = _c0_layer(variant, impl)
    x = _inputs(6, nonfinite=True)
    session = _export(layer, x[:8].clone(), tmp_path / "c0.onnx", dynamo)
    with torch.no_grad():
        want = layer(x)
    _assert_same(_run(session, x), want, f"C0 {variant} {impl}")
    _assert_same(_run(session, x[:1]), want[:1], "batch of one (dynamic batch)")


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
@pytest.mark.parametrize("name", ["KAN-c0", "KAN-bspline", "KANLinear"])
def test_networks_and_kanlinear_export_to_onnx(tmp_path, dynamo, name):
    model = _models()[name]
    x = _inputs(5, W=2.4, nonfinite=False)
    x[6, 0] = 1.0  # a B-spline knot of grid_size 5 on [-1, 1]
    session = _export(model, x[:8].clone(), tmp_path / "m.onnx", dynamo)
    with torch.no_grad():
        want = model(x)
    _assert_same(_run(session, x), want, name)
    _assert_same(_run(session, x[:3]), want[:3], f"{name}, another batch size")


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript-exporter", "dynamo-exporter"])
def test_exported_graph_uses_only_standard_operators(tmp_path, dynamo):
    import onnx

    for name, model in {"KANLayer": _c0_layer(), "KANLinear": _models()["KANLinear"]}.items():
        x = _inputs(model.in_features)
        _export(model, x, tmp_path / "m.onnx", dynamo)
        proto = onnx.load(str(tmp_path / "m.onnx"))
        nodes = list(proto.graph.node) + [n for f in proto.functions for n in f.node]
        assert {n.domain for n in nodes} <= {"", "ai.onnx"} | {f.domain for f in proto.functions}, name
        assert not any("kancore" in n.op_type or "kancore" in n.domain for n in nodes), name
    assert "Gather" in {n.op_type for n in nodes} or "MatMul" in {n.op_type for n in nodes}


def test_portable_forms_equal_the_native_ops_on_hard_inputs():
    # The export formulation itself, without onnxruntime: NaN rows, ±inf limits, flat segments.
    layer = _c0_layer(K=5, W=2.0)
    with torch.no_grad():
        layer.kan_weight[0, 0, :] = 1.5  # a flat end segment: +-inf must give 1.5, not NaN
        layer.kan_weight[0, -1, :] = -0.5
    x = _inputs(6, W=2.0, K=5, nonfinite=True)
    x[7, 0], x[8, 0] = float("inf"), float("-inf")
    x[9, 0], x[10, 0], x[11, 1] = 1e30, -1e30, 3e4  # far out: no cancellation in a + t (b - a)
    with torch.no_grad():
        want = layer(x)
        got = portable.c0_forward(x, layer._table(), 2.0)
    _assert_same(got.numpy(), want, "portable C0")
    lin = _models()["KANLinear"]
    xb = _inputs(5, W=2.4)
    with torch.no_grad():
        want = lin(xb)
        got = portable.bspline_forward(xb, lin.grid, lin.base_weight, lin.spline_weight, lin.spline_scaler,
                                       lin.spline_order)
    _assert_same(got.numpy(), want, "portable B-spline")


def test_torch_export_with_a_dynamic_batch(tmp_path):
    for name, model in _models().items():
        x = _inputs(5, W=2.4)
        batch = torch.export.Dim("batch", min=2)
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        with torch.no_grad():
            for n in (2, 17, 64):
                torch.testing.assert_close(program.module()(x[:n]), model(x[:n]), rtol=0, atol=0, msg=name)
        path = tmp_path / f"{name}.pt2"
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path))
        torch.testing.assert_close(loaded.module()(x[:9]), model(x[:9]), rtol=0, atol=0, msg=name)


def test_torchscript_trace_save_load_round_trip(tmp_path):
    for name, model in _models().items():
        x = _inputs(5, W=2.4)
        with torch.no_grad():
            traced = torch.jit.trace(model, (x[:8],), check_trace=False)
            path = tmp_path / f"{name}.pt"
            torch.jit.save(traced, str(path))
            loaded = torch.jit.load(str(path))
            for n in (3, 64):
                assert torch.equal(loaded(x[:n]), model(x[:n])), name


def test_torchscript_file_loads_in_a_fresh_process_after_import_kancore(tmp_path):
    model = _models()["KAN-c0"]
    x = _inputs(5, W=2.4)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, (x,)), str(tmp_path / "m.pt"))
        want = model(x)
    np.save(tmp_path / "x.npy", x.numpy())
    code = ("import numpy as np, torch, kancore; kancore.register_torch_ops(); "
            f"m = torch.jit.load({str(tmp_path / 'm.pt')!r}); "
            f"y = m(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))); "
            f"np.save({str(tmp_path / 'y.npy')!r}, y.detach().numpy())")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert np.array_equal(np.load(tmp_path / "y.npy"), want.numpy())


def test_dynamic_quantisation_touches_only_nn_linear():
    # torch's eager dynamic quantisation swaps nn.Linear (and RNN) modules for int8 ones; kancore
    # layers are not nn.Linear, so a KAN keeps its float tables and its exact outputs
    # (docs/deploy.md, "Quantisation").
    quantization = pytest.importorskip("torch.ao.quantization")
    if not hasattr(quantization, "quantize_dynamic"):
        pytest.skip("this torch has no eager dynamic quantisation")
    torch.manual_seed(0)
    model = torch.nn.Sequential(kancore.KAN([4, 6, 3], kind="c0"), kancore.KAN([3, 5, 3]), torch.nn.Linear(3, 2))
    x = torch.randn(32, 4)
    with torch.no_grad():
        want_kan = model[1](model[0](x))
        q = quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        assert "quantized" in type(q[2]).__module__  # the int8 dynamic Linear
        assert isinstance(q[0], kancore.KAN) and isinstance(q[1], kancore.KAN)
        assert torch.equal(q[1](q[0](x)), want_kan)
        assert q(x).shape == (32, 2)
