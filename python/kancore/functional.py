"""Stateless NumPy entry points to the native kernels (no torch needed).

C0 layer (kanditioned's piecewise-linear layer): ``x`` has shape ``(..., in)``, ``table``
``(in, K, out)``; both float32 or both float64. B-spline layer (efficient-kan's ``KANLinear``):
``grid (in, G+2k+1)``, ``base_weight (out, in)``, ``spline_weight (out, in, G+k)``,
``spline_scaler (out, in)``. The math is written out in docs/layer_math.md.
"""
from typing import Optional, Tuple, Union

import numpy as np

from . import _ops
from ._ops import EdgeScaleResult

__all__ = ["c0_forward", "c0_backward", "bspline_forward", "bspline_basis", "edge_scale_c0",
           "edge_scale_bspline", "EdgeScaleResult"]


def c0_forward(x: np.ndarray, table: np.ndarray, spline_width: float = 4.0,
               impl: str = "embedding_bag", precision: str = "highest") -> np.ndarray:
    """The C0 layer's output ``y[..., o] = sum_i phi_io(x[..., i])``.

    Parameters
    ----------
    x : numpy.ndarray
        Inputs ``(..., in)``, the table's dtype. NaN gives NaN in its row; ±inf the limit of the
        linear extension.
    table : numpy.ndarray
        Control points ``(in, K, out)`` on the uniform points of ``[-spline_width/2,
        spline_width/2]``, float32 or float64.
    spline_width : float
        The span of the control points.
    impl : {"embedding_bag", "embedding", "sparse_matmul_csr"}
        The native path (the fused gather, or a CSR product); all compute the same function.
    precision : {"highest", "tf32", "bf16"}
        float32 only: "tf32"/"bf16" run the hat-basis GEMM with the basis and the table rounded
        to that format and float32 sums, the CPU oracle of the CUDA tensor-core path (slower
        than "highest", the exact default). See docs/precision.md.

    Returns
    -------
    numpy.ndarray
        ``(..., out)`` in the table's dtype.
    """
    return _ops.c0_forward_numpy(x, table, spline_width, impl, precision)


def c0_backward(x: np.ndarray, table: np.ndarray, grad_y: np.ndarray, spline_width: float = 4.0,
                impl: str = "embedding_bag", precision: str = "highest") -> Tuple[np.ndarray, np.ndarray]:
    """Both gradients of the C0 layer in one fused pass.

    Parameters
    ----------
    x, table, spline_width, impl, precision
        As in ``c0_forward`` (with "tf32"/"bf16" the table gradient uses the rounded basis and
        rounded ``grad_y``; the input gradient is always exact).
    grad_y : numpy.ndarray
        The gradient of the loss with respect to the output, ``(..., out)``, the table's dtype.

    Returns
    -------
    grad_x : numpy.ndarray
        ``(..., in)``.
    grad_table : numpy.ndarray
        ``(in, K, out)``.
    """
    gx, gt = _ops.c0_backward_numpy(x, table, grad_y, spline_width, impl, precision)
    return gx, gt


def bspline_basis(knots: np.ndarray, grid_size: int, spline_order: int, x: np.ndarray,
                  derivative: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """The dense Cox-de Boor basis of one feature, in float64.

    Parameters
    ----------
    knots : numpy.ndarray
        ``(grid_size + 2 * spline_order + 1,)`` finite, non-decreasing knots.
    grid_size, spline_order : int
        G intervals inside, order k.
    x : numpy.ndarray
        Points ``(n,)``; the basis is zero outside the knots.
    derivative : bool
        Also return the basis functions' derivatives.

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, numpy.ndarray)
        ``(n, G+k)`` values (and derivatives).
    """
    result: Union[np.ndarray, Tuple[np.ndarray, np.ndarray]] = _ops.bspline_basis_numpy(
        knots, grid_size, spline_order, x, derivative)
    return result


def bspline_forward(x: np.ndarray, grid: np.ndarray, base_weight: Optional[np.ndarray],
                    spline_weight: np.ndarray, spline_scaler: Optional[np.ndarray] = None) -> np.ndarray:
    """The B-spline layer's output: ``silu(x) @ base_weight.T + B(x) @ (spline_weight *
    spline_scaler).T`` (efficient-kan's forward).

    Parameters
    ----------
    x : numpy.ndarray
        Inputs ``(..., in)``, the weights' dtype.
    grid : numpy.ndarray
        Knots ``(in, G+2k+1)``, finite and non-decreasing per feature.
    base_weight : numpy.ndarray or None
        ``(out, in)``; None drops the SiLU branch.
    spline_weight : numpy.ndarray
        ``(out, in, G+k)``, float32 or float64.
    spline_scaler : numpy.ndarray, optional
        ``(out, in)``; None means 1.

    Returns
    -------
    numpy.ndarray
        ``(..., out)``.
    """
    return _ops.bspline_forward_numpy(x, grid, base_weight, spline_weight, spline_scaler)


def edge_scale_c0(x: np.ndarray, table: np.ndarray, spline_width: float = 4.0, lamb_l1: float = 1.0,
                  lamb_entropy: float = 2.0, lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0,
                  grads: bool = False) -> EdgeScaleResult:
    """pykan's sample-based regulariser of a C0 layer (docs/layer_math.md, "Edge-scale
    regulariser").

    Parameters
    ----------
    x, table, spline_width
        As in ``c0_forward``; at least 2 samples.
    lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff : float
        pykan's weights of the L1, entropy, coefficient and coefficient-difference terms.
    grads : bool
        Also compute the gradients.

    Returns
    -------
    EdgeScaleResult
        ``loss``; ``scales`` A ``(out, in)``; ``grads`` (``"x"``, ``"table"``) or None.
    """
    return _ops.edge_scale_c0_numpy(x, table, spline_width, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff,
                                    grads)


def edge_scale_bspline(x: np.ndarray, grid: np.ndarray, base_weight: Optional[np.ndarray],
                       spline_weight: np.ndarray, spline_scaler: Optional[np.ndarray] = None,
                       lamb_l1: float = 1.0, lamb_entropy: float = 2.0, lamb_coef: float = 0.0,
                       lamb_coefdiff: float = 0.0, grads: bool = False) -> EdgeScaleResult:
    """pykan's sample-based regulariser of a B-spline layer (docs/layer_math.md, "Edge-scale
    regulariser").

    Parameters
    ----------
    x, grid, base_weight, spline_weight, spline_scaler
        As in ``bspline_forward``; at least 2 samples.
    lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff : float
        pykan's weights.
    grads : bool
        Also compute the gradients.

    Returns
    -------
    EdgeScaleResult
        ``loss``; ``scales`` A ``(out, in)``; ``grads`` (``"x"``, ``"spline_weight"`` and, when
        given, ``"base_weight"``, ``"spline_scaler"``) or None.
    """
    return _ops.edge_scale_bspline_numpy(x, grid, base_weight, spline_weight, spline_scaler, lamb_l1,
                                         lamb_entropy, lamb_coef, lamb_coefdiff, grads)
