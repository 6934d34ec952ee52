"""The layers' forward passes in standard torch operators, for exporters that cannot carry the
native ``kancore::`` custom ops (``torch.onnx.export``, TorchScript-based or dynamo-based).

The layers switch to these functions while ``torch.onnx.is_in_onnx_export()`` is true, so an
exported graph holds only Gather, Where, Floor, arithmetic and MatMul/ReduceSum nodes and runs
in any ONNX runtime. They compute the native kernels' function, written in the same order of
float operations (docs/layer_math.md), including the limits of the linear extension at ±inf
and NaN rows, but they materialise a (batch, in, out) tensor: they are for export and
inference, not for training speed. ``tests/python/test_export.py`` checks them against the
native ops and against onnxruntime.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch


def c0_forward(x: torch.Tensor, table: torch.Tensor, spline_width: float,
               shape: Optional[Tuple[int, int, int]] = None) -> torch.Tensor:
    """y (batch, out) of the C0 layer with table (in, K, out) at x (batch, in). ``shape`` is the
    table's (in, K, out) as Python ints (a trace would record ``table.shape`` as tensors)."""
    I, K, O = shape if shape is not None else tuple(int(n) for n in table.shape)
    # Python scalars become constants of x's dtype: the native kernel's static_cast<T>(W / 2) etc.
    u = ((x + spline_width / 2) * float(K - 1)) / float(spline_width)
    # The native selects: NaN and -inf give k = 0, +inf and u >= K-2 give K-2 (never out of range).
    last = torch.full_like(u, float(K - 2))
    kf = torch.where(u >= 0, torch.where(u < last, torch.floor(u), last), torch.zeros_like(u))
    t = u - kf
    rows = (torch.arange(I, device=x.device) * K).unsqueeze(0) + kf.to(torch.int64)  # (batch, in)
    flat = table.reshape(I * K, O)
    a = flat[rows]  # (batch, in, out)
    b = flat[rows + 1]
    t3 = t.unsqueeze(-1)
    # a + t (b - a), and the flat segment's value (not inf * 0 = NaN) where t is ±inf.
    edge = torch.where(a == b, a, a + t3 * (b - a))
    return edge.sum(dim=1)


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
