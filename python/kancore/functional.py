"""Stateless NumPy entry points to the native C0 kernels (no torch needed).

``x`` has shape (..., in), ``table`` (in, K, out); both float32 or both float64.
"""
from ._ops import c0_backward_numpy as c0_backward  # noqa: F401
from ._ops import c0_forward_numpy as c0_forward  # noqa: F401

__all__ = ["c0_forward", "c0_backward"]
