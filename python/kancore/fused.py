"""A fused training objective: a whole ``KAN``'s forward pass, MSE loss and backward pass in one
native call (``kancore::Network``), instead of one custom op per layer under autograd.

Why: small full-batch problems (formula fitting with LBFGS, a [2, 5, 1] KAN on 1000 samples)
spend most of their time in Python, the dispatcher and autograd, not in the kernels: about
1.9 ms per loss evaluation through autograd against 0.6 ms fused (``benchmarks/vs_pykan.py``).
``kancore.fit`` uses it when ``FusedMSE.supports`` says the model and the step qualify; the
values and gradients are those of autograd to rounding (tests/python/test_fused.py).

The ``Network`` is a mirror of the torch model's configuration. Its tensors are copied in from
the torch parameters at every evaluation and the gradients copied out into their ``.grad``, so
nothing goes stale when the optimizer steps, a grid update moves knots or ``refine`` changes
shapes (the mirror is rebuilt when the configuration changes).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from . import _core
from .kan_layer import KANLayer
from .kan_linear import KANLinear
from .network import KAN

__all__ = ["FusedMSE"]


def _layer_entry(j: int, layer: nn.Module) -> Optional[Tuple[dict, Dict[str, torch.Tensor]]]:
    """(config, {file name: tensor}) of a layer kancore::Network computes the same way, or None."""
    p = f"layers.{j}."
    if getattr(layer, "symbolic", None) is not None:
        return None
    if isinstance(layer, KANLinear):
        if not (layer._native_base() and layer.enable_standalone_scale_spline):
            return None
        cfg = {"kind": "bspline", "in_features": layer.in_features, "out_features": layer.out_features,
               "grid_size": layer.grid_size, "spline_order": layer.spline_order}
        return cfg, {p + "grid": layer.grid, p + "base_weight": layer.base_weight,
                     p + "spline_weight": layer.spline_weight, p + "spline_scaler": layer.spline_scaler}
    if isinstance(layer, KANLayer):
        if layer.variant != "B-spline" or layer.check_finite:
            return None
        fitted = layer.input_scale is not None
        cfg = {"kind": "c0", "in_features": layer.in_features, "out_features": layer.out_features,
               "num_control_points": layer.num_control_points, "spline_width": float(layer.spline_width),
               "fitted_domain": fitted}
        tensors = {p + "kan_weight": layer.kan_weight}
        if fitted:
            tensors.update({p + "input_scale": layer.input_scale, p + "input_offset": layer.input_offset})
        return cfg, tensors
    return None


def _describe(model: nn.Module):
    """(signature, layer configs, tensors, eps) of a KAN the native Network mirrors, or None."""
    if type(model) is not KAN or model.checkpoint is not False or any(
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in model.modules()):
        return None  # (checkpointing asks for less memory than the native pass keeps)
    configs, tensors = [], {}
    for j, layer in enumerate(model.layers):
        entry = _layer_entry(j, layer)
        if entry is None:
            return None
        configs.append(entry[0])
        tensors.update(entry[1])
    eps = 1e-5
    if model.layernorm:
        for j, norm in enumerate(model.norms):
            if norm.weight is None or norm.bias is None or tuple(norm.normalized_shape) != (norm.weight.numel(),):
                return None
            tensors[f"norms.{j}.weight"], tensors[f"norms.{j}.bias"] = norm.weight, norm.bias
        eps = float(model.norms[0].eps) if len(model.norms) else eps
        if any(float(n.eps) != eps for n in model.norms):
            return None
    first = next(iter(tensors.values()))
    if first.device.type != "cpu" or first.dtype not in (torch.float32, torch.float64):
        return None
    if any(t.dtype != first.dtype or t.device != first.device or not t.is_contiguous() for t in tensors.values()):
        return None
    signature = (str(first.dtype), bool(model.layernorm), eps,
                 tuple(tuple(sorted(c.items())) for c in configs),
                 tuple((name, tuple(t.shape)) for name, t in tensors.items()))
    return signature, configs, tensors, eps


class FusedMSE:
    """``mean((model(x) - y)^2)`` and its gradient in one native call; see the module docstring.

    ``bind(model, x, y)`` returns the evaluation for one optimizer step (the tensors' addresses
    are read once: the optimizer changes parameters in place within a step, and grid updates or
    ``refine`` happen between steps)."""

    def __init__(self) -> None:
        self._signature = None
        self._net = None

    @staticmethod
    def supports(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> bool:
        """True when the evaluation computes exactly what autograd would for this step."""
        if torch.is_autocast_enabled("cpu") or not torch.is_grad_enabled():
            return False
        d = _describe(model)
        if d is None:
            return False
        dtype = d[2][next(iter(d[2]))].dtype
        out = model.layers[-1].out_features
        return (x.dim() == 2 and x.dtype == dtype and x.device.type == "cpu" and x.shape[1] == model.widths[0]
                and x.shape[0] >= 1 and tuple(y.shape) == (x.shape[0], out) and y.dtype == dtype
                and y.device.type == "cpu" and not x.requires_grad)

    def bind(self, model: KAN, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
        """A function computing the loss and writing every trainable parameter's ``.grad``
        (allocated here when None, overwritten at each call, never accumulated)."""
        signature, configs, tensors, eps = _describe(model)
        if signature != self._signature:
            dtype = "float64" if signature[0] == "torch.float64" else "float32"
            self._net = _core.Network(configs, dtype, bool(model.layernorm), eps, 0)
            self._signature = signature
        names: List[str] = list(tensors)
        values, grads = [], []
        for t in tensors.values():
            values.append(t.data_ptr())
            if isinstance(t, nn.Parameter) and t.requires_grad:
                if t.grad is None:
                    t.grad = torch.empty_like(t)
                grads.append(t.grad.data_ptr())
            else:
                grads.append(0)
        x, y = x.contiguous(), y.contiguous()
        net, n = self._net, x.shape[0]

        def evaluate() -> float:
            _keep = (x, y)  # noqa: F841 - the addresses below stay valid while this closure lives
            return net.mse_objective(names, values, grads, x.data_ptr(), y.data_ptr(), n)

        return evaluate

    def __call__(self, model: KAN, x: torch.Tensor, y: torch.Tensor) -> float:
        """One evaluation: ``bind(model, x, y)()``."""
        return self.bind(model, x, y)()
