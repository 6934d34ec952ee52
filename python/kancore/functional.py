"""Stateless NumPy entry points to the native kernels (no torch needed).

C0 layer: ``x`` has shape (..., in), ``table`` (in, K, out); both float32 or both float64.
B-spline layer: ``bspline_forward(x, grid, base_weight, spline_weight, spline_scaler=None)`` with
efficient-kan's shapes; ``bspline_basis(knots, G, k, x)`` is one feature's dense basis.
Regularisation: ``edge_scale_c0(x, table, spline_width, ...)`` and ``edge_scale_bspline(x, grid,
base_weight, spline_weight, spline_scaler, ...)`` give pykan's sample-based loss, the edge scales
A (out, in) and, with ``grads=True``, every gradient (see the README).
"""
from ._ops import c0_backward_numpy as c0_backward  # noqa: F401
from ._ops import c0_forward_numpy as c0_forward  # noqa: F401

from ._ops import bspline_basis_numpy as bspline_basis  # noqa: F401
from ._ops import bspline_forward_numpy as bspline_forward  # noqa: F401

from ._ops import edge_scale_bspline_numpy as edge_scale_bspline  # noqa: F401
from ._ops import edge_scale_c0_numpy as edge_scale_c0  # noqa: F401

__all__ = ["c0_forward", "c0_backward", "bspline_forward", "bspline_basis", "edge_scale_c0",
           "edge_scale_bspline"]
