"""kancore: a native (C++/CUDA) engine for Kolmogorov-Arnold Networks.

``from kancore import KANLayer`` is a drop-in for kanditioned's ``KANLayer`` (needs PyTorch).
Without PyTorch, ``kancore.functional`` runs the same kernels on NumPy arrays and
``kancore.NumpyKAN`` trains whole networks natively.

With PyTorch
    KANLayer (C0, kanditioned's layer), KANLinear (B-spline, efficient-kan's layer), KAN (a stack
    of either), fit / Trainer / create_dataset (training), save / load (the model file),
    count_parameters / memory_estimate / mlp_with_same_parameters / plot_network (inspection).
Without PyTorch
    NumpyKAN (networks trained in C++), functional (the kernels on NumPy arrays).
Both
    set_num_threads / get_num_threads: the CPU kernels' thread count (see the README, "Threads").

The package's modules form layers, each importing only from those below it:
``_ops`` (native calls) < ``kan_layer``, ``kan_linear`` (layers) < ``network`` (``KAN``) <
``model_io``, ``training``, ``inspection``. Figures come from ``_plotting``, imported only when
one is drawn.
"""
from typing import TYPE_CHECKING, Any, List

from ._core import __version__, built_with_cuda, get_num_threads, set_num_threads
from . import functional
from .numpy_network import NumpyKAN

if TYPE_CHECKING:  # type checkers see the real classes; at run time they load on first use
    from .inspection import count_parameters, memory_estimate, mlp_with_same_parameters, plot_network
    from .kan_layer import C0GridReport, KANLayer
    from .kan_linear import GridUpdateReport, KANLinear
    from .model_io import load, save
    from .network import KAN
    from .training import Trainer, create_dataset, fit

# Names that need torch, and the module defining each (imported on first use, so that
# `import kancore` works with NumPy alone).
_TORCH_NAMES = {"KANLayer": "kan_layer", "C0GridReport": "kan_layer",
                "KANLinear": "kan_linear", "GridUpdateReport": "kan_linear",
                "KAN": "network",
                "save": "model_io", "load": "model_io",
                "fit": "training", "Trainer": "training", "create_dataset": "training",
                "count_parameters": "inspection", "memory_estimate": "inspection",
                "mlp_with_same_parameters": "inspection", "plot_network": "inspection",
                "mlp_with_same_flops": "inspection", "flops": "inspection", "fit_to_memory": "inspection",
                "edge_importance": "pruning", "prune": "pruning", "prune_edges": "pruning",
                "prune_nodes": "pruning", "suggest_symbolic": "symbolic", "auto_symbolic": "symbolic",
                "symbolic_formula": "symbolic", "fix_symbolic": "symbolic", "unfix_symbolic": "symbolic"}

__all__ = ["KANLayer", "KANLinear", "KAN", "C0GridReport", "GridUpdateReport", "NumpyKAN", "save", "load",
           "fit", "Trainer", "create_dataset", "count_parameters", "memory_estimate",
           "mlp_with_same_parameters", "mlp_with_same_flops", "flops", "fit_to_memory", "plot_network", "edge_importance", "prune", "prune_edges", "prune_nodes",
           "suggest_symbolic", "auto_symbolic", "fix_symbolic", "unfix_symbolic", "symbolic_formula",
           "functional", "nn", "built_with_cuda", "get_num_threads",
           "set_num_threads", "register_torch_ops", "__version__"]


def register_torch_ops() -> None:
    """Register kancore's torch custom ops (``torch.ops.kancore.*``) now. Using a layer does this
    on first use; call it before ``torch.jit.load`` of a traced kancore model in a fresh process
    (docs/deploy.md)."""
    from . import _ops

    _ops.torch_ops()
    _ops.torch_bspline_ops()
    _ops.torch_edge_scale_ops()


def __getattr__(name: str) -> Any:
    if name == "nn":  # the building blocks (kancore/nn.py), a submodule that needs torch
        import importlib

        try:
            return importlib.import_module(".nn", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            raise ImportError("kancore.nn needs PyTorch: pip install 'kancore[torch]'") from exc
    if name in _TORCH_NAMES:
        import importlib

        try:
            module = importlib.import_module(f".{_TORCH_NAMES[name]}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            hint = " (without torch, NumpyKAN.load reads the same files)" if name == "load" else ""
            raise ImportError(f"kancore.{name} needs PyTorch: pip install 'kancore[torch]'{hint}") from exc
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kancore' has no attribute {name!r}")


def __dir__() -> List[str]:
    # dir(), help() and tab completion list the whole API, including the names loaded lazily.
    return sorted(set(globals()) | set(__all__))
