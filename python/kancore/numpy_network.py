"""NumpyKAN: a whole KAN network (C0 or B-spline layers, optional LayerNorm) trained natively,
for NumPy users; no torch needed.

    net = kancore.NumpyKAN([2, 8, 1], kind="bspline", layernorm=True, seed=0)
    history = net.fit(X, y, epochs=100, lr=1e-2, val_fraction=0.2, patience=10)
    y_hat = net.predict(X_test)
    net.save("model.safetensors")           # the shared format (docs/model_format.md)
    same = kancore.NumpyKAN.load("model.safetensors")

The work happens in the C++ ``kancore::Network`` (one dtype, float32 or float64, for every
tensor); this module only checks and converts arrays. Parameters are exposed as NumPy copies
(``net.parameters()``, ``net["layers.0.kan_weight"]``) and set with ``net.set_parameter``.
Inputs must be finite for ``fit`` (ValueError otherwise); in ``predict`` a NaN in a row gives NaN
in that row of the output only.
"""
from __future__ import annotations

import numbers
import os
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core

__all__ = ["NumpyKAN"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _native(a: Any, dtype: Any) -> np.ndarray:
    """A C-contiguous, aligned array of dtype (a copy only when needed): the core reads raw
    addresses, and a misaligned float pointer is undefined behaviour in C++."""
    return np.require(a, dtype=dtype, requirements=["C", "A"])


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0] if a.size else 0


def _path(path: Any) -> bytes:
    """The path as the file system's bytes (any name os.open accepts, not only UTF-8 ones)."""
    raw = os.fsencode(path)
    if b"\0" in raw:  # the C file API would silently use the part before it
        raise ValueError(f"the path contains a NUL character: {os.fsdecode(raw)!r}")
    return raw


