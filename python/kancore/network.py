"""``KAN``: a stack of KAN layers (efficient-kan's ``KAN``, extended to kanditioned's C0 layers and
LayerNorm), the network that ``kancore.fit``, ``kancore.save`` and ``kancore.plot_network`` take.

This module sits above the layers (``kan_layer``, ``kan_linear``) and below file I/O, training
and inspection: it imports the former and never the latter.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from . import _ops
from .kan_layer import KANLayer
from .kan_linear import KANLinear

__all__ = ["KAN", "KINDS"]

KINDS = ("bspline", "c0")

# Keyword arguments that only one layer kind reads, with the value each takes when not given.
_BSPLINE_DEFAULTS = {"grid_size": 5, "spline_order": 3, "scale_noise": 0.1, "scale_base": 1.0,
                     "scale_spline": 1.0, "base_activation": torch.nn.SiLU, "grid_eps": 0.02,
                     "grid_range": (-1, 1), "spline_scaler_init": "kaiming"}
_C0_DEFAULTS = {"num_control_points": 32, "spline_width": 4.0, "variant": "B-spline",
                "init": "random_normal", "impl": "embedding_bag", "init_scale": "unit"}
INIT_SCALES = ("unit", "kanditioned")

KANLayerType = Union[KANLayer, KANLinear]


class KAN(nn.Module):
    """A KAN: layers of widths ``layers_hidden[j] -> layers_hidden[j+1]``, optionally with
    LayerNorm between them.

    The positional arguments, their defaults, ``forward(x, update_grid=False)``,
    ``regularization_loss`` and ``refine`` are efficient-kan's, and the state_dict names are
    ``layers.{j}.*`` (and ``norms.{j}.*``).

    Parameters
    ----------
    layers_hidden : sequence of int
        The widths, input first: ``[2, 8, 1]`` is a 2 -> 8 -> 1 network.
    grid_size, spline_order, scale_noise, scale_base, scale_spline, base_activation, grid_eps, grid_range
        B-spline layers only (``kind="bspline"``): efficient-kan's ``KANLinear`` arguments, with
        its defaults (5, 3, 0.1, 1.0, 1.0, ``torch.nn.SiLU``, 0.02, (-1, 1)). Passing any of them
        with ``kind="c0"`` raises ``ValueError``.
    spline_scaler_init : {"kaiming", "constant"}
        B-spline layers only: ``KANLinear``'s. ``scale_noise=0.3, spline_scaler_init="constant"``
        is pykan's initialisation (better for fitting formulas).
    kind : {"bspline", "c0"}
        ``"bspline"``: efficient-kan's ``KANLinear`` layers. ``"c0"``: kanditioned's piecewise-
        linear ``KANLayer``, built from ``num_control_points``, ``spline_width``, ``variant``,
        ``init`` and ``impl``; ``update_grid=True`` then fits each layer's input domain and
        ``refine(K)`` changes its control points.
    layernorm : bool
        Put ``nn.LayerNorm(width, eps=layernorm_eps)`` after every layer but the last.
    layernorm_eps : float
        LayerNorm's epsilon.
    num_control_points, spline_width, variant, init, impl
        C0 layers only (``kind="c0"``): ``KANLayer``'s arguments (defaults 32, 4.0,
        ``"B-spline"``, ``"random_normal"``, ``"embedding_bag"``). Passing any of them with
        ``kind="bspline"`` raises ``ValueError``.
    init_scale : {"unit", "kanditioned"}
        C0 layers only. ``"unit"`` (the default) scales the initial lines to slope 1 in input
        units (``init="random_normal"``: ``y_o = sum_i s_io x_i`` with unit-norm columns of s),
        so values keep their scale through the stack; ``"kanditioned"`` keeps kanditioned's
        lines, which rise by one per control point (slope ``(K-1)/W``, 7.75 for the default
        K=32, W=4: a 2-layer stack starts 60x too steep). Chosen by measurement
        (``benchmarks/c0_defaults.py``, table in the README).
    checkpoint : bool or int
        Gradient checkpointing (``torch.utils.checkpoint``, non-reentrant) while gradients are
        recorded: ``True`` runs the stack in segments of ``ceil(sqrt(L))`` of its ``L`` layers,
        an int ``n`` in segments of ``n`` layers. Only each segment's input is kept for the
        backward pass, which recomputes the segment: one more forward pass for less activation
        memory. A layer on its own keeps only its input, so segments of one layer save nothing
        (except LayerNorm's buffers). ``False`` (the default) keeps every activation.
    device, dtype
        Where and in which floating type (float32 or float64) the parameters live.

    Examples
    --------
    >>> import torch, kancore
    >>> model = kancore.KAN([2, 8, 1])
    >>> model(torch.zeros(4, 2)).shape
    torch.Size([4, 1])
    """

    def __init__(self, layers_hidden: Sequence[int], grid_size: Optional[int] = None,
                 spline_order: Optional[int] = None, scale_noise: Optional[float] = None,
                 scale_base: Optional[float] = None, scale_spline: Optional[float] = None,
                 base_activation: Any = None, grid_eps: Optional[float] = None,
                 grid_range: Optional[Sequence[float]] = None, *, kind: str = "bspline",
                 layernorm: bool = False, layernorm_eps: float = 1e-5,
                 num_control_points: Optional[int] = None, spline_width: Optional[float] = None,
                 variant: Optional[str] = None, init: Optional[str] = None, impl: Optional[str] = None,
                 init_scale: Optional[str] = None, spline_scaler_init: Optional[str] = None,
                 checkpoint: Union[bool, int] = False,
                 device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        widths = list(layers_hidden)
        if len(widths) < 2:
            raise ValueError(f"layers_hidden needs at least two widths, got {widths}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(layernorm, bool):
            raise ValueError(f"layernorm must be True or False, got {layernorm!r}")
        if not (isinstance(layernorm_eps, numbers.Real) and math.isfinite(layernorm_eps) and layernorm_eps > 0):
            raise ValueError(f"layernorm_eps must be a finite number > 0, got {layernorm_eps!r}")
        given = {"grid_size": grid_size, "spline_order": spline_order, "scale_noise": scale_noise,
                 "scale_base": scale_base, "scale_spline": scale_spline, "base_activation": base_activation,
                 "grid_eps": grid_eps, "grid_range": grid_range, "num_control_points": num_control_points,
                 "spline_width": spline_width, "variant": variant, "init": init, "impl": impl,
                 "init_scale": init_scale, "spline_scaler_init": spline_scaler_init}
        own, other = (_BSPLINE_DEFAULTS, _C0_DEFAULTS) if kind == "bspline" else (_C0_DEFAULTS, _BSPLINE_DEFAULTS)
        stray = [name for name in other if given[name] is not None]
        if stray:
            raise ValueError(f"kind={kind!r} does not take {', '.join(stray)} (arguments of the "
                             f"{'c0' if kind == 'bspline' else 'bspline'} layers)")
        a = {name: own[name] if given[name] is None else given[name] for name in own}
        if not (isinstance(checkpoint, bool) or (isinstance(checkpoint, int) and checkpoint >= 1)):
            raise ValueError(f"checkpoint must be True, False or a segment length >= 1, got {checkpoint!r}")
        self.checkpoint = checkpoint
        self.kind = kind
        self.layernorm = layernorm
        pairs = list(zip(widths[:-1], widths[1:]))
        self.layers = nn.ModuleList()
        if kind == "bspline":
            self.grid_size = a["grid_size"]
            self.spline_order = a["spline_order"]
            for i, o in pairs:
                self.layers.append(KANLinear(i, o, device=device, dtype=dtype, **a))
        else:
            if a["init_scale"] not in INIT_SCALES:
                raise ValueError(f"init_scale must be one of {INIT_SCALES}, got {a['init_scale']!r}")
            self.num_control_points = a["num_control_points"]
            for i, o in pairs:
                layer = KANLayer(i, o, a["init"], num_control_points=a["num_control_points"],
                                 spline_width=a["spline_width"], variant=a["variant"],
                                 impl=a["impl"], device=device, dtype=dtype)
                if a["init_scale"] == "unit":
                    # kanditioned's lines rise by one per control point, slope (K-1)/W in input
                    # units: a stack multiplies that per layer. Slope 1 keeps the scale.
                    with torch.no_grad():
                        layer._set_table(layer._table() * (layer.spline_width / (layer.num_control_points - 1)))
                self.layers.append(layer)
        # Always present (empty without layernorm) so the attribute exists for every network.
        self.norms = nn.ModuleList(
            nn.LayerNorm(o, eps=float(layernorm_eps), device=device, dtype=dtype) for o in widths[1:-1]
        ) if layernorm else nn.ModuleList()

    @property
    def widths(self) -> List[int]:
        """The widths, input first (``layers_hidden``)."""
        return [self.layers[0].in_features] + [layer.out_features for layer in self.layers]

    def forward(self, x: torch.Tensor, update_grid: bool = False) -> torch.Tensor:
        """The network's output for ``x`` of shape ``(..., widths[0])``.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(..., in_features)`` in the network's dtype and device.
        update_grid : bool
            First adapt each layer's grid to the input it receives (B-spline layers move their
            knots, C0 layers fit their input domain), keeping each layer's function.

        Returns
        -------
        torch.Tensor
            ``(..., widths[-1])``.
        """
        # torch.onnx's TorchScript exporter passes defaulted arguments as traced tensors; a trace
        # records inference, so grids never move under one.
        tracing = torch.jit.is_tracing()
        update_grid = False if tracing else bool(update_grid)
        if self.checkpoint is not False and torch.is_grad_enabled() and not tracing:
            if update_grid:  # before the checkpointed pass, so its recomputation sees the same grids
                with torch.no_grad():
                    self._run_layers(x, 0, len(self.layers), update_grid=True)
            return self._run_checkpointed(x)
        return self._run_layers(x, 0, len(self.layers), update_grid)

    def _run_layers(self, x: torch.Tensor, start: int, stop: int, update_grid: bool = False) -> torch.Tensor:
        """Layers ``start`` to ``stop - 1`` (each followed by its LayerNorm, the last layer not)."""
        last = len(self.layers) - 1
        for j in range(start, stop):
            layer = self.layers[j]
            if update_grid:
                layer.update_grid(x.reshape(-1, layer.in_features))
            x = layer(x)
            if self.layernorm and j < last:
                x = self.norms[j](x)
        return x

    def checkpoint_segment_length(self) -> int:
        """The number of layers per checkpointed segment (see ``checkpoint``); 0 when off."""
        if self.checkpoint is False:
            return 0
        if self.checkpoint is True:
            return math.isqrt(len(self.layers) - 1) + 1  # ceil(sqrt(L))
        return int(self.checkpoint)

    def _run_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        n, size = len(self.layers), self.checkpoint_segment_length()
        for start in range(0, n, size):
            # The layers draw no random numbers, so the RNG state need not be kept.
            x = checkpoint(self._run_layers, x, start, min(start + size, n), use_reentrant=False,
                           preserve_rng_state=False)
        return x

    def layer_inputs(self, x: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Run the network on ``x`` without gradients; return ``(inputs, y)`` with ``inputs[j]``
        the input layer ``j`` saw (after the previous LayerNorm) and ``y`` the output."""
        inputs = []
        last = len(self.layers) - 1
        with torch.no_grad():
            for j, layer in enumerate(self.layers):
                inputs.append(x)
                x = layer(x)
                if self.layernorm and j < last:
                    x = self.norms[j](x)
        return inputs, x

    def regularization_loss(self, regularize_activation: float = 1.0, regularize_entropy: float = 1.0) -> torch.Tensor:
        """efficient-kan's L1 + entropy penalty summed over the layers. For C0 layers it is taken
        on the control-point values (each edge's mean ``|C[i, :, o]|``).

        Parameters
        ----------
        regularize_activation, regularize_entropy : float
            Weights of the L1 term and of the entropy term.
        """
        ops = _ops.torch_bspline_ops()
        total: Optional[torch.Tensor] = None
        for layer in self.layers:
            if isinstance(layer, KANLinear):
                term = layer.regularization_loss(regularize_activation, regularize_entropy)
            else:
                w = layer._table().permute(2, 0, 1).contiguous()  # (out, in, K), the op's layout
                term, _ = ops.coefficient_l1_entropy(w, float(regularize_activation), float(regularize_entropy))
            total = term if total is None else total + term
        assert total is not None  # a KAN has at least one layer
        return total

    def smoothness_loss(self) -> torch.Tensor:
        """The layers' second-difference penalties (``smoothness_loss``) summed."""
        return sum(layer.smoothness_loss() for layer in self.layers)

    def refine(self, new_grid_size: int) -> None:
        """B-spline: ``new_grid_size`` intervals per grid; C0: ``new_grid_size`` control points.
        Keeps the function (see the layers' ``refine``); parameters are replaced, so build the
        optimizer afterwards."""
        for layer in self.layers:
            layer.refine(new_grid_size)
        if self.kind == "c0":
            self.num_control_points = new_grid_size
        else:
            self.grid_size = new_grid_size

    def edge_scale_loss(self, x: torch.Tensor, lamb_l1: float = 1.0, lamb_entropy: float = 2.0,
                        lamb_coef: float = 0.0, lamb_coefdiff: float = 0.0,
                        return_output: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """pykan's sample-based regulariser summed over the layers (as MultKAN.reg does).

        Runs the stack forward on ``x``, so each layer is measured on its own input, and
        gradients reach earlier layers through those inputs.

        Parameters
        ----------
        x : torch.Tensor
            Input ``(..., widths[0])``, at least 2 samples.
        lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff : float
            pykan's weights (see ``KANLayer.edge_scale_loss``).
        return_output : bool
            Also return the network's output, so one forward pass serves the data loss and the
            penalty.

        Returns
        -------
        torch.Tensor or (torch.Tensor, torch.Tensor)
            The loss, or ``(loss, y)``.
        """
        total: Optional[torch.Tensor] = None
        last = len(self.layers) - 1
        for j, layer in enumerate(self.layers):
            term = layer.edge_scale_loss(x, lamb_l1, lamb_entropy, lamb_coef, lamb_coefdiff)
            total = term if total is None else total + term
            x = layer(x)
            if self.layernorm and j < last:
                x = self.norms[j](x)
        assert total is not None
        return (total, x) if return_output else total

    def edge_scales(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Per layer, the ``(out, in)`` edge scales A of pykan's regulariser on that layer's input."""
        inputs, _ = self.layer_inputs(x)
        with torch.no_grad():
            return [layer.edge_scales(h) for layer, h in zip(self.layers, inputs)]

    def visualize_all_mappings(self, save_path: Optional[str] = None, *, layer: int = 0, **options: Any) -> Any:
        """Layer ``layer``'s ``visualize_all_mappings`` figure.

        Parameters
        ----------
        save_path : str or path, optional
            When truthy, the figure is also saved there.
        layer : int
            Which layer (negative indices count from the end).
        **options
            Passed to the layer's ``visualize_all_mappings``: ``x_axis``, ``in_vars``/``out_vars``
            (names of *that layer's* inputs and outputs: the network's inputs for ``layer=0``,
            its outputs for the last layer), ``max_edges`` and ``x`` (samples of that layer's
            input).

        Returns
        -------
        matplotlib.figure.Figure
        """
        if not isinstance(layer, int) or not -len(self.layers) <= layer < len(self.layers):
            raise ValueError(f"layer must be an index into the {len(self.layers)} layers, got {layer!r}")
        return self.layers[layer].visualize_all_mappings(save_path=save_path, **options)

    def extra_repr(self) -> str:
        text = f"kind={self.kind!r}, widths={self.widths}"
        return text + (f", checkpoint={self.checkpoint!r}" if self.checkpoint is not False else "")

    def __repr__(self) -> str:
        # nn.Module's repr, without the empty ``norms`` list of a network without LayerNorm.
        text = super().__repr__()
        return text.replace("\n  (norms): ModuleList()", "")
