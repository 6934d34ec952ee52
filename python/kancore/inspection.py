"""Looking inside a KAN: parameter counts, a memory estimate, a same-size MLP for fair comparisons,
sampled edge functions, and a whole-network figure (``plot_network``)."""
from __future__ import annotations

import math
import numbers
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalars in the model's parameters (buffers such as B-spline grids excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def memory_estimate(model: nn.Module, batch_size: int = 1, optimizer: str = "adam") -> Dict[str, int]:
    """Bytes needed to train ``model`` on batches of ``batch_size`` rows: parameters, buffers,
    gradients, optimizer state (Adam/AdamW: two moments per parameter; ``"sgd"``: none) and the
    activations kept for backward. kancore's KAN kernels keep only each layer's input (nothing
    of shape (batch, in, K) or (batch, in, out)), so a KAN layer costs batch * (in + out) values;
    other modules are counted by their output size. An estimate, not a measurement."""
    if not (isinstance(batch_size, numbers.Integral) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if optimizer not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = 2 * grads if optimizer in ("adam", "adamw") else 0
    from .kan_layer import KANLayer
    from .kan_linear import KANLinear

    activations = 0
    for m in model.modules():
        if isinstance(m, (KANLayer, KANLinear, nn.Linear)):
            ref = next(m.parameters(), None)
            size = ref.element_size() if ref is not None else 4
            activations += batch_size * (m.in_features + m.out_features) * size
        elif isinstance(m, nn.LayerNorm):  # input, output, mean and rstd per row
            activations += batch_size * (2 * m.normalized_shape[0] + 2) * m.weight.element_size()
    total = params + buffers + grads + state + activations
    return {"parameters": params, "buffers": buffers, "gradients": grads, "optimizer_state": state,
            "activations": activations, "total": total}


def _mlp_count(n_in: int, n_out: int, h: int, hidden_layers: int) -> int:
    return (n_in + 1) * h + (hidden_layers - 1) * (h + 1) * h + (h + 1) * n_out


def mlp_with_same_parameters(widths_in_out: Sequence[int], target_params: int, hidden_layers: Optional[int] = None,
                             activation=nn.SiLU) -> nn.Sequential:
    """An MLP from ``widths_in_out[0]`` inputs to ``widths_in_out[-1]`` outputs whose parameter
    count is as close as possible to ``target_params``: ``hidden_layers`` (default: as many as
    ``widths_in_out`` has inner widths, at least 1) equal hidden widths h, with ``activation``
    between the linear layers."""
    widths = list(widths_in_out)
    if len(widths) < 2 or not all(isinstance(w, numbers.Integral) and w >= 1 for w in widths):
        raise ValueError(f"widths_in_out must hold at least two positive ints, got {widths_in_out!r}")
    if not (isinstance(target_params, numbers.Integral) and target_params >= 1):
        raise ValueError(f"target_params must be a positive int, got {target_params!r}")
    L = max(1, len(widths) - 2) if hidden_layers is None else int(hidden_layers)
    if L < 1:
        raise ValueError(f"hidden_layers must be >= 1, got {hidden_layers!r}")
    n_in, n_out = widths[0], widths[-1]
    h = 1
    while _mlp_count(n_in, n_out, h + 1, L) <= target_params:
        h += 1
    if abs(_mlp_count(n_in, n_out, h + 1, L) - target_params) < abs(_mlp_count(n_in, n_out, h, L) - target_params):
        h += 1  # the next width overshoots by less than this one undershoots
    mods, prev = [], n_in
    for _ in range(L):
        mods += [nn.Linear(prev, h), activation()]
        prev = h
    mods.append(nn.Linear(prev, n_out))
    return nn.Sequential(*mods)


# -- edge functions ---------------------------------------------------------------------------------

@torch.no_grad()
def edge_functions(layer, n: int = 64, x: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Sample every edge function of a KAN layer: (xs (in, n), ys (in, out, n)) in float64.
    Inputs span the layer's grid (B-spline: the knots' inner range; C0: the control points, mapped
    back through a fitted domain), or the range of ``x`` (batch, in) when given."""
    from .kan_layer import KANLayer
    from .kan_linear import KANLinear

    I, O = layer.in_features, layer.out_features
    if isinstance(layer, KANLayer):
        K, W = layer.num_control_points, float(layer.spline_width)
        table = layer._table().detach().cpu().double().numpy()  # (I, K, O)
        points = -W / 2 + np.arange(K) * W / (K - 1)
        scale = offset = None
        if layer.input_scale is not None:
            scale = layer.input_scale.detach().cpu().double().numpy()
            offset = layer.input_offset.detach().cpu().double().numpy()
        lo = np.full(I, points[0]) if scale is None else (points[0] - offset) / scale
        hi = np.full(I, points[-1]) if scale is None else (points[-1] - offset) / scale
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if x is not None:
            xd = x.detach().reshape(-1, I).cpu().double().numpy()
            lo, hi = np.nanmin(xd, 0), np.nanmax(xd, 0)
        xs = np.linspace(lo, hi, n, axis=1)  # (I, n)
        ys = np.empty((I, O, n))
        for i in range(I):
            u = xs[i] if scale is None else xs[i] * scale[i] + offset[i]
            # Linear interpolation that extends the end segments, as the kernels do.
            t = (u + W / 2) * (K - 1) / W
            k = np.clip(np.floor(t), 0, K - 2).astype(int)
            f = (t - k)[:, None]
            ys[i] = ((1 - f) * table[i, k] + f * table[i, k + 1]).T
        return xs, ys
    if isinstance(layer, KANLinear):
        grid = layer.grid.detach().cpu().double().numpy()
        k = layer.spline_order
        lo, hi = grid[:, k], grid[:, -k - 1]
        if x is not None:
            xd = x.detach().reshape(-1, I).cpu().double().numpy()
            lo, hi = np.nanmin(xd, 0), np.nanmax(xd, 0)
        xs = np.linspace(lo, hi, n, axis=1)
        basis = layer.b_splines(torch.from_numpy(xs.T.copy()).to(layer.grid.device)).cpu().double().numpy()
        w = layer.scaled_spline_weight.detach().cpu().double().numpy()  # (O, I, C)
        spline = np.einsum("nic,oic->ion", basis, w)
        base = layer.base_activation(torch.from_numpy(xs)).numpy()  # (I, n)
        ys = spline + layer.base_weight.detach().cpu().double().numpy().T[:, :, None] * base[:, None, :]
        return xs, ys
    raise TypeError(f"expected a KANLayer or KANLinear, got {type(layer).__name__}")


@torch.no_grad()
def coefficient_importance(layer) -> np.ndarray:
    """(out, in) importance of each edge without data: C0, the mean |C - mean C| over the control
    points (how much the edge varies); B-spline, mean |scaled spline coefficient| + |base weight|."""
    from .kan_layer import KANLayer

    if isinstance(layer, KANLayer):
        t = layer._table().detach().cpu().double()
        return (t - t.mean(1, keepdim=True)).abs().mean(1).T.numpy()
    w = layer.scaled_spline_weight.detach().cpu().double()
    return (w.abs().mean(-1) + layer.base_weight.detach().cpu().double().abs()).numpy()


def plot_network(model, x: Optional[torch.Tensor] = None, save_path=None, n: int = 48, max_edges: int = 2048,
                 figsize=None):
    """A figure of the whole network: nodes per layer (inputs at the bottom), and for every edge
    its function drawn as a small curve in a box between the layers, wired from its input node
    to its output node. Line strength and opacity follow the edge's importance within its layer:
    with samples ``x`` (batch, in), pykan's edge scale A = std(edge output) / (std(input) + 0.1)
    (``KAN.edge_scales``) and the curves span each layer's input range; otherwise a coefficient
    norm (``coefficient_importance``). Returns a bare matplotlib Figure (headless, shown once in
    a notebook); saved at 200 dpi when ``save_path`` is truthy."""
    from ._plotting import _require_matplotlib
    from .kan_layer import KANLayer
    from .kan_linear import KAN, KANLinear

    if isinstance(model, KAN):
        layers, norms = list(model.layers), (list(model.norms) if model.layernorm else [])
    elif isinstance(model, (KANLayer, KANLinear)):
        layers, norms = [model], []
    elif isinstance(model, nn.Sequential) and all(isinstance(m, (KANLayer, KANLinear)) for m in model):
        layers, norms = list(model), []
    else:
        raise TypeError(f"plot_network expects a kancore KAN, a KAN layer or a Sequential of them, "
                        f"got {type(model).__name__}")
    edges = sum(L.in_features * L.out_features for L in layers)
    if edges > max_edges:
        raise ValueError(f"the network has {edges} edges, more than max_edges={max_edges}")
    inputs = [None] * len(layers)
    if x is not None:
        h = x.detach()
        with torch.no_grad():
            for j, L in enumerate(layers):
                inputs[j] = h
                h = L(h)
                if j < len(norms):
                    h = norms[j](h)
    Figure = _require_matplotlib()
    widest = max(max(L.in_features * L.out_features for L in layers), 4)
    fig = Figure(figsize=figsize or (min(3 + 0.45 * widest, 24), 2.4 * len(layers) + 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()

    def node_x(count, idx):
        return (idx + 0.5) / count

    box_w = 0.8 / widest
    for j, L in enumerate(layers):
        I, O = L.in_features, L.out_features
        xs, ys = edge_functions(L, n=n, x=inputs[j])
        imp = None
        if inputs[j] is not None and len(inputs[j].reshape(-1, I)) >= 2:
            try:
                imp = L.edge_scales(inputs[j].reshape(-1, I)).cpu().double().numpy()
            except NotImplementedError:  # CUDA tensors, or a B-spline layer without SiLU
                imp = None
        if imp is None:
            imp = coefficient_importance(L)
        imp = np.nan_to_num(imp, nan=0.0)
        rel = imp / imp.max() if imp.max() > 0 else np.zeros_like(imp)
        y0, y1, yb = float(j), float(j + 1), j + 0.5
        for i in range(I):
            for o in range(O):
                e = i * O + o
                bx = node_x(I * O, e)
                a = float(0.08 + 0.92 * rel[o, i])
                lw = 0.4 + 2.0 * rel[o, i]
                ax.plot([node_x(I, i), bx], [y0, yb - 0.12], color="k", alpha=a, lw=lw)
                ax.plot([bx, node_x(O, o)], [yb + 0.12, y1], color="k", alpha=a, lw=lw)
                curve = ys[i, o]
                span = np.ptp(curve)
                cy = (curve - curve.min()) / span - 0.5 if span > 0 else np.zeros_like(curve)
                cx = np.linspace(-0.5, 0.5, len(curve))
                ax.plot(bx + cx * box_w, yb + cy * 0.2, color="tab:blue", alpha=a, lw=1.2)
                ax.add_patch(_rect(bx - box_w / 2, yb - 0.12, box_w, 0.24, a))
        ax.scatter([node_x(I, i) for i in range(I)], [y0] * I, s=40, color="k", zorder=3)
    last = layers[-1].out_features
    ax.scatter([node_x(last, o) for o in range(last)], [len(layers)] * last, s=40, color="k", zorder=3)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.3, len(layers) + 0.3)
    ax.set_title("KAN network (edge opacity: importance)")
    if save_path:
        fig.savefig(save_path, dpi=200, bbox_inches="tight")
    return fig


def _rect(x, y, w, h, alpha):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor="0.5", alpha=alpha, lw=0.6)
