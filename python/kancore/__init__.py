"""kancore: a native (C++/CUDA) engine for Kolmogorov-Arnold Networks.

``from kancore import KANLayer`` is a drop-in for kanditioned's ``KANLayer`` (needs PyTorch).
Without PyTorch, ``kancore.functional`` runs the same kernels on NumPy arrays.
"""
from ._core import __version__, built_with_cuda
from . import functional

__all__ = ["KANLayer", "functional", "built_with_cuda", "__version__"]


def __getattr__(name):
    # KANLayer needs torch; load it on first use so `import kancore` works with NumPy alone.
    if name == "KANLayer":
        try:
            from .kan_layer import KANLayer
        except ModuleNotFoundError as exc:
            if exc.name != "torch":
                raise
            raise ImportError("kancore.KANLayer needs PyTorch: pip install 'kancore[torch]'") from exc
        globals()["KANLayer"] = KANLayer
        return KANLayer
    raise AttributeError(f"module 'kancore' has no attribute {name!r}")
