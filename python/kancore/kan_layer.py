"""``KANLayer``: kanditioned's C0 KAN layer, computed by kancore's native kernels.

Changing ``from kanditioned import KANLayer`` to ``from kancore import KANLayer`` is the only
edit a kanditioned 1.0.4 user needs: the constructor, parameter and buffer names, shapes and
dtypes, ``get_interp_tensor()`` and ``visualize_all_mappings()`` are the same, and state_dicts
load both ways. Differences, all deliberate:

* every ``impl`` works and computes the same function (kanditioned's ``sparse_matmul_csr``
  raises); ``impl`` only picks the native code path and is read at every call;
* ``init`` defaults to ``"random_normal"``; ``num_control_points < 2`` is rejected up front;
* ``variant="parallel_scan"`` is initialised to the same straight lines as ``B-spline``
  (kanditioned leaves it at zero and prints a note); ``variant="DCT"`` (only reserved by
  kanditioned) stores the control points as orthonormal DCT-II coefficients ``dct_weight``
  (in, K, out) along K, starting from the same lines;
* ``smoothness_loss()``: the second-difference penalty on the control points;
* ``update_grid(x, num_control_points=None)`` fits each feature's spline domain to the data
  (an input scale and offset per feature, the buffers ``input_scale``/``input_offset``, present
  only once fitted) and ``refine(num_control_points)`` changes K, both keeping the function;
* inputs may have any number of leading dimensions, like ``nn.Linear``;
* NaN inputs give NaN on the affected output rows and ±inf the limit of the linear extension
  (kanditioned raises an index error or gives impl-dependent values); set
  ``layer.check_finite = True`` to raise ``ValueError`` instead;
* ``visualize_all_mappings`` returns the Figure instead of calling ``plt.show()``, plots
  against the input value by default (``x_axis="control_points"`` is kanditioned's plot),
  takes ``in_vars``/``out_vars`` names, and past ``max_edges`` edges shows the most
  important ones instead of one subplot per edge;
* CUDA tensors run on kancore's CUDA kernels (on torch's current stream, with torch's
  allocator, under ``torch.compile`` and CUDA graph capture). ``layer.deterministic = True``
  (or ``torch.use_deterministic_algorithms(True)``) makes the control-point gradient bitwise
  repeatable on CUDA; the default uses a faster reduction whose float rounding can vary run
  to run. The CPU, the forward pass and the input gradient are always deterministic.

As in kanditioned's code, ``init="identity"`` makes each edge the line ``(K-1)/W * x``, which is
``y = x`` only when ``num_control_points - 1 == spline_width``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _ops, portable
from .symbolic_edges import SymbolicLayerMixin

_torch_ops = _ops.torch_ops()  # registers the kancore:: custom ops

INITS = ("random_normal", "identity", "zero")
VARIANTS = ("B-spline", "parallel_scan", "DCT")


class C0GridReport(NamedTuple):
    """What ``KANLayer.update_grid`` did."""

    features_kept: int    #: features with < 2 distinct finite samples: domain unchanged
    samples_skipped: int  #: non-finite (sample, feature) values left out of the fit
    samples_outside: int  #: finite values outside their new domain (only with quantile > 0)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _one_of(name: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {set(allowed)}, got {value!r}")
    return value


def dct_matrix(K: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix M (K, K): a = M c are the coefficients of c, and c = M.T a."""
    n = torch.arange(K, dtype=torch.float64)
    M = torch.cos(math.pi * (n.view(1, -1) + 0.5) * n.view(-1, 1) / K)
    M[0] *= math.sqrt(1.0 / K)
    M[1:] *= math.sqrt(2.0 / K)
    return M


