"""NumpyKAN: a whole KAN network (C0 or B-spline layers, optional LayerNorm) trained natively,
for NumPy users; no torch needed.

    net = kancore.NumpyKAN([2, 8, 1], kind="bspline", layernorm=True, seed=0)
    history = net.fit(X, y, epochs=100, lr=1e-2, val_fraction=0.2, patience=10)
    y_hat = net.predict(X_test)
    net.save("model.safetensors")           # the shared format (the format in cpp/include/kancore/model_io.hpp)
    same = kancore.NumpyKAN.load("model.safetensors")

The work happens in the C++ ``kancore::Network`` (one dtype, float32 or float64, for every
tensor); this module only checks and converts arrays. Parameters are exposed as NumPy copies
(``net.parameters()``, ``net["layers.0.kan_weight"]``) and set with ``net.set_parameter``.
Inputs must be finite for ``fit`` (ValueError otherwise); in ``predict`` a NaN in a row gives NaN
in that row of the output only.
"""
from __future__ import annotations

import os

import numpy as np

from . import _core

__all__ = ["NumpyKAN"]

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _native(a, dtype) -> np.ndarray:
    """A C-contiguous, aligned array of dtype (a copy only when needed): the core reads raw
    addresses, and a misaligned float pointer is undefined behaviour in C++."""
    return np.require(a, dtype=dtype, requirements=["C", "A"])


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0] if a.size else 0


