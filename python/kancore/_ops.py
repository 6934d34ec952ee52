"""The single place where arrays become calls into the native core.

NumPy arrays and torch tensors both reach ``kancore._core`` here, as raw addresses plus shape,
dtype, device and stream. Everything is checked before the call: the kernels trust what they
get. Torch support is registered by ``torch_ops()`` on first use as ``torch.library`` custom ops
(``kancore::c0_forward`` and ``kancore::c0_backward``) with fake implementations and an autograd
formula, so the layer runs under ``torch.compile`` without graph breaks. Torch is optional and
is not imported by ``import kancore``.
"""

import functools
import math
from types import SimpleNamespace
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from . import _core

IMPLS = ("embedding_bag", "embedding", "sparse_matmul_csr")
# How float32 C0 layers multiply (kancore/types.hpp, MatmulPrecision): "highest" is the exact
# path; "tf32" / "bf16" the hat-basis GEMM with rounded operands (tensor cores on CUDA; on the CPU
# the oracle, slower than the exact path). float64 ignores it.
PRECISIONS = ("highest", "tf32", "bf16")
WORKSPACE_LIMIT = 256 << 20  # bytes the rounded path may take per call (chunks of rows that fit)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"expected precision in {PRECISIONS}, got {precision!r}")
    return precision
_NP_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def _c_aligned(a, dtype=None) -> np.ndarray:
    """A C-contiguous array aligned for its dtype (a copy only when needed): the kernels read raw
    addresses, and a misaligned float pointer is undefined behaviour in C++ (np.ascontiguousarray
    keeps a misaligned buffer as it is)."""
    return np.require(a, dtype=dtype, requirements=["C", "A"])


def check_spline_width(width: float, num_control_points: int, dtype: str) -> None:
    """Raise ValueError unless the kernels' arithmetic on ``width`` stays finite in ``dtype``: the
    core's own rule (c0::validate(shape, dtype), applied at every call), asked up front through
    the workspace query of an empty single-edge layer."""
    _core.c0_workspace_bytes(0, 1, 1, int(num_control_points), float(width), dtype, "embedding_bag",
                             "cpu", False)


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
    x2 = _c_aligned(x.reshape(-1, in_features))
    table = _c_aligned(table)
    shape = (x2.shape[0], in_features, out, K, float(spline_width))
    return x2, table, shape, x.shape[:-1]


def _np_workspace(shape, dtype: str, impl: str, backward: bool, precision: str = "highest") -> np.ndarray:
    nbytes = _core.c0_workspace_bytes(*shape, dtype, impl, "cpu", backward, 0, precision, WORKSPACE_LIMIT)
    return np.empty(max(nbytes, 1), dtype=np.uint8)


def c0_forward_numpy(x, table, spline_width: float = 4.0, impl: str = "embedding_bag",
                     precision: str = "highest") -> np.ndarray:
    check_precision(precision)
    x2, table, shape, lead = _np_prepare(x, table, spline_width, impl)
    dtype = _NP_DTYPES[table.dtype]
    y = np.empty((shape[0], shape[2]), dtype=table.dtype)
    ws = _np_workspace(shape, dtype, impl, False, precision)
    _core.c0_forward(_np_address(x2), _np_address(table), _np_address(y), *shape, dtype, impl,
                     _np_address(ws), ws.nbytes, "cpu", 0, 0, precision, WORKSPACE_LIMIT)
    return y.reshape(*lead, shape[2])


def c0_backward_numpy(x, table, grad_y, spline_width: float = 4.0, impl: str = "embedding_bag",
                      precision: str = "highest"):
    check_precision(precision)
    x2, table, shape, lead = _np_prepare(x, table, spline_width, impl)
    dtype = _NP_DTYPES[table.dtype]
    grad_y = np.asarray(grad_y)
    if grad_y.dtype != table.dtype or grad_y.shape != (*lead, shape[2]):
        raise ValueError(
            f"expected grad_y of shape {(*lead, shape[2])} and dtype {table.dtype}, "
            f"got {grad_y.shape} and {grad_y.dtype}"
        )
    gy = _c_aligned(grad_y.reshape(-1, shape[2]))
    gx = np.empty_like(x2)
    gt = np.empty_like(table)
    ws = _np_workspace(shape, dtype, impl, True, precision)
    _core.c0_backward(_np_address(x2), _np_address(table), _np_address(gy), _np_address(gx),
                      _np_address(gt), *shape, dtype, impl, _np_address(ws), ws.nbytes, "cpu", 0, 0,
                      False, precision, WORKSPACE_LIMIT)
    return gx.reshape(*lead, shape[1]), gt


# ----------------------------------------------------------------------------------------------
# torch (optional, loaded on first use so `import kancore` stays light for NumPy users)


def _same_device(*tensors) -> None:
    """Raise unless every given tensor (None skipped) is on one device. Used by the fake kernels
    too: a meta tensor dispatches to them, and mixing it with real parameters must be an error,
    not outputs (and gradients) of uninitialised memory."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"expected every operand on one device, got {sorted(map(str, devices))}")


def _torch_device_args(t) -> Tuple[str, int, int]:
    """(device type, index, stream address) of a torch tensor (or torch.device) for the core: on
    CUDA the current stream of its device, so kernels queue behind the caller's work."""
    import torch

    device = t if isinstance(t, torch.device) else t.device
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return "cuda", index, torch.cuda.current_stream(device).cuda_stream
    if device.type == "cpu":
        return "cpu", 0, 0
    raise ValueError(f"expected a cpu or cuda tensor, got device {device}")


def autocast_input(x, param_dtype):
    """``x`` as the layer computes it: under ``torch.autocast`` a bfloat16/float16 input runs in
    the layer's own dtype (float32 or float64), as autocast's float32 ops (layer_norm, softmax)
    do; otherwise ``x`` unchanged, so a dtype mismatch outside autocast still raises. On CUDA
    the layer then runs its tensor-core path (``matmul_precision``); docs/precision.md."""
    import torch

    if (isinstance(x, torch.Tensor) and x.dtype in (torch.bfloat16, torch.float16)
            and param_dtype in (torch.float32, torch.float64)
            and torch.is_autocast_enabled(x.device.type)):
        return x.to(param_dtype)
    return x


@functools.lru_cache(maxsize=None)
def _float32_matmul_precision_reader():
    import torch

    # Read once per trace under torch.compile (as inductor bakes the setting into its kernels);
    # dynamo cannot trace the getter itself.
    @torch.compiler.assume_constant_result
    def read() -> str:
        return torch.get_float32_matmul_precision()

    return read


