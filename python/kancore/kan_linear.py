"""``KANLinear`` and ``KAN``: efficient-kan's B-spline KAN layer and stack, on kancore's kernels.

The constructor arguments and defaults, the state_dict names and shapes (``grid``,
``base_weight``, ``spline_weight``, ``spline_scaler``) and the forward function are efficient-kan's:

    y = base_activation(x) @ base_weight.T
        + B(x).flatten(-2) @ (spline_weight * spline_scaler[..., None]).flatten(-2).T

with B the Cox-de Boor basis of order k on each feature's knots (zero outside them). The native
kernel evaluates only the k+1 non-zero basis functions per input; nothing of shape
(batch, in, G+k) is built. Differences from efficient-kan, all deliberate:

* ``update_grid`` preserves the layer's function whatever ``spline_scaler`` is (efficient-kan
  multiplies each edge by its scaler again at every update), solves a ridge-stabilised least
  squares in float64 (no NaN on constant features or repeated values), and skips non-finite
  samples (they are counted in the returned report);
* ``refine(new_grid_size)`` gives a finer grid with the same function (pykan-style);
* ``regularization_loss`` is finite when coefficients are exactly zero;
* inputs may have any number of leading dimensions; ``device=``/``dtype=`` arguments.

CUDA tensors run on kancore's CUDA kernels (correct on an H200, not yet tuned; orders up to
16). There the knots stay in device memory and are not checked per call: they are checked when
a state_dict is loaded and produced valid by ``update_grid``/``refine`` (the grid fits run on
the CPU, with one copy each way). The coefficient and smoothness losses run on the device.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import threading
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _ops, portable
from .symbolic_edges import SymbolicLayerMixin

_ops_bs = _ops.torch_bspline_ops()  # registers the kancore:: B-spline and loss ops


class GridUpdateReport(NamedTuple):
    features_kept: int     # features without one finite sample: grid and weights unchanged
    samples_skipped: int   # non-finite (sample, feature) values left out of the fit


def _int_at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def uniform_grid(in_features: int, grid_size: int, spline_order: int, grid_range: Sequence[float],
                 dtype: Optional[torch.dtype] = None,
                 device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """efficient-kan's knots: uniform on grid_range, extended by spline_order steps each side."""
    lo, hi = (float(v) for v in grid_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"grid_range must be two finite numbers lo < hi, got {tuple(grid_range)}")
    h = (hi - lo) / grid_size
    # On the CPU (a few values) whatever the default device, so the overflow check can read them.
    steps = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float64, device="cpu") * h + lo
    top = torch.finfo(dtype if dtype is not None else torch.get_default_dtype()).max
    if not bool(torch.isfinite(steps).all()) or float(steps.abs().max()) > top:
        raise ValueError(f"grid_range {tuple(grid_range)} is too wide: its extended knots overflow "
                         f"(the largest would be {float(steps.abs().max()):.3g})")
    return steps.expand(in_features, -1).contiguous().to(dtype=dtype, device=device)


_SKIP_INIT = threading.local()


@contextlib.contextmanager
def skip_initialisation() -> Iterator[None]:
    """Within this block, new ``KANLinear`` layers leave their weights uninitialised (no random
    numbers drawn, no initial curve fit): for loaders that overwrite every parameter anyway."""
    previous = getattr(_SKIP_INIT, "on", False)
    _SKIP_INIT.on = True
    try:
        yield
    finally:
        _SKIP_INIT.on = previous


