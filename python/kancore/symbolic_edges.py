"""Symbolic edges inside a layer: edge ``i -> o`` fixed to ``a * f(b * h_i + c) + d`` for a named
function ``f`` (pykan's ``fix_symbolic``), computed in the forward and backward pass together
with the layer's numeric edges.

A layer with fixed edges computes ``y = numeric(h) with those edges masked out + sum over the
fixed edges of a * f(b * h_i + c) + d`` (``h`` the layer's raw input, before a C0 layer's input
affine). The numeric parameters of a fixed edge are kept, unchanged and without gradient, so
``unfix_symbolic`` gives the edge its numeric function back. ``(a, b, c, d)`` are trainable.

The functions are a fixed, named set (``FUNCTIONS``), the same in every front end: the torch
layers here, and ``kancore::Network`` in C++ (``cpp/src/symbolic_edges.cpp``), which the NumPy
front end runs. Outside a function's domain (``log`` or ``sqrt`` of a negative number, ``1/x`` at
0) the edge gives what IEEE arithmetic gives (NaN or ±inf), as NumPy would.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ["FUNCTIONS", "SymbolicEdge", "SymbolicEdges", "SymbolicLayerMixin"]

# The native library, in file-format order (the C++ list in cpp/src/symbolic_edges.cpp matches).
FUNCTIONS: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "x": lambda u: u,
    "x^2": lambda u: u * u,
    "x^3": lambda u: u * u * u,
    "x^4": lambda u: (u * u) * (u * u),
    "1/x": torch.reciprocal,
    "1/x^2": lambda u: torch.reciprocal(u * u),
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "log": torch.log,
    "sin": torch.sin,
    "tanh": torch.tanh,
    "abs": torch.abs,
    "gaussian": lambda u: torch.exp(-(u * u)),
    "arctan": torch.atan,
}
_NAMES: Tuple[str, ...] = tuple(FUNCTIONS)


class SymbolicEdge(NamedTuple):
    """One fixed edge of a layer: ``output o += a * f(b * h_i + c) + d``."""
    i: int
    o: int
    name: str
    a: float
    b: float
    c: float
    d: float


def _finite_number(what: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


class SymbolicEdges(nn.Module):
    """The fixed edges of one ``(in_features, out_features)`` layer.

    State (in the state_dict): ``edges`` (n, 3) int64 rows ``(i, o, function index)`` and the
    parameter ``affine`` (n, 4) rows ``(a, b, c, d)``. Rows are kept sorted by function, so the
    forward applies each function to one contiguous slice.
    """

    def __init__(self, in_features: int, out_features: int, device=None, dtype=torch.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._rows: List[Tuple[int, int, int]] = []  # mirrors ``edges``, readable on any device
        self.register_buffer("edges", torch.zeros(0, 3, dtype=torch.long, device=device))
        self.affine = nn.Parameter(torch.zeros(0, 4, dtype=dtype, device=device))
        self._rebuild()

    def __len__(self) -> int:
        return len(self._rows)

    def _rebuild(self) -> None:
        """Derived state: the function slices, the numeric mask (in, out) and the routing matrix
        (n, out) that adds each edge's value to its output."""
        fn = [f for _, _, f in self._rows]
        self._slices: List[Tuple[str, int, int]] = []
        start = 0
        for k in range(1, len(fn) + 1):
            if k == len(fn) or fn[k] != fn[start]:
                self._slices.append((_NAMES[fn[start]], start, k))
                start = k
        device, dtype = self.affine.device, self.affine.dtype
        mask = torch.ones(self.in_features, self.out_features, dtype=dtype)
        route = torch.zeros(len(fn), self.out_features, dtype=dtype)
        for r, (i, o, _) in enumerate(self._rows):
            mask[i, o] = 0
            route[r, o] = 1
        mask, route = mask.to(device), route.to(device)
        self.register_buffer("numeric_mask", mask, persistent=False)
        self.register_buffer("route", route, persistent=False)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._rebuild()  # mask and routing follow the affine's dtype and device
        return out

    def find(self, i: int, o: int) -> int:
        """Row of edge (i, o), or -1."""
        return next((r for r, (ri, ro, _) in enumerate(self._rows) if (ri, ro) == (i, o)), -1)

    def _set(self, rows: List[Tuple[int, int, int]], affine: torch.Tensor) -> None:
        order = sorted(range(len(rows)), key=lambda r: (rows[r][2], rows[r][1], rows[r][0]))
        device = self.affine.device
        self._rows = [tuple(rows[r]) for r in order]
        self.edges = torch.tensor(self._rows, dtype=torch.long).reshape(-1, 3).to(device)
        self.affine = nn.Parameter(affine.detach()[order].to(device=device, dtype=self.affine.dtype).reshape(-1, 4))
        self._rebuild()

    def rows(self) -> List[Tuple[int, int, int]]:
        return list(self._rows)

    @torch.no_grad()
    def fix(self, i: int, o: int, name: str, a: float, b: float, c: float, d: float) -> None:
        if name not in FUNCTIONS:
            raise ValueError(f"unknown symbolic function {name!r}; the native ones are {list(FUNCTIONS)}")
        for what, v, n in (("i", i, self.in_features), ("o", o, self.out_features)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < n:
                raise ValueError(f"edge index {what} must be an int in [0, {n}), got {v!r}")
        i, o = int(i), int(o)
        params = [_finite_number(k, v) for k, v in zip("abcd", (a, b, c, d))]
        rows = self.rows()
        affine = self.affine.detach().clone()
        r = self.find(i, o)
        if r >= 0:
            rows[r] = (i, o, _NAMES.index(name))
            affine[r] = torch.tensor(params, dtype=affine.dtype)
        else:
            rows.append((i, o, _NAMES.index(name)))
            affine = torch.cat([affine, torch.tensor([params], dtype=affine.dtype, device=affine.device)])
        self._set(rows, affine)

    @torch.no_grad()
    def unfix(self, i: int, o: int) -> bool:
        r = self.find(i, o)
        if r < 0:
            return False
        rows = self.rows()
        del rows[r]
        keep = [k for k in range(len(self)) if k != r]
        self._set(rows, self.affine.detach()[keep])
        return True

    @torch.no_grad()
    def select(self, ins: Sequence[int], outs: Sequence[int]) -> None:
        """Keep the edges between inputs ``ins`` and outputs ``outs``, renumbered (pruning)."""
        new_in = {v: k for k, v in enumerate(ins)}
        new_out = {v: k for k, v in enumerate(outs)}
        keep = [r for r, (i, o, _) in enumerate(self.rows()) if i in new_in and o in new_out]
        rows = [(new_in[i], new_out[o], f) for i, o, f in (self.rows()[r] for r in keep)]
        self.in_features, self.out_features = len(ins), len(outs)
        self._set(rows, self.affine.detach()[keep])

    def listing(self) -> List[SymbolicEdge]:
        return [SymbolicEdge(i, o, _NAMES[f], *map(float, p))
                for (i, o, f), p in zip(self.rows(), self.affine.detach().double().cpu().tolist())]

    def extra_repr(self) -> str:
        shown = [f"{i}->{o}: {_NAMES[f]}" for i, o, f in self._rows[:6]]
        more = f", ... ({len(self._rows)} edges)" if len(self._rows) > 6 else ""
        return ", ".join(shown) + more

    def edge_values(self, h: torch.Tensor) -> torch.Tensor:
        """(batch, n): every fixed edge's value at the layer input h (batch, in)."""
        a, b, c, d = self.affine.unbind(1)
        u = h.index_select(1, self.edges[:, 0]) * b + c
        parts = [FUNCTIONS[name](u[:, s:e]) for name, s, e in self._slices]
        v = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return v * a + d

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(batch, out): the fixed edges' sum per output for the layer input h (batch, in)."""
        return self.edge_values(h) @ self.route.to(h.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        edges = state_dict.get(prefix + "edges")
        affine = state_dict.get(prefix + "affine")
        if isinstance(edges, torch.Tensor) and isinstance(affine, torch.Tensor):
            n = edges.shape[0] if edges.dim() == 2 else -1
            if edges.dim() != 2 or edges.shape[1] != 3 or affine.shape != (n, 4):
                raise ValueError(f"{prefix}edges/affine: expected shapes (n, 3) and (n, 4), got "
                                 f"{tuple(edges.shape)} and {tuple(affine.shape)}")
            rows = [tuple(r) for r in edges.tolist()]
            for i, o, f in rows:
                if not (0 <= i < self.in_features and 0 <= o < self.out_features and 0 <= f < len(_NAMES)):
                    raise ValueError(f"{prefix}edges: row {(i, o, f)} is outside the layer or the function list")
            if len({(i, o) for i, o, _ in rows}) != len(rows):
                raise ValueError(f"{prefix}edges: an edge is fixed twice")
            self.edges = torch.zeros(n, 3, dtype=torch.long, device=self.edges.device)
            self.affine = nn.Parameter(torch.zeros(n, 4, dtype=self.affine.dtype, device=self.affine.device))
            self._rows = rows
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._set(self.rows(), self.affine.detach())  # re-sort and rebuild the derived state


class SymbolicLayerMixin:
    """``fix_symbolic`` / ``unfix_symbolic`` / ``symbolic_edges`` for a KAN layer. The layer keeps
    a ``symbolic`` submodule (a ``SymbolicEdges``) only while it has fixed edges, so the
    state_dict of a layer without them is exactly the plain layer's."""

    symbolic: "SymbolicEdges | None"

    def _symbolic_active(self) -> bool:
        return self.symbolic is not None and len(self.symbolic) > 0

    def fix_symbolic(self, i: int, o: int, name: str, a: float = 1.0, b: float = 1.0, c: float = 0.0,
                     d: float = 0.0) -> None:
        """Fix edge ``i -> o`` to ``a * f(b * h_i + c) + d`` (``f`` = ``FUNCTIONS[name]``); refixing
        an edge replaces it. Its numeric parameters are kept but no longer used or trained. The
        trainable ``symbolic.affine`` is a new parameter: build the optimizer afterwards."""
        ref = self._symbolic_reference()
        if self.symbolic is None:
            self.symbolic = SymbolicEdges(self.in_features, self.out_features, ref.device, ref.dtype)
        self.symbolic.fix(i, o, name, a, b, c, d)

    def unfix_symbolic(self, i: int, o: int) -> bool:
        """Give edge ``i -> o`` its numeric function back; False when it was not fixed."""
        if self.symbolic is None:
            return False
        done = self.symbolic.unfix(i, o)
        if len(self.symbolic) == 0:
            self.symbolic = None
        return done

    def symbolic_edges(self) -> List[SymbolicEdge]:
        """The fixed edges, with their current ``(a, b, c, d)``."""
        return [] if self.symbolic is None else self.symbolic.listing()

    def _overlay_symbolic(self, xs, ys):
        """``edge_functions``' samples (float64 NumPy) with each fixed edge's function in place."""
        for e in self.symbolic_edges():
            with torch.no_grad():
                u = torch.from_numpy(e.b * xs[e.i] + e.c)
                ys[e.i, e.o] = e.a * FUNCTIONS[e.name](u).numpy() + e.d
        return xs, ys

    def _prepare_symbolic_load(self, state_dict, prefix) -> None:
        """Before loading a state_dict: create or drop the ``symbolic`` submodule to match it."""
        if prefix + "symbolic.edges" in state_dict:
            if self.symbolic is None:
                ref = self._symbolic_reference()
                self.symbolic = SymbolicEdges(self.in_features, self.out_features, ref.device, ref.dtype)
        else:
            self.symbolic = None