def matmul_precision(x, param_dtype) -> str:
    """The C0 layer's precision for this call, chosen as ``nn.Linear``'s is: on CUDA for float32
    layers, autocast to bfloat16 gives "bf16" (to float16: "tf32", the tensor-core format with
    float16's 10 mantissa bits and float32's range); otherwise
    ``torch.get_float32_matmul_precision()`` "high" gives "tf32" and "medium" "bf16". The CPU
    always runs the exact path, its fastest (docs/precision.md)."""
    import torch

    if param_dtype != torch.float32 or x.device.type != "cuda":
        return "highest"
    if torch.is_autocast_enabled("cuda"):
        return "bf16" if torch.get_autocast_dtype("cuda") == torch.bfloat16 else "tf32"
    return {"high": "tf32", "medium": "bf16"}.get(_float32_matmul_precision_reader()(), "highest")


def low_precision_hint(dtype) -> str:
    """The advice added to dtype errors for bfloat16/float16 tensors."""
    if str(dtype) in ("torch.bfloat16", "torch.float16"):
        return (" (kancore layers keep float32 or float64 parameters; for bfloat16/float16 compute "
                "keep them in float32 and run the model under torch.autocast, see docs/precision.md)")
    return ""


@functools.lru_cache(maxsize=None)
def torch_ops() -> SimpleNamespace:
    """Register the torch custom ops once and return them (imports torch)."""
    import torch

    _TORCH_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

    _device_args = _torch_device_args

    def _workspace(shape, dtype: str, impl: str, device: "torch.device", backward: bool,
                   precision: str = "highest"):
        """(tensor, address, bytes) of scratch memory for one call, from torch's allocator (its
        caching allocator on CUDA, stream-ordered, so freeing it when the op returns is safe
        while the kernels are still queued). The tensor is returned to keep it alive."""
        rounded = precision != "highest" and dtype == "float32"
        if impl != "sparse_matmul_csr" and device.type != "cuda" and not backward and not rounded:
            return None, 0, 0  # the CPU's gather forward needs none (its backward: sort scratch)
        _, index, _ = _torch_device_args(device)
        nbytes = _core.c0_workspace_bytes(*shape, dtype, impl, device.type, backward, index, precision,
                                          WORKSPACE_LIMIT)
        if nbytes == 0:
            return None, 0, 0
        ws = torch.empty(nbytes, dtype=torch.uint8, device=device)
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
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"expected tensors on cpu or cuda, got {x.device}")
        if grad_y is not None and (grad_y.shape != (x.shape[0], table.shape[2])
                                   or grad_y.dtype != x.dtype or grad_y.device != x.device):
            raise ValueError(f"expected grad_y of shape {(x.shape[0], table.shape[2])}, dtype "
                             f"{x.dtype} on {x.device}, got {tuple(grad_y.shape)}, {grad_y.dtype} "
                             f"on {grad_y.device}")

    @torch.library.custom_op("kancore::c0_forward", mutates_args=())
    def c0_forward(x: torch.Tensor, table: torch.Tensor, spline_width: float, impl: str,
                   deterministic: bool = False, precision: str = "highest") -> torch.Tensor:
        """y (batch, out) = C0 layer of x (batch, in) with table (in, K, out). The forward is
        always deterministic; `deterministic` is remembered for the backward (see c0_backward).
        precision: "highest" (exact), "tf32" or "bf16" (float32: the hat-basis GEMM with rounded
        operands, see PRECISIONS)."""
        _check_op_args(x, table, impl)
        check_precision(precision)
        x = x.contiguous()
        table = table.contiguous()
        N, I = x.shape
        _, K, O = table.shape
        dtype = _TORCH_DTYPES[table.dtype]
        y = torch.empty((N, O), dtype=table.dtype, device=table.device)
        shape = (N, I, O, K, spline_width)
        _keep, ws_ptr, ws_bytes = _workspace(shape, dtype, impl, x.device, False, precision)
        _core.c0_forward(x.data_ptr(), table.data_ptr(), y.data_ptr(), *shape, dtype, impl,
                         ws_ptr, ws_bytes, *_device_args(x), precision, WORKSPACE_LIMIT)
        return y

    @c0_forward.register_fake
    def _(x, table, spline_width, impl, deterministic=False, precision="highest"):
        _same_device(x, table)
        return x.new_empty((x.shape[0], table.shape[2]))

    @torch.library.custom_op("kancore::c0_backward", mutates_args=())
    def c0_backward(grad_y: torch.Tensor, x: torch.Tensor, table: torch.Tensor, spline_width: float,
                    impl: str, need_input: bool, need_table: bool,
                    deterministic: bool = False, precision: str = "highest") -> Tuple[torch.Tensor, torch.Tensor]:
        """(grad_x, grad_table) of the C0 layer; a skipped gradient comes back as an empty tensor.
        deterministic=True makes grad_table bitwise repeatable on CUDA (a fixed-order reduction
        instead of float atomics; the CPU always is)."""
        _check_op_args(x, table, impl, grad_y)
        check_precision(precision)
        x = x.contiguous()
        table = table.contiguous()
        grad_y = grad_y.contiguous()
        N, I = x.shape
        _, K, O = table.shape
        dtype = _TORCH_DTYPES[table.dtype]
        shape = (N, I, O, K, spline_width)
        _keep, ws_ptr, ws_bytes = _workspace(shape, dtype, impl, x.device, True, precision)
        common = (*shape, dtype, impl, ws_ptr, ws_bytes, *_device_args(x))
        grad_x = torch.empty_like(x) if need_input else x.new_empty(0)
        grad_table = torch.empty_like(table) if need_table else table.new_empty(0)
        _core.c0_backward(x.data_ptr(), table.data_ptr(), grad_y.data_ptr(),
                          grad_x.data_ptr() if need_input else 0,
                          grad_table.data_ptr() if need_table else 0, *common,
                          deterministic=bool(deterministic), precision=precision,
                          workspace_limit=WORKSPACE_LIMIT)
        return grad_x, grad_table

    @c0_backward.register_fake
    def _(grad_y, x, table, spline_width, impl, need_input, need_table, deterministic=False,
          precision="highest"):
        _same_device(grad_y, x, table)
        grad_x = torch.empty_like(x) if need_input else x.new_empty(0)
        grad_table = torch.empty_like(table) if need_table else table.new_empty(0)
        return grad_x, grad_table

    def _setup_context(ctx, inputs, output):
        x, table, spline_width, impl, *rest = inputs
        ctx.save_for_backward(x, table)  # only the inputs are kept; everything else is recomputed
        ctx.spline_width = spline_width
        ctx.impl = impl
        ctx.deterministic = bool(rest[0]) if rest else False
        ctx.precision = rest[1] if len(rest) > 1 else "highest"

    def _backward(ctx, grad_y):
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_table):
            return None, None, None, None, None, None
        # torch.use_deterministic_algorithms(True) asks for it too, like torch's own ops.
        deterministic = ctx.deterministic or torch.are_deterministic_algorithms_enabled()
        grad_x, grad_table = c0_backward(grad_y, x, table, ctx.spline_width, ctx.impl, need_x,
                                         need_table, deterministic, ctx.precision)
        return (grad_x if need_x else None), (grad_table if need_table else None), None, None, None, None

    c0_forward.register_autograd(_backward, setup_context=_setup_context)

    def check_torch_operands(x: "torch.Tensor", table: "torch.Tensor") -> None:
        """Raise a clear error unless x (..., in) fits table (in, K, out) for the native op."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected x to be a torch.Tensor, got {type(x).__name__}")
        if table.dtype not in _TORCH_DTYPES:
            raise TypeError(f"expected float32 or float64 parameters, got {table.dtype}"
                            + low_precision_hint(table.dtype))
        if x.dtype != table.dtype:
            raise TypeError(f"expected x of dtype {table.dtype} (the layer's dtype), got {x.dtype}"
                            + low_precision_hint(x.dtype))
        if x.device != table.device:
            raise ValueError(f"expected x on {table.device} (the layer's device), got {x.device}")
        if x.dim() < 1 or x.shape[-1] != table.shape[0]:
            raise ValueError(
                f"expected x of shape (..., {table.shape[0]}), got {tuple(x.shape)}"
            )

    def _portable_c0(x, table, spline_width, *_impl_deterministic_precision):
        from . import portable
        return portable.c0_forward(x, table, spline_width)

    _register_export_decomposition(c0_forward, _portable_c0)
    return SimpleNamespace(c0_forward=c0_forward, c0_backward=c0_backward,
                           check_operands=check_torch_operands)


def _register_export_decomposition(op, portable_form) -> None:
    """Let the dynamo-based ``torch.onnx.export`` carry a kancore op through standard operators.

    That exporter traces with Dynamo, which fixes ``torch.onnx.is_in_onnx_export()`` to False, so
    the layers' own switch to kancore/portable.py never fires there; instead it replaces every op
    without an ONNX translation by its entry in torch's decomposition table before translating.
    Only that exporter reads the whole table (torch.compile and torch.export's default
    decompositions use their own subsets), so training and torch.export keep the native op. The
    table is private API: if a torch release moves it, export fails with torch's own message and
    nothing else changes."""
    try:
        from torch._decomp import decomposition_table, register_decomposition
    except ImportError:  # pragma: no cover - depends on the torch release
        return
    if op._opoverload not in decomposition_table:
        register_decomposition(op._opoverload)(portable_form)


# ----------------------------------------------------------------------------------------------
# B-spline layer, grid adaptation and regularisation losses

def _dtype_name(dtype) -> str:
    name = str(dtype).replace("torch.", "")
    if name not in ("float32", "float64"):
        raise TypeError(f"expected float32 or float64, got {dtype}" + low_precision_hint(dtype))
    return name


def bspline_basis_numpy(knots, grid_size: int, spline_order: int, x, derivative: bool = False):
    """Dense float64 basis (n, G+k) of one feature's knots (G+2k+1,) at points x (n,)."""
    knots = _c_aligned(knots, dtype=np.float64)
    x = _c_aligned(np.asarray(x, dtype=np.float64).reshape(-1))
    if knots.shape != (grid_size + 2 * spline_order + 1,):
        raise ValueError(f"expected {grid_size + 2 * spline_order + 1} knots, got shape {knots.shape}")
    if np.any(~np.isfinite(knots)) or np.any(np.diff(knots) < 0):
        raise ValueError("expected finite, non-decreasing knots")
    values = np.empty((x.size, grid_size + spline_order), dtype=np.float64)
    derivs = np.empty_like(values) if derivative else None
    _core.bspline_basis(_np_address(knots), grid_size, spline_order, _np_address(x), x.size,
                        _np_address(values), _np_address(derivs) if derivative else 0)
    return (values, derivs) if derivative else values


