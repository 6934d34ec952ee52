"""Reading a trained KAN as a formula: fit each edge's function by ``a * f(b * x + c) + d`` for
``f`` from a library, and compose the chosen fits into a sympy expression.

* ``suggest_symbolic(model, layer, i, o, x)``: every library function fitted to edge ``(i, o)``
  of ``model.layers[layer]`` on the values that edge sees for the samples ``x``, ranked by r²
  with a complexity penalty;
* ``auto_symbolic(model, x)``: the best suggestion of every edge;
* ``fix_symbolic(model, choices)``: those fits put into the network: each fixed edge computes
  ``a * f(b * x + c) + d`` natively, in forward and backward, with ``(a, b, c, d)`` trainable
  (``kancore.fit`` then polishes them); ``unfix_symbolic`` gives edges their numeric function
  back. Saved and loaded with the model (``kancore.save``, format version 2);
* ``symbolic_formula(model, choices)``: the network as a sympy expression of its inputs, with
  the constants rounded; a fixed edge contributes its own (trained) function.

The fit is robust by construction: the inner parameters ``(b, c)`` are searched on a grid (no
gradient descent to diverge), the outer ones ``(a, d)`` come from a closed-form least-squares
fit in float64, a candidate that is not finite on the data is skipped rather than fitted, and a
flat edge is the constant ``d`` (r² = 1). Only ``fix_symbolic`` and ``unfix_symbolic`` change
the model. An edge can be fixed to the functions of ``kancore.symbolic_edges.FUNCTIONS`` (this
module's ``LIBRARY``); user functions (``extra``) can be suggested and put in formulas, not fixed.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from .network import KAN
from .pruning import _edge_values
from .symbolic_edges import FUNCTIONS

__all__ = ["SymbolicFit", "LIBRARY", "fit_symbolic", "suggest_symbolic", "auto_symbolic", "fix_symbolic",
           "unfix_symbolic", "symbolic_formula"]


def _sympy():
    try:
        import sympy
    except ImportError as exc:  # pragma: no cover - sympy is a declared dependency of the extra
        raise ImportError("kancore.symbolic needs sympy: pip install sympy") from exc
    return sympy


# name: (numpy function, sympy function of a sympy symbol, complexity)
LIBRARY: Dict[str, Tuple[Callable[[np.ndarray], np.ndarray], Callable, int]] = {
    # Complexity: polynomials and roots below the transcendental functions, so a nearly equal fit
    # (a sine near its crest looks like a parabola) goes to the simpler form.
    "x": (lambda u: u, lambda s, sp: s, 1),
    "x^2": (lambda u: u ** 2, lambda s, sp: s ** 2, 2),
    "x^3": (lambda u: u ** 3, lambda s, sp: s ** 3, 3),
    "x^4": (lambda u: u ** 4, lambda s, sp: s ** 4, 3),
    "1/x": (lambda u: 1 / u, lambda s, sp: 1 / s, 2),
    "1/x^2": (lambda u: 1 / u ** 2, lambda s, sp: 1 / s ** 2, 3),
    "sqrt": (np.sqrt, lambda s, sp: sp.sqrt(s), 2),
    "exp": (np.exp, lambda s, sp: sp.exp(s), 3),
    "log": (np.log, lambda s, sp: sp.log(s), 3),
    "sin": (np.sin, lambda s, sp: sp.sin(s), 3),
    "tanh": (np.tanh, lambda s, sp: sp.tanh(s), 4),
    "abs": (np.abs, lambda s, sp: sp.Abs(s), 3),
    "gaussian": (lambda u: np.exp(-u ** 2), lambda s, sp: sp.exp(-s ** 2), 4),
    "arctan": (np.arctan, lambda s, sp: sp.atan(s), 4),
}


class SymbolicFit(NamedTuple):
    """One fitted candidate: ``y ~ a * f(b * x + c) + d``."""
    name: str
    r2: float
    a: float
    b: float
    c: float
    d: float
    complexity: int
    score: float  # r2 - complexity_weight * complexity: what the ranking uses


def _outer(u: np.ndarray, y: np.ndarray) -> Optional[Tuple[float, float, float]]:
    """(a, d, residual sum of squares) of the least-squares y ~ a u + d, or None."""
    if not np.all(np.isfinite(u)):
        return None
    um, ym = u.mean(), y.mean()
    du = u - um
    var = float(du @ du)
    if not var > 1e-300:  # u constant: a does not matter
        a = 0.0
    else:
        a = float(du @ (y - ym)) / var
    d = float(ym - a * um)
    r = y - (a * u + d)
    return a, d, float(r @ r)


def fit_symbolic(x: np.ndarray, y: np.ndarray, name: str, f: Optional[Callable] = None,
                 grid: int = 25) -> Tuple[float, float, float, float, float]:
    """Fit ``y ~ a * f(b * x + c) + d`` for the library function ``name`` (or ``f``).

    ``b`` is searched over ``±10^[-1.5, 1.5]`` and ``c`` over the values that move ``b * x``
    across ``[-3, 3]`` (``grid`` points each), ``a`` and ``d`` in closed form; the best pair is
    then refined by Levenberg-Marquardt on ``(b, c)`` (``a``, ``d`` solved exactly at each
    step). Parameters that make ``f`` non-finite on ``x`` are skipped, never fitted.

    Returns
    -------
    (r2, a, b, c, d)
        r² is ``-inf`` when no parameters make ``f`` finite on the data.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    fn = f if f is not None else LIBRARY[name][0]
    total = float(((y - y.mean()) ** 2).sum())
    if not total > 1e-24 * max(1.0, float(y @ y)):  # a flat edge: the constant, exactly
        return 1.0, 0.0, 1.0, 0.0, float(y.mean())
    span = max(float(np.abs(x).max()), 1e-12)
    best = (math.inf, 0.0, 1.0, 0.0, float(y.mean()))

    def search(bs, cs):
        nonlocal best
        with np.errstate(all="ignore"):
            for b in bs:
                for c in cs:
                    fit = _outer(fn(b * x + c), y)
                    if fit is not None and fit[2] < best[0]:
                        best = (fit[2], fit[0], float(b), float(c), fit[1])

    mags = np.logspace(-1.5, 1.5, grid) / span
    bs = np.concatenate([-mags[::-1], mags])
    search(bs, np.linspace(-3, 3, grid))
    if not math.isfinite(best[0]):
        return -math.inf, 0.0, 1.0, 0.0, float(y.mean())
    best = _refine(fn, x, y, best)
    rss, a, b, c, d = best
    if name in LIBRARY and fn is LIBRARY[name][0]:  # a library function: its own redundancies
        a, b, c, d = _canonical(name, a, b, c, d)
    return max(-math.inf, 1.0 - rss / total), a, b, c, d