def _count(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _history(raw: Dict[str, Any]) -> Dict[str, Any]:
    """The C++ fit history in ``kancore.fit``'s keys (one record per epoch)."""
    epochs = len(raw["train_loss"])
    per_epoch = int(raw.get("steps_per_epoch", 0)) or None
    steps = [(e + 1) * per_epoch for e in range(epochs)] if per_epoch else []
    best = raw["best_epoch"] if 0 <= raw["best_epoch"] < epochs else None
    reason = raw["stop_reason"]
    return {"step": steps, "epoch": [float(e + 1) for e in range(epochs)],
            "train_loss": list(raw["train_loss"]), "val_loss": list(raw["val_loss"]), "test_loss": [],
            "reg": list(raw.get("reg", [])), "lr": list(raw.get("lr", [])),
            "grid_update_steps": [e * per_epoch for e in raw.get("grid_update_epochs", [])] if per_epoch else [],
            "refine_steps": [(e * per_epoch, size) for e, size in raw.get("refine_epochs", [])] if per_epoch else [],
            "best": best, "best_step": steps[best] if best is not None and steps else None,
            "best_epoch": best, "best_loss": raw["best_loss"] if best is not None else None,
            "stop_reason": "completed" if reason == "epochs" else reason}


class NumpyKAN:
    """A stack of KAN layers, ``widths[j] -> widths[j+1]``, trained and run by the C++ core.

    Parameters
    ----------
    widths : sequence of int
        The widths, input first (each an int >= 1).
    kind : {"bspline", "c0"} or sequence of them
        ``"bspline"``: efficient-kan's ``KANLinear`` (``grid_size``, ``spline_order``,
        ``grid_range``); ``"c0"``: kanditioned's ``KANLayer`` (``num_control_points``,
        ``spline_width``); or one kind per layer.
    dtype : {"float32", "float64"}
        The dtype of every parameter and computation.
    layernorm : bool
        LayerNorm (learnable weight and bias, eps ``layernorm_eps``) between layers.
    layernorm_eps : float
        LayerNorm's epsilon.
    num_control_points, spline_width
        C0 layers' K (int >= 2) and W.
    grid_size, spline_order, grid_range
        B-spline layers' G, k and initial grid range.
    seed : int
        Initialisation seed: C0 layers start as lines of slope 1 in random unit-norm directions
        (as ``kancore.KAN(kind="c0")``); B-spline layers take efficient-kan's defaults, with the
        spline scaler at 1.

    Examples
    --------
    >>> import numpy as np, kancore
    >>> kancore.NumpyKAN([2, 3, 1]).predict(np.zeros((4, 2))).shape
    (4, 1)
    """

    def __init__(self, widths: Sequence[int], kind: Union[str, Sequence[str]] = "bspline", *,
                 dtype: str = "float32", layernorm: bool = False, layernorm_eps: float = 1e-5,
                 num_control_points: int = 32, spline_width: float = 4.0, grid_size: int = 5,
                 spline_order: int = 3, grid_range: Sequence[float] = (-1.0, 1.0), seed: int = 0) -> None:
        widths = [_count("widths", w, 1) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"expected at least two widths (in, out), got {widths}")
        if dtype not in _DTYPES:
            raise ValueError(f"expected dtype float32 or float64, got {dtype!r}")
        kinds = [kind] * (len(widths) - 1) if isinstance(kind, str) else list(kind)
        if len(kinds) != len(widths) - 1:
            raise ValueError(f"expected {len(widths) - 1} layer kinds, got {len(kinds)}")
        layers = []
        for j, k in enumerate(kinds):
            layer = {"kind": k, "in_features": widths[j], "out_features": widths[j + 1]}
            if k == "c0":
                layer.update(num_control_points=_count("num_control_points", num_control_points, 2),
                             spline_width=float(spline_width))
            elif k == "bspline":
                layer.update(grid_size=_count("grid_size", grid_size, 1),
                             spline_order=_count("spline_order", spline_order, 1),
                             grid_range=[float(grid_range[0]), float(grid_range[1])])
            else:
                raise ValueError(f"expected layer kind 'c0' or 'bspline', got {k!r}")
            layers.append(layer)
        self._net = _core.Network(layers, dtype, bool(layernorm), float(layernorm_eps), _count("seed", seed, 0))

    @classmethod
    def _wrap(cls, net: Any) -> "NumpyKAN":
        self = cls.__new__(cls)
        self._net = net
        return self

    # ---- description -----------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The model file's config: dtype, layernorm, layernorm_eps and one dict per layer."""
        return self._net.config()

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of every parameter, input and output."""
        return np.dtype(_DTYPES[self.config["dtype"]])

    @property
    def in_features(self) -> int:
        """The input width."""
        return self._net.in_features

    @property
    def out_features(self) -> int:
        """The output width."""
        return self._net.out_features

    @property
    def num_parameters(self) -> int:
        """The number of trained scalars (buffers excluded)."""
        return self._net.num_parameters

    def __repr__(self) -> str:
        c = self.config
        kinds = ",".join(layer["kind"] for layer in c["layers"])
        widths = [c["layers"][0]["in_features"]] + [layer["out_features"] for layer in c["layers"]]
        return (f"NumpyKAN(widths={widths}, kinds=[{kinds}], dtype={c['dtype']}, "
                f"layernorm={c['layernorm']}, parameters={self.num_parameters})")

    # ---- parameters ------------------------------------------------------------------------
    def parameters(self, include_buffers: bool = True) -> dict:
        """Name -> a copy of the tensor (names as in the model file)."""
        return {name: self._net.get_tensor(name) for name, group in self._net.tensor_names()
                if include_buffers or group != "buffer"}

    state_dict = parameters

    def parameter_groups(self) -> dict:
        """Name -> "spline" (C0 tables, spline_weight), "other" or "buffer" (not trained)."""
        return dict(self._net.tensor_names())

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._net.get_tensor(name)
        except IndexError as exc:  # std::out_of_range
            raise KeyError(name) from exc

    def gradient(self, name: str) -> Optional[np.ndarray]:
        """The gradient of the last ``backward`` for a parameter (None for buffers)."""
        return self._net.get_grad(name)

    def set_parameter(self, name: str, value: Any) -> None:
        """Set a parameter or buffer.

        Parameters
        ----------
        name : str
            As in ``parameters()`` (the model file's names).
        value : array-like
            An array of the tensor's shape, converted to the network's dtype.
        """
        try:
            shape = tuple(self._net.tensor_shape(name))
        except IndexError as exc:
            raise KeyError(name) from exc
        value = _native(value, self.dtype)
        if value.shape != shape:
            raise ValueError(f"expected shape {shape} for {name}, got {value.shape}")
        self._net.set_tensor(name, _address(value))

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Set every tensor from ``state`` (exactly the names of ``parameters()``)."""
        names = set(self.parameters())
        if set(state) != names:
            raise KeyError(f"expected tensors {sorted(names)}, got {sorted(state)}")
        for name, value in state.items():
            self.set_parameter(name, value)

    # ---- computation -----------------------------------------------------------------------
    def _inputs(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 1 or X.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs of shape (..., {self.in_features}), got {X.shape}")
        return _native(X.reshape(-1, self.in_features), self.dtype)

    def predict(self, X: Any) -> np.ndarray:
        """Network output for X of shape (..., in_features) -> (..., out_features)."""
        X = np.asarray(X)
        lead = X.shape[:-1]
        flat = self._inputs(X)
        y = np.empty((flat.shape[0], self.out_features), dtype=self.dtype)
        if flat.shape[0]:
            self._net.forward(_address(flat), _address(y), flat.shape[0])
        return y.reshape(*lead, self.out_features)

    __call__ = predict

    def forward_backward(self, X: Any, grad_y: Any) -> np.ndarray:
        """Forward ``X`` keeping the activations, then back-propagate ``grad_y``.

        Parameters
        ----------
        X : array-like
            Inputs ``(n, in_features)``.
        grad_y : array-like
            The loss's gradient with respect to the output, ``(n, out_features)``.

        Returns
        -------
        numpy.ndarray
            The gradient with respect to ``X``; every parameter's gradient is kept (``gradient``).
        """
        flat = self._inputs(X)
        n = flat.shape[0]
        y = np.empty((n, self.out_features), dtype=self.dtype)
        self._net.forward_train(_address(flat), _address(y), n)
        gy = _native(np.asarray(grad_y).reshape(n, self.out_features), self.dtype)
        gx = np.empty_like(flat)
        self._net.backward(_address(gy), _address(gx))
        return gx

    def update_grids(self, X: Any) -> None:
        """Adapt every layer's grid (B-spline knots, C0 domain) to X fed through the network."""
        flat = self._inputs(X)
        self._net.update_grids(_address(flat), flat.shape[0])

    def refine(self, new_size: int) -> None:
        """Every C0 layer to ``new_size`` control points, every B-spline layer to ``new_size``
        grid intervals, keeping the function (exactly when the new size refines the old one;
        docs/layer_math.md, "Grid updates")."""
        self._net.refine(_count("new_size", new_size, 1))

    def edge_importance(self, X: Any) -> list:
        """Per layer, the ``(out, in)`` importance of every edge on the samples X: the root mean
        square of the edge's output over them (``kancore.edge_importance``; removing an edge of
        importance s moves its output by at most s in root mean square)."""
        flat = self._inputs(X)
        if flat.shape[0] < 1:
            raise ValueError("expected at least one sample")
        layers = self.config["layers"]
        return [np.asarray(v, dtype=np.float64).reshape(L["out_features"], L["in_features"])
                for v, L in zip(self._net.edge_importance(_address(flat), flat.shape[0]), layers)]

    def prune_nodes(self, keep: Sequence[Sequence[int]]) -> "NumpyKAN":
        """A copy with only the hidden nodes ``keep`` lists (``keep[j]``: the kept outputs of
        layer j, strictly increasing); see ``kancore.prune_nodes``. Refused with LayerNorm."""
        return type(self)._wrap(self._net.prune_nodes([[int(n) for n in k] for k in keep]))

    def prune(self, X: Any, threshold: float) -> "NumpyKAN":
        """A copy without the hidden nodes whose every outgoing edge has importance below
        ``threshold`` on X (at least the most important node of each layer stays). Unlike
        ``kancore.prune`` the kept nodes' small edges are not zeroed.

        Parameters
        ----------
        X : array-like
            Samples ``(n, in_features)`` on which importance is measured.
        threshold : float
            Hidden nodes with every outgoing edge below it are removed.

        Returns
        -------
        NumpyKAN
            The smaller copy (refused with LayerNorm).
        """
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold >= 0:
            raise ValueError(f"threshold must be a number >= 0, got {threshold!r}")
        imp = self.edge_importance(X)
        keep = []
        for j in range(len(imp) - 1):
            outgoing = imp[j + 1].max(axis=0)
            kept = [int(n) for n in np.flatnonzero(outgoing >= threshold)]
            keep.append(kept or [int(outgoing.argmax())])
        return self.prune_nodes(keep)

    def fix_symbolic(self, layer: int, i: int, o: int, function: str, a: float = 1.0, b: float = 1.0,
                     c: float = 0.0, d: float = 0.0) -> None:
        """Fix edge ``i -> o`` of layer ``layer`` to ``a * f(b * h_i + c) + d`` (``f`` one of
        ``kancore.symbolic_edges.FUNCTIONS``' names, evaluated natively in forward and backward;
        ``(a, b, c, d)`` is the trainable tensor ``layers.{layer}.symbolic_affine``); refixing
        replaces. The edge's numeric parameters are kept, unused, for ``unfix_symbolic``.
        Constants usually come from ``kancore.auto_symbolic`` on a torch copy, or your own fit.

        Parameters
        ----------
        layer, i, o : int
            The layer and the edge's input and output.
        function : str
            The function's name (``"sin"``, ``"x^2"``, ...).
        a, b, c, d : float
            The initial constants (finite).
        """
        for name, v in (("layer", layer), ("i", i), ("o", o)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        if not isinstance(function, str):
            raise TypeError(f"function must be a name (str), got {type(function).__name__}")
        values = []
        for name, v in (("a", a), ("b", b), ("c", c), ("d", d)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
            values.append(float(v))
        self._net.fix_symbolic(int(layer), int(i), int(o), function, *values)

    def unfix_symbolic(self, layer: int, i: int, o: int) -> bool:
        """Give edge ``i -> o`` of layer ``layer`` its numeric function back.

        Parameters
        ----------
        layer, i, o : int
            The layer and the edge's input and output.

        Returns
        -------
        bool
            False when the edge was not fixed.
        """
        for name, v in (("layer", layer), ("i", i), ("o", o)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
                raise ValueError(f"{name} must be an int >= 0, got {v!r}")
        return bool(self._net.unfix_symbolic(int(layer), int(i), int(o)))

    def symbolic_edges(self) -> List[Tuple[int, int, int, str, float, float, float, float]]:
        """Every fixed edge as ``(layer, i, o, function, a, b, c, d)``."""
        out = []
        for j, L in enumerate(self.config["layers"]):
            if L.get("symbolic"):
                rows = self[f"layers.{j}.symbolic_affine"].astype(np.float64)
                out += [(j, e["in"], e["out"], e["function"], *map(float, r)) for e, r in zip(L["symbolic"], rows)]
        return out

    def regularization(self, weight: float = 1.0) -> float:
        """weight * (C0 smoothness + B-spline coefficient L1 + entropy) (see fit)."""
        return self._net.regularization(float(weight), False)

    def _targets(self, X: Any, y: Any, loss: str) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"expected inputs of shape (n, {self.in_features}), got {X.shape}")
        flat = self._inputs(X)
        n = flat.shape[0]
        if loss == "mse":
            t = np.asarray(y)
            out = self.out_features
            if not (t.shape == (n, out) or (out == 1 and t.shape == (n,))):
                expected = f"({n}, {out})" + (f" or ({n},)" if out == 1 else "")
                raise ValueError(f"expected targets of shape {expected} for {n} inputs, got {t.shape}")
            return flat, _native(t.reshape(n, out), self.dtype), None
        if loss == "cross_entropy":
            if self.out_features < 2:
                raise ValueError("cross_entropy needs a network with at least two outputs (one per class), "
                                 f"this one has {self.out_features}; use loss='mse' for one output")
            labels = np.asarray(y)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"expected {n} integer class labels, got shape {labels.shape} dtype {labels.dtype}")
            return flat, None, _native(labels, np.int64)
        raise ValueError(f"expected loss 'mse' or 'cross_entropy', got {loss!r}")

    def fit(self, X: Any, y: Any, *, loss: str = "mse", epochs: int = 100, batch_size: int = 64,
            lr: float = 1e-2, lr_spline: Optional[float] = None, optimizer: str = "adam",
            weight_decay: float = 0.0, validation: Optional[Tuple[Any, Any]] = None, val_fraction: float = 0.0,
            patience: Optional[int] = None, restore_best: bool = True, reg_weight: float = 0.0,
            grid_update_every: int = 0, grid_update_until: Optional[int] = None, grid_update_samples: int = 1024,
            seed: int = 0, callback: Optional[Callable[[Dict[str, Any]], Any]] = None,
            grid_schedule: Optional[Sequence[int]] = None, stage_epochs: Optional[Sequence[int]] = None,
            reg_schedule: str = "constant",
            grid_samples: Optional[int] = None) -> Dict[str, Any]:
        """Mini-batch Adam/AdamW training in C++ (the same names as ``kancore.fit``).

        Parameters
        ----------
        X : array-like
            Inputs ``(n, in_features)``, finite.
        y : array-like
            ``loss="mse"``: targets ``(n, out_features)``, or ``(n,)`` for one output.
            ``loss="cross_entropy"``: integer class labels ``(n,)`` in ``[0, out_features)``.
        loss : {"mse", "cross_entropy"}
            The data loss; cross-entropy needs at least two outputs.
        epochs : int
            Passes over the training set.
        batch_size : int
            Mini-batch rows (clipped to the training set).
        lr : float
            Learning rate of base weights, scalers and LayerNorm.
        lr_spline : float, optional
            Learning rate of the C0 tables and B-spline coefficients; default ``lr``.
        optimizer : {"adam", "adamw"}
            Adam adds ``weight_decay * p`` to the gradient; AdamW decays decoupled.
        weight_decay : float
            See ``optimizer``.
        validation : (X_val, y_val), optional
            The validation set watched by early stopping and ``restore_best``.
        val_fraction : float
            Without ``validation``: hold out this fraction of the rows (seeded shuffle).
        patience : int, optional
            Stop after this many epochs without a lower monitored loss (validation, else
            training); ``None`` or 0: never.
        restore_best : bool
            End with the parameters (and grids) of the best epoch.
        reg_weight : float
            Weight of the penalty: C0 second-difference smoothness + B-spline coefficient L1 and
            entropy.
        grid_update_every : int
            Update the grids before epochs 0, ``grid_update_every``, ... below
            ``grid_update_until`` (default: every epoch of the run), on ``grid_update_samples``
            training rows (0: never).
        grid_update_until, grid_update_samples : int
            See ``grid_update_every``.
        seed : int
            Shuffles and the validation split.
        callback : callable, optional
            ``callback(log)`` after each epoch with a dict (``epoch``, ``train_loss``,
            ``val_loss``, ``penalty``, ``improved``, ``grid_updated``, ``refined_to``: the grid
            size the schedule refined to before this epoch, 0 if none); return False to stop.
        grid_schedule : sequence of int, optional
            Grid extension, as in ``kancore.fit``: the grid size (C0 K, B-spline G) of each
            stage; the epochs are split evenly among the stages unless ``stage_epochs`` gives
            their lengths (their sum then replaces ``epochs``). Each stage starts with
            ``refine`` (the function is kept) and a fresh Adam state.
        stage_epochs : sequence of int, optional
            Epochs of each stage of ``grid_schedule``.
        reg_schedule : {"constant", "linear"}
            Progressive sparsification, as in ``kancore.fit``: ``"linear"`` ramps the penalty's
            weight from 0 at the first optimizer step to ``reg_weight`` at the last.
        grid_samples : int, optional
            Deprecated: use ``grid_update_samples``.

        Returns
        -------
        dict
            The keys of ``kancore.fit``'s history, one record per epoch: ``step``, ``epoch``,
            ``train_loss``, ``val_loss``, ``test_loss`` (always empty here), ``reg``, ``lr``,
            ``grid_update_steps``, ``refine_steps`` ((step, size) of each refine), ``best`` (index of the best record by the monitored loss),
            ``best_step``, ``best_epoch`` (0-based), ``best_loss`` and ``stop_reason``
            (``"completed"``, ``"early_stopping"``, ``"callback"`` or ``"diverged"``).
        """
        if grid_samples is not None:
            warnings.warn("kancore: grid_samples is deprecated and will be removed in kancore 0.3; use "
                          "grid_update_samples", FutureWarning, stacklevel=2)
            grid_update_samples = grid_samples
        schedule = [] if grid_schedule is None else [_count("grid_schedule entries", g, 1) for g in grid_schedule]
        stages = [] if stage_epochs is None else [_count("stage_epochs entries", e, 1) for e in stage_epochs]
        if stages and len(stages) != len(schedule):
            raise ValueError(f"stage_epochs needs a grid_schedule of the same length, got {stage_epochs!r} "
                             f"for grid_schedule={grid_schedule!r}")
        if stages:
            epochs = sum(stages)
        epochs = _count("epochs", epochs, 1)
        patience = 0 if patience is None else _count("patience", patience, 0)
        until = epochs if grid_update_until is None else _count("grid_update_until", grid_update_until, 0)
        X, t, labels = self._targets(X, y, loss)
        vx = vt = vl = None
        if validation is not None:
            if not isinstance(validation, (tuple, list)) or len(validation) != 2:
                raise ValueError("validation must be a pair (X_val, y_val)")
            if len(validation[0]) == 0:
                raise ValueError("expected a non-empty validation set, got 0 rows (pass validation=None)")
            vx, vt, vl = self._targets(validation[0], validation[1], loss)
        keep = (X, t, labels, vx, vt, vl)  # the arrays must outlive the native call
        raw = self._net.fit(
            _address(X), _address(t) if t is not None else 0, _address(labels) if labels is not None else 0,
            X.shape[0],
            _address(vx) if vx is not None else 0, _address(vt) if vt is not None else 0,
            _address(vl) if vl is not None else 0, vx.shape[0] if vx is not None else 0,
            loss, epochs, _count("batch_size", batch_size, 1), float(lr),
            -1.0 if lr_spline is None else float(lr_spline),
            optimizer, float(weight_decay), float(val_fraction), patience, bool(restore_best),
            float(reg_weight), _count("grid_update_every", grid_update_every, 0), until,
            _count("grid_update_samples", grid_update_samples, 1), _count("seed", seed, 0),
            callback, schedule, stages, str(reg_schedule))
        del keep
        return _history(raw)

    # ---- files -----------------------------------------------------------------------------
    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the model file atomically (safetensors, the format in docs/model_format.md)."""
        self._net.save(_path(path))

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "NumpyKAN":
        """Read a model file (written by ``save``, ``kancore.save`` or C++ ``kancore::save``).
        A missing file raises FileNotFoundError; a foreign, corrupt or inconsistent one
        ValueError."""
        return cls._wrap(_core.Network.load(_path(path)))

    def to_bytes(self) -> bytes:
        """The model file's bytes (what ``save`` writes)."""
        return self._net.serialize()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NumpyKAN":
        """A network from a model file's bytes (validated as ``load`` validates a file)."""
        return cls._wrap(_core.Network.deserialize(bytes(data)))