def _addr(a) -> int:
    """Address of a contiguous torch tensor or NumPy array (0 for None)."""
    if a is None:
        return 0
    if isinstance(a, np.ndarray):
        return _np_address(a)
    return a.data_ptr()


def bspline_update_grid_arrays(x, grid, spline_weight, margin: float, grid_eps: float, ridge: float):
    """(new_grid, new_spline_weight, (features_kept, samples_skipped)) as NumPy arrays (CPU)."""
    x = _c_aligned(x)
    grid = _c_aligned(grid)
    spline_weight = _c_aligned(spline_weight)
    out, in_features, C = spline_weight.shape
    k = (grid.shape[1] - 1 - C)
    G = C - k
    if x.ndim != 2 or x.shape[1] != in_features or grid.shape[0] != in_features or k < 1 or G < 1:
        raise ValueError(f"expected x (batch, {in_features}), grid ({in_features}, G+2k+1) and "
                         f"spline_weight (out, {in_features}, G+k), got {x.shape}, {grid.shape}, "
                         f"{spline_weight.shape}")
    if not (x.dtype == grid.dtype == spline_weight.dtype):
        raise TypeError(f"expected one dtype, got {x.dtype}, {grid.dtype}, {spline_weight.dtype}")
    new_grid = np.empty_like(grid)
    new_w = np.empty_like(spline_weight)
    report = _core.bspline_update_grid(_addr(x), _addr(grid), _addr(spline_weight), _addr(new_grid),
                                       _addr(new_w), x.shape[0], in_features, out, G, k,
                                       _dtype_name(grid.dtype), float(margin), float(grid_eps),
                                       float(ridge))
    return new_grid, new_w, report