_POWERS = {"x": 1, "x^2": 2, "x^3": 3, "x^4": 4, "1/x": -1, "1/x^2": -2, "abs": 1}


def _canonical(name: str, a: float, b: float, c: float, d: float) -> Tuple[float, float, float, float]:
    """The same function with the redundant constants removed: ``b = 1`` for powers and ``abs``
    (``a (b x + c)^p = a b^p (x + c/b)^p``), ``|b| = 1`` for ``sqrt``, ``c = 0`` for ``exp``
    (``a e^(b x + c) = (a e^c) e^(b x)``). Without this the fit can drift along the redundant
    direction to constants such as ``a = 4e138, c = -319`` that overflow in float32."""
    if b == 0 or not all(math.isfinite(v) for v in (a, b, c, d)):
        return a, b, c, d
    try:
        if name in _POWERS:
            p = _POWERS[name]
            scale = abs(b) ** p if name == "abs" else b ** p
            return a * scale, 1.0, c / b, d
        if name == "sqrt":
            return a * math.sqrt(abs(b)), math.copysign(1.0, b), c / abs(b), d
        if name == "exp":
            scaled = a * math.exp(c)
            return (scaled, b, 0.0, d) if math.isfinite(scaled) and scaled != 0 else (a, b, c, d)
    except (OverflowError, ZeroDivisionError):
        pass
    return a, b, c, d


