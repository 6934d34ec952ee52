"""Attribution and pruning of a ``kancore.KAN``: which edges matter on given data, and a smaller
network without the ones that do not.

The importance of an edge is the root mean square, over the samples, of the edge's output
``phi_{o,i}(h_i)`` (``h`` the layer's input when ``x`` goes through the network; B-spline edges
base and scaled spline together). It is an absolute measure with a direct guarantee: removing
an edge of importance ``s`` changes its output's root mean square over those samples by at most
``s``. (pykan's edge scales divide by the input's spread and ``KAN.edge_scales`` keeps them;
they do not bound the change.)

* ``prune_edges``: sets every edge below the threshold to the zero function (the tensors keep
  their shape; such an edge contributes exactly 0);
* ``prune_nodes``: a copy without the listed hidden nodes, with smaller tensors (really fewer
  parameters);
* ``prune``: both, removing the hidden nodes whose every outgoing edge is below the threshold.
  Each removed edge moves its layer's outputs by less than ``threshold`` in root mean square
  over the samples; a layer output losing ``m`` edges moves by less than ``m * threshold``.

NumPy and C++ have the same operations (``NumpyKAN.edge_importance``/``prune``,
``kancore::Network::edge_importance``/``prune_nodes``). Networks with LayerNorm cannot lose
nodes: the normalisation of the remaining ones would change.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from . import portable
from .kan_layer import KANLayer
from .kan_linear import KANLinear
from .network import KAN

__all__ = ["edge_importance", "prune_edges", "prune_nodes", "prune"]

_CHUNK_ELEMENTS = 1 << 23  # per-edge values held at once: batch chunk * in * out


def _edge_values(layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """(batch, out, in): every edge's output at the layer input h (batch, in), fixed (symbolic)
    edges included."""
    if isinstance(layer, KANLinear):
        base_weight, weight = layer._numeric_weights()
        base = base_weight.unsqueeze(0) * layer.base_activation(h).unsqueeze(1)
        if getattr(layer, "spline_scaler", None) is not None:
            weight = weight * layer.spline_scaler.unsqueeze(-1)
        basis = portable.bspline_basis(h, layer.grid, layer.spline_order)  # (batch, in, C)
        values = base + torch.einsum("bic,oic->boi", basis, weight)
    else:
        u = h if layer.input_scale is None else torch.addcmul(layer.input_offset, h, layer.input_scale)
        values = portable.c0_edge_values(u, layer._numeric_table(), float(layer.spline_width)).transpose(1, 2)
    if layer._symbolic_active():
        rows = layer.symbolic.edges  # the numeric part of these edges is zero (masked)
        values = values.clone()
        values[:, rows[:, 1], rows[:, 0]] = layer.symbolic.edge_values(h).to(values.dtype)
    return values


def _check(model) -> None:
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kancore.KAN, got {type(model).__name__}")


@torch.no_grad()
def edge_importance(model: KAN, x: torch.Tensor) -> List[torch.Tensor]:
    """Per layer, the ``(out, in)`` importance of every edge on the samples ``x`` (see the module
    docstring): the root mean square of the edge's output over the samples whose output is
    finite.

    Parameters
    ----------
    model : KAN
    x : torch.Tensor
        Samples ``(n, widths[0])``, ``n >= 1``, in the model's dtype and device.

    Returns
    -------
    list of torch.Tensor
        One ``(out_features, in_features)`` tensor per layer (float64).
    """
    _check(model)
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] != model.widths[0]:
        raise ValueError(f"expected samples of shape (n >= 1, {model.widths[0]}), got {tuple(x.shape)}")
    inputs, _ = model.layer_inputs(x)
    out = []
    for layer, h in zip(model.layers, inputs):
        rows = max(1, _CHUNK_ELEMENTS // (layer.in_features * layer.out_features))
        total = torch.zeros(layer.out_features, layer.in_features, dtype=torch.float64, device=h.device)
        count = torch.zeros_like(total)
        for start in range(0, h.shape[0], rows):
            v = _edge_values(layer, h[start:start + rows]).to(torch.float64)
            finite = torch.isfinite(v)
            total += torch.where(finite, v * v, torch.zeros_like(v)).sum(0)
            count += finite.sum(0)
        out.append(torch.sqrt(total / count.clamp(min=1)))
    return out


def _zero_edge(layer: nn.Module, o: int, i: int) -> None:
    layer.unfix_symbolic(i, o)
    if isinstance(layer, KANLinear):
        layer.base_weight[o, i] = 0
        layer.spline_weight[o, i] = 0
    else:
        table = layer._table().detach().clone()
        table[i, :, o] = 0
        layer._set_table(table)


@torch.no_grad()
def prune_edges(model: KAN, x: torch.Tensor, threshold: float) -> KAN:
    """A copy of ``model`` whose edges of importance below ``threshold`` on ``x`` are the zero
    function. Each such edge moves its output by less than ``threshold`` in root mean square
    over ``x``. The tensors keep their shapes; ``prune`` also removes the nodes left without
    outgoing edges.

    Parameters
    ----------
    model : KAN
    x : torch.Tensor
        Samples ``(n, widths[0])``.
    threshold : float
        Edges of importance below it become zero.

    Returns
    -------
    KAN
        The pruned copy (``model`` is unchanged).
    """
    _check(model)
    threshold = _threshold(threshold)
    pruned = copy.deepcopy(model)
    for layer, imp in zip(pruned.layers, edge_importance(model, x)):
        for o, i in (imp < threshold).nonzero().tolist():
            _zero_edge(layer, o, i)
    return pruned


def _threshold(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value != value:
        raise ValueError(f"threshold must be a number >= 0, got {value!r}")
    return float(value)


def _take(t: torch.Tensor, dim: int, index: Sequence[int]) -> torch.Tensor:
    return t.index_select(dim, torch.as_tensor(list(index), dtype=torch.long, device=t.device)).contiguous()


def _select(layer: nn.Module, ins: Sequence[int], outs: Sequence[int]) -> None:
    """Keep inputs ``ins`` and outputs ``outs`` of a layer, in place (new, smaller tensors)."""
    if isinstance(layer, KANLinear):
        layer.grid = _take(layer.grid, 0, ins)
        layer.base_weight = nn.Parameter(_take(_take(layer.base_weight, 0, outs), 1, ins))
        layer.spline_weight = nn.Parameter(_take(_take(layer.spline_weight, 0, outs), 1, ins))
        if getattr(layer, "spline_scaler", None) is not None:
            layer.spline_scaler = nn.Parameter(_take(_take(layer.spline_scaler, 0, outs), 1, ins))
    else:
        for name in ("kan_weight", "dct_weight", "r_weight", "l_weight"):
            p = getattr(layer, name, None)
            if isinstance(p, nn.Parameter):  # (in, K, out) in every variant
                setattr(layer, name, nn.Parameter(_take(_take(p, 0, ins), 2, outs)))
        if layer.input_scale is not None:
            layer.input_scale = _take(layer.input_scale, 0, ins)
            layer.input_offset = _take(layer.input_offset, 0, ins)
        layer.feature_offset = (torch.arange(len(ins), device=layer.feature_offset.device).view(1, -1)
                                * layer.num_control_points)
    if layer.symbolic is not None:
        layer.symbolic.select(ins, outs)
        if len(layer.symbolic) == 0:
            layer.symbolic = None
    layer.in_features, layer.out_features = len(ins), len(outs)


@torch.no_grad()
def prune_nodes(model: KAN, keep: Sequence[Sequence[int]]) -> KAN:
    """A copy of ``model`` with only the hidden nodes ``keep`` lists: ``keep[j]``, the kept outputs
    of layer ``j`` (``j = 0 .. L-2``), strictly increasing, at least one each. The kept edges
    are copied unchanged, so the function changes only by the removed nodes' contributions.

    Parameters
    ----------
    model : KAN
        A network without LayerNorm.
    keep : sequence of sequences of int
        ``keep[j]``: the indices of layer ``j``'s outputs to keep.

    Returns
    -------
    KAN
        The smaller copy.

    Raises
    ------
    ValueError
        For a network with LayerNorm, or lists that are not strictly increasing valid indices.
    """
    _check(model)
    L = len(model.layers)
    if model.layernorm:
        raise ValueError("prune_nodes: a network with LayerNorm cannot lose nodes (the normalisation of the "
                         "others would change)")
    if len(keep) != L - 1:
        raise ValueError(f"expected one list of kept nodes per hidden layer ({L - 1}), got {len(keep)}")
    keep = [list(k) for k in keep]
    for j, k in enumerate(keep):
        width = model.layers[j].out_features
        if not k or any(not isinstance(n, int) or isinstance(n, bool) for n in k) \
                or any(not 0 <= n < width for n in k) or any(b <= a for a, b in zip(k, k[1:])):
            raise ValueError(f"prune_nodes: expected strictly increasing node indices in [0, {width}) for hidden "
                             f"layer {j}, at least one, got {k}")
    pruned = copy.deepcopy(model)
    for j, layer in enumerate(pruned.layers):
        ins = keep[j - 1] if j > 0 else list(range(layer.in_features))
        outs = keep[j] if j < L - 1 else list(range(layer.out_features))
        _select(layer, ins, outs)
    return pruned


@torch.no_grad()
def prune(model: KAN, x: torch.Tensor, threshold: float) -> Tuple[KAN, Dict[str, object]]:
    """``prune_edges`` then ``prune_nodes`` of the hidden nodes whose every outgoing edge is below
    ``threshold`` (at least one node per layer stays: the most important). A network with
    LayerNorm keeps its nodes and only loses edges.

    Parameters
    ----------
    model : KAN
    x : torch.Tensor
        Samples ``(n, widths[0])`` on which importance is measured.
    threshold : float
        Edges below it are zeroed; hidden nodes with every outgoing edge below it are removed.

    Returns
    -------
    (KAN, dict)
        The pruned copy, and a report: ``kept_nodes`` (per hidden layer, the kept indices of the
        original), ``removed_edges`` (per layer, the number of edges set to zero) and
        ``parameters`` (before, after).
    """
    _check(model)
    threshold = _threshold(threshold)
    imp = edge_importance(model, x)
    edges = prune_edges(model, x, threshold)
    keep: List[List[int]] = []
    for j in range(len(model.layers) - 1):
        outgoing = imp[j + 1].max(dim=0).values  # per hidden node of layer j
        kept = (outgoing >= threshold).nonzero().flatten().tolist()
        # LayerNorm networks keep every node (prune_nodes would change the normalisation).
        keep.append(list(range(len(outgoing))) if model.layernorm else kept or [int(outgoing.argmax())])
    small = edges if model.layernorm else prune_nodes(edges, keep)
    count = sum(p.numel() for p in model.parameters())
    report = {"kept_nodes": keep, "removed_edges": [int((m < threshold).sum()) for m in imp],
              "parameters": (count, sum(p.numel() for p in small.parameters()))}
    return small, report