def bspline_refine_arrays(grid, spline_weight, new_grid_size: int):
    grid = _c_aligned(grid)
    spline_weight = _c_aligned(spline_weight)
    out, in_features, C = spline_weight.shape
    k = grid.shape[1] - 1 - C
    G = C - k
    new_grid_size = int(new_grid_size)
    if new_grid_size < 1:
        raise ValueError(f"expected new_grid_size >= 1, got {new_grid_size}")
    new_grid = np.empty((in_features, new_grid_size + 2 * k + 1), dtype=grid.dtype)
    new_w = np.empty((out, in_features, new_grid_size + k), dtype=spline_weight.dtype)
    _core.bspline_refine(_addr(grid), _addr(spline_weight), _addr(new_grid), _addr(new_w),
                         in_features, out, G, k, new_grid_size, _dtype_name(grid.dtype))
    return new_grid, new_w


def c0_fit_domain_arrays(x, table, scale, offset, spline_width: float, new_K: int, quantile: float,
                         margin: float, ridge: float):
    """C0 grid fit on NumPy arrays (CPU): x (batch, in), table (in, K, out), scale/offset (in) or
    None. Returns (new_table (in, new_K, out), new_scale, new_offset, (kept, skipped, outside))."""
    x = _c_aligned(x)
    table = _c_aligned(table)
    if table.ndim != 3 or x.ndim != 2 or x.shape[1] != table.shape[0]:
        raise ValueError(f"expected x (batch, in) and table (in, K, out) with one in, got {x.shape} "
                         f"and {table.shape}")
    if x.dtype != table.dtype:
        raise TypeError(f"expected x and table of one dtype, got {x.dtype} and {table.dtype}")
    I, K, O = table.shape
    if (scale is None) != (offset is None):
        raise ValueError("expected both scale and offset, or neither")
    if scale is not None:
        scale = _c_aligned(scale, dtype=table.dtype)
        offset = _c_aligned(offset, dtype=table.dtype)
        if scale.shape != (I,) or offset.shape != (I,):
            raise ValueError(f"expected scale and offset of shape ({I},), got {scale.shape}, {offset.shape}")
    new_K = int(new_K)
    if new_K < 2:
        raise ValueError(f"expected num_control_points >= 2, got {new_K}")
    new_table = np.empty((I, new_K, O), dtype=table.dtype)
    new_scale = np.empty(I, dtype=table.dtype)
    new_offset = np.empty(I, dtype=table.dtype)
    report = _core.c0_fit_domain(_addr(x), _addr(table), _addr(scale),
                                 _addr(offset), _addr(new_table),
                                 _addr(new_scale), _addr(new_offset), x.shape[0], I, O, K,
                                 float(spline_width), new_K, _dtype_name(table.dtype),
                                 float(quantile), float(margin), float(ridge))
    return new_table, new_scale, new_offset, report


def c0_refine_arrays(table, spline_width: float, new_K: int):
    """The C0 table on new_K control points over the same domain (CPU NumPy)."""
    table = _c_aligned(table)
    if table.ndim != 3:
        raise ValueError(f"expected table (in, K, out), got {table.shape}")
    I, K, O = table.shape
    new_K = int(new_K)
    if new_K < 2:
        raise ValueError(f"expected num_control_points >= 2, got {new_K}")
    new_table = np.empty((I, new_K, O), dtype=table.dtype)
    _core.c0_refine(_addr(table), _addr(new_table), I, O, K, float(spline_width), new_K,
                    _dtype_name(table.dtype))
    return new_table


def bspline_forward_numpy(x, grid, base_weight, spline_weight, spline_scaler=None):
    """NumPy forward of the B-spline layer: x (..., in) -> (..., out)."""
    spline_weight = _c_aligned(spline_weight)
    if spline_weight.dtype not in _NP_DTYPES:
        raise TypeError(f"expected float32 or float64 weights, got {spline_weight.dtype}")
    out, I, C = spline_weight.shape
    grid = _c_aligned(grid, dtype=spline_weight.dtype)
    k = grid.shape[-1] - 1 - C
    G = C - k
    x = np.asarray(x)
    if x.dtype != spline_weight.dtype:
        raise TypeError(f"expected x of dtype {spline_weight.dtype}, got {x.dtype}")
    if x.ndim < 1 or x.shape[-1] != I or grid.shape != (I, G + 2 * k + 1):
        raise ValueError(f"expected x (..., {I}) and grid ({I}, G+2k+1), got {x.shape}, {grid.shape}")
    lead = x.shape[:-1]
    x2 = _c_aligned(x.reshape(-1, I))
    bw = None if base_weight is None else _c_aligned(base_weight, dtype=spline_weight.dtype)
    sc = None if spline_scaler is None else _c_aligned(spline_scaler, dtype=spline_weight.dtype)
    for name, a, shape in (("base_weight", bw, (out, I)), ("spline_scaler", sc, (out, I))):
        if a is not None and a.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {a.shape}")
    dtype = _NP_DTYPES[spline_weight.dtype]
    y = np.empty((x2.shape[0], out), dtype=spline_weight.dtype)
    nbytes = _core.bspline_workspace_bytes(x2.shape[0], I, out, G, k, dtype, "cpu", False)
    ws = np.empty(max(nbytes, 1), dtype=np.uint8)
    _core.bspline_forward(_addr(x2), _addr(grid), _addr(bw), _addr(spline_weight), _addr(sc),
                          _addr(y), x2.shape[0], I, out, G, k, dtype, _addr(ws), ws.nbytes, "cpu", 0, 0)
    return y.reshape(*lead, out)


def coefficient_l1_entropy_torch(w, activation: float, entropy: float):
    """[loss, d loss / d w] of kancore/regularizers.hpp's coefficient_l1_entropy as torch
    expressions (float64, on w's device): l1 = mean |w| per edge, loss = activation * sum(l1) +
    entropy * H(l1 / sum(l1)), with 0 log 0 = 0 and subgradient 0 at |w| = 0."""
    import torch

    wd = w.detach().to(torch.float64)
    per_edge = max(wd.shape[-1], 1)
    l1 = wd.abs().reshape(-1, per_edge).mean(dim=1)
    total = l1.sum()
    p = l1 / torch.where(total > 0, total, torch.ones_like(total))
    logp = torch.log(torch.where(p > 0, p, torch.ones_like(p)))  # log 1 = 0 where p = 0
    H = -(p * logp).sum()
    dl1 = torch.where(l1 > 0, activation - entropy * (logp + H) / torch.where(total > 0, total, torch.ones_like(total)),
                      torch.zeros_like(l1))
    grad = torch.sign(wd) * (dl1 / per_edge).reshape(*wd.shape[:-1], 1)
    value = activation * total + entropy * H
    return [value.to(w.dtype), grad.to(w.dtype)]