def _refine(fn, x, y, best, iterations: int = 50):
    """Levenberg-Marquardt on (b, c) with (a, d) solved exactly at every point (variable
    projection); keeps the start when no step lowers the residual."""
    rss, a, b, c, d = best
    lam = 1e-3

    def residual(bb, cc):
        with np.errstate(all="ignore"):
            fit = _outer(fn(bb * x + cc), y)
        if fit is None:
            return None, None
        aa, dd, r2 = fit
        with np.errstate(all="ignore"):
            return y - (aa * fn(bb * x + cc) + dd), (r2, aa, bb, cc, dd)

    r, _ = residual(b, c)
    for _ in range(iterations):
        if r is None:
            break
        hb, hc = 1e-6 * max(1.0, abs(b)), 1e-6 * max(1.0, abs(c))
        rb, _ = residual(b + hb, c)
        rc, _ = residual(b, c + hc)
        if rb is None or rc is None:
            break
        J = np.stack([(rb - r) / hb, (rc - r) / hc], axis=1)
        g, H = J.T @ r, J.T @ J
        improved = False
        for _ in range(10):
            try:
                step = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), -g)
            except np.linalg.LinAlgError:
                break
            r_new, cand = residual(b + step[0], c + step[1])
            if cand is not None and cand[0] < rss:
                rss, a, b, c, d = cand
                r, lam, improved = r_new, lam / 3, True
                break
            lam *= 4
        if not improved or rss <= 1e-30:
            break
    return rss, a, b, c, d


def _edge_samples(model: KAN, layer: int, i: int, o: int, x: torch.Tensor) -> Tuple[np.ndarray, np.ndarray]:
    """(h_i, phi_{o,i}(h_i)) of edge (i, o) of layer ``layer`` on the samples x, as float64."""
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kancore.KAN, got {type(model).__name__}")
    if not 0 <= layer < len(model.layers):
        raise ValueError(f"layer must index the {len(model.layers)} layers, got {layer!r}")
    L = model.layers[layer]
    if not (0 <= i < L.in_features and 0 <= o < L.out_features):
        raise ValueError(f"edge ({i}, {o}) is outside layer {layer} ({L.in_features} -> {L.out_features})")
    with torch.no_grad():
        inputs, _ = model.layer_inputs(x)
        h = inputs[layer]
        v = _edge_values(L, h)[:, o, i]
    return h[:, i].double().cpu().numpy(), v.double().cpu().numpy()


def suggest_symbolic(model: KAN, layer: int, i: int, o: int, x: torch.Tensor,
                     lib: Optional[Sequence[str]] = None, complexity_weight: float = 0.001,
                     extra: Optional[Mapping[str, Tuple[Callable, Callable, int]]] = None) -> List[SymbolicFit]:
    """Every library function fitted to edge ``(i, o)`` of ``model.layers[layer]``, best first.

    Parameters
    ----------
    model : KAN
    layer, i, o : int
        The layer and the edge's input and output.
    x : torch.Tensor
        Network inputs ``(n, widths[0])``; the edge is fitted on the values it sees for them.
    lib : sequence of str, optional
        Names from ``LIBRARY`` (default: all).
    complexity_weight : float
        The ranking's penalty per unit of complexity (``x`` 1, ``x^2`` 2, ``sin`` 3,
        ``tanh`` 4...: ``LIBRARY``'s third entries): one more unit must explain 0.1 % more of
        the edge's variance. (The first layer of a trained network is rarely exactly linear: a
        line may leave 3e-4 of the variance that any curved candidate explains, yet be the
        right choice. A log-scale score picks the curve there.)
    extra : mapping, optional
        User functions: ``name -> (numpy function, sympy function of (symbol, sympy), complexity)``.

    Returns
    -------
    list of SymbolicFit
        Ranked by ``score = r2 - complexity_weight * complexity``; candidates that cannot be
        made finite on the data are left out.
    """
    hx, hy = _edge_samples(model, layer, i, o, x)
    return _rank(hx, hy, lib, complexity_weight, extra)


def _rank(hx: np.ndarray, hy: np.ndarray, lib: Optional[Sequence[str]], complexity_weight: float,
          extra: Optional[Mapping[str, Tuple[Callable, Callable, int]]] = None) -> List[SymbolicFit]:
    """Every requested function fitted to the samples (hx, hy), best score first."""
    names = list(LIBRARY) if lib is None else list(lib)
    table = dict(LIBRARY)
    table.update(dict(extra or {}))
    fits = []
    for name in names + [n for n in (extra or {}) if n not in names]:
        if name not in table:
            raise ValueError(f"unknown library function {name!r}; known: {sorted(table)}")
        fn, _, complexity = table[name]
        r2, a, b, c, d = fit_symbolic(hx, hy, name, fn)
        if math.isfinite(r2):
            fits.append(SymbolicFit(name, r2, a, b, c, d, complexity, r2 - complexity_weight * complexity))
    return sorted(fits, key=lambda s: -s.score)


