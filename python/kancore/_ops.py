"""The single place where arrays become calls into the native core.

NumPy arrays and torch tensors both reach ``kancore._core`` here, as raw addresses plus shape,
dtype, device and stream. Everything is checked before the call: the kernels trust what they
get. Torch support is registered by ``torch_ops()`` on first use as ``torch.library`` custom ops
(``kancore::c0_forward`` and ``kancore::c0_backward``) with fake implementations and an autograd
formula, so the layer runs under ``torch.compile`` without graph breaks. Torch is optional and
is not imported by ``import kancore``.
"""

import functools
from types import SimpleNamespace
from typing import Tuple

import numpy as np

from . import _core

IMPLS = ("embedding_bag", "embedding", "sparse_matmul_csr")
_NP_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {set(IMPLS)}, got {impl!r}")
    return impl


def _check_table_shape(table_shape, in_features: int) -> Tuple[int, int]:
    if len(table_shape) != 3 or table_shape[0] != in_features:
        raise ValueError(
            f"expected a table of shape (in_features={in_features}, num_control_points, out_features), "
            f"got {tuple(table_shape)}"
        )
    return int(table_shape[1]), int(table_shape[2])


# ----------------------------------------------------------------------------------------------
# NumPy


def _np_address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _np_prepare(x, table, spline_width: float, impl: str):
    check_impl(impl)
    x = np.asarray(x)
    table = np.asarray(table)
    if table.dtype not in _NP_DTYPES:
        raise TypeError(f"expected a float32 or float64 table, got dtype {table.dtype}")
    if x.dtype != table.dtype:
        raise TypeError(f"expected x of dtype {table.dtype} (the table's), got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"expected x with at least 1 dimension, got shape {x.shape}")
    in_features = x.shape[-1]
    K, out = _check_table_shape(table.shape, in_features)
    x2 = np.ascontiguousarray(x.reshape(-1, in_features))
    table = np.ascontiguousarray(table)
    shape = (x2.shape[0], in_features, out, K, float(spline_width))
    return x2, table, shape, x.shape[:-1]


def _np_workspace(shape, dtype: str, impl: str, backward: bool) -> np.ndarray:
    nbytes = _core.c0_workspace_bytes(*shape, dtype, impl, "cpu", backward)
    return np.empty(max(nbytes, 1), dtype=np.uint8)


def c0_forward_numpy(x, table, spline_width: float = 4.0, impl: str = "embedding_bag") -> np.ndarray:
    x2, table, shape, lead = _np_prepare(x, table, spline_width, impl)
    dtype = _NP_DTYPES[table.dtype]
    y = np.empty((shape[0], shape[2]), dtype=table.dtype)
    ws = _np_workspace(shape, dtype, impl, backward=False)
    _core.c0_forward(_np_address(x2), _np_address(table), _np_address(y), *shape, dtype, impl,
                     _np_address(ws), ws.nbytes, "cpu", 0, 0)
    return y.reshape(*lead, shape[2])


def c0_backward_numpy(x, table, grad_y, spline_width: float = 4.0, impl: str = "embedding_bag"):
    x2, table, shape, lead = _np_prepare(x, table, spline_width, impl)
    dtype = _NP_DTYPES[table.dtype]
    grad_y = np.asarray(grad_y)
    if grad_y.dtype != table.dtype or grad_y.shape != (*lead, shape[2]):
        raise ValueError(
            f"expected grad_y of shape {(*lead, shape[2])} and dtype {table.dtype}, "
            f"got {grad_y.shape} and {grad_y.dtype}"
        )
    gy = np.ascontiguousarray(grad_y.reshape(-1, shape[2]))
    gx = np.empty_like(x2)
    gt = np.empty_like(table)
    ws = _np_workspace(shape, dtype, impl, backward=True)
    _core.c0_backward(_np_address(x2), _np_address(table), _np_address(gy), _np_address(gx),
                      _np_address(gt), *shape, dtype, impl, _np_address(ws), ws.nbytes, "cpu", 0, 0)
    return gx.reshape(*lead, shape[1]), gt


# ----------------------------------------------------------------------------------------------
# torch (optional, loaded on first use so `import kancore` stays light for NumPy users)


@functools.lru_cache(maxsize=None)
def torch_ops() -> SimpleNamespace:
    """Register the torch custom ops once and return them (imports torch)."""
    import torch

    _TORCH_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

    def _device_args(t: "torch.Tensor"):
        if t.device.type == "cuda":
            index = t.device.index if t.device.index is not None else torch.cuda.current_device()
            return "cuda", index, torch.cuda.current_stream(t.device).cuda_stream
        if t.device.type == "cpu":
            return "cpu", 0, 0
        raise ValueError(f"expected a cpu or cuda tensor, got device {t.device}")

    def _workspace(shape, dtype: str, impl: str, device: "torch.device", backward: bool):
        """(address, bytes) of scratch memory for one call, from torch's allocator (its caching
        allocator on CUDA); the fused path needs none. The tensor is returned to keep it alive."""
        if impl != "sparse_matmul_csr":
            return None, 0, 0
        nbytes = _core.c0_workspace_bytes(*shape, dtype, impl, device.type, backward)
        ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device)
        return ws, ws.data_ptr(), nbytes

    def _check_op_args(x, table, impl, grad_y=None):
        # The ops are callable directly (torch.ops.kancore.*): never let a mismatched shape,
        # dtype or device reach the kernels, which trust the addresses they are given.
        check_impl(impl)
        if x.dim() != 2 or table.dim() != 3 or x.shape[1] != table.shape[0]:
            raise ValueError(f"expected x (batch, in) and table (in, K, out), got {tuple(x.shape)} "
                             f"and {tuple(table.shape)}")
        if table.dtype not in _TORCH_DTYPES or x.dtype != table.dtype:
            raise TypeError(f"expected float32 or float64 x and table of one dtype, got {x.dtype} "
                            f"and {table.dtype}")
        if x.device != table.device:
            raise ValueError(f"expected x and table on one device, got {x.device} and {table.device}")
        if grad_y is not None and (grad_y.shape != (x.shape[0], table.shape[2])
                                   or grad_y.dtype != x.dtype or grad_y.device != x.device):
            raise ValueError(f"expected grad_y of shape {(x.shape[0], table.shape[2])}, dtype "
                             f"{x.dtype} on {x.device}, got {tuple(grad_y.shape)}, {grad_y.dtype} "
                             f"on {grad_y.device}")

    @torch.library.custom_op("kancore::c0_forward", mutates_args=())
    def c0_forward(x: torch.Tensor, table: torch.Tensor, spline_width: float, impl: str) -> torch.Tensor:
        """y (batch, out) = C0 layer of x (batch, in) with table (in, K, out)."""
        _check_op_args(x, table, impl)
        x = x.contiguous()
        table = table.contiguous()
        N, I = x.shape
        _, K, O = table.shape
        dtype = _TORCH_DTYPES[table.dtype]
        y = torch.empty((N, O), dtype=table.dtype, device=table.device)
        shape = (N, I, O, K, spline_width)
        _keep, ws_ptr, ws_bytes = _workspace(shape, dtype, impl, x.device, backward=False)
        _core.c0_forward(x.data_ptr(), table.data_ptr(), y.data_ptr(), *shape, dtype, impl,
                         ws_ptr, ws_bytes, *_device_args(x))
        return y

    @c0_forward.register_fake
    def _(x, table, spline_width, impl):
        return x.new_empty((x.shape[0], table.shape[2]))

    @torch.library.custom_op("kancore::c0_backward", mutates_args=())
    def c0_backward(grad_y: torch.Tensor, x: torch.Tensor, table: torch.Tensor, spline_width: float,
                    impl: str, need_input: bool, need_table: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """(grad_x, grad_table) of the C0 layer; a skipped gradient comes back as an empty tensor."""
        _check_op_args(x, table, impl, grad_y)
        x = x.contiguous()
        table = table.contiguous()
        grad_y = grad_y.contiguous()
        N, I = x.shape
        _, K, O = table.shape
        dtype = _TORCH_DTYPES[table.dtype]
        shape = (N, I, O, K, spline_width)
        _keep, ws_ptr, ws_bytes = _workspace(shape, dtype, impl, x.device, backward=True)
        common = (*shape, dtype, impl, ws_ptr, ws_bytes, *_device_args(x))
        grad_x = torch.empty_like(x) if need_input else x.new_empty(0)
        grad_table = torch.empty_like(table) if need_table else table.new_empty(0)
        _core.c0_backward(x.data_ptr(), table.data_ptr(), grad_y.data_ptr(),
                          grad_x.data_ptr() if need_input else 0,
                          grad_table.data_ptr() if need_table else 0, *common)
        return grad_x, grad_table

    @c0_backward.register_fake
    def _(grad_y, x, table, spline_width, impl, need_input, need_table):
        grad_x = torch.empty_like(x) if need_input else x.new_empty(0)
        grad_table = torch.empty_like(table) if need_table else table.new_empty(0)
        return grad_x, grad_table

    def _setup_context(ctx, inputs, output):
        x, table, spline_width, impl = inputs
        ctx.save_for_backward(x, table)  # only the inputs are kept; everything else is recomputed
        ctx.spline_width = spline_width
        ctx.impl = impl

    def _backward(ctx, grad_y):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_table):
            return None, None, None, None
        grad_x, grad_table = c0_backward(grad_y, x, table, ctx.spline_width, ctx.impl, need_x, need_table)
        return (grad_x if need_x else None), (grad_table if need_table else None), None, None

    c0_forward.register_autograd(_backward, setup_context=_setup_context)

    def check_torch_operands(x: "torch.Tensor", table: "torch.Tensor") -> None:
        """Raise a clear error unless x (..., in) fits table (in, K, out) for the native op."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected x to be a torch.Tensor, got {type(x).__name__}")
        if table.dtype not in _TORCH_DTYPES:
            raise TypeError(f"expected float32 or float64 parameters, got {table.dtype}")
        if x.dtype != table.dtype:
            raise TypeError(f"expected x of dtype {table.dtype} (the layer's dtype), got {x.dtype}")
        if x.device != table.device:
            raise ValueError(f"expected x on {table.device} (the layer's device), got {x.device}")
        if x.dim() < 1 or x.shape[-1] != table.shape[0]:
            raise ValueError(
                f"expected x of shape (..., {table.shape[0]}), got {tuple(x.shape)}"
            )

    return SimpleNamespace(c0_forward=c0_forward, c0_backward=c0_backward,
                           check_operands=check_torch_operands)
