"""KAN building blocks for bigger models: a transformer feed-forward block and a classifier head.

Both are ``kancore.KAN`` networks (so ``kancore.save``/``load``, ``fit``, ``prune``,
``plot_network`` and ``KAN(checkpoint=...)`` work on them) with the defaults and shape handling
their places in a model need:

* ``KANFeedForward(d_model, d_hidden)``: ``d_model -> d_hidden -> d_model`` with LayerNorm
  between the two layers and dropout after the block, a drop-in for a transformer's MLP block on
  inputs ``(..., d_model)``. The first layer's grid spans ``[-3, 3]``, the range of the
  normalised activations a pre-norm transformer feeds it.
* ``KANClassifierHead(in_features, num_classes, hidden=(64,))``: flattens CNN features
  ``(batch, C, H, W)`` (or any ``(batch, ...)``) and maps them to class logits. CNN features are
  not normalised: adapt the grids to them once (``head(features, update_grid=True)``) or put a
  LayerNorm/BatchNorm in front.

A saved block loads back as a ``kancore.KAN`` with the same function (dropout is a training-time
option, not part of the model file).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn as tnn

from .network import KAN

__all__ = ["KANFeedForward", "KANClassifierHead"]


def _layer_defaults(kind: str, span: float, options: dict) -> dict:
    """Grid defaults for inputs of about +-span, unless the caller set them."""
    if kind == "c0":
        options.setdefault("num_control_points", 16)
        options.setdefault("spline_width", 2 * span)
    else:
        options.setdefault("grid_size", 5)
        options.setdefault("grid_range", (-span, span))
    return options


class KANFeedForward(KAN):
    """A transformer feed-forward block of two KAN layers: ``d_model -> d_hidden -> d_model``.

    Parameters
    ----------
    d_model : int
        The model width (input and output).
    d_hidden : int
        The hidden width (an MLP block's 4 d_model has many more parameters per unit here: each
        KAN edge holds a spline; ``kancore.mlp_with_same_parameters`` gives the matching MLP).
    kind : {"bspline", "c0"}
        The layer kind (``kancore.KAN``'s).
    dropout : float
        Dropout on the block's output in training mode.
    layernorm : bool
        LayerNorm between the two layers (keeps the hidden values inside the second layer's grid).
    **options
        Further ``kancore.KAN`` arguments (``grid_size``, ``num_control_points``, ``checkpoint``,
        ``device``, ``dtype``...).

    Examples
    --------
    >>> import torch, kancore
    >>> block = kancore.nn.KANFeedForward(16, 32)
    >>> block(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, d_model: int, d_hidden: int, kind: str = "bspline", dropout: float = 0.0,
                 layernorm: bool = True, **options: Any) -> None:
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        super().__init__([d_model, d_hidden, d_model], kind=kind, layernorm=layernorm,
                         **_layer_defaults(kind, 3.0, dict(options)))
        self.dropout = tnn.Dropout(float(dropout))

    def forward(self, x: torch.Tensor, update_grid: bool = False) -> torch.Tensor:
        """``(..., d_model) -> (..., d_model)``."""
        return self.dropout(super().forward(x, update_grid))


class KANClassifierHead(KAN):
    """Class logits from (flattened) features: ``in_features -> hidden... -> num_classes``.

    Parameters
    ----------
    in_features : int
        The number of features after flattening (``C * H * W`` for CNN maps).
    num_classes : int
        The number of logits.
    hidden : sequence of int
        Hidden widths (``()`` for one KAN layer).
    kind : {"bspline", "c0"}
        The layer kind.
    dropout : float
        Dropout on the flattened features in training mode.
    **options
        Further ``kancore.KAN`` arguments (``layernorm``, ``grid_size``, ``checkpoint``...).

    Examples
    --------
    >>> import torch, kancore
    >>> head = kancore.nn.KANClassifierHead(8 * 4 * 4, 10)
    >>> head(torch.randn(3, 8, 4, 4)).shape
    torch.Size([3, 10])
    """

    def __init__(self, in_features: int, num_classes: int, hidden: Sequence[int] = (64,), kind: str = "bspline",
                 dropout: float = 0.0, **options: Any) -> None:
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        super().__init__([in_features, *hidden, num_classes], kind=kind,
                         **_layer_defaults(kind, 3.0, dict(options)))
        self.dropout = tnn.Dropout(float(dropout))

    def forward(self, x: torch.Tensor, update_grid: bool = False) -> torch.Tensor:
        """``(batch, ...)`` features, flattened to ``(batch, in_features)`` -> ``(batch, num_classes)``."""
        if x.dim() < 2:
            raise ValueError(f"expected features of shape (batch, ...), got {tuple(x.shape)}")
        x = x.flatten(1)
        if x.shape[1] != self.widths[0]:
            raise ValueError(f"expected {self.widths[0]} features per sample after flattening, got {x.shape[1]}")
        return super().forward(self.dropout(x), update_grid)