def smoothness_torch(c, outer: int, K: int, inner: int):
    """[loss, d loss / d c] of kancore/regularizers.hpp's smoothness as torch expressions (float64,
    on c's device): mean over edges of sum_k (c[k+1] - 2 c[k] + c[k-1])^2 on (outer, K, inner)."""
    import torch

    cd = c.detach().to(torch.float64).reshape(outer, K, inner)
    grad = torch.zeros_like(cd)
    if K < 3 or outer == 0:
        return [cd.new_zeros(()).to(c.dtype), grad.reshape(c.shape).to(c.dtype)]
    edges = float(outer * inner)
    d2 = cd[:, 2:] - 2 * cd[:, 1:-1] + cd[:, :-2]
    s = 2 * d2 / edges
    grad[:, 2:] += s
    grad[:, 1:-1] -= 2 * s
    grad[:, :-2] += s
    return [(d2.square().sum() / edges).to(c.dtype), grad.reshape(c.shape).to(c.dtype)]


def layer_workspace_bytes(kind: str, batch: int, in_features: int, out_features: int, size: int,
                          spline_order: int, spline_width: float, dtype: str, impl: str = "embedding_bag",
                          backward: bool = True) -> int:
    """Scratch bytes one call of a kancore layer's CPU kernel takes (kind "c0": size = K;
    "bspline": size = G), for memory estimates."""
    if kind == "c0":
        return int(_core.c0_workspace_bytes(batch, in_features, out_features, size, float(spline_width), dtype,
                                            impl, "cpu", backward, 0, "highest", WORKSPACE_LIMIT))
    return int(_core.bspline_workspace_bytes(batch, in_features, out_features, size, spline_order, dtype, "cpu",
                                             backward, 0))


