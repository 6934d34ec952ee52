"""Figures from sampled edge functions: NumPy arrays in, a matplotlib Figure out.

A leaf module: it imports nothing else of kancore, so the layers can import it when a figure is
asked for (and matplotlib is imported only then). Every figure is a bare ``Figure``, not
registered with pyplot: it works headless and a notebook shows it once, as the cell's value.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np


def require_matplotlib() -> Any:
    """matplotlib's ``Figure`` class, or ImportError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'kancore[plot]'") from exc
    return Figure


def check_edge_count(edges: int, max_edges: int) -> None:
    if edges > max_edges:
        raise ValueError(
            f"this layer has {edges} edges, more than max_edges={max_edges}; one subplot per edge "
            "would make an unusable figure (raise max_edges to draw it anyway)"
        )


def edge_grid(xs: np.ndarray, ys: np.ndarray, xlabel: str, save_path: Optional[Any]) -> Any:
    """An in x out grid of subplots, edge (i, o) plotting ``ys[i, o]`` against ``xs[i]``
    (kanditioned's layout and labels); saved at 300 dpi when ``save_path`` is truthy."""
    Figure = require_matplotlib()
    I, O = ys.shape[0], ys.shape[1]
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


# One layer of a network figure: xs (in, n), ys (in, out, n), relative importance (out, in) in [0, 1].
LayerCurves = Tuple[np.ndarray, np.ndarray, np.ndarray]


def network_figure(layers: Sequence[LayerCurves], save_path: Optional[Any] = None,
                   figsize: Optional[Tuple[float, float]] = None, title: Optional[str] = None) -> Any:
    """Nodes per layer (inputs at the bottom) and, for every edge, its function drawn as a small
    curve in a box between the layers, wired from its input node to its output node; line
    strength and opacity follow ``importance``. Saved at 200 dpi when ``save_path`` is truthy."""
    from matplotlib.patches import Rectangle

    Figure = require_matplotlib()
    shapes: List[Tuple[int, int]] = [(ys.shape[0], ys.shape[1]) for _, ys, _ in layers]
    widest = max(max(i * o for i, o in shapes), 4)
    fig = Figure(figsize=figsize or (min(3 + 0.45 * widest, 24), 2.4 * len(layers) + 1))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()

    def node_x(count: int, idx: int) -> float:
        return (idx + 0.5) / count

    box_w = 0.8 / widest
    for j, (_, ys, rel) in enumerate(layers):
        I, O = shapes[j]
        y0, y1, yb = float(j), float(j + 1), j + 0.5
        for i in range(I):
            for o in range(O):
                bx = node_x(I * O, i * O + o)
                a = float(0.08 + 0.92 * rel[o, i])
                lw = 0.4 + 2.0 * rel[o, i]
                ax.plot([node_x(I, i), bx], [y0, yb - 0.12], color="k", alpha=a, lw=lw)
                ax.plot([bx, node_x(O, o)], [yb + 0.12, y1], color="k", alpha=a, lw=lw)
                curve = ys[i, o]
                span = np.ptp(curve)
                cy = (curve - curve.min()) / span - 0.5 if span > 0 else np.zeros_like(curve)
                cx = np.linspace(-0.5, 0.5, len(curve))
                ax.plot(bx + cx * box_w, yb + cy * 0.2, color="tab:blue", alpha=a, lw=1.2)
                ax.add_patch(Rectangle((bx - box_w / 2, yb - 0.12), box_w, 0.24, fill=False,
                                       edgecolor="0.5", alpha=a, lw=0.6))
        ax.scatter([node_x(I, i) for i in range(I)], [y0] * I, s=40, color="k", zorder=3)
    last = shapes[-1][1]
    ax.scatter([node_x(last, o) for o in range(last)], [len(layers)] * last, s=40, color="k", zorder=3)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.3, len(layers) + 0.3)
    ax.set_title(title or "KAN network (edge opacity: importance)")
    if save_path:
        fig.savefig(save_path, dpi=200, bbox_inches="tight")
    return fig
