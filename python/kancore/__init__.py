"""kancore: a native (C++/CUDA) engine for Kolmogorov-Arnold Networks.

``from kancore import KANLayer`` is a drop-in for kanditioned's ``KANLayer`` (needs PyTorch).
Without PyTorch, ``kancore.functional`` runs the same kernels on NumPy arrays and
``kancore.NumpyKAN`` trains whole networks natively.
"""
from ._core import __version__, built_with_cuda, get_num_threads, set_num_threads
from . import functional
from .numpy_network import NumpyKAN

__all__ = ["KANLayer", "KANLinear", "KAN", "NumpyKAN", "save", "load", "fit", "Trainer",
           "create_dataset", "count_parameters", "memory_estimate", "mlp_with_same_parameters",
           "plot_network", "functional", "built_with_cuda", "get_num_threads", "set_num_threads",
           "__version__"]

# Names that need torch, and the module defining each (imported on first use).
_TORCH_CLASSES = {"KANLayer": "kan_layer", "KANLinear": "kan_linear", "KAN": "kan_linear",
                  "save": "model_io", "load": "model_io",
                  "fit": "training", "Trainer": "training", "create_dataset": "training",
                  "count_parameters": "inspection", "memory_estimate": "inspection",
                  "mlp_with_same_parameters": "inspection", "plot_network": "inspection"}


def __getattr__(name):
    # The layers need torch; load them on first use so `import kancore` works with NumPy alone.
    if name in _TORCH_CLASSES:
        import importlib

        try:
            module = importlib.import_module(f".{_TORCH_CLASSES[name]}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            raise ImportError(f"kancore.{name} needs PyTorch: pip install 'kancore[torch]'") from exc
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kancore' has no attribute {name!r}")
