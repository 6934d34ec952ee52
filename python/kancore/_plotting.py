"""Figures of KAN layers (matplotlib is imported only when a figure is asked for)."""
from __future__ import annotations

import numpy as np


def _require_matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'kancore[plot]'") from exc
    return Figure


def plot_c0_mappings(layer, save_path=None, x_axis: str = "control_points", max_edges: int = 1024):
    if x_axis not in ("control_points", "input"):
        raise ValueError(f"x_axis must be 'control_points' or 'input', got {x_axis!r}")
    I, O, K = layer.in_features, layer.out_features, layer.num_control_points
    if I * O > max_edges:
        raise ValueError(
            f"this layer has {I * O} edges, more than max_edges={max_edges}; one subplot per edge "
            "would make an unusable figure (raise max_edges to draw it anyway)"
        )
    _require_matplotlib()
    table = layer.get_interp_tensor().detach().cpu().double().numpy().reshape(I, K, O)
    W = float(layer.spline_width)
    points = -W / 2 + np.arange(K) * W / (K - 1)  # control points in the kernels' coordinates
    scale = getattr(layer, "input_scale", None)
    offset = getattr(layer, "input_offset", None)
    if scale is not None:  # a fitted domain: x' = x * scale + offset per feature
        scale = scale.detach().cpu().double().numpy()
        offset = offset.detach().cpu().double().numpy()
    xlabel = "Control Points" if x_axis == "control_points" else "Input"

    def xs_of(i: int):
        if x_axis == "control_points":
            return np.arange(K)
        return points if scale is None else (points - offset[i]) / scale[i]

    ys = table.transpose(0, 2, 1)  # (I, O, K)
    return _edge_grid([xs_of(i) for i in range(I)], ys, xlabel, save_path)


def plot_bspline_mappings(layer, save_path=None, x_axis: str = "input", max_edges: int = 1024, n: int = 200):
    """KANLinear's figure: each edge's full function (base + spline) against the input value over
    its grid's inner range, or (``x_axis="control_points"``) its scaled spline coefficients
    against the basis index."""
    if x_axis not in ("control_points", "input"):
        raise ValueError(f"x_axis must be 'control_points' or 'input', got {x_axis!r}")
    I, O = layer.in_features, layer.out_features
    if I * O > max_edges:
        raise ValueError(
            f"this layer has {I * O} edges, more than max_edges={max_edges}; one subplot per edge "
            "would make an unusable figure (raise max_edges to draw it anyway)"
        )
    _require_matplotlib()
    if x_axis == "input":
        from .inspection import edge_functions

        xs, ys = edge_functions(layer, n=n)
        return _edge_grid(list(xs), ys, "Input", save_path)
    w = layer.scaled_spline_weight.detach().cpu().double().numpy()  # (O, I, C)
    C = w.shape[-1]
    return _edge_grid([np.arange(C)] * I, w.transpose(1, 0, 2), "Control Points", save_path)


def _edge_grid(xs, ys, xlabel, save_path):
    """An in x out grid of subplots, edge (i, o) plotting ys[i, o] against xs[i] (kanditioned's
    layout and labels)."""
    Figure = _require_matplotlib()
    I, O = ys.shape[0], ys.shape[1]
    # A bare Figure (not pyplot's) so nothing is shown twice in notebooks and no GUI is needed.
    fig = Figure(figsize=(4 * O, 3 * I))
    axes = np.asarray(fig.subplots(I, O, squeeze=False), dtype=object)
    for i in range(I):
        for o in range(O):
            ax = axes[i, o]
            ax.plot(xs[i], ys[i, o])
            ax.set_title(f"In {i} → Out {o}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("Value")
            ax.grid(True)
    fig.suptitle("KAN Layer Mappings", fontsize=16, y=1.02)
    fig.tight_layout()
    if save_path:
        fig.savefig(save_path, dpi=300, bbox_inches="tight")
    return fig
