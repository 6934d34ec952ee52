"""Looking inside a KAN: parameter counts, FLOPs, a memory estimate, MLPs of the same size or
compute for fair comparisons, sampled edge functions, and a whole-network figure
(``plot_network``)."""
from __future__ import annotations

import copy
import functools
import numbers
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn as nn

from . import _ops
from .kan_layer import KANLayer
from .kan_linear import KANLinear, skip_initialisation
from .network import KAN, KANLayerType


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalars in the model's parameters (buffers such as B-spline grids excluded).

    Parameters
    ----------
    model : nn.Module
        Any module.
    trainable_only : bool
        Count only parameters with ``requires_grad``.

    Returns
    -------
    int
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose parameters and buffers are "meta" tensors of the same shapes
    and dtypes: it runs forward and backward for shapes only, and making it copies no data."""
    memo: Dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def _traced_memory(meta: nn.Module, batch: int, sample_shape: Sequence[int],
                   input_dtype: Optional[torch.dtype] = None) -> Tuple[int, int]:
    """(bytes autograd keeps for backward, bytes of the largest module output) of one forward
    pass at ``batch`` rows of a ``_meta_copy``: shapes only, nothing allocated."""
    params = {id(p) for p in meta.parameters()}
    ref = next(meta.parameters(), None)
    dtype = ref.dtype if ref is not None else torch.float32
    saved: Dict[int, int] = {}
    largest = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t  # a view keeps its base alive
        if id(base) not in params and id(t) not in params:
            saved[id(base)] = base.numel() * base.element_size()
        return t

    def record(_module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            largest[0] = max(largest[0], output.numel() * output.element_size())

    hooks = [m.register_forward_hook(record) for m in meta.modules()]
    try:
        x = torch.zeros((batch, *sample_shape), dtype=input_dtype or dtype, device="meta")
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = meta(x)
        del y
    finally:
        for h in hooks:
            h.remove()
    return sum(saved.values()), largest[0]


def _kernel_scratch(model: nn.Module, batch: int, backward: bool) -> int:
    """The largest scratch memory one kancore kernel call takes in this model (the B-spline
    backward holds two (in, G+k, out) tables; the C0 CSR path its matrix)."""
    largest = 0
    for m in model.modules():
        if isinstance(m, (KANLayer, KANLinear)):
            p = next(m.parameters())
            dtype = str(p.dtype).replace("torch.", "")
            if isinstance(m, KANLayer):
                args = ("c0", batch, m.in_features, m.out_features, m.num_control_points, 1, m.spline_width)
            else:
                args = ("bspline", batch, m.in_features, m.out_features, m.grid_size, m.spline_order, 1.0)
            impl = getattr(m, "impl", "embedding_bag")
            largest = max(largest, _ops.layer_workspace_bytes(*args, dtype, impl, False),
                          _ops.layer_workspace_bytes(*args, dtype, impl, True) if backward else 0)
    return largest


def memory_estimate(model: nn.Module, batch_size: int = 1, optimizer: str = "adam",
                    input_shape: Optional[Sequence[int]] = None, training: bool = True,
                    input_dtype: Optional[torch.dtype] = None) -> Dict[str, int]:
    """Bytes needed to train (or run) ``model`` on batches of ``batch_size`` rows: parameters,
    buffers, gradients, optimizer state (Adam/AdamW: two moments per parameter; ``"sgd"``: none),
    the activations kept for backward and a transient workspace.

    With ``input_shape`` (one sample's shape, batch excluded) the activations are traced: the
    model runs once on a "meta" copy (shapes only, nothing allocated) at one and two rows, every
    tensor autograd saves for backward is counted (parameters excluded, each tensor once), and the
    count is extrapolated linearly to ``batch_size``; ``workspace`` is the largest module output
    at ``batch_size`` (the backward pass holds such a gradient besides the saved tensors) plus
    the largest scratch memory of one kancore kernel call (the B-spline backward's tables). This
    works for any model (convolutions, attention, kancore layers). Without ``input_shape``, a KAN
    layer or ``nn.Linear`` counts ``batch * (in + out)`` values and ``nn.LayerNorm`` its input,
    output and two row statistics (kancore's kernels keep only each layer's input), other modules
    nothing. An estimate: ``benchmarks/memory_check.py`` measures its error.

    Parameters
    ----------
    model : nn.Module
        Any module.
    batch_size : int
        Rows per batch.
    optimizer : {"adam", "adamw", "sgd"}
        Decides the optimizer state.
    input_shape : sequence of int, optional
        One sample's shape, e.g. ``(784,)`` or ``(3, 32, 32)`` or ``(sequence, d_model)``.
    training : bool
        False: inference under ``torch.no_grad()``; no gradients, optimizer state or saved
        activations, and a workspace of the two largest module outputs (input and output of the
        widest step).
    input_dtype : torch.dtype, optional
        The traced input's dtype (default: the model's; ``torch.long`` for token ids).

    Returns
    -------
    dict
        Bytes per item: ``parameters``, ``buffers``, ``gradients``, ``optimizer_state``,
        ``activations``, ``workspace`` and ``total``.
    """
    if not (isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad) if training else 0
    state = 2 * grads if optimizer in ("adam", "adamw") else 0

    workspace = 0
    if input_shape is not None:
        shape = tuple(int(n) for n in input_shape)
        if any(n < 1 for n in shape):
            raise ValueError(f"input_shape must be positive sizes (one sample, no batch), got {input_shape!r}")
        meta = _meta_copy(model)
        one, largest_one = _traced_memory(meta, 1, shape, input_dtype)
        two, largest_two = _traced_memory(meta, 2, shape, input_dtype)
        per_row, fixed = two - one, 2 * one - two
        largest = (largest_two - largest_one) * batch_size + (2 * largest_one - largest_two)
        activations = per_row * batch_size + fixed if training else 0
        workspace = largest if training else 2 * largest
        workspace += _kernel_scratch(model, batch_size, training)
        segment = model.checkpoint_segment_length() if isinstance(model, KAN) else 0
        if training and segment:
            # The backward pass recomputes one segment at a time and holds its activations:
            # about segment / L of what the network keeps without checkpointing.
            meta.checkpoint = False
            p_one, _ = _traced_memory(meta, 1, shape, input_dtype)
            p_two, _ = _traced_memory(meta, 2, shape, input_dtype)
            kept = (p_two - p_one) * batch_size + (2 * p_one - p_two)
            workspace += kept * min(segment, len(model.layers)) // len(model.layers)
    else:
        activations = 0
        for m in model.modules():
            if isinstance(m, (KANLayer, KANLinear, nn.Linear)):
                ref = next(m.parameters(), None)
                size = ref.element_size() if ref is not None else 4
                activations += batch_size * (m.in_features + m.out_features) * size
            elif isinstance(m, nn.LayerNorm):  # input, output, mean and rstd per row
                activations += batch_size * (2 * m.normalized_shape[0] + 2) * m.weight.element_size()
        if not training:
            activations = 0
    total = params + buffers + grads + state + activations + workspace
    return {"parameters": params, "buffers": buffers, "gradients": grads, "optimizer_state": state,
            "activations": activations, "workspace": workspace, "total": total}


def fit_to_memory(widths: Sequence[int], budget_bytes: int, batch_size: int, *, kind: str = "bspline",
                  grid_sizes: Sequence[int] = (20, 10, 5, 3), width_scales: Sequence[float] = (1.0, 0.75, 0.5, 0.25),
                  checkpoint: Sequence[bool] = (False, True), micro_batches: Sequence[int] = (1, 2, 4, 8),
                  optimizer: str = "adam",
                  device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None,
                  **options: Any) -> Tuple[KAN, Dict[str, Any]]:
    """The largest ``kancore.KAN`` of the given shape that trains within ``budget_bytes``.

    Candidates scale the hidden widths (``width_scales``), the grid (``grid_sizes``: B-spline
    G or C0 K), turn on gradient checkpointing (``checkpoint``) and evaluate each batch in
    chunks (``micro_batches``: m forward/backward passes of ``batch_size / m`` rows whose
    gradients accumulate before one optimizer step; the same update, less activation memory).
    Each is estimated by ``memory_estimate(..., input_shape=(widths[0],))`` on a "meta" copy,
    so nothing is allocated until the choice is made: the candidate with the most parameters
    whose estimate fits (ties: the faster, without checkpointing and with fewer chunks) is
    built on ``device`` and returned. The estimate errs on the safe side
    (``benchmarks/memory_check.py``: +15 % to +38 % on the CPU).

    Parameters
    ----------
    widths : sequence of int
        The widths at scale 1, input first; input and output widths are kept.
    budget_bytes : int
        Memory for the model, its gradients and optimizer state and one batch's activations.
    batch_size : int
        Rows per training batch.
    kind : {"bspline", "c0"}
        The layer kind.
    grid_sizes, width_scales, checkpoint, micro_batches : sequences
        The candidates' grid sizes, hidden-width factors, checkpointing settings and numbers of
        chunks per batch (each at most ``batch_size``).
    optimizer : {"adam", "adamw", "sgd"}
        As in ``memory_estimate``.
    device, dtype
        Where the chosen network is built.
    **options
        Further ``kancore.KAN`` arguments (``layernorm``, ``spline_order``...).

    Returns
    -------
    (KAN, dict)
        The network, and a report: ``widths``, ``grid_size``, ``checkpoint``, ``micro_batches``
        (train on that many chunks of ``batch_size / micro_batches`` rows per step),
        ``parameters``, ``estimate`` (memory_estimate's dict at the chunk size) and
        ``candidates`` (how many were tried).

    Raises
    ------
    ValueError
        When no candidate fits, naming the smallest one's estimate; before any allocation.
    """
    widths = [int(w) for w in widths]
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, numbers.Integral) or budget_bytes < 1:
        raise ValueError(f"budget_bytes must be a positive int, got {budget_bytes!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    grid_key = "num_control_points" if kind == "c0" else "grid_size"
    candidates = []
    for scale in width_scales:
        hidden = [max(1, int(round(w * float(scale)))) for w in widths[1:-1]]
        for grid in grid_sizes:
            for ckpt in checkpoint:
                shape = [widths[0], *hidden, widths[-1]]
                with torch.device("meta"), skip_initialisation():  # shapes only: nothing allocated
                    meta = KAN(shape, kind=kind, checkpoint=bool(ckpt), dtype=dtype, **{grid_key: int(grid)},
                               **options)
                count = sum(p.numel() for p in meta.parameters())
                for chunks in sorted({min(int(m), batch_size) for m in micro_batches}):
                    rows = -(-batch_size // chunks)  # ceil: the largest chunk
                    est = memory_estimate(meta, rows, optimizer, input_shape=(widths[0],))
                    candidates.append((count, (not ckpt, -chunks), shape, int(grid), bool(ckpt), chunks, est))
    fitting = [c for c in candidates if c[6]["total"] <= budget_bytes]
    if not fitting:
        smallest = min(candidates, key=lambda c: c[6]["total"])
        raise ValueError(f"no candidate trains in {budget_bytes} bytes: the smallest, widths {smallest[2]}, grid "
                         f"{smallest[3]}, checkpoint={smallest[4]}, {smallest[5]} micro-batches, needs about "
                         f"{smallest[6]['total']} bytes at batch {batch_size} (widen the budget)")
    params, _, shape, grid, ckpt, chunks, est = max(fitting, key=lambda c: (c[0], c[1]))
    model = KAN(shape, kind=kind, checkpoint=ckpt, device=device, dtype=dtype, **{grid_key: grid}, **options)
    return model, {"widths": shape, "grid_size": grid, "checkpoint": ckpt, "micro_batches": chunks,
                   "parameters": params, "estimate": est, "candidates": len(candidates)}


MAX_MLP_PARAMETERS = 10 ** 11  # beyond this an MLP cannot be built in any memory we know


def _mlp_count(sizes: Sequence[int]) -> int:
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def _scaled_widths(shape: Sequence[int], scale: float) -> List[int]:
    return [max(1, int(round(w * scale))) for w in shape]


def _matched_mlp(widths_in_out: Sequence[int], target: int, what: str, measure: Callable[[List[int]], int],
                 hidden_layers: Optional[int], activation: Type[nn.Module]) -> nn.Sequential:
    """The MLP of the given shape whose ``measure`` (of its layer sizes) is nearest ``target``."""
    widths = list(widths_in_out)
    if len(widths) < 2 or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1
                                  for w in widths):
        raise ValueError(f"widths_in_out must hold at least two positive ints, got {widths_in_out!r}")
    if isinstance(target, bool) or not (isinstance(target, numbers.Integral) and target >= 1):
        raise ValueError(f"{what} must be a positive int, got {target!r}")
    if hidden_layers is not None:
        if isinstance(hidden_layers, bool) or not isinstance(hidden_layers, numbers.Integral) or hidden_layers < 1:
            raise ValueError(f"hidden_layers must be an int >= 1, got {hidden_layers!r}")
        shape = [1] * int(hidden_layers)
    else:
        shape = widths[1:-1] or [1]
    n_in, n_out = widths[0], widths[-1]

    def count(scale: float) -> int:
        return measure([n_in] + _scaled_widths(shape, scale) + [n_out])

    # The count grows with the scale: bisect for the first scale that reaches the target, then
    # take it or the largest one below, whichever count is nearer.
    lo, hi = 0.0, 1.0
    while count(hi) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if count(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    scale = hi if abs(count(hi) - target) <= abs(count(lo) - target) else lo
    hidden = _scaled_widths(shape, scale)
    if _mlp_count([n_in] + hidden + [n_out]) > MAX_MLP_PARAMETERS:
        raise ValueError(f"{what}={target} is beyond any MLP that fits in memory (at most {MAX_MLP_PARAMETERS} "
                         "parameters)")
    mods: List[nn.Module] = []
    prev = n_in
    for h in hidden:
        mods += [nn.Linear(prev, h), activation()]
        prev = h
    mods.append(nn.Linear(prev, n_out))
    return nn.Sequential(*mods)


def mlp_with_same_parameters(widths_in_out: Sequence[int], target_params: int, hidden_layers: Optional[int] = None,
                             activation: Type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """An MLP with about ``target_params`` parameters, for a fair comparison with a KAN.

    Parameters
    ----------
    widths_in_out : sequence of int
        The KAN's widths, e.g. ``[d, 5, 1]``: the MLP keeps the inputs, the outputs and the shape
        of the hidden widths, all scaled by one factor (``[4, 8, 4, 1]`` gives hidden widths in
        the ratio 8 : 4). With only ``[in, out]``, one hidden layer.
    target_params : int
        The parameter count to match (the nearest achievable count is taken), at most
        ``MAX_MLP_PARAMETERS``.
    hidden_layers : int, optional
        Instead of the shape of ``widths_in_out``: this many hidden layers of one equal width.
    activation : type
        The activation module between the linear layers.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, activation, ..., Linear``.
    """
    if isinstance(target_params, numbers.Integral) and not isinstance(target_params, bool) \
            and target_params > MAX_MLP_PARAMETERS:
        raise ValueError(f"target_params={target_params} is beyond any MLP that fits in memory "
                         f"(at most {MAX_MLP_PARAMETERS})")
    return _matched_mlp(widths_in_out, target_params, "target_params", _mlp_count, hidden_layers, activation)


def mlp_with_same_flops(widths_in_out: Sequence[int], target_flops: int, hidden_layers: Optional[int] = None,
                        activation: Type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """An MLP whose forward pass costs about ``target_flops`` FLOPs per sample, for a comparison
    at equal compute. A KAN's per-sample cost is ``flops(kan, (2, d))["forward"] -
    flops(kan, (1, d))["forward"]``: a B-spline layer also scales its coefficients once per call.

    Counted as ``flops`` counts: 2 per multiply-add of each Linear layer, the bias additions and
    the activations not counted.

    Parameters
    ----------
    widths_in_out : sequence of int
        The KAN's widths; the MLP keeps the inputs, outputs and the shape of the hidden widths.
    target_flops : int
        Forward FLOPs per sample to match (the nearest achievable count is taken).
    hidden_layers : int, optional
        Instead of the shape of ``widths_in_out``: this many hidden layers of one equal width.
    activation : type
        The activation module between the linear layers.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, activation, ..., Linear``.
    """
    def measure(sizes: List[int]) -> int:
        return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    return _matched_mlp(widths_in_out, target_flops, "target_flops", measure, hidden_layers, activation)


# -- FLOPs ------------------------------------------------------------------------------------------

def c0_flops(batch: int, in_features: int, out_features: int, backward: bool = False) -> int:
    """FLOPs of a C0 layer (``flops``'s convention): forward ``N (3 I + 4 I O)`` (per input:
    u = (x + W/2)(K-1)/W; per edge: b - a, t (b - a), + a, + into y); backward ``N (I + 6 I O)``
    (per edge: the input gradient's g (b - a) and its sum, the table gradient's g t, g - g t and
    two sums; per input the slope). Table lookups cost nothing."""
    N, I, O = batch, in_features, out_features
    return N * (I + 6 * I * O) if backward else N * (3 * I + 4 * I * O)


def bspline_flops(batch: int, in_features: int, out_features: int, grid_size: int, spline_order: int,
                  backward: bool = False) -> int:
    """FLOPs of a B-spline layer (``flops``'s convention): forward ``N I (4 + 3k(k+3)) +
    N I O (2k + 4) + O I (G + k)`` (per input SiLU and the Cox-de Boor recursion, 6 per value
    of each level; per edge k+1 spline and one base multiply-add; the scaler folded into the
    coefficients once); backward ``N I (6 + 3k(k+3)) + N I O (4k + 8) + 2 O I (G + k)``."""
    N, I, O, G, k = batch, in_features, out_features, grid_size, spline_order
    if backward:
        return N * I * (6 + 3 * k * (k + 3)) + N * I * O * (4 * k + 8) + 2 * O * I * (G + k)
    return N * I * (4 + 3 * k * (k + 3)) + N * I * O * (2 * k + 4) + O * I * (G + k)


@functools.lru_cache(maxsize=None)
def _register_flop_formulas() -> None:
    """Teach torch's FlopCounterMode the kancore ops (once)."""
    from torch.utils.flop_counter import register_flop_formula

    _ops.torch_ops()
    _ops.torch_bspline_ops()
    ops = torch.ops.kancore

    @register_flop_formula(ops.c0_forward)
    def _c0_forward(x, table, *args, out_shape=None, **kwargs):
        return c0_flops(x[0], x[1], table[2])

    @register_flop_formula(ops.c0_backward)
    def _c0_backward(grad_y, x, table, spline_width, impl, need_input, need_table, *args, out_shape=None, **kwargs):
        N, I, O = x[0], x[1], table[2]
        return N * I * (1 if need_input else 0) + N * I * O * (2 * bool(need_input) + 4 * bool(need_table))

    def _bspline_shape(x, grid, spline_weight):
        O, I, C = spline_weight
        k = grid[1] - 1 - C
        return x[0], I, O, C - k, k

    @register_flop_formula(ops.bspline_forward)
    def _bspline_forward(x, grid, base_weight, spline_weight, spline_scaler, out_shape=None, **kwargs):
        return bspline_flops(*_bspline_shape(x, grid, spline_weight))

    @register_flop_formula(ops.bspline_backward)
    def _bspline_backward(grad_y, x, grid, base_weight, spline_weight, spline_scaler, needs, out_shape=None,
                          **kwargs):
        return bspline_flops(*_bspline_shape(x, grid, spline_weight), backward=True)


def flops(model: nn.Module, input_shape: Sequence[int], backward: bool = True,
          input_dtype: Optional[torch.dtype] = None) -> Dict[str, Any]:
    """FLOPs of one forward (and backward) pass of ``model`` on an input of ``input_shape``.

    The count is torch's ``FlopCounterMode`` with the kancore ops taught to it, so torch layers
    and kancore layers are counted alike and in one pass: a multiply and an add are one FLOP
    each (a matrix product of (M, K) and (K, N) is 2 M K N, a convolution likewise); element-wise
    operations (activations, norms, bias additions) and table lookups count 0, as torch counts
    them. Per kancore layer see ``c0_flops`` and ``bspline_flops``. The count runs on a "meta"
    copy of the model (shapes only): nothing is computed or allocated, and the model and its
    gradients are left as they are.

    Parameters
    ----------
    model : nn.Module
        Any module (kancore layers, networks, blocks, torch layers around them).
    input_shape : sequence of int
        The input's shape, batch included.
    backward : bool
        Also run and count the backward pass (of the sum of the output).
    input_dtype : torch.dtype, optional
        The input's dtype (default: the model's; ``torch.long`` for token ids).

    Returns
    -------
    dict
        ``forward``, ``backward`` (0 without; the first layer computes no input gradient),
        ``total``, and ``by_module``: forward FLOPs per module name as FlopCounterMode reports
        them (``"Global"`` is the whole).
    """
    from torch.utils.flop_counter import FlopCounterMode

    shape = tuple(int(n) for n in input_shape)
    if not shape or any(n < 1 for n in shape):
        raise ValueError(f"input_shape must be positive sizes, got {input_shape!r}")
    _register_flop_formulas()
    meta = _meta_copy(model)  # shapes only: no arithmetic, and the model's gradients stay as they are
    ref = next(meta.parameters(), None)
    x = torch.zeros(shape, dtype=input_dtype or (ref.dtype if ref is not None else torch.float32), device="meta")
    with FlopCounterMode(display=False) as forward_mode:
        y = meta(x)
    fwd = forward_mode.get_total_flops()
    by_module = {name: sum(ops.values()) for name, ops in forward_mode.get_flop_counts().items()}
    bwd = 0
    params = [p for p in meta.parameters() if p.requires_grad]
    if backward and isinstance(y, torch.Tensor) and y.requires_grad and params:
        with FlopCounterMode(display=False) as backward_mode:
            torch.autograd.grad(y.float().sum(), params, allow_unused=True)
        bwd = backward_mode.get_total_flops()
    return {"forward": fwd, "backward": bwd, "total": fwd + bwd, "by_module": by_module}


# -- edge functions ---------------------------------------------------------------------------------

def edge_functions(layer: KANLayerType, n: int = 64,
                   x: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Sample every edge function of a KAN layer: ``(xs (in, n), ys (in, out, n))`` in float64.
    The same as ``layer.edge_functions(n, x)``; see ``KANLayer.edge_functions``."""
    if not isinstance(layer, (KANLayer, KANLinear)):
        raise TypeError(f"expected a KANLayer or KANLinear, got {type(layer).__name__}")
    return layer.edge_functions(n=n, x=x)


def coefficient_importance(layer: KANLayerType) -> np.ndarray:
    """``(out, in)`` importance of each edge without data (``layer.edge_importance()``): C0, the
    mean ``|C - mean C|`` over the control points; B-spline, mean ``|scaled spline
    coefficient|`` + ``|base weight|``."""
    if not isinstance(layer, (KANLayer, KANLinear)):
        raise TypeError(f"expected a KANLayer or KANLinear, got {type(layer).__name__}")
    return layer.edge_importance()


def _network_layers(model: nn.Module) -> Tuple[List[KANLayerType], List[nn.Module]]:
    if isinstance(model, KAN):
        return list(model.layers), (list(model.norms) if model.layernorm else [])
    if isinstance(model, (KANLayer, KANLinear)):
        return [model], []
    if isinstance(model, nn.Sequential) and all(isinstance(m, (KANLayer, KANLinear)) for m in model):
        return list(model), []
    raise TypeError(f"plot_network expects a kancore KAN, a KAN layer or a Sequential of them, "
                    f"got {type(model).__name__}")


def plot_network(model: nn.Module, x: Optional[torch.Tensor] = None, save_path: Optional[Any] = None,
                 n: int = 48, max_edges: int = 128, figsize: Optional[Tuple[float, float]] = None, *,
                 in_vars: Optional[Sequence[str]] = None, out_vars: Optional[Sequence[str]] = None) -> Any:
    """A figure of the whole network.

    Nodes per layer (inputs at the bottom, labelled with ``in_vars``, outputs at the top with
    ``out_vars``, else x0.., y0..; hidden nodes with their index), and for every edge its
    function drawn as a small curve in a box between the layers, wired from its input node to
    its output node. Line strength and opacity follow the edge's importance within its layer.

    Parameters
    ----------
    model : KAN, KANLayer, KANLinear or nn.Sequential of them
        The network.
    x : torch.Tensor, optional
        Samples ``(batch, in)``. With them, importance is pykan's edge scale
        A = std(edge output) / (std(input) + 0.1) (``KAN.edge_scales``) and the curves span each
        layer's input range; without, a coefficient norm (``coefficient_importance``).
    save_path : str or path, optional
        When truthy, the figure is also saved there (200 dpi, less for a large figure: at most
        3600 pixels on a side).
    n : int
        Samples per edge curve.
    max_edges : int
        A network with more edges draws only its most important ones: ``max_edges`` is shared
        equally between the layers (a layer with fewer edges keeps them all and leaves the rest
        to the others), each keeping its most important edges; the title says how many of how
        many are shown.
    figsize : (float, float), optional
        Figure size in inches (default: sized to the network, at most 24 inches on a side).
    in_vars, out_vars : sequence of str, optional
        Names of the network's inputs and outputs (lengths checked).

    Returns
    -------
    matplotlib.figure.Figure
        A bare Figure (headless; a notebook shows it once).
    """
    from . import _plotting

    layers, norms = _network_layers(model)
    _plotting.check_max_edges(max_edges)
    _plotting.names(in_vars, layers[0].in_features, "in_vars", "")
    _plotting.names(out_vars, layers[-1].out_features, "out_vars", "")
    inputs: List[Optional[torch.Tensor]] = [None] * len(layers)
    if x is not None:
        h = x.detach()
        with torch.no_grad():
            for j, L in enumerate(layers):
                inputs[j] = h
                h = L(h)
                if j < len(norms):
                    h = norms[j](h)
    curves = []
    from_data = []
    for L, h in zip(layers, inputs):
        xs, ys = L.edge_functions(n=n, x=h)
        imp, what = _plotting.edge_ranking(L, h)
        from_data.append(what == "edge scale on x")
        imp = np.nan_to_num(imp, nan=0.0)
        rel = imp / imp.max() if imp.max() > 0 else np.zeros_like(imp)
        curves.append((xs, ys, rel))
    label = ("edge scale on x" if all(from_data) else
             "coefficient importance" if not any(from_data) else
             "edge scale on x, or coefficient importance where unavailable")
    return _plotting.network_figure(curves, save_path=save_path, figsize=figsize, in_vars=in_vars,
                                    out_vars=out_vars, max_edges=max_edges, importance_label=label)