class KANLinear(SymbolicLayerMixin, nn.Module):
    """A B-spline KAN layer (efficient-kan's ``KANLinear``). Input ``(..., in_features)``,
    output ``(..., out_features)``; the math: docs/layer_math.md.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths (>= 1).
    grid_size : int
        G, the intervals of each feature's grid inside ``grid_range``.
    spline_order : int
        k (1 to 64; CUDA up to 16), the splines' order (3: cubic).
    scale_noise : float
        The initial spline coefficients fit uniform noise of this scale (efficient-kan's init).
    scale_base, scale_spline : float
        Gains of the Kaiming-uniform initialisation of ``base_weight`` and ``spline_scaler``.
    enable_standalone_scale_spline : bool
        Keep a learnable ``spline_scaler (out, in)`` multiplying each edge's spline.
    base_activation : type or module
        The base branch's activation (``torch.nn.SiLU`` runs fused in the native kernel; any
        other runs in torch).
    grid_eps : float
        In ``update_grid``: 0 puts the knots at the samples' quantiles, 1 keeps them uniform.
    grid_range : (float, float)
        The initial grid's inner range.
    spline_scaler_init : {"kaiming", "constant"}
        ``"kaiming"`` (efficient-kan's): Kaiming-uniform scalers, so edges start with random
        signs and sizes; ``"constant"`` (pykan's): every scaler ``scale_spline / sqrt(in)``.
        With ``scale_noise=0.3`` the latter is pykan's initialisation, which fits formulas
        better (``benchmarks/vs_pykan.py``).
    device : torch.device or str, optional
        Where the parameters live.
    dtype : torch.dtype, optional
        ``torch.float32`` or ``torch.float64`` (default: torch's default dtype).

    Examples
    --------
    >>> import torch, kancore
    >>> kancore.KANLinear(3, 2)(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(self, in_features: int, out_features: int, grid_size: int = 5, spline_order: int = 3,
                 scale_noise: float = 0.1, scale_base: float = 1.0, scale_spline: float = 1.0,
                 enable_standalone_scale_spline: bool = True, base_activation: Any = torch.nn.SiLU,
                 grid_eps: float = 0.02, grid_range: Sequence[float] = (-1, 1), *,
                 spline_scaler_init: str = "kaiming",
                 device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.in_features = _int_at_least("in_features", in_features, 1)
        self.out_features = _int_at_least("out_features", out_features, 1)
        self.grid_size = _int_at_least("grid_size", grid_size, 1)
        self.spline_order = _int_at_least("spline_order", spline_order, 1)
        if self.spline_order > 64:
            raise ValueError(f"spline_order must be <= 64, got {spline_order}")
        if not 0.0 <= float(grid_eps) <= 1.0:
            raise ValueError(f"grid_eps must be in [0, 1], got {grid_eps!r}")
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        _ops._dtype_name(dtype)
        self.scale_noise = scale_noise
        self.scale_base = scale_base
        self.scale_spline = scale_spline
        self.enable_standalone_scale_spline = bool(enable_standalone_scale_spline)
        self.grid_eps = float(grid_eps)
        if spline_scaler_init not in ("kaiming", "constant"):
            raise ValueError(f"spline_scaler_init must be 'kaiming' or 'constant', got {spline_scaler_init!r}")
        self.spline_scaler_init = spline_scaler_init
        self.grid_range = tuple(float(v) for v in grid_range)
        self.base_activation = base_activation() if isinstance(base_activation, type) else base_activation
        self.symbolic = None  # a SymbolicEdges once an edge is fixed (fix_symbolic)

        C = self.grid_size + self.spline_order
        self.register_buffer("grid", uniform_grid(self.in_features, self.grid_size, self.spline_order,
                                                  self.grid_range, dtype, device))
        self.base_weight = nn.Parameter(torch.empty(self.out_features, self.in_features, device=device, dtype=dtype))
        self.spline_weight = nn.Parameter(torch.empty(self.out_features, self.in_features, C, device=device, dtype=dtype))
        if self.enable_standalone_scale_spline:
            self.spline_scaler = nn.Parameter(torch.empty(self.out_features, self.in_features, device=device, dtype=dtype))
        if not getattr(_SKIP_INIT, "on", False):
            self.reset_parameters()

    # -- parameters ------------------------------------------------------------------------

    def reset_parameters(self) -> None:
        """efficient-kan's initialisation: Kaiming-uniform base weights, spline coefficients
        fitted to small uniform noise at the grid points, Kaiming-uniform scalers (or constant
        ones, ``spline_scaler_init="constant"``)."""
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5) * self.scale_base)
            G, k = self.grid_size, self.spline_order
            noise = (torch.rand(G + 1, self.in_features, self.out_features, dtype=torch.float64) - 0.5) \
                * self.scale_noise / G
            points = self.grid.detach().to("cpu", torch.float64).T[k:-k]  # (G+1, in)
            coef = self._fit_curve(points, noise)  # (out, in, G+k)
            scale = 1.0 if self.enable_standalone_scale_spline else self.scale_spline
            self.spline_weight.copy_((scale * coef).to(self.spline_weight))
            if self.enable_standalone_scale_spline and self.spline_scaler_init == "constant":
                self.spline_scaler.fill_(self.scale_spline / math.sqrt(self.in_features))
            elif self.enable_standalone_scale_spline:
                nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5) * self.scale_spline)

    def _fit_curve(self, points: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Least-squares (minimum-norm) coefficients whose splines take `values` (n, in, out)
        at `points` (n, in); float64 NumPy, used at initialisation only."""
        grid = self.grid.detach().to("cpu", torch.float64).numpy()
        out = np.empty((self.out_features, self.in_features, self.grid_size + self.spline_order))
        for i in range(self.in_features):
            A = _ops.bspline_basis_numpy(grid[i], self.grid_size, self.spline_order, points[:, i].numpy())
            sol, *_ = np.linalg.lstsq(A, values[:, i, :].numpy(), rcond=None)
            out[:, i, :] = sol.T
        return torch.from_numpy(out)

    @property
    def scaled_spline_weight(self) -> torch.Tensor:
        """``spline_weight * spline_scaler[..., None]`` ``(out, in, G+k)``: the coefficients the
        forward uses."""
        if self.enable_standalone_scale_spline:
            return self.spline_weight * self.spline_scaler.unsqueeze(-1)
        return self.spline_weight

    def _symbolic_reference(self) -> torch.Tensor:
        return self.spline_weight

    def _numeric_weights(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(base_weight, spline_weight) with the fixed (symbolic) edges zeroed."""
        if not self._symbolic_active():
            return self.base_weight, self.spline_weight
        mask = self.symbolic.numeric_mask.t()  # (out, in)
        return self.base_weight * mask, self.spline_weight * mask.unsqueeze(-1)

    def _native_base(self) -> bool:
        return type(self.base_activation) is torch.nn.SiLU

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The CUDA kernels trust the knots (no per-call host check): reject bad ones on load.
        grid = state_dict.get(prefix + "grid")
        self._prepare_symbolic_load(state_dict, prefix)
        if isinstance(grid, torch.Tensor) and grid.dim() == 2 and grid.numel() > 0:
            g = grid.detach()
            if not bool(torch.isfinite(g).all()) or bool((g[:, 1:] < g[:, :-1]).any()):
                raise ValueError(f"{prefix}grid: expected finite, non-decreasing knots per feature")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output for ``x (..., in_features)`` in the layer's dtype: ``(...,
        out_features)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected x to be a torch.Tensor, got {type(x).__name__}")
        if self.spline_weight.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"expected float32 or float64 parameters, got {self.spline_weight.dtype}"
                            + _ops.low_precision_hint(self.spline_weight.dtype))
        x = _ops.autocast_input(x, self.spline_weight.dtype)
        if x.dtype != self.spline_weight.dtype:
            raise TypeError(f"expected x of dtype {self.spline_weight.dtype} (the layer's dtype), got {x.dtype}"
                            + _ops.low_precision_hint(x.dtype))
        if not torch.jit.is_tracing() and (x.dim() < 1 or x.shape[-1] != self.in_features):
            raise ValueError(f"expected x of shape (..., {self.in_features}), got {tuple(x.shape)}")
        if x.device != self.spline_weight.device:
            raise ValueError(f"expected x on {self.spline_weight.device} (the layer's device), got {x.device}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        scaler = self.spline_scaler if self.enable_standalone_scale_spline else None
        base_weight, spline_weight = self._numeric_weights()
        if torch.onnx.is_in_onnx_export():  # standard operators only (kancore/portable.py)
            y = portable.bspline_forward(x2, self.grid, None, spline_weight, scaler, self.spline_order)
            y = y + F.linear(self.base_activation(x2), base_weight)
        elif self._native_base():
            y = _ops_bs.bspline_forward(x2, self.grid, base_weight, spline_weight, scaler)
        else:
            y = _ops_bs.bspline_forward(x2, self.grid, None, spline_weight, scaler)
            y = y + F.linear(self.base_activation(x2), base_weight)
        if self._symbolic_active():
            y = y + self.symbolic(x2)
        # A batch of rows returns the op's own tensor, not a view of it (FSDP warns on views).
        return y if len(lead) == 1 else y.reshape(*lead, self.out_features)

    def b_splines(self, x: torch.Tensor) -> torch.Tensor:
        """Dense basis (batch, in, G+k) at x (batch, in), for inspection (not differentiable)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected x of shape (batch, {self.in_features}), got {tuple(x.shape)}")
        grid = self.grid.detach().to("cpu", torch.float64).numpy()
        xs = x.detach().to("cpu", torch.float64).numpy()
        cols = [_ops.bspline_basis_numpy(grid[i], self.grid_size, self.spline_order, xs[:, i])
                for i in range(self.in_features)]
        return torch.from_numpy(np.stack(cols, axis=1)).to(device=x.device, dtype=x.dtype)

    # -- grid adaptation ---------------------------------------------------------------------

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, margin: float = 0.01, ridge: float = 1e-10) -> GridUpdateReport:
        """Move the knots to the samples' quantiles and refit the splines, keeping the function.

        The knots go to the quantiles of each feature's finite samples, mixed with a uniform grid
        by ``grid_eps`` and widened by ``margin``; the unscaled splines are refitted by a banded
        least squares in float64 (ridge-stabilised), so the layer computes the same function on
        ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Samples ``(batch, in_features)``; non-finite values are skipped.
        margin : float
            Widening of the range on each side, relative to its width.
        ridge : float
            Relative ridge weight of the least squares.

        Returns
        -------
        GridUpdateReport
            ``features_kept`` (without one finite sample: unchanged) and ``samples_skipped``.
        """
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected x of shape (batch, {self.in_features}), got {tuple(x.shape)}")
        dt = self.spline_weight.dtype
        xs = x.detach().to("cpu", dt).numpy()
        grid = self.grid.detach().cpu().numpy()
        w = self.spline_weight.detach().cpu().numpy()
        new_grid, new_w, report = _ops.bspline_update_grid_arrays(xs, grid, w, margin, self.grid_eps, ridge)
        self.grid.copy_(torch.from_numpy(new_grid))
        self.spline_weight.copy_(torch.from_numpy(new_w))
        return GridUpdateReport(*report)

    @torch.no_grad()
    def refine(self, new_grid_size: int) -> None:
        """Switch to a grid of ``new_grid_size`` intervals over the same range, keeping the
        function (pykan's grid extension).

        Parameters
        ----------
        new_grid_size : int
            The new G. The function is kept exactly when it is a multiple of ``grid_size``, by
            least squares otherwise. Parameters are replaced: build the optimizer afterwards.
        """
        new_grid_size = _int_at_least("new_grid_size", new_grid_size, 1)
        grid = self.grid.detach().cpu().numpy()
        w = self.spline_weight.detach().cpu().numpy()
        new_grid, new_w = _ops.bspline_refine_arrays(grid, w, new_grid_size)
        device = self.spline_weight.device
        self.grid = torch.from_numpy(new_grid).to(device)
        self.spline_weight = nn.Parameter(torch.from_numpy(new_w).to(device))
        self.grid_size = new_grid_size

    # -- regularisation ----------------------------------------------------------------------

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's penalty ``activation * sum(l1) + entropy * H(l1 / sum(l1))``, with l1
        the mean ``|spline_weight|`` per edge. Finite (and with finite gradients) when entries
        are 0.

        Parameters
        ----------
        regularize_activation, regularize_entropy : float
            Weights of the L1 term and of the entropy term.

        Returns
        -------
        torch.Tensor
            The scalar penalty, differentiable.
        """
        value, _ = _ops_bs.coefficient_l1_entropy(self._numeric_weights()[1], float(regularize_activation),
                                                  float(regularize_entropy))
        return value

    def smoothness_loss(self) -> torch.Tensor:
        """Mean over edges of the squared second differences of the scaled coefficients."""
        w = self._numeric_weights()[1]
        if self.enable_standalone_scale_spline:
            w = w * self.spline_scaler.unsqueeze(-1)
        value, _ = _ops_bs.smoothness(w, w.shape[0] * w.shape[1], w.shape[2], 1)
        return value

    @torch.no_grad()
    def edge_functions(self, n: int = 64, x: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Sample every edge's whole function (base + spline) in float64.

        Parameters
        ----------
        n : int
            Samples per edge.
        x : torch.Tensor, optional
            Inputs ``(..., in_features)``; when given, each feature is sampled over the range of
            its finite values instead of the grid's inner range.

        Returns
        -------
        xs : numpy.ndarray
            ``(in_features, n)`` input values.
        ys : numpy.ndarray
            ``(in_features, out_features, n)``: ``ys[i, o]`` is edge ``i -> o`` at ``xs[i]``.
        """
        I = self.in_features
        grid = self.grid.detach().cpu().double().numpy()
        k = self.spline_order
        lo, hi = grid[:, k], grid[:, -k - 1]
        if x is not None:
            xd = x.detach().reshape(-1, I).cpu().double().numpy()
            xd = np.where(np.isfinite(xd), xd, np.nan)
            if np.isfinite(xd).any(axis=0).all():
                lo, hi = np.nanmin(xd, 0), np.nanmax(xd, 0)
        xs = np.linspace(lo, hi, n, axis=1)
        basis = self.b_splines(torch.from_numpy(xs.T.copy()).to(self.grid.device)).cpu().double().numpy()
        w = self.scaled_spline_weight.detach().cpu().double().numpy()  # (O, I, C)
        spline = np.einsum("nic,oic->ion", basis, w)
        base = self.base_activation(torch.from_numpy(xs)).numpy()  # (I, n)
        ys = spline + self.base_weight.detach().cpu().double().numpy().T[:, :, None] * base[:, None, :]
        return self._overlay_symbolic(xs, ys)

    @torch.no_grad()
    def edge_importance(self) -> np.ndarray:
        """``(out_features, in_features)`` importance of each edge without data: mean
        ``|scaled spline coefficient|`` + ``|base weight|``."""
        w = self.scaled_spline_weight.detach().cpu().double()
        return (w.abs().mean(-1) + self.base_weight.detach().cpu().double().abs()).numpy()

    def visualize_all_mappings(self, save_path: Optional[str] = None, *, x_axis: str = "input",
                               in_vars: Optional[Sequence[str]] = None,
                               out_vars: Optional[Sequence[str]] = None, max_edges: int = 64,
                               x: Optional[torch.Tensor] = None) -> Any:
        """Plot every edge on an in x out grid of subplots (kanditioned's layout) and return the
        Figure.

        Parameters
        ----------
        save_path : str or path, optional
            When truthy, the figure is also saved there at 300 dpi (less for a large figure: at
            most 3600 pixels on a side).
        x_axis : {"input", "control_points"}
            ``"input"``: the edge's whole function, base + spline, against the input value over
            the grid's inner range (or the range of ``x``); ``"control_points"``: the scaled
            spline coefficients against the basis index.
        in_vars, out_vars : sequence of str, optional
            Names of the inputs and outputs, used in the subplot titles and axis labels
            (lengths checked).
        max_edges : int
            A layer with more edges shows only its ``max_edges`` most important edges (by
            ``edge_importance()``, or by the edge scales on ``x`` when given), most important
            first; the title says so. The figure is at most 24 inches on a side.
        x : torch.Tensor, optional
            Samples ``(..., in_features)``: edges are ranked by pykan's edge scale on them
            (``edge_scales``) and, with ``x_axis="input"``, drawn over their range.

        Returns
        -------
        matplotlib.figure.Figure
            A bare Figure (headless; a notebook shows it once).
        """
        from . import _plotting

        if x_axis not in ("control_points", "input"):
            raise ValueError(f"x_axis must be 'control_points' or 'input', got {x_axis!r}")
        if x_axis == "input":
            (xs, ys), xlabel = self.edge_functions(n=200, x=x), "Input"
        else:
            w = self.scaled_spline_weight.detach().cpu().double().numpy()  # (O, I, C)
            xs = np.tile(np.arange(w.shape[-1]), (self.in_features, 1))
            ys, xlabel = w.transpose(1, 0, 2), "Control Points"
        # Edge scales on x only when they pick a subset (they cost a pass over the samples).
        importance, label = _plotting.edge_ranking(
            self, x if self.in_features * self.out_features > max_edges else None)
        return _plotting.edge_grid(xs, ys, xlabel, save_path, in_vars=in_vars, out_vars=out_vars,
                                   importance=importance, importance_label=label, max_edges=max_edges,
                                   name_x_axis=x_axis == "input")

    def extra_repr(self) -> str:
        parts = [f"in_features={self.in_features}", f"out_features={self.out_features}",
                 f"grid_size={self.grid_size}", f"spline_order={self.spline_order}"]
        if not self._native_base():
            parts.append(f"base_activation={type(self.base_activation).__name__}")
        if not self.enable_standalone_scale_spline:
            parts.append("enable_standalone_scale_spline=False")
        parts.append(f"dtype={self.spline_weight.dtype}")
        return ", ".join(parts)

    # -- sample-based regularisation (pykan) -------------------------------------------------

    def edge_scale_loss(self, x: torch.Tensor, lamb_l1: float = 1.0, lamb_entropy: float = 2.0,
                        lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0) -> torch.Tensor:
        """pykan's sample-based regulariser of this layer for its input x (..., in_features),
        computed natively (no (batch, out, in) tensor) and differentiable wrt x and every parameter.

        The edge function is the full edge output phi_oi(x) = base_weight[o,i] silu(x) +
        spline_scaler[o,i] * spline_oi(x) (pykan's postacts); A[o, i] = std_b phi_oi / (std_b x_i + 0.1)
        (unbiased, over the flattened batch); the loss is ``lamb_l1 * sum(A) + lamb_entropy *
        (row + column entropies of A) + (lamb_coef * sum|spline_weight| + lamb_coefdiff *
        sum|diff spline_weight|) / out_features`` (pykan's normalisation). Needs at least 2 samples
        and the SiLU base activation;
        NaN/±inf in x gives a NaN loss. CPU only. The exact formula: docs/layer_math.md
        ("Edge-scale regulariser").

        Parameters
        ----------
        x : torch.Tensor
            The layer's input ``(..., in_features)``, at least 2 samples.
        lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff : float
            pykan's weights of the L1, entropy, coefficient and coefficient-difference terms.

        Returns
        -------
        torch.Tensor
            The scalar loss, differentiable.
        """
        loss, _ = self._edge_scale(x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
        return loss

    def edge_scales(self, x: torch.Tensor) -> torch.Tensor:
        """The (out_features, in_features) edge scales A for input x (not differentiable)."""
        with torch.no_grad():
            return self._edge_scale(x, 1.0, 0.0, 0.0, 0.0)[1]

    def _edge_scale(self, x, *lambs):
        if not self._native_base():
            # The native edge function is silu-based; another activation would need its own
            # derivative in the kernel.
            raise NotImplementedError("edge_scale_loss needs base_activation=torch.nn.SiLU, got "
                                      f"{type(self.base_activation).__name__}")
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected x of shape (..., {self.in_features}), got "
                             f"{tuple(getattr(x, 'shape', ()))}")
        x = _ops.autocast_input(x, self.spline_weight.dtype)
        scaler = self.spline_scaler if self.enable_standalone_scale_spline else None
        base_weight, spline_weight = self._numeric_weights()
        return _ops.torch_edge_scale_ops().bspline_loss(x.reshape(-1, self.in_features), self.grid,
                                                        base_weight, spline_weight, scaler, *lambs)