class KANLayer(SymbolicLayerMixin, nn.Module):
    """A KAN layer whose edges are piecewise-linear splines on ``num_control_points`` uniform
    control points spanning ``[-spline_width/2, spline_width/2]``, extended linearly outside.

    ``y[..., o] = sum_i phi_{i,o}(x[..., i])``; input ``(..., in_features)``, output
    ``(..., out_features)``; no bias. The math: docs/layer_math.md.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths (>= 1).
    init : {"random_normal", "identity", "zero"}
        The initial edges, drawn as kanditioned draws them (the same torch seed gives the same
        weights): ``"random_normal"``, straight lines whose slopes have unit-norm columns over
        the inputs; ``"identity"`` (needs ``in_features == out_features``), edge ``i -> i`` the
        line ``(K-1)/W * x``, the others zero; ``"zero"``, all zero. The lines rise by one per
        control point (``kancore.KAN(kind="c0")`` rescales them to slope 1 by default).
    num_control_points : int
        K >= 2, the control points per edge.
    spline_width : float
        W > 0, the span of the control points.
    variant : {"B-spline", "parallel_scan", "DCT"}
        How the control points are stored: ``"B-spline"``, directly as ``kan_weight (in, K,
        out)``; ``"parallel_scan"``, as ramps ``r_weight``/``l_weight`` whose cumulative sums
        give them; ``"DCT"``, as orthonormal DCT-II coefficients ``dct_weight`` along K. All
        compute the same kind of function; the parametrisation changes how gradients act.
    impl : {"embedding_bag", "embedding", "sparse_matmul_csr"}
        The native path: ``"embedding_bag"`` and ``"embedding"`` the fused gather kernel,
        ``"sparse_matmul_csr"`` a CSR sparse x dense product. Same function; read at every call.
    device : torch.device or str, optional
        Where the parameters live (CPU or CUDA).
    dtype : torch.dtype, optional
        ``torch.float32`` (default) or ``torch.float64``.

    Attributes
    ----------
    check_finite : bool
        Raise ``ValueError`` on NaN/±inf inputs instead of propagating them.
    deterministic : bool
        CUDA: a fixed-order reduction for the control-point gradient (bitwise repeatable).

    Examples
    --------
    >>> import torch, kancore
    >>> layer = kancore.KANLayer(3, 2, num_control_points=8)
    >>> layer(torch.zeros(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "random_normal",
        num_control_points: int = 32,
        spline_width: float = 4.0,
        variant: str = "B-spline",
        impl: str = "embedding_bag",
        *,
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        in_features = _positive_int("in_features", in_features)
        out_features = _positive_int("out_features", out_features)
        _one_of("init", init, INITS)
        if init == "identity" and in_features != out_features:
            raise ValueError("'identity' init requires in_features == out_features.")
        num_control_points = _positive_int("num_control_points", num_control_points)
        if num_control_points < 2:
            raise ValueError(f"num_control_points must be >= 2, got {num_control_points}")
        if (isinstance(spline_width, bool) or not isinstance(spline_width, numbers.Real)
                or not math.isfinite(spline_width) or spline_width <= 0):
            raise ValueError(f"spline_width must be a finite number > 0, got {spline_width!r}")
        _one_of("variant", variant, VARIANTS)
        _ops.check_impl(impl)
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        _ops.check_spline_width(float(spline_width), num_control_points,
                                "float64" if dtype == torch.float64 else "float32")

        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.num_control_points = num_control_points
        self.spline_width = spline_width
        self.variant = variant
        self.impl = impl
        self.check_finite = False
        self.deterministic = False  # CUDA: fixed-order reduction for the control-point gradient
        self.symbolic = None  # a SymbolicEdges once an edge is fixed (fix_symbolic)

        K = num_control_points
        self.register_buffer("local_bias", torch.arange(K, device=device).view(1, -1, 1))
        self.register_buffer("feature_offset", torch.arange(in_features, device=device).view(1, -1) * K)
        # Per-feature input affine x * input_scale + input_offset set by update_grid; None (not
        # in the state_dict, kanditioned's layout) until then.
        self.register_buffer("input_scale", None)
        self.register_buffer("input_offset", None)
        if variant == "DCT":
            # Orthonormal DCT-II along K; not saved (it is a function of K).
            self.register_buffer("dct_basis", dct_matrix(K).to(device=device, dtype=dtype or torch.float32),
                                 persistent=False)
        self._init_parameters(device, dtype or torch.float32)

    # -- parameters -----------------------------------------------------------------------------

    def _initial_slopes(self) -> torch.Tensor:
        """(in, out) slopes of the initial straight lines, drawn exactly as kanditioned does so a
        given torch seed gives the same weights."""
        if self.init == "random_normal":
            return F.normalize(torch.randn(self.in_features, self.out_features), dim=0)
        if self.init == "identity":
            return torch.eye(self.in_features)
        return torch.zeros(self.in_features, self.out_features)

    def _init_parameters(self, device, dtype) -> None:
        K, I, O = self.num_control_points, self.in_features, self.out_features
        slopes = self._initial_slopes()
        if self.variant in ("B-spline", "DCT"):
            centred = torch.arange(K, dtype=torch.float32).view(1, -1, 1) - (K - 1) / 2.0
            weight = centred * slopes.unsqueeze(1)
            if self.variant == "B-spline":
                self.kan_weight = nn.Parameter(weight.to(device=device, dtype=dtype))
            else:  # the same straight lines, stored as DCT coefficients along K
                coef = torch.einsum("jk,iko->ijo", dct_matrix(K), weight.double())
                self.dct_weight = nn.Parameter(coef.to(device=device, dtype=dtype))
        else:  # parallel_scan: C[k] = sum_l r[l] max(k-l, 0) + sum_l l[l] max(l-k, 0)
            # r[0] = s/2 and l[K-1] = -s/2 give C[k] = s * (k - (K-1)/2): the B-spline init's lines.
            r = torch.zeros(I, K, O)
            l = torch.zeros(I, K, O)
            r[:, 0, :] = slopes / 2
            l[:, K - 1, :] = -slopes / 2
            self.r_weight = nn.Parameter(r.to(device=device, dtype=dtype))
            self.l_weight = nn.Parameter(l.to(device=device, dtype=dtype))

    def _table(self) -> torch.Tensor:
        """The control-point table C as (in, K, out)."""
        if self.variant == "B-spline":
            return self.kan_weight
        if self.variant == "DCT":  # C = M^T a along K
            return torch.einsum("jk,ijo->iko", self.dct_basis, self.dct_weight)
        k = self.local_bias.to(self.r_weight.dtype)  # (1, K, 1)
        # Right ramps: sum_{l<=k} r[l] (k - l);  left ramps: sum_{l>=k} lw[l] (l - k).
        right = k * torch.cumsum(self.r_weight, dim=1) - torch.cumsum(self.r_weight * k, dim=1)
        rev = lambda v: torch.flip(torch.cumsum(torch.flip(v, dims=(1,)), dim=1), dims=(1,))  # noqa: E731
        left = rev(self.l_weight * k) - k * rev(self.l_weight)
        return right + left

    def _symbolic_reference(self) -> torch.Tensor:
        return getattr(self, {"B-spline": "kan_weight", "DCT": "dct_weight"}.get(self.variant, "r_weight"))

    def _numeric_table(self) -> torch.Tensor:
        """The table the numeric edges use: ``_table()`` with the fixed (symbolic) edges zeroed."""
        table = self._table()
        if self._symbolic_active():
            table = table * self.symbolic.numeric_mask.unsqueeze(1)
        return table

    def get_interp_tensor(self) -> torch.Tensor:
        """The control-point table as ``(in_features * num_control_points, out_features)``; row
        ``i * K + k`` holds the values of edges ``i -> *`` at control point ``k`` (kanditioned's
        method)."""
        return self._table().reshape(-1, self.out_features)

    # -- forward --------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output.

        Parameters
        ----------
        x : torch.Tensor
            ``(..., in_features)``, the layer's dtype and device. NaN gives NaN in the affected
            output rows, ±inf the limit of the linear extension (``check_finite`` raises).

        Returns
        -------
        torch.Tensor
            ``(..., out_features)``.
        """
        table = self._numeric_table()
        x = _ops.autocast_input(x, table.dtype)
        if not torch.jit.is_tracing():  # a trace (TorchScript, ONNX) would freeze these shape tests
            _torch_ops.check_operands(x, table)  # the op re-checks impl and operands itself
        if self.check_finite and not bool(torch.isfinite(x).all()):
            raise ValueError("KANLayer input contains NaN or ±inf (check_finite=True)")
        lead = x.shape[:-1]
        raw = x.reshape(-1, self.in_features)
        if self.input_scale is not None:
            x = torch.addcmul(self.input_offset, x, self.input_scale)
        if torch.onnx.is_in_onnx_export():  # standard operators only (kancore/portable.py)
            y = portable.c0_forward(x.reshape(-1, self.in_features), table, float(self.spline_width),
                                    (self.in_features, self.num_control_points, self.out_features))
        else:
            y = _torch_ops.c0_forward(x.reshape(-1, self.in_features), table, float(self.spline_width), self.impl,
                                      bool(self.deterministic), _ops.matmul_precision(x, table.dtype))
        if self._symbolic_active():  # fixed edges read the raw input, before the input affine
            y = y + self.symbolic(raw)
        # A batch of rows returns the op's own tensor, not a view of it (FSDP warns on views).
        return y if len(lead) == 1 else y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        p = {"B-spline": "kan_weight", "DCT": "dct_weight"}.get(self.variant, "r_weight")
        p = getattr(self, p)
        text = (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"num_control_points={self.num_control_points}, spline_width={self.spline_width}, "
            f"variant={self.variant!r}, impl={self.impl!r}"
        )
        if p.dtype != torch.float32:
            text += f", dtype={p.dtype}"
        if p.device.type != "cpu":
            text += f", device={p.device}"
        return text

    def smoothness_loss(self) -> torch.Tensor:
        """Mean over edges of sum_k (C[k+1] - 2 C[k] + C[k-1])^2 on the control points (native,
        with its gradient). With variant="DCT" its gradient reaches the DCT coefficients, where
        the penalty is nearly diagonal (well conditioned)."""
        table = self._numeric_table()
        value, _ = _ops.torch_bspline_ops().smoothness(table, self.in_features, self.num_control_points, self.out_features)
        return value

    # -- grid adaptation -------------------------------------------------------------------------

    @torch.no_grad()
    def update_grid(self, x: torch.Tensor, num_control_points: Optional[int] = None, *,
                    quantile: float = 0.0, margin: float = 0.01, ridge: float = 1e-6) -> C0GridReport:
        """Fit each feature's spline domain to the samples x (..., in_features) and optionally
        change ``num_control_points``, keeping the layer's function.

        A feature's K control points are spread uniformly over [q, 1-q] quantiles of its finite
        samples (q = ``quantile``; 0 means min and max), widened by ``margin`` times that width on
        each side. The new control points are the least-squares fit to the old function at the
        samples inside the domain, plus a pull of relative weight ``ridge`` toward the old
        function at the new points (it fills intervals no sample reaches and changes nothing when
        the old function is representable, in which case the result is exact to rounding).
        Computed natively in float64. When K changes the parameters are replaced: build the
        optimizer afterwards. Features with fewer than 2 distinct finite samples keep their
        domain.

        Parameters
        ----------
        x : torch.Tensor
            Samples ``(..., in_features)``.
        num_control_points : int, optional
            The new K (default: unchanged).
        quantile : float
            q in [0, 0.5): the domain spans the [q, 1-q] quantiles.
        margin : float
            Widening of the domain on each side, relative to its width.
        ridge : float
            Relative weight of the pull toward the old function.

        Returns
        -------
        C0GridReport
            ``features_kept``, ``samples_skipped``, ``samples_outside``.
        """
        if x.shape[-1:] != (self.in_features,) or x.dim() < 1:
            raise ValueError(f"expected x of shape (..., {self.in_features}), got {tuple(x.shape)}")
        K_new = self.num_control_points if num_control_points is None else _positive_int(
            "num_control_points", num_control_points)
        table = self._table().detach()
        dt = table.dtype
        xs = x.detach().reshape(-1, self.in_features).to("cpu", dt).numpy()
        scale = None if self.input_scale is None else self.input_scale.detach().cpu().numpy()
        offset = None if self.input_offset is None else self.input_offset.detach().cpu().numpy()
        new_table, new_scale, new_offset, report = _ops.c0_fit_domain_arrays(
            xs, table.cpu().numpy(), scale, offset, self.spline_width, K_new, quantile, margin, ridge)
        self._set_table(torch.from_numpy(new_table))
        device = table.device
        for name, value in (("input_scale", new_scale), ("input_offset", new_offset)):
            value = torch.from_numpy(value).to(device)
            current = getattr(self, name)
            if current is not None and current.shape == value.shape:
                current.copy_(value)  # in place: DDP, CUDA graphs and optimizers keep their references
            else:
                setattr(self, name, value)
        return C0GridReport(*report)

    @torch.no_grad()
    def refine(self, num_control_points: int) -> None:
        """Change K over the same domain, keeping the function.

        Parameters
        ----------
        num_control_points : int
            The new K. Exact when ``num_control_points - 1`` is a multiple of ``K - 1`` (every old
            point is kept), else the least-squares fit over the domain. Parameters are replaced:
            build the optimizer afterwards.
        """
        K_new = _positive_int("num_control_points", num_control_points)
        table = self._table().detach()
        new_table = _ops.c0_refine_arrays(table.cpu().numpy(), self.spline_width, K_new)
        self._set_table(torch.from_numpy(new_table))

    def _apply(self, fn, *args, **kwargs):
        # .double(), .to(...) etc.: rebuild the DCT basis from float64 instead of converting a
        # float32 copy, so a float64 DCT layer is orthonormal to float64 precision.
        out = super()._apply(fn, *args, **kwargs)
        if self.variant == "DCT":
            self.dct_basis = dct_matrix(self.num_control_points).to(
                device=self.dct_weight.device, dtype=self.dct_weight.dtype)
        return out

    def _resize(self, K: int) -> None:
        """Rebuild the K-dependent buffers and (zeroed) parameters for K control points."""
        if K < 2:
            raise ValueError(f"num_control_points must be >= 2, got {K}")
        ref = self._table()
        device, dtype = ref.device, ref.dtype
        I, O = self.in_features, self.out_features
        self.num_control_points = K
        self.local_bias = torch.arange(K, device=device).view(1, -1, 1)
        self.feature_offset = torch.arange(I, device=device).view(1, -1) * K
        zeros = lambda: nn.Parameter(torch.zeros(I, K, O, device=device, dtype=dtype))  # noqa: E731
        if self.variant == "B-spline":
            self.kan_weight = zeros()
        elif self.variant == "DCT":
            self.dct_basis = dct_matrix(K).to(device=device, dtype=dtype)
            self.dct_weight = zeros()
        else:
            self.r_weight, self.l_weight = zeros(), zeros()

    def _set_table(self, table: torch.Tensor) -> None:
        """Make the control-point table (in, K', out) the layer's, in its variant's parameters."""
        K = table.shape[1]
        if K != self.num_control_points:
            self._resize(K)
        ref = self._table()
        table = table.to(device=ref.device, dtype=ref.dtype)
        if self.variant == "B-spline":
            self.kan_weight.copy_(table)
        elif self.variant == "DCT":
            self.dct_weight.copy_(torch.einsum("jk,iko->ijo", self.dct_basis, table))
        else:
            # One exact parallel-scan form: second differences as right ramps, plus the line
            # through C[0] and C[1] from r[0] and l[K-1].
            r = torch.zeros_like(table)
            l = torch.zeros_like(table)
            r[:, 1:K - 1] = table[:, 2:] - 2 * table[:, 1:-1] + table[:, :-2]
            l[:, K - 1] = table[:, 0] / (K - 1)
            r[:, 0] = table[:, 1] - table[:, 0] * (K - 2) / (K - 1)
            self.r_weight.copy_(r)
            self.l_weight.copy_(l)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        self._prepare_symbolic_load(state_dict, prefix)
        # A saved layer may have another K (refine/update_grid) or a fitted input affine: take
        # the shapes from the state_dict so such checkpoints load into a freshly built layer.
        name = {"B-spline": "kan_weight", "DCT": "dct_weight"}.get(self.variant, "r_weight")
        saved = state_dict.get(prefix + name)
        if (isinstance(saved, torch.Tensor) and saved.dim() == 3
                and saved.shape[0] == self.in_features and saved.shape[2] == self.out_features
                and saved.shape[1] != self.num_control_points and saved.shape[1] >= 2):
            self._resize(int(saved.shape[1]))
        for key in ("input_scale", "input_offset"):
            if prefix + key in state_dict and getattr(self, key) is None:
                ref = self._table()
                setattr(self, key, torch.empty(self.in_features, device=ref.device, dtype=ref.dtype))
            elif (prefix + key not in state_dict and getattr(self, key) is not None
                  and prefix + name in state_dict):
                setattr(self, key, None)  # the saved layer (its weights are here) has no fitted domain
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # -- inspection -----------------------------------------------------------------------------

    @torch.no_grad()
    def edge_functions(self, n: int = 64, x: Optional[torch.Tensor] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Sample every edge function in float64.

        Parameters
        ----------
        n : int
            Samples per edge.
        x : torch.Tensor, optional
            Inputs ``(..., in_features)``; when given, each feature is sampled over the range of
            its finite values instead of the control points' span (mapped back through a fitted
            domain).

        Returns
        -------
        xs : numpy.ndarray
            ``(in_features, n)`` input values, in the layer's input units.
        ys : numpy.ndarray
            ``(in_features, out_features, n)``: ``ys[i, o]`` is edge ``i -> o`` at ``xs[i]``.
        """
        I, O = self.in_features, self.out_features
        K, W = self.num_control_points, float(self.spline_width)
        table = self._table().detach().cpu().double().numpy()  # (I, K, O)
        lo, hi = self.control_point_inputs()[:, [0, -1]].T
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        if x is not None:
            xd = x.detach().reshape(-1, I).cpu().double().numpy()
            xd = np.where(np.isfinite(xd), xd, np.nan)
            if np.isfinite(xd).any(axis=0).all():
                lo, hi = np.nanmin(xd, 0), np.nanmax(xd, 0)
        xs = np.linspace(lo, hi, n, axis=1)  # (I, n)
        u = xs
        if self.input_scale is not None:
            u = xs * self.input_scale.detach().cpu().double().numpy()[:, None] \
                + self.input_offset.detach().cpu().double().numpy()[:, None]
        # Linear interpolation that extends the end segments, as the kernels do.
        t = (u + W / 2) * (K - 1) / W
        k = np.clip(np.floor(t), 0, K - 2).astype(int)
        f = t - k
        ys = np.empty((I, O, n))
        for i in range(I):
            ys[i] = ((1 - f[i])[:, None] * table[i, k[i]] + f[i][:, None] * table[i, k[i] + 1]).T
        return self._overlay_symbolic(xs, ys)

    @torch.no_grad()
    def control_point_inputs(self) -> np.ndarray:
        """``(in_features, num_control_points)``: the input value at each control point of each
        feature (the kernels' uniform points over ``[-W/2, W/2]``, mapped back through a fitted
        domain)."""
        K, W = self.num_control_points, float(self.spline_width)
        points = np.tile(-W / 2 + np.arange(K) * W / (K - 1), (self.in_features, 1))
        if self.input_scale is None:
            return points
        scale = self.input_scale.detach().cpu().double().numpy()[:, None]
        offset = self.input_offset.detach().cpu().double().numpy()[:, None]
        return (points - offset) / scale

    @torch.no_grad()
    def edge_importance(self) -> np.ndarray:
        """``(out_features, in_features)`` importance of each edge without data: the mean
        ``|C - mean C|`` over its control points (how much the edge varies)."""
        t = self._table().detach().cpu().double()
        return (t - t.mean(1, keepdim=True)).abs().mean(1).T.numpy()

    def visualize_all_mappings(self, save_path: Optional[str] = None, *, x_axis: str = "input",
                               in_vars: Optional[Sequence[str]] = None,
                               out_vars: Optional[Sequence[str]] = None, max_edges: int = 64,
                               x: Optional[torch.Tensor] = None) -> Any:
        """Plot every edge's function on an in x out grid of subplots and return the Figure.

        Parameters
        ----------
        save_path : str or path, optional
            When truthy, the figure is also saved there at 300 dpi (less for a large figure: at
            most 3600 pixels on a side).
        x_axis : {"input", "control_points"}
            ``"input"`` (the default): each edge's control points against the input value at
            each of them (``control_point_inputs()``, so in the data's units after
            ``update_grid``); ``"control_points"`` (kanditioned's plot): against the
            control-point index.
        in_vars, out_vars : sequence of str, optional
            Names of the inputs and outputs, used in the subplot titles and axis labels
            (lengths checked).
        max_edges : int
            A layer with more edges shows only its ``max_edges`` most important edges (by
            ``edge_importance()``, or by the edge scales on ``x`` when given), most important
            first; the title says so. The figure is at most 24 inches on a side.
        x : torch.Tensor, optional
            Samples ``(..., in_features)``. With them the edges are ranked by pykan's edge scale
            on ``x`` (``edge_scales``), and with ``x_axis="input"`` each edge is drawn over the
            range of its input in ``x`` (``edge_functions``).

        Returns
        -------
        matplotlib.figure.Figure
            Not registered with pyplot, so it works headless and a notebook shows it once (as
            the cell's value); call ``fig.savefig`` or ``display(fig)`` to show it elsewhere.
        """
        from . import _plotting

        if x_axis not in ("control_points", "input"):
            raise ValueError(f"x_axis must be 'control_points' or 'input', got {x_axis!r}")
        I, K = self.in_features, self.num_control_points
        table = self._table().detach().cpu().double().numpy()  # (I, K, O)
        if x_axis == "control_points":
            xs, ys, xlabel = np.tile(np.arange(K), (I, 1)), table.transpose(0, 2, 1), "Control Points"
        elif x is not None:
            (xs, ys), xlabel = self.edge_functions(n=200, x=x), "Input"
        else:
            xs, ys, xlabel = self.control_point_inputs(), table.transpose(0, 2, 1), "Input"
        # Edge scales on x only when they pick a subset (they cost a pass over the samples).
        importance, label = _plotting.edge_ranking(self, x if I * self.out_features > max_edges else None)
        return _plotting.edge_grid(xs, ys, xlabel, save_path, in_vars=in_vars, out_vars=out_vars,
                                   importance=importance, importance_label=label, max_edges=max_edges,
                                   name_x_axis=x_axis == "input")

    # -- sample-based regularisation (pykan) ----------------------------------------------------

    def edge_scale_loss(self, x: torch.Tensor, lamb_l1: float = 1.0, lamb_entropy: float = 2.0,
                        lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0) -> torch.Tensor:
        """pykan's sample-based regulariser of this layer for its input x (..., in_features),
        computed natively (no (batch, out, in) tensor) and differentiable wrt x and the weights.

        With A[o, i] = std_b phi_oi(x[b, i]) / (std_b x[b, i] + 0.1) (unbiased stds over the
        flattened batch, phi_oi the edge's spline):
        ``lamb_l1 * sum(A) + lamb_entropy * (row + column entropies of A)``
        ``+ (lamb_coef * sum|C| + lamb_coefdiff * sum|diff_k C|) / out_features`` on the control
        points C (pykan's normalisation). Needs at least 2 samples; NaN/±inf in x gives a NaN
        loss. CPU only. After ``update_grid`` the layer sees ``x * input_scale + input_offset``,
        and A is measured on that mapped input. The exact formula: docs/layer_math.md
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
        table = self._numeric_table()
        x = _ops.autocast_input(x, table.dtype)
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"expected x of shape (..., {self.in_features}), got {tuple(x.shape)}")
        if self.input_scale is not None:
            # A fitted domain: the edge functions act on x * scale + offset, so measure them there
            # (the denominator's std(x) is then that of the mapped input).
            x = torch.addcmul(self.input_offset, x, self.input_scale)
        return _ops.torch_edge_scale_ops().c0_loss(x.reshape(-1, self.in_features), table,
                                              float(self.spline_width), *lambs)
