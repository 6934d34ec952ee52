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
* inputs may have any number of leading dimensions, like ``nn.Linear``;
* NaN inputs give NaN on the affected output rows and ±inf the limit of the linear extension
  (kanditioned raises an index error or gives impl-dependent values); set
  ``layer.check_finite = True`` to raise ``ValueError`` instead;
* ``visualize_all_mappings`` returns the Figure instead of calling ``plt.show()``;
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
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _ops

_torch_ops = _ops.torch_ops()  # registers the kancore:: custom ops

INITS = ("random_normal", "identity", "zero")
VARIANTS = ("B-spline", "parallel_scan", "DCT")


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


class KANLayer(nn.Module):
    """A KAN layer whose edges are piecewise-linear splines on ``num_control_points`` uniform
    control points spanning ``[-spline_width/2, spline_width/2]``, extended linearly outside.

    ``y[..., o] = sum_i phi_{i,o}(x[..., i])``; input ``(..., in_features)``, output
    ``(..., out_features)``; no bias.
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
        device=None,
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

        self.in_features = in_features
        self.out_features = out_features
        self.init = init
        self.num_control_points = num_control_points
        self.spline_width = spline_width
        self.variant = variant
        self.impl = impl
        self.check_finite = False
        self.deterministic = False  # CUDA: fixed-order reduction for the control-point gradient

        K = num_control_points
        self.register_buffer("local_bias", torch.arange(K, device=device).view(1, -1, 1))
        self.register_buffer("feature_offset", torch.arange(in_features, device=device).view(1, -1) * K)
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

    def get_interp_tensor(self) -> torch.Tensor:
        """The control-point table as (in_features * num_control_points, out_features);
        row ``i * K + k`` holds the values of edges ``i -> *`` at control point ``k``."""
        return self._table().reshape(-1, self.out_features)

    # -- forward --------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        table = self._table()
        _torch_ops.check_operands(x, table)  # the op re-checks impl and operands itself
        if self.check_finite and not bool(torch.isfinite(x).all()):
            raise ValueError("KANLayer input contains NaN or ±inf (check_finite=True)")
        lead = x.shape[:-1]
        y = _torch_ops.c0_forward(x.reshape(-1, self.in_features), table, float(self.spline_width), self.impl,
                                  bool(self.deterministic))
        return y.reshape(*lead, self.out_features)

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
        from .kan_linear import _ops_bs

        table = self._table()
        value, _ = _ops_bs.smoothness(table, self.in_features, self.num_control_points, self.out_features)
        return value

    # -- inspection -----------------------------------------------------------------------------

    def visualize_all_mappings(self, save_path=None, *, x_axis: str = "control_points", max_edges: int = 1024):
        """Plot every edge's spline on an in x out grid of subplots and return the Figure.

        ``x_axis="control_points"`` (kanditioned's plot) puts the control-point index on the x
        axis; ``x_axis="input"`` puts the input value there. With a truthy ``save_path`` the
        figure is saved at 300 dpi. The Figure is not registered with pyplot, so it works
        headless and a notebook shows it once (as the cell's value); call ``fig.savefig`` or
        ``display(fig)`` to show it elsewhere.
        """
        from ._plotting import plot_c0_mappings

        return plot_c0_mappings(self, save_path=save_path, x_axis=x_axis, max_edges=max_edges)