def auto_symbolic(model: KAN, x: torch.Tensor, lib: Optional[Sequence[str]] = None,
                  complexity_weight: float = 0.001) -> Dict[Tuple[int, int, int], SymbolicFit]:
    """The best suggestion of every edge: ``{(layer, i, o): SymbolicFit}``.

    Parameters
    ----------
    model : KAN
    x : torch.Tensor
        Network inputs ``(n, widths[0])``.
    lib, complexity_weight
        As in ``suggest_symbolic``.

    Returns
    -------
    dict
        One fit per edge; check ``r2`` before trusting a formula built from them.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kancore.KAN, got {type(model).__name__}")
    out = {}
    with torch.no_grad():
        inputs, _ = model.layer_inputs(x)  # once for all edges
        for j, (L, h) in enumerate(zip(model.layers, inputs)):
            values = _edge_values(L, h).double().cpu().numpy()  # (n, out, in), once per layer
            hs = h.double().cpu().numpy()
            for i in range(L.in_features):
                for o in range(L.out_features):
                    out[(j, i, o)] = _rank(hs[:, i], values[:, o, i], lib, complexity_weight)[0]
    return out


def fix_symbolic(model: KAN, choices: Mapping[Tuple[int, int, int], object], x: Optional[torch.Tensor] = None
                 ) -> Dict[Tuple[int, int, int], SymbolicFit]:
    """Fix edges of ``model`` (in place) to symbolic functions.

    Each fixed edge ``(layer, i, o)`` then computes ``a * f(b * h_i + c) + d`` in the forward and
    backward pass instead of its spline (whose parameters are kept, untrained, for
    ``unfix_symbolic``). ``(a, b, c, d)`` are parameters (``model.layers[j].symbolic.affine``):
    train them with ``kancore.fit`` to polish the constants. Build optimizers afterwards.

    Parameters
    ----------
    model : KAN
    choices : mapping
        ``(layer, i, o) -> SymbolicFit`` (e.g. ``auto_symbolic``'s result) or ``-> name`` of a
        native function, which is then fitted to the edge on ``x``.
    x : torch.Tensor, optional
        Network inputs ``(n, widths[0])``, needed when a choice is a name.

    Returns
    -------
    dict
        The fit used for every edge (with its r² when fitted here).
    """
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kancore.KAN, got {type(model).__name__}")
    used = {}
    for key, choice in choices.items():
        if not (isinstance(key, tuple) and len(key) == 3):
            raise ValueError(f"expected (layer, i, o) keys, got {key!r}")
        layer, i, o = key
        if isinstance(choice, str):
            if choice not in FUNCTIONS:
                raise ValueError(f"cannot fix edge {key} to {choice!r}: the native functions are {list(FUNCTIONS)}")
            if x is None:
                raise ValueError(f"fix_symbolic: edge {key} names {choice!r}; pass x to fit it")
            hx, hy = _edge_samples(model, layer, i, o, x)
            r2, a, b, c, d = fit_symbolic(hx, hy, choice)
            if not math.isfinite(r2):
                raise ValueError(f"fix_symbolic: {choice!r} cannot be made finite on edge {key}'s inputs")
            complexity = LIBRARY[choice][2]
            choice = SymbolicFit(choice, r2, a, b, c, d, complexity, r2 - 0.001 * complexity)
        if not isinstance(choice, SymbolicFit):
            raise TypeError(f"edge {key}: expected a SymbolicFit or a function name, got {type(choice).__name__}")
        if choice.name not in FUNCTIONS:
            raise ValueError(f"cannot fix edge {key} to {choice.name!r}: user functions are not native; the native "
                             f"functions are {list(FUNCTIONS)}")
        if not (isinstance(layer, int) and 0 <= layer < len(model.layers)):
            raise ValueError(f"layer must index the {len(model.layers)} layers, got {layer!r}")
        model.layers[layer].fix_symbolic(i, o, choice.name, choice.a, choice.b, choice.c, choice.d)
        used[key] = choice
    return used


def unfix_symbolic(model: KAN, edges: Optional[Sequence[Tuple[int, int, int]]] = None) -> int:
    """Give fixed edges their numeric functions back.

    Parameters
    ----------
    model : KAN
    edges : sequence of (layer, i, o), optional
        The edges (default: every fixed edge).

    Returns
    -------
    int
        How many of them were fixed.
    """
    if not isinstance(model, KAN):
        raise TypeError(f"expected a kancore.KAN, got {type(model).__name__}")
    if edges is None:
        edges = [(j, e.i, e.o) for j, L in enumerate(model.layers) for e in L.symbolic_edges()]
    return sum(bool(model.layers[j].unfix_symbolic(i, o)) for j, i, o in edges)


def _tidy(expr, digits: int, zero_below: float):
    """Expand the polynomial parts (not exp of a sum), round every constant to ``digits``
    significant digits, write those that round to whole numbers as integers (``x*y``, not
    ``1.0*x*y``), drop those below ``zero_below`` in magnitude (fit noise such as a 1e-6 phase),
    then take common factors out of roots (``2.1*sqrt(0.226*x**2 + 0.226*y**2)`` becomes
    ``0.998*sqrt(x**2 + y**2)``) and round again."""
    sp = _sympy()
    keep = {"power_exp": False, "power_base": False, "log": False}

    def rounded(f):
        v = float(f"{float(f):.{digits}g}")
        if abs(float(f)) < zero_below:
            return sp.Integer(0)
        return sp.Integer(int(v)) if abs(v) < 1e15 and v == int(v) else sp.Float(v, digits)

    def round_all(e):
        return sp.expand(e.xreplace({f: rounded(f) for f in e.atoms(sp.Float)}), **keep)

    expr = round_all(sp.expand(expr, **keep))
    expr = expr.replace(lambda e: e.is_Pow and not e.exp.is_Integer, lambda e: sp.factor_terms(e.base) ** e.exp)
    return round_all(expr)


def symbolic_formula(model: KAN, choices: Optional[Mapping[Tuple[int, int, int], SymbolicFit]] = None,
                     in_vars: Optional[Sequence[str]] = None, digits: int = 4, zero_below: float = 1e-4,
                     extra: Optional[Mapping[str, Tuple[Callable, Callable, int]]] = None) -> list:
    """The network as sympy expressions of its inputs, one per output, from one fit per edge.

    Parameters
    ----------
    model : KAN
        A network without LayerNorm (a LayerNorm between layers has no short formula).
    choices : mapping, optional
        ``(layer, i, o) -> SymbolicFit`` for every edge that is not fixed (``auto_symbolic``'s
        result). Fixed edges (``fix_symbolic``) always contribute their own, trained function.
    in_vars : sequence of str, optional
        Input names (default ``x_1, x_2, ...``).
    digits : int
        Significant digits kept in every constant.
    zero_below : float
        Constants smaller than this in magnitude (after expanding the polynomial parts) are
        dropped.
    extra : mapping, optional
        The user functions the choices use (as in ``suggest_symbolic``).

    Returns
    -------
    list of sympy.Expr
        ``widths[-1]`` expressions.
    """
    sp = _sympy()
    if model.layernorm:
        raise ValueError("symbolic_formula: a network with LayerNorm has no short formula (the normalisation "
                         "couples all nodes); build the KAN without layernorm to read it as a formula")
    names = list(in_vars) if in_vars is not None else [f"x_{k + 1}" for k in range(model.widths[0])]
    if len(names) != model.widths[0]:
        raise ValueError(f"expected {model.widths[0]} input names, got {len(names)}")
    table = dict(LIBRARY)
    table.update(dict(extra or {}))

    def num(v: float):
        return sp.Float(v) if v != 0 else sp.Integer(0)  # rounded once, at the end

    values = [sp.Symbol(n) for n in names]
    for j, L in enumerate(model.layers):
        fixed = {(e.i, e.o): SymbolicFit(e.name, 1.0, e.a, e.b, e.c, e.d, LIBRARY[e.name][2], 1.0)
                 for e in L.symbolic_edges()}
        nxt = []
        for o in range(L.out_features):
            total = sp.Integer(0)
            for i in range(L.in_features):
                key = (j, i, o)
                s = fixed.get((i, o)) or (choices or {}).get(key)
                if s is None:
                    raise ValueError(f"no symbolic choice for edge {key} (it is not fixed either)")
                if s.a == 0:
                    total += num(s.d)
                else:
                    total += num(s.a) * table[s.name][1](num(s.b) * values[i] + num(s.c), sp) + num(s.d)
            nxt.append(total)
        values = nxt
    return [_tidy(v, digits, zero_below) for v in values]