class NumpyKAN:
    """A stack of KAN layers, ``widths[j] -> widths[j+1]``.

    kind: "bspline" (efficient-kan's KANLinear: grid_size, spline_order, grid_range) or "c0"
    (kanditioned's KANLayer: num_control_points, spline_width), or a list with one kind per layer.
    layernorm: LayerNorm (learnable weight and bias, eps ``layernorm_eps``) between layers.
    dtype: "float32" or "float64" for every parameter and computation.
    seed: initialisation seed (kanditioned's random_normal for C0 layers; efficient-kan's
    defaults for B-spline layers, with the spline scaler starting at 1).
    """

    def __init__(self, widths, kind="bspline", *, dtype="float32", layernorm=False, layernorm_eps=1e-5,
                 num_control_points=32, spline_width=4.0, grid_size=5, spline_order=3,
                 grid_range=(-1.0, 1.0), seed=0):
        widths = [int(w) for w in widths]
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
                layer.update(num_control_points=int(num_control_points), spline_width=float(spline_width))
            elif k == "bspline":
                layer.update(grid_size=int(grid_size), spline_order=int(spline_order),
                             grid_range=[float(grid_range[0]), float(grid_range[1])])
            else:
                raise ValueError(f"expected layer kind 'c0' or 'bspline', got {k!r}")
            layers.append(layer)
        self._net = _core.Network(layers, dtype, bool(layernorm), float(layernorm_eps), int(seed))

    @classmethod
    def _wrap(cls, net) -> "NumpyKAN":
        self = cls.__new__(cls)
        self._net = net
        return self

    # ---- description -----------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The model file's config: dtype, layernorm, layernorm_eps and one dict per layer."""
        return self._net.config()

    @property
    def dtype(self):
        return np.dtype(_DTYPES[self.config["dtype"]])

    @property
    def in_features(self) -> int:
        return self._net.in_features

    @property
    def out_features(self) -> int:
        return self._net.out_features

    @property
    def num_parameters(self) -> int:
        return self._net.num_parameters

    def __repr__(self):
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

    def gradient(self, name: str):
        """The gradient of the last ``backward`` for a parameter (None for buffers)."""
        return self._net.get_grad(name)

    def set_parameter(self, name: str, value) -> None:
        try:
            shape = tuple(self._net.tensor_shape(name))
        except IndexError as exc:
            raise KeyError(name) from exc
        value = _native(value, self.dtype)
        if value.shape != shape:
            raise ValueError(f"expected shape {shape} for {name}, got {value.shape}")
        self._net.set_tensor(name, _address(value))

    def load_state_dict(self, state: dict) -> None:
        names = set(self.parameters())
        if set(state) != names:
            raise KeyError(f"expected tensors {sorted(names)}, got {sorted(state)}")
        for name, value in state.items():
            self.set_parameter(name, value)

    # ---- computation -----------------------------------------------------------------------
    def _inputs(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 1 or X.shape[-1] != self.in_features:
            raise ValueError(f"expected inputs of shape (..., {self.in_features}), got {X.shape}")
        return _native(X.reshape(-1, self.in_features), self.dtype)

    def predict(self, X) -> np.ndarray:
        """Network output for X of shape (..., in_features) -> (..., out_features)."""
        X = np.asarray(X)
        lead = X.shape[:-1]
        flat = self._inputs(X)
        y = np.empty((flat.shape[0], self.out_features), dtype=self.dtype)
        if flat.shape[0]:
            self._net.forward(_address(flat), _address(y), flat.shape[0])
        return y.reshape(*lead, self.out_features)

    __call__ = predict

    def forward_backward(self, X, grad_y):
        """Keeps the activations of X, then back-propagates grad_y: returns d/dX and fills
        every parameter's gradient (see ``gradient``)."""
        flat = self._inputs(X)
        n = flat.shape[0]
        y = np.empty((n, self.out_features), dtype=self.dtype)
        self._net.forward_train(_address(flat), _address(y), n)
        gy = _native(np.asarray(grad_y).reshape(n, self.out_features), self.dtype)
        gx = np.empty_like(flat)
        self._net.backward(_address(gy), _address(gx))
        return gx

    def update_grids(self, X) -> None:
        """Adapt every layer's grid (B-spline knots, C0 domain) to X fed through the network."""
        flat = self._inputs(X)
        self._net.update_grids(_address(flat), flat.shape[0])

    def regularization(self, weight: float = 1.0) -> float:
        """weight * (C0 smoothness + B-spline coefficient L1 + entropy) (see fit)."""
        return self._net.regularization(float(weight), False)

    def _targets(self, X, y, loss):
        flat = self._inputs(X)
        n = flat.shape[0]
        if loss == "mse":
            t = _native(np.asarray(y).reshape(n, self.out_features), self.dtype)
            return flat, t, None
        if loss == "cross_entropy":
            labels = np.asarray(y)
            if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"expected {n} integer class labels, got shape {labels.shape} dtype {labels.dtype}")
            return flat, None, _native(labels, np.int64)
        raise ValueError(f"expected loss 'mse' or 'cross_entropy', got {loss!r}")

    def fit(self, X, y, *, loss="mse", epochs=100, batch_size=64, lr=1e-2, lr_spline=None,
            optimizer="adam", weight_decay=0.0, validation=None, val_fraction=0.0, patience=0,
            restore_best=True, reg_weight=0.0, grid_update_every=0, grid_update_until=0,
            grid_samples=1024, seed=0, callback=None) -> dict:
        """Mini-batch Adam/AdamW training in C++. Returns the history: train_loss and val_loss per
        epoch, best_epoch, best_loss, stop_reason.

        loss: "mse" (y of shape (n, out) or (n,) for one output) or "cross_entropy" (integer
        labels). lr applies to base weights, scalers and LayerNorm; lr_spline (default lr) to
        the C0 tables and B-spline coefficients. validation=(X_val, y_val) or val_fraction.
        patience > 0: early stopping on the validation loss (training loss without validation);
        restore_best returns to the best epoch's weights. reg_weight: C0 second-difference
        smoothness + B-spline coefficient L1/entropy penalty. Grids are updated before epochs
        0, grid_update_every, ... below grid_update_until on grid_samples training rows.
        callback(log: dict) after each epoch; return False to stop.
        """
        X, t, labels = self._targets(X, y, loss)
        vx = vt = vl = None
        if validation is not None and len(validation[0]) == 0:
            raise ValueError("expected a non-empty validation set, got 0 rows (pass validation=None)")
        if validation is not None:
            vx, vt, vl = self._targets(validation[0], validation[1], loss)
        keep = (X, t, labels, vx, vt, vl)  # the arrays must outlive the native call
        hist = self._net.fit(
            _address(X), _address(t) if t is not None else 0, _address(labels) if labels is not None else 0,
            X.shape[0],
            _address(vx) if vx is not None else 0, _address(vt) if vt is not None else 0,
            _address(vl) if vl is not None else 0, vx.shape[0] if vx is not None else 0,
            loss, int(epochs), int(batch_size), float(lr), -1.0 if lr_spline is None else float(lr_spline),
            optimizer, float(weight_decay), float(val_fraction), int(patience), bool(restore_best),
            float(reg_weight), int(grid_update_every), int(grid_update_until), int(grid_samples), int(seed),
            callback)
        del keep
        return hist

    # ---- files -----------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the model file atomically (safetensors, the format in docs/model_format.md)."""
        self._net.save(os.fspath(path))

    @classmethod
    def load(cls, path) -> "NumpyKAN":
        """Read a model file; corrupt or inconsistent files raise ValueError."""
        return cls._wrap(_core.Network.load(os.fspath(path)))

    def to_bytes(self) -> bytes:
        return self._net.serialize()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NumpyKAN":
        return cls._wrap(_core.Network.deserialize(bytes(data)))
