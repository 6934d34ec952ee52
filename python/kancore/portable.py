"""The layers' forward passes in standard torch operators, for exporters that cannot carry the
native ``kancore::`` custom ops (``torch.onnx.export``, TorchScript-based or dynamo-based).

The layers switch to these functions while ``torch.onnx.is_in_onnx_export()`` is true, so an
exported graph holds only standard nodes (Equal, Where, Floor, Concat, arithmetic, MatMul) and
runs in any ONNX runtime. They compute the native kernels' function with the same per-edge
formulas (docs/layer_math.md), including the limits of the linear extension at ±inf and NaN
rows; only the order of the sum over the inputs differs. They hold a dense basis of
(batch, in, 2K-1) for C0 and (batch, in, G+k) for B-spline: for export and inference, not for
training speed. ``tests/python/test_export.py`` checks them against the
native ops and against onnxruntime.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def c0_segments(x: torch.Tensor, num_control_points: int, spline_width: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(k, t) of the C0 layer at x: the left control point (as a float tensor) and the offset
    u - k, chosen exactly as the native kernel chooses them (kancore/c0_segment.hpp)."""
    K = num_control_points
    # Python scalars become constants of x's dtype: the native kernel's static_cast<T>(W / 2) etc.
    u = ((x + spline_width / 2) * float(K - 1)) / float(spline_width)
    # The native selects: NaN and -inf give k = 0, +inf and u >= K-2 give K-2 (never out of range).
    last = torch.full_like(u, float(K - 2))
    kf = torch.where(u >= 0, torch.where(u < last, torch.floor(u), last), torch.zeros_like(u))
    return kf, u - kf


def c0_edge_values(x: torch.Tensor, table: torch.Tensor, spline_width: float) -> torch.Tensor:
    """(batch, in, out): every edge's value ``C[k] + t (C[k+1] - C[k])`` at x (batch, in), with
    the native limits at ±inf. Materialises the whole tensor: for inspection, not for export."""
    I, K, O = table.shape
    kf, t = c0_segments(x, K, spline_width)
    rows = torch.arange(I, device=x.device) * K + kf.to(torch.int64)
    flat = table.reshape(I * K, O)
    a, b = flat[rows], flat[rows + 1]
    return torch.where(a == b, a, a + t.unsqueeze(-1) * (b - a))


def c0_forward(x: torch.Tensor, table: torch.Tensor, spline_width: float,
               shape: Optional[Tuple[int, int, int]] = None) -> torch.Tensor:
    """y (batch, out) of the C0 layer with table (in, K, out) at x (batch, in). ``shape`` is the
    table's (in, K, out) as Python ints (a trace would record ``table.shape`` as tensors).

    Written as one MatMul over a sparse basis, so its memory is (batch, in, 2K), not the
    (batch, in, out) of gathered rows: each edge is ``C[k] + t (C[k+1] - C[k])`` (the native
    kernel's formula, no cancellation for large t) as ``[onehot(k) | t onehot(k)]`` times
    ``[C | C[1:] - C[:-1]]``. Infinite inputs take the limits of the linear extension through a
    second, small product that counts the edges going to +inf and to -inf."""
    I, K, O = shape if shape is not None else tuple(int(n) for n in table.shape)
    kf, t = c0_segments(x, K, spline_width)  # NaN t stays NaN (its row's outputs are NaN), ±inf below
    up_inf = t == float("inf")
    down_inf = t == float("-inf")
    zero = torch.zeros_like(t)
    t = torch.where(up_inf | down_inf, zero, t)  # a flat end segment's value, C[k]
    points = torch.arange(K, device=x.device, dtype=x.dtype)
    at_k = (points == kf.unsqueeze(-1)).to(x.dtype)  # (batch, in, K), exactly one 1 per feature
    basis = torch.cat([at_k, at_k[..., : K - 1] * t.unsqueeze(-1)], dim=-1)  # (batch, in, 2K-1)
    weights = torch.cat([table, table[:, 1:] - table[:, :-1]], dim=1)  # (in, 2K-1, out)
    y = torch.matmul(basis.reshape(-1, I * (2 * K - 1)), weights.reshape(I * (2 * K - 1), O))
    # Edges at ±inf: +inf where the end segment rises toward it, -inf where it falls, its flat
    # value (already in y) where it is level; +inf and -inf in one row give NaN.
    slope_hi = table[:, K - 1] - table[:, K - 2]  # (in, out), the segment x -> +inf follows
    slope_lo = table[:, 1] - table[:, 0]  # the segment x -> -inf follows (backwards)
    sides = torch.cat([up_inf, down_inf], dim=1).to(x.dtype)  # (batch, 2 in)
    rises = torch.cat([torch.cat([slope_hi > 0, slope_hi < 0], dim=1),
                       torch.cat([slope_lo < 0, slope_lo > 0], dim=1)], dim=0).to(x.dtype)  # (2 in, 2 out)
    counts = torch.matmul(sides, rises)  # edges going to +inf | to -inf, exact small integers
    to_pos, to_neg = counts[:, :O] > 0, counts[:, O:] > 0
    inf = torch.full_like(y, float("inf"))
    y = torch.where(to_pos, torch.where(to_neg, inf - inf, inf), torch.where(to_neg, -inf, y))
    return y


def bspline_basis(x: torch.Tensor, grid: torch.Tensor, spline_order: int) -> torch.Tensor:
    """The Cox-de Boor basis (batch, in, G+k) at x (batch, in) on knots grid (in, G+2k+1): zero
    outside [t_0, t_last) and for NaN, 0/0 terms of repeated knots counted as 0."""
    xe = x.unsqueeze(-1)
    g = grid.unsqueeze(0)
    bases = ((xe >= g[..., :-1]) & (xe < g[..., 1:])).to(x.dtype)
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    for p in range(1, spline_order + 1):
        left_den = g[..., p:-1] - g[..., :-(p + 1)]
        right_den = g[..., p + 1:] - g[..., 1:-p]
        left = torch.where(left_den != 0, (xe - g[..., :-(p + 1)]) / left_den, zero) * bases[..., :-1]
        right = torch.where(right_den != 0, (g[..., p + 1:] - xe) / right_den, zero) * bases[..., 1:]
        bases = left + right
    return bases


def bspline_forward(x: torch.Tensor, grid: torch.Tensor, base_weight: Optional[torch.Tensor],
                    spline_weight: torch.Tensor, spline_scaler: Optional[torch.Tensor],
                    spline_order: int) -> torch.Tensor:
    """y (batch, out) of the B-spline layer (efficient-kan's KANLinear) at x (batch, in)."""
    bases = bspline_basis(x, grid, spline_order)  # (batch, in, C)
    weight = spline_weight if spline_scaler is None else spline_weight * spline_scaler.unsqueeze(-1)
    y = torch.matmul(bases.flatten(1), weight.flatten(1).t())
    if base_weight is not None:
        y = y + torch.matmul(x * torch.sigmoid(x), base_weight.t())
    return y
