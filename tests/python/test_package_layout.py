"""The package's shape: imports flow one way (no cycles), and the API is discoverable.

The import graph is read from the sources (every ``from . import`` / ``from .x import``,
including those inside functions), so a lazy import that points upward fails here too.
"""
import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import kancore

PACKAGE = Path(kancore.__file__).resolve().parent

# The floors, bottom first; a module may import only from lower floors.
FLOORS = {
    "_core": 0,
    "_plotting": 0,  # a leaf: arrays in, figures out; the layers import it when drawing
    "portable": 0,  # a leaf: the layers' forwards in standard torch ops (ONNX export)
    "symbolic_edges": 2,  # fixed edges a * f(b x + c) + d inside a layer (fix_symbolic)
    "_ops": 1,
    "functional": 2,
    "numpy_network": 2,
    "kan_layer": 3,
    "kan_linear": 3,
    "network": 4,
    "model_io": 5,
    "fused": 5,  # one native call for a KAN's loss and gradients (training's fast path)
    "training": 6,
    "inspection": 5,
    "pruning": 5,
    "nn": 5,  # KANFeedForward, KANClassifierHead
    "distributed": 5,  # grid updates agreed across ranks (DDP)
    "symbolic": 6,  # formulas from the edges (uses pruning's edge values)
    "__main__": 7,
    "__init__": 7,
}


def _kancore_imports(path: Path):
    """The package modules that ``path`` imports (relative imports and ``kancore.*``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import a, b
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "kancore" and "." in node.module:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "kancore" and len(parts) > 1:
                    found.add(parts[1])
    return found


def _graph():
    sources = sorted(p for p in PACKAGE.glob("*.py"))
    return {p.stem: _kancore_imports(p) - {"__version__", "built_with_cuda"} for p in sources}


def test_every_module_has_a_floor():
    assert set(_graph()) == set(FLOORS) - {"_core"}


def test_imports_flow_down_only():
    graph = _graph()
    upward = [(mod, dep) for mod, deps in graph.items() for dep in deps
              if dep in FLOORS and FLOORS[dep] >= FLOORS[mod]]
    assert not upward, f"imports that do not point to a lower floor: {upward}"


def test_import_graph_has_no_cycle():
    graph = _graph()
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                pytest.fail(f"import cycle: {' -> '.join(stack + [node, dep])}")
            if dep not in state:
                visit(dep, stack + [node])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


def test_dir_lists_the_whole_api():
    pytest.importorskip("torch")
    names = set(dir(kancore))
    assert set(kancore.__all__) <= names
    for name in ("KANLayer", "KANLinear", "KAN", "fit", "save", "load", "plot_network", "NumpyKAN"):
        assert name in names
        assert getattr(kancore, name) is not None
    out = subprocess.run([sys.executable, "-c", "import kancore; print(len(dir(kancore)))"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) >= len(kancore.__all__)


def test_help_shows_the_lazy_classes_and_functions():
    pytest.importorskip("torch")
    code = ("import pydoc, kancore; print(pydoc.render_doc(kancore, renderer=pydoc.plaintext))")
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("class KANLayer", "class KANLinear", "class KAN(", "fit(model", "load(path",
                 "plot_network(model", "mlp_with_same_parameters("):
        assert name in text, name


def test_plotting_is_not_imported_until_a_figure_is_drawn():
    pytest.importorskip("torch")
    code = ("import sys, torch, kancore; kancore.KAN([2, 2, 1]); kancore.fit; kancore.save; "
            "kancore.plot_network; print('kancore._plotting' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_typed_marker_ships():
    assert (PACKAGE / "py.typed").is_file()
    assert importlib.util.find_spec("kancore") is not None


def _public_callables():
    import inspect

    for name in kancore.__all__:
        obj = getattr(kancore, name)
        if isinstance(obj, str):
            continue
        if inspect.ismodule(obj):
            yield from ((f"{name}.{m}", getattr(obj, m)) for m in obj.__all__)
            continue
        yield name, obj
        if inspect.isclass(obj) and not issubclass(obj, tuple):
            for m, v in vars(obj).items():
                if not m.startswith("_") and (callable(v) or isinstance(v, (property, classmethod))):
                    yield f"{name}.{m}", (v.fget if isinstance(v, property) else getattr(obj, m))


def test_every_public_name_has_a_numpydoc_docstring():
    # A summary for everything; a "Parameters" section where there are two or more parameters.
    import inspect

    pytest.importorskip("torch")
    missing, unsectioned = [], []
    for qual, obj in _public_callables():
        doc = inspect.getdoc(obj)
        if not doc:
            missing.append(qual)
            continue
        if isinstance(obj, type) and issubclass(obj, tuple):
            continue  # NamedTuples document their fields
        try:
            params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
        except (TypeError, ValueError):
            continue
        if len(params) >= 2 and "Parameters\n----------" not in doc:
            unsectioned.append(qual)
    assert not missing, f"no docstring: {missing}"
    assert not unsectioned, f"no Parameters section: {unsectioned}"