@functools.lru_cache(maxsize=None)
def torch_bspline_ops() -> SimpleNamespace:
    """Register the B-spline and loss custom ops once and return them (imports torch)."""
    import torch
    from typing import List, Optional

    def _shape(x, grid, spline_weight):
        out, I, C = spline_weight.shape
        k = grid.shape[1] - 1 - C
        return x.shape[0], I, out, C - k, k

    def _check(x, grid, base_weight, spline_weight, spline_scaler):
        if spline_weight.dim() != 3 or x.dim() != 2 or grid.dim() != 2:
            raise ValueError(f"expected x (batch, in), grid (in, G+2k+1), spline_weight (out, in, G+k), "
                             f"got {tuple(x.shape)}, {tuple(grid.shape)}, {tuple(spline_weight.shape)}")
        out, I, C = spline_weight.shape
        k = grid.shape[1] - 1 - C
        if x.shape[1] != I or grid.shape[0] != I or k < 1 or C - k < 1:
            raise ValueError(f"expected x (batch, {I}) and grid ({I}, G+2k+1) with k >= 1, G >= 1, got "
                             f"{tuple(x.shape)} and {tuple(grid.shape)}")
        for name, t in (("base_weight", base_weight), ("spline_scaler", spline_scaler)):
            if t is not None and tuple(t.shape) != (out, I):
                raise ValueError(f"expected {name} of shape {(out, I)}, got {tuple(t.shape)}")
        tensors = [t for t in (x, grid, base_weight, spline_weight, spline_scaler) if t is not None]
        if any(t.dtype != spline_weight.dtype for t in tensors):
            raise TypeError(f"expected every operand in {spline_weight.dtype}, got "
                            f"{[str(t.dtype) for t in tensors]}")
        _dtype_name(spline_weight.dtype)
        if any(t.device != x.device for t in tensors):
            raise ValueError(f"expected every operand on one device, got {[str(t.device) for t in tensors]}")
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(f"expected cpu or cuda tensors, got {x.device}")

    def _ws(shape, dtype, device, backward):
        """Scratch memory for one call from torch's allocator (stream-ordered on CUDA)."""
        dev_type, index, _ = _torch_device_args(device)
        nbytes = _core.bspline_workspace_bytes(*shape, dtype, dev_type, backward, index)
        return torch.empty(max(nbytes, 1), dtype=torch.uint8, device=device), nbytes

    def _c(t):
        return None if t is None else t.contiguous()

    @torch.library.custom_op("kancore::bspline_forward", mutates_args=())
    def bspline_forward(x: torch.Tensor, grid: torch.Tensor, base_weight: Optional[torch.Tensor],
                        spline_weight: torch.Tensor, spline_scaler: Optional[torch.Tensor]) -> torch.Tensor:
        _check(x, grid, base_weight, spline_weight, spline_scaler)
        x, grid, base_weight, spline_weight, spline_scaler = map(_c, (x, grid, base_weight, spline_weight, spline_scaler))
        N, I, O, G, k = _shape(x, grid, spline_weight)
        dtype = _dtype_name(x.dtype)
        y = x.new_empty((N, O))
        ws, nbytes = _ws((N, I, O, G, k), dtype, x.device, False)
        _core.bspline_forward(_addr(x), _addr(grid), _addr(base_weight), _addr(spline_weight),
                              _addr(spline_scaler), _addr(y), N, I, O, G, k, dtype, ws.data_ptr(),
                              nbytes, *_torch_device_args(x))
        return y

    @bspline_forward.register_fake
    def _(x, grid, base_weight, spline_weight, spline_scaler):
        _same_device(x, grid, base_weight, spline_weight, spline_scaler)
        return x.new_empty((x.shape[0], spline_weight.shape[0]))

    @torch.library.custom_op("kancore::bspline_backward", mutates_args=())
    def bspline_backward(grad_y: torch.Tensor, x: torch.Tensor, grid: torch.Tensor,
                         base_weight: Optional[torch.Tensor], spline_weight: torch.Tensor,
                         spline_scaler: Optional[torch.Tensor], needs: List[bool]) -> List[torch.Tensor]:
        """[grad_x, grad_base_weight, grad_spline_weight, grad_spline_scaler]; skipped ones empty."""
        _check(x, grid, base_weight, spline_weight, spline_scaler)
        N, I, O, G, k = _shape(x, grid, spline_weight)
        if tuple(grad_y.shape) != (N, O) or grad_y.dtype != x.dtype or grad_y.device != x.device:
            raise ValueError(f"expected grad_y ({N}, {O}) {x.dtype}, got {tuple(grad_y.shape)} {grad_y.dtype}")
        x, grid, base_weight, spline_weight, spline_scaler, grad_y = map(
            _c, (x, grid, base_weight, spline_weight, spline_scaler, grad_y))
        refs = (x, base_weight, spline_weight, spline_scaler)
        outs = [torch.empty_like(r) if (need and r is not None) else x.new_empty(0)
                for need, r in zip(needs, refs)]
        addrs = [o.data_ptr() if (need and r is not None) else 0 for o, need, r in zip(outs, needs, refs)]
        dtype = _dtype_name(x.dtype)
        ws, nbytes = _ws((N, I, O, G, k), dtype, x.device, True)
        _core.bspline_backward(_addr(x), _addr(grid), _addr(base_weight), _addr(spline_weight),
                               _addr(spline_scaler), _addr(grad_y), *addrs, N, I, O, G, k, dtype,
                               ws.data_ptr(), nbytes, *_torch_device_args(x))
        return outs

    @bspline_backward.register_fake
    def _(grad_y, x, grid, base_weight, spline_weight, spline_scaler, needs):
        _same_device(grad_y, x, grid, base_weight, spline_weight, spline_scaler)
        refs = (x, base_weight, spline_weight, spline_scaler)
        return [torch.empty_like(r) if (need and r is not None) else x.new_empty(0)
                for need, r in zip(needs, refs)]

    def _setup(ctx, inputs, output):
        x, grid, base_weight, spline_weight, spline_scaler = inputs
        ctx.save_for_backward(x, grid, base_weight, spline_weight, spline_scaler)

    def _backward(ctx, grad_y):
        x, grid, base_weight, spline_weight, spline_scaler = ctx.saved_tensors
        n = ctx.needs_input_grad
        needs = [n[0], n[2], n[3], n[4]]
        if not any(needs):
            return None, None, None, None, None
        gx, gb, gw, gs = bspline_backward(grad_y, x, grid, base_weight, spline_weight, spline_scaler, needs)
        pick = lambda g, need: g if need else None  # noqa: E731
        return pick(gx, n[0]), None, pick(gb, n[2]), pick(gw, n[3]), pick(gs, n[4])

    bspline_forward.register_autograd(_backward, setup_context=_setup)

    # Losses: one native call gives the value and the gradient; autograd scales the gradient.
    # On CUDA the same formulas run as torch expressions in float64 on the device (no host copy,
    # no synchronisation); tests/python/test_device_losses.py checks them against the native ones.
    @torch.library.custom_op("kancore::coefficient_l1_entropy", mutates_args=())
    def coefficient_l1_entropy(w: torch.Tensor, activation: float, entropy: float) -> List[torch.Tensor]:
        if w.dim() < 1 or w.device.type not in ("cpu", "cuda"):
            raise ValueError(f"expected a tensor (..., per_edge) on cpu or cuda, got {tuple(w.shape)} on {w.device}")
        if w.device.type == "cuda":
            return coefficient_l1_entropy_torch(w, activation, entropy)
        wc = w.detach().contiguous()
        grad = torch.empty_like(wc)
        per_edge = wc.shape[-1]
        value = _core.coefficient_l1_entropy(wc.data_ptr(), wc.numel() // max(per_edge, 1), per_edge,
                                             float(activation), float(entropy),
                                             _dtype_name(wc.dtype), grad.data_ptr())
        return [torch.tensor(value, dtype=w.dtype, device=w.device), grad.to(w.device)]

    @coefficient_l1_entropy.register_fake
    def _(w, activation, entropy):
        return [w.new_empty(()), torch.empty_like(w)]

    @torch.library.custom_op("kancore::smoothness", mutates_args=())
    def smoothness(c: torch.Tensor, outer: int, K: int, inner: int) -> List[torch.Tensor]:
        if c.numel() != outer * K * inner or c.device.type not in ("cpu", "cuda"):
            raise ValueError(f"expected a tensor of {outer}x{K}x{inner} elements on cpu or cuda, got "
                             f"{tuple(c.shape)} on {c.device}")
        if c.device.type == "cuda":
            return smoothness_torch(c, outer, K, inner)
        cc = c.detach().contiguous()
        grad = torch.empty_like(cc)
        value = _core.smoothness(cc.data_ptr(), outer, K, inner, _dtype_name(cc.dtype), grad.data_ptr())
        return [torch.tensor(value, dtype=c.dtype, device=c.device), grad.to(c.device)]

    @smoothness.register_fake
    def _(c, outer, K, inner):
        return [c.new_empty(()), torch.empty_like(c)]

    def _loss_setup(ctx, inputs, output):
        ctx.save_for_backward(output[1])

    def _loss_backward(ctx, *grads):
        (g,) = ctx.saved_tensors
        if len(grads) == 1 and isinstance(grads[0], (list, tuple)):
            grads = grads[0]
        grad_value = grads[0]
        if grad_value is None:
            return (None,) * 4
        return (grad_value * g,) + (None,) * 3

    coefficient_l1_entropy.register_autograd(
        lambda ctx, *grads: _loss_backward(ctx, *grads)[:3], setup_context=_loss_setup)
    smoothness.register_autograd(_loss_backward, setup_context=_loss_setup)

    def _portable_bspline(x, grid, base_weight, spline_weight, spline_scaler):
        from . import portable
        order = grid.shape[1] - 1 - spline_weight.shape[2]  # knots G+2k+1, coefficients G+k
        return portable.bspline_forward(x, grid, base_weight, spline_weight, spline_scaler, order)

    _register_export_decomposition(bspline_forward, _portable_bspline)
    return SimpleNamespace(bspline_forward=bspline_forward, bspline_backward=bspline_backward,
                           coefficient_l1_entropy=coefficient_l1_entropy, smoothness=smoothness)


# ----------------------------------------------------------------------------------------------
# Edge-scale regulariser (pykan's sample-based loss, reg_metric "edge_forward_spline_n").
# Definition in kancore/regularizers.hpp and the README. One native call gives the loss, the edge
# scales A (out, in) and the requested gradients; nothing of shape (batch, out, in) is built.

class EdgeScaleResult(NamedTuple):
    loss: float
    scales: np.ndarray            # A (out, in): std of each edge's output / (std of its input + 0.1)
    grads: Optional[Dict[str, np.ndarray]]  # d loss / d each array, when asked for


_LAMBS = ("lamb_l1", "lamb_entropy", "lamb_coef", "lamb_coefdiff")


def _edge_scale_lambdas(lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff) -> List[float]:
    out = []
    for name, v in zip(_LAMBS, (lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)):
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"expected a finite {name}, got {v}")
        out.append(v)
    return out


