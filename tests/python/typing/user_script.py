"""A typed user script: mypy --strict must accept it against kancore's annotations (py.typed).

It is checked, not run, by tests/python/test_typing.py.
"""
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

import kancore
from kancore import KAN, KANLayer, KANLinear, NumpyKAN


def train_torch() -> float:
    data: Dict[str, torch.Tensor] = kancore.create_dataset(lambda x: torch.sin(x[:, 0]), n_var=1)
    model: KAN = KAN([1, 4, 1], kind="c0", num_control_points=8)
    history: Dict[str, Any] = kancore.fit(model, data, steps=10, lr=1e-2, progress=False)
    kancore.save(model, "model.safetensors", metadata={"note": "typed"})
    loaded: KAN = kancore.load("model.safetensors")
    y: torch.Tensor = loaded(data["test_input"])
    layer = KANLayer(4, 2, "random_normal", num_control_points=8)
    out: torch.Tensor = layer(torch.zeros(3, 4))
    b = KANLinear(4, 2, grid_size=5)
    xs, ys = b.edge_functions(n=16)
    widths: List[int] = model.widths
    n: int = kancore.count_parameters(model) + int(out.numel()) + int(xs.size) + len(widths)
    mlp: torch.nn.Sequential = kancore.mlp_with_same_parameters([1, 4, 1], n)
    est: Dict[str, int] = kancore.memory_estimate(mlp, batch_size=4)
    return float(history["train_loss"][-1]) + float(y.sum()) + est["total"]


def train_numpy() -> Tuple[np.ndarray, Dict[str, Any]]:
    X = np.zeros((16, 2), np.float32)
    net = NumpyKAN([2, 3, 1], kind="bspline", seed=0)
    hist: Dict[str, Any] = net.fit(X, X[:, 0], epochs=2, validation=(X, X[:, 0]))
    yc: np.ndarray = kancore.functional.c0_forward(X, np.ones((2, 4, 3), np.float32), spline_width=4.0)
    return net.predict(X) + yc.sum(), hist
