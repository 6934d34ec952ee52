"""Figures from sampled edge functions: NumPy arrays in, a matplotlib Figure out.

A leaf module: it imports nothing else of kancore, so the layers can import it when a figure is
asked for (and matplotlib is imported only then). Every figure is a bare ``Figure``, not
registered with pyplot: it works headless and a notebook shows it once, as the cell's value.

Figures stay readable at any layer size: past ``max_edges`` edges only the most important ones
are drawn (the title says which), and no figure is larger than ``MAX_INCHES`` on a side.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

# No figure side is longer than this (inches), and none is saved wider than MAX_PIXELS.
MAX_INCHES = 24.0
MAX_PIXELS = 3600


def require_matplotlib() -> Any:
    """matplotlib's ``Figure`` class, or ImportError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError("plotting needs matplotlib: pip install 'kancore[plot]'") from exc
    return Figure


def names(given: Optional[Sequence[Any]], count: int, what: str, default: str) -> List[str]:
    """``count`` labels: ``given`` (checked for length) as strings, else ``default.format(i)``."""
    if given is None:
        return [default.format(i) for i in range(count)]
    if isinstance(given, str):
        raise ValueError(f"{what} must be a sequence of {count} names, got the string {given!r}")
    labels = [str(v) for v in given]
    if len(labels) != count:
        raise ValueError(f"expected {count} {what}, got {len(labels)}")
    return labels


def check_max_edges(max_edges: Any) -> int:
    if isinstance(max_edges, bool) or not isinstance(max_edges, (int, np.integer)) or max_edges < 1:
        raise ValueError(f"max_edges must be an int >= 1, got {max_edges!r}")
    return int(max_edges)


def edge_ranking(layer: Any, x: Any = None) -> Tuple[np.ndarray, str]:
    """``(importance (out, in), what it is)`` of a KAN layer's edges, for ranking and opacity:
    pykan's edge scales on samples ``x`` (``layer.edge_scales``) when there are at least two and
    the layer computes them (not on CUDA, not for a B-spline layer without SiLU), else the
    data-free ``layer.edge_importance()``. Duck-typed: this module still imports no layer."""
    if x is not None:
        flat = x.detach().reshape(-1, layer.in_features)
        if len(flat) >= 2:
            try:
                return layer.edge_scales(flat).cpu().double().numpy(), "edge scale on x"
            except NotImplementedError:
                pass
    return layer.edge_importance(), "coefficient importance"


