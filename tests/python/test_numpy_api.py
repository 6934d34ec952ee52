"""The NumPy front end (no torch needed) against the float64 NumPy oracle."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kancore
from kancore import functional as KF
from conftest import reference_backward, reference_forward, scale_tol

IMPLS = ["embedding_bag", "embedding", "sparse_matmul_csr"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3, 5, 2), (33, 17, 40, 31), (5, 64, 9, 256)])
def test_forward_backward_match_reference(impl, dtype, shape):
    N, I, O, K = shape
    rng = np.random.default_rng(N * 1000 + K)
    W = 3.0
    x = rng.uniform(-1.5 * W, 1.5 * W, size=(N, I)).astype(dtype)
    C = rng.normal(size=(I, K, O)).astype(dtype)
    g = rng.normal(size=(N, O)).astype(dtype)
    name = np.dtype(dtype).name
    y = KF.c0_forward(x, C, W, impl)
    assert y.dtype == dtype and y.shape == (N, O)
    np.testing.assert_allclose(y, reference_forward(x, C, W), rtol=0, atol=scale_tol(name, I, 10 * np.abs(C).max()))
    gx, gt = KF.c0_backward(x, C, g, W, impl)
    rgx, rgt = reference_backward(x, C, W, g)
    np.testing.assert_allclose(gx, rgx, rtol=0, atol=scale_tol(name, O * K, np.abs(C).max() * np.abs(g).max()))
    np.testing.assert_allclose(gt, rgt, rtol=0, atol=scale_tol(name, N, 10 * np.abs(g).max()))


def test_leading_dims_and_example_values():
    # K=5, W=2, C=[1,3,2,0,5]: y(-3) = -7 (first segment extended), y(2) = 15 (last segment).
    C = np.array([1, 3, 2, 0, 5], dtype=np.float64).reshape(1, 5, 1)
    x = np.array([[[-3.0]], [[2.0]], [[-1.0]], [[0.5]]])  # (4, 1, 1): leading dims (4, 1)
    y = KF.c0_forward(x, C, 2.0)
    assert y.shape == (4, 1, 1)
    np.testing.assert_array_equal(y.ravel(), [-7.0, 15.0, 1.0, 0.0])


def test_bad_inputs_raise_clear_errors():
    C = np.zeros((3, 4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="expected a table of shape"):
        KF.c0_forward(np.zeros((5, 2), np.float32), C)
    with pytest.raises(TypeError, match="dtype"):
        KF.c0_forward(np.zeros((5, 3), np.float64), C)
    with pytest.raises(TypeError, match="float32 or float64"):
        KF.c0_forward(np.zeros((5, 3), np.int32), C.astype(np.int32))
    with pytest.raises(ValueError, match="impl"):
        KF.c0_forward(np.zeros((5, 3), np.float32), C, impl="dense")
    with pytest.raises(ValueError, match="2 <= num_control_points"):
        KF.c0_forward(np.zeros((5, 3), np.float32), np.zeros((3, 1, 2), np.float32))
    with pytest.raises(ValueError, match="spline_width"):
        KF.c0_forward(np.zeros((5, 3), np.float32), C, spline_width=float("nan"))
    with pytest.raises(ValueError, match="grad_y"):
        KF.c0_backward(np.zeros((5, 3), np.float32), C, np.zeros((5, 3), np.float32))
    # Empty batch is valid: empty output, zero table gradient.
    y = KF.c0_forward(np.zeros((0, 3), np.float32), C)
    assert y.shape == (0, 2)
    gx, gt = KF.c0_backward(np.zeros((0, 3), np.float32), C + 1, np.zeros((0, 2), np.float32))
    assert gx.shape == (0, 3) and np.all(gt == 0)


def test_non_contiguous_inputs_are_handled():
    rng = np.random.default_rng(0)
    C = rng.normal(size=(4, 6, 3))
    x = rng.normal(size=(8, 8))[:, ::2]  # strided view
    np.testing.assert_allclose(KF.c0_forward(x, C, 4.0), reference_forward(np.ascontiguousarray(x), C, 4.0), atol=1e-12)


def test_import_without_torch():
    """`import kancore` and the NumPy API work when torch cannot be imported."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import numpy as np
        import kancore
        y = kancore.functional.c0_forward(np.zeros((2, 3)), np.ones((3, 4, 5)))
        assert y.shape == (2, 5) and np.all(y == 3.0), y
        try:
            from kancore import KANLayer
        except ImportError as e:
            assert "PyTorch" in str(e), e
        else:
            raise SystemExit("KANLayer imported without torch")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert kancore.__version__