def _edge_scale_batch(batch: int) -> None:
    # Checked here too so Python callers get the message before any array work.
    if batch < 2:
        raise ValueError(f"expected at least 2 samples for the edge-scale regulariser (a standard "
                         f"deviation over the batch needs two), got {batch}")


def edge_scale_c0_numpy(x, table, spline_width: float = 4.0, lamb_l1: float = 1.0,
                        lamb_entropy: float = 2.0, lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0,
                        grads: bool = False) -> EdgeScaleResult:
    """Edge-scale loss of a C0 layer: x (..., in), table (in, K, out), one float dtype.
    With grads=True, ``result.grads`` holds ``"x"`` (x's shape) and ``"table"``."""
    lambs = _edge_scale_lambdas(lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
    x, table, shape, lead = _np_prepare(x, table, spline_width, "embedding_bag")
    _edge_scale_batch(shape[0])
    N, I, O, K, W = shape
    dtype = _NP_DTYPES[table.dtype]
    scales = np.empty((O, I), dtype=table.dtype)
    gx = np.empty_like(x) if grads else None
    gt = np.empty_like(table) if grads else None
    loss = _core.edge_scale_c0(_addr(x), _addr(table), _addr(gx), _addr(gt), _addr(scales),
                               N, I, O, K, W, dtype, *lambs, "cpu")
    g = {"x": gx.reshape(*lead, I), "table": gt} if grads else None
    return EdgeScaleResult(loss, scales, g)


def _bspline_sizes(grid_shape, spline_weight_shape, in_features: int):
    if len(spline_weight_shape) != 3 or len(grid_shape) != 2:
        raise ValueError(f"expected grid (in, G+2k+1) and spline_weight (out, in, G+k), got "
                         f"{tuple(grid_shape)} and {tuple(spline_weight_shape)}")
    O, I, C = spline_weight_shape
    k = grid_shape[1] - 1 - C
    if I != in_features or grid_shape[0] != I or k < 1 or C - k < 1:
        raise ValueError(f"expected x (..., {I}) and grid ({I}, G+2k+1) with k >= 1 and G >= 1, got "
                         f"in_features={in_features} and grid {tuple(grid_shape)}")
    return O, I, C - k, k


def edge_scale_bspline_numpy(x, grid, base_weight, spline_weight, spline_scaler=None,
                             lamb_l1: float = 1.0, lamb_entropy: float = 2.0, lamb_coef: float = 0.0,
                             lamb_coefdiff: float = 0.0, grads: bool = False) -> EdgeScaleResult:
    """Edge-scale loss of a B-spline layer (efficient-kan shapes; base_weight None drops the
    silu branch, spline_scaler None means 1). With grads=True, ``result.grads`` holds ``"x"``,
    ``"spline_weight"`` and, when given, ``"base_weight"`` and ``"spline_scaler"``."""
    lambs = _edge_scale_lambdas(lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
    spline_weight = _c_aligned(spline_weight)
    if spline_weight.dtype not in _NP_DTYPES:
        raise TypeError(f"expected float32 or float64 weights, got {spline_weight.dtype}")
    x = np.asarray(x)
    if x.dtype != spline_weight.dtype:
        raise TypeError(f"expected x of dtype {spline_weight.dtype}, got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"expected x of shape (..., in), got {x.shape}")
    lead = x.shape[:-1]
    grid = _c_aligned(grid, dtype=spline_weight.dtype)
    O, I, G, k = _bspline_sizes(grid.shape, spline_weight.shape, x.shape[-1])
    x2 = _c_aligned(x.reshape(-1, I))
    _edge_scale_batch(x2.shape[0])
    params = {}
    for name, a in (("base_weight", base_weight), ("spline_scaler", spline_scaler)):
        if a is not None:
            a = _c_aligned(a)
            if a.dtype != spline_weight.dtype or a.shape != (O, I):
                raise ValueError(f"expected {name} of shape {(O, I)} and dtype {spline_weight.dtype}, "
                                 f"got {a.shape} {a.dtype}")
        params[name] = a
    bw, sc = params["base_weight"], params["spline_scaler"]
    dtype = _NP_DTYPES[spline_weight.dtype]
    scales = np.empty((O, I), dtype=spline_weight.dtype)
    g = None
    if grads:
        g = {"x": np.empty_like(x2), "spline_weight": np.empty_like(spline_weight)}
        if bw is not None:
            g["base_weight"] = np.empty_like(bw)
        if sc is not None:
            g["spline_scaler"] = np.empty_like(sc)
    ga = (lambda name: _addr(g.get(name)) if g else 0)  # noqa: E731
    loss = _core.edge_scale_bspline(_addr(x2), _addr(grid), _addr(bw), _addr(spline_weight), _addr(sc),
                                    ga("x"), ga("base_weight"), ga("spline_weight"), ga("spline_scaler"),
                                    _addr(scales), x2.shape[0], I, O, G, k, dtype, *lambs, "cpu")
    if g:
        g["x"] = g["x"].reshape(x.shape)
    return EdgeScaleResult(loss, scales, g)


@functools.lru_cache(maxsize=None)
def torch_edge_scale_ops() -> SimpleNamespace:
    """Register the edge-scale custom ops once and return them (imports torch).

    ``kancore::edge_scale_c0`` / ``kancore::edge_scale_bspline`` return [loss, scales, grads...];
    ``needs`` says which gradients to compute (a skipped one comes back empty). Autograd scales
    the precomputed gradients by the incoming gradient of the loss; ``scales`` is not
    differentiable (use ``.detach()``)."""
    import torch

    def _cpu_only(tensors):
        if any(t.device.type != "cpu" for t in tensors):
            raise NotImplementedError("kancore: the edge-scale regulariser is not yet on CUDA (CPU only for now)")

    def _same_dtype(tensors):
        dt = tensors[0].dtype
        if any(t.dtype != dt for t in tensors):
            raise TypeError(f"expected every operand in one dtype, got {[str(t.dtype) for t in tensors]}")
        return _dtype_name(dt)

    def _check_c0(x, table):
        if x.dim() != 2 or table.dim() != 3 or x.shape[1] != table.shape[0]:
            raise ValueError(f"expected x (batch, in) and table (in, K, out), got {tuple(x.shape)} "
                             f"and {tuple(table.shape)}")
        _same_dtype([x, table])
        _cpu_only([x, table])
        _edge_scale_batch(x.shape[0])

    @torch.library.custom_op("kancore::edge_scale_c0", mutates_args=())
    def edge_scale_c0(x: torch.Tensor, table: torch.Tensor, spline_width: float, lambdas: List[float],
                      needs: List[bool]) -> List[torch.Tensor]:
        _check_c0(x, table)
        lambs = _edge_scale_lambdas(*lambdas)
        x, table = x.contiguous(), table.contiguous()
        N, I = x.shape
        _, K, O = table.shape
        scales = x.new_empty((O, I))
        gx = torch.empty_like(x) if needs[0] else x.new_empty(0)
        gt = torch.empty_like(table) if needs[1] else x.new_empty(0)
        loss = _core.edge_scale_c0(x.data_ptr(), table.data_ptr(), gx.data_ptr() if needs[0] else 0,
                                   gt.data_ptr() if needs[1] else 0, scales.data_ptr(), N, I, O, K,
                                   float(spline_width), _dtype_name(x.dtype), *lambs, "cpu")
        return [torch.tensor(loss, dtype=x.dtype), scales, gx, gt]

    @edge_scale_c0.register_fake
    def _(x, table, spline_width, lambdas, needs):
        _same_device(x, table)
        O, I = table.shape[2], x.shape[1]
        return [x.new_empty(()), x.new_empty((O, I)),
                torch.empty_like(x) if needs[0] else x.new_empty(0),
                torch.empty_like(table) if needs[1] else x.new_empty(0)]

    def _check_bspline(x, grid, base_weight, spline_weight, spline_scaler):
        if x.dim() != 2:
            raise ValueError(f"expected x (batch, in), got {tuple(x.shape)}")
        O, I, _, _ = _bspline_sizes(tuple(grid.shape), tuple(spline_weight.shape), x.shape[1])
        for name, t in (("base_weight", base_weight), ("spline_scaler", spline_scaler)):
            if t is not None and tuple(t.shape) != (O, I):
                raise ValueError(f"expected {name} of shape {(O, I)}, got {tuple(t.shape)}")
        tensors = [t for t in (x, grid, base_weight, spline_weight, spline_scaler) if t is not None]
        _same_dtype(tensors)
        _cpu_only(tensors)
        _edge_scale_batch(x.shape[0])

    @torch.library.custom_op("kancore::edge_scale_bspline", mutates_args=())
    def edge_scale_bspline(x: torch.Tensor, grid: torch.Tensor, base_weight: Optional[torch.Tensor],
                           spline_weight: torch.Tensor, spline_scaler: Optional[torch.Tensor],
                           lambdas: List[float], needs: List[bool]) -> List[torch.Tensor]:
        """[loss, scales, grad_x, grad_base_weight, grad_spline_weight, grad_spline_scaler]."""
        _check_bspline(x, grid, base_weight, spline_weight, spline_scaler)
        lambs = _edge_scale_lambdas(*lambdas)
        c = lambda t: None if t is None else t.contiguous()  # noqa: E731
        x, grid, base_weight, spline_weight, spline_scaler = map(c, (x, grid, base_weight, spline_weight, spline_scaler))
        O, I, G, k = _bspline_sizes(tuple(grid.shape), tuple(spline_weight.shape), x.shape[1])
        refs = (x, base_weight, spline_weight, spline_scaler)
        outs = [torch.empty_like(r) if (need and r is not None) else x.new_empty(0) for need, r in zip(needs, refs)]
        addrs = [o.data_ptr() if (need and r is not None) else 0 for o, need, r in zip(outs, needs, refs)]
        scales = x.new_empty((O, I))
        loss = _core.edge_scale_bspline(_addr(x), _addr(grid), _addr(base_weight), _addr(spline_weight),
                                        _addr(spline_scaler), *addrs, scales.data_ptr(), x.shape[0], I, O,
                                        G, k, _dtype_name(x.dtype), *lambs, "cpu")
        return [torch.tensor(loss, dtype=x.dtype), scales] + outs

    @edge_scale_bspline.register_fake
    def _(x, grid, base_weight, spline_weight, spline_scaler, lambdas, needs):
        _same_device(x, grid, base_weight, spline_weight, spline_scaler)
        refs = (x, base_weight, spline_weight, spline_scaler)
        return [x.new_empty(()), x.new_empty((spline_weight.shape[0], x.shape[1]))] + [
            torch.empty_like(r) if (need and r is not None) else x.new_empty(0) for need, r in zip(needs, refs)]

    def _setup(ctx, inputs, output):
        ctx.save_for_backward(*output[2:])

    def _backward_for(slots):
        """Autograd formula: the input at position slots[j] gets grad_loss * saved gradient j."""
        def backward(ctx, *grads):
            if len(grads) == 1 and isinstance(grads[0], (list, tuple)):
                grads = grads[0]
            g_loss = grads[0]
            saved = ctx.saved_tensors
            n_inputs = len(ctx.needs_input_grad)
            result = [None] * n_inputs
            if g_loss is None:
                return tuple(result)
            for j, slot in enumerate(slots):
                if ctx.needs_input_grad[slot] and saved[j].numel() > 0:
                    result[slot] = g_loss * saved[j]
            return tuple(result)
        return backward

    edge_scale_c0.register_autograd(_backward_for((0, 1)), setup_context=_setup)
    edge_scale_bspline.register_autograd(_backward_for((0, 2, 3, 4)), setup_context=_setup)

    def _needs(*tensors):
        on = torch.is_grad_enabled()
        return [bool(on and t is not None and t.requires_grad) for t in tensors]

    def c0_loss(x, table, spline_width, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff):
        """(loss, scales) of a C0 layer for x (batch, in); loss is differentiable."""
        lambs = _edge_scale_lambdas(lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
        loss, scales, *_ = edge_scale_c0(x, table, float(spline_width), lambs, _needs(x, table))
        return loss, scales.detach()

    def bspline_loss(x, grid, base_weight, spline_weight, spline_scaler, lamb_l1, lamb_entropy,
                     lamb_coef, lamb_coefdiff):
        """(loss, scales) of a B-spline layer for x (batch, in); loss is differentiable."""
        lambs = _edge_scale_lambdas(lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
        needs = _needs(x, base_weight, spline_weight, spline_scaler)
        loss, scales, *_ = edge_scale_bspline(x, grid, base_weight, spline_weight, spline_scaler, lambs, needs)
        return loss, scales.detach()

    return SimpleNamespace(edge_scale_c0=edge_scale_c0, edge_scale_bspline=edge_scale_bspline,
                           c0_loss=c0_loss, bspline_loss=bspline_loss)