def top_edges(importance: np.ndarray, k: int) -> List[Tuple[int, int]]:
    """The ``k`` edges ``(i, o)`` with the largest ``importance[o, i]``, most important first
    (ties and NaNs: lower input index, then lower output index, first; NaN counts as 0)."""
    imp = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0).T  # (in, out)
    order = np.argsort(-imp.reshape(-1), kind="stable")[:k]
    O = imp.shape[1]
    return [(int(j) // O, int(j) % O) for j in order]


def save_dpi(fig: Any, most: int) -> float:
    """``most`` dpi, lowered so that the saved figure's longer side has at most MAX_PIXELS."""
    return float(min(most, MAX_PIXELS / max(fig.get_size_inches())))


def bounded(width: float, height: float) -> Tuple[float, float]:
    """(width, height) scaled down, keeping the aspect, so that neither exceeds MAX_INCHES."""
    s = min(1.0, MAX_INCHES / width, MAX_INCHES / height)
    return width * s, height * s


def edge_grid(xs: np.ndarray, ys: np.ndarray, xlabel: str, save_path: Optional[Any], *,
              in_vars: Optional[Sequence[Any]] = None, out_vars: Optional[Sequence[Any]] = None,
              importance: Optional[np.ndarray] = None, importance_label: str = "importance",
              max_edges: int = 64, name_x_axis: bool = True) -> Any:
    """Edge (i, o) plots ``ys[i, o]`` against ``xs[i]``.

    Up to ``max_edges`` edges: an in x out grid of subplots (kanditioned's layout and labels,
    "In i → Out o"; wrapped into a near-square grid when in x out is too long and thin to fit). More: the ``max_edges`` edges with the largest ``importance[o, i]``, most
    important first on a near-square grid, and the title says so. Subplot titles use
    ``in_vars``/``out_vars`` when given; with ``name_x_axis`` the x label is the input's name.
    The figure is at most MAX_INCHES on a side; saved (when ``save_path`` is truthy) at 300 dpi,
    less for large figures (at most MAX_PIXELS wide)."""
    from matplotlib.ticker import MaxNLocator

    Figure = require_matplotlib()
    I, O = ys.shape[0], ys.shape[1]
    max_edges = check_max_edges(max_edges)
    ins = names(in_vars, I, "in_vars", "In {}")
    outs = names(out_vars, O, "out_vars", "Out {}")
    title = "KAN Layer Mappings"
    if I * O <= max_edges:
        chosen = [(i, o) for i in range(I) for o in range(O)]
        rows, cols = I, O
        if min(1.0, MAX_INCHES / (4.0 * cols), MAX_INCHES / (3.0 * rows)) < 0.5:
            # A long thin grid (e.g. 64 x 1) would shrink to a strip: wrap it, row by row.
            cols = math.ceil(math.sqrt(len(chosen)))
            rows = math.ceil(len(chosen) / cols)
    else:
        if importance is None:
            raise ValueError("a layer with more than max_edges edges needs importance to choose from")
        chosen = top_edges(importance, max_edges)
        cols = math.ceil(math.sqrt(len(chosen)))
        rows = math.ceil(len(chosen) / cols)
        title += (f": the {len(chosen)} most important of {I * O} edges, by {importance_label}"
                  " (most important first)")
    width, height = bounded(4.0 * cols, 3.0 * rows)
    fig = Figure(figsize=(width, height))
    small = width / cols < 3.5  # smaller cells: smaller text
    for n, (i, o) in enumerate(chosen):
        ax = fig.add_subplot(rows, cols, n + 1)
        ax.plot(xs[i], ys[i, o])
        ax.set_title(f"{ins[i]} → {outs[o]}", fontsize=9 if small else None)
        ax.set_xlabel(ins[i] if (name_x_axis and in_vars is not None) else xlabel,
                      fontsize=8 if small else None)
        ax.set_ylabel("Value" if out_vars is None else f"contribution to {outs[o]}",
                      fontsize=8 if small else None)
        if small:
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.grid(True)
    fig.suptitle(title, fontsize=16 if len(title) < 60 else 13, y=1.02)
    if len(chosen) <= 16:
        fig.tight_layout()
    else:  # tight_layout measures every tick label: seconds for a large grid; fixed margins do
        fig.subplots_adjust(left=0.05, right=0.98, bottom=0.04, top=0.96, wspace=0.45, hspace=0.6)
    if save_path:
        fig.savefig(save_path, dpi=save_dpi(fig, 300), bbox_inches="tight")
    return fig


# One layer of a network figure: xs (in, n), ys (in, out, n), relative importance (out, in) in [0, 1].
LayerCurves = Tuple[np.ndarray, np.ndarray, np.ndarray]


def network_edges(layers: Sequence[LayerCurves], max_edges: int) -> List[List[Tuple[int, int]]]:
    """Per layer, the edges ``(i, o)`` to draw, in input-major order: all of them when the network
    has at most ``max_edges``; else each layer's most important ones (by its relative importance).
    ``max_edges`` is shared equally between the layers, a layer with fewer edges than its share
    keeping all of them and leaving the rest to the others (every layer keeps at least one)."""
    sizes = [ys.shape[0] * ys.shape[1] for _, ys, _ in layers]
    total = sum(sizes)
    if total <= max_edges:
        return [[(i, o) for i in range(ys.shape[0]) for o in range(ys.shape[1])] for _, ys, _ in layers]
    quotas = [0] * len(sizes)
    left = max_edges
    for n, j in enumerate(sorted(range(len(sizes)), key=lambda j: sizes[j])):  # smallest first
        quotas[j] = min(sizes[j], max(1, left // (len(sizes) - n)))
        left -= quotas[j]
    return [sorted(top_edges(rel, q)) for (_, _, rel), q in zip(layers, quotas)]


def network_figure(layers: Sequence[LayerCurves], save_path: Optional[Any] = None,
                   figsize: Optional[Tuple[float, float]] = None, title: Optional[str] = None, *,
                   in_vars: Optional[Sequence[Any]] = None, out_vars: Optional[Sequence[Any]] = None,
                   max_edges: int = 128, importance_label: str = "importance") -> Any:
    """Nodes per layer (inputs at the bottom, labelled with ``in_vars``/``out_vars`` or x0.., y0..;
    hidden nodes with their index) and, for every edge, its function drawn as a small curve in a
    box between the layers, wired from its input node to its output node; line strength and
    opacity follow the relative importance. A layer with many edges wraps its boxes into rows
    (column by column, so an input's edges stay near its node).
    Past ``max_edges`` edges, each layer draws only its most important ones and the title says
    so. At most MAX_INCHES on a side; saved (when ``save_path`` is truthy) at 200 dpi, less for
    large figures."""
    from matplotlib.patches import Rectangle

    Figure = require_matplotlib()
    max_edges = check_max_edges(max_edges)
    shapes: List[Tuple[int, int]] = [(ys.shape[0], ys.shape[1]) for _, ys, _ in layers]
    ins = names(in_vars, shapes[0][0], "in_vars", "x{}")
    outs = names(out_vars, shapes[-1][1], "out_vars", "y{}")
    keep = network_edges(layers, max_edges)
    total, shown = sum(i * o for i, o in shapes), sum(len(k) for k in keep)

    # Layout in inches: x in [0, W], y in [0, H]; thumbnails get at least `min_slot` each.
    min_slot, margin = 0.62, 0.3
    widest_nodes = max([i for i, _ in shapes] + [shapes[-1][1]])
    widest_edges = max(len(k) for k in keep)
    W = min(MAX_INCHES, max(6.0, 0.95 * widest_edges + 2 * margin, 0.9 * widest_nodes + 2 * margin))
    per_row_cap = max(1, int((W - 2 * margin) // min_slot))
    bands = []  # per layer: (boxes per row, rows, box width, box height, band height)
    for k in keep:
        rows = max(1, math.ceil(len(k) / per_row_cap))
        per_row = max(1, math.ceil(len(k) / rows))
        slot = (W - 2 * margin) / per_row
        bw = min(0.82 * slot, 1.3)
        bh = 0.7 * bw
        bands.append((per_row, rows, bw, bh, 1.5 + rows * (bh + 0.12)))
    bottom, top = 0.55, (1.15 if shown < total else 0.8)
    H = bottom + sum(b[-1] for b in bands) + top
    fig = Figure(figsize=figsize or bounded(W, H))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)

    def node_x(count: int, idx: int) -> float:
        return margin + (W - 2 * margin) * (idx + 0.5) / count

    levels = [bottom]
    for b in bands:
        levels.append(levels[-1] + b[-1])
    for j, ((_, ys, rel), k) in enumerate(zip(layers, keep)):
        I, O = shapes[j]
        per_row, rows, bw, bh, band = bands[j]
        y0, y1 = levels[j], levels[j + 1]
        mid = (y0 + y1) / 2
        first = mid + (rows - 1) / 2 * (bh + 0.12)  # the top row's centre
        for n, (i, o) in enumerate(k):
            # Column-major: an input's edges fill neighbouring columns, near its node.
            c, r = divmod(n, rows)
            bx = margin + (W - 2 * margin) * (c + 0.5) / per_row
            by = first - r * (bh + 0.12)
            a = float(0.08 + 0.92 * rel[o, i])
            lw = 0.4 + 2.0 * rel[o, i]
            ax.plot([node_x(I, i), bx], [y0, by - bh / 2], color="k", alpha=a, lw=lw, zorder=1)
            ax.plot([bx, node_x(O, o)], [by + bh / 2, y1], color="k", alpha=a, lw=lw, zorder=1)
            curve = ys[i, o]
            span = np.ptp(curve)
            cy = (curve - curve.min()) / span - 0.5 if span > 0 else np.zeros_like(curve)
            cx = np.linspace(-0.5, 0.5, len(curve))
            ax.plot(bx + cx * bw * 0.86, by + cy * bh * 0.8, color="tab:blue", alpha=max(a, 0.25),
                    lw=1.2, zorder=3)
            ax.add_patch(Rectangle((bx - bw / 2, by - bh / 2), bw, bh, facecolor="white",
                                   edgecolor="0.45", alpha=1.0, lw=0.6, zorder=2))
        ax.scatter([node_x(I, i) for i in range(I)], [y0] * I, s=40, color="k", zorder=4)
    last = shapes[-1][1]
    ax.scatter([node_x(last, o) for o in range(last)], [levels[-1]] * last, s=40, color="k", zorder=4)

    label_size = 10 if max(widest_nodes, 1) <= 16 else 7
    for i, name in enumerate(ins):
        ax.text(node_x(shapes[0][0], i), levels[0] - 0.15, name, ha="center", va="top",
                fontsize=label_size)
    for o, name in enumerate(outs):
        ax.text(node_x(last, o), levels[-1] + 0.15, name, ha="center", va="bottom",
                fontsize=label_size)
    for j in range(1, len(layers)):
        count = shapes[j][0]
        for h in range(count):
            ax.text(node_x(count, h) + 0.08, levels[j] + 0.05, str(h), ha="left", va="bottom",
                    fontsize=label_size - 1, color="0.2", zorder=5,
                    bbox=dict(facecolor="white", edgecolor="none", pad=0.5, alpha=0.85))
    text = title or "KAN network (edge opacity: importance)"
    if shown < total:
        text += (f"\nthe {shown} most important of {total} edges (per layer, by {importance_label});"
                 " the others are not drawn")
    ax.text(W / 2, H - 0.12, text, ha="center", va="top", fontsize=12)
    if save_path:
        fig.savefig(save_path, dpi=save_dpi(fig, 200), bbox_inches="tight")
    return fig
