"""examples/quickstart.ipynb runs top to bottom in a fresh kernel, without errors, and shows its
figures (image outputs), each once."""
import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"
KERNEL = "kancore-test-python"


@pytest.fixture
def kernel_of_this_interpreter(tmp_path, monkeypatch):
    """A kernel spec whose python is the interpreter running the tests (the venv's), found first
    on JUPYTER_PATH, so no installed 'python3' spec of another environment can be picked up."""
    spec = tmp_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kancore test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return KERNEL


def test_quickstart_notebook_executes_with_figures(kernel_of_this_interpreter, tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Run in a copy of the examples folder so the notebook's output/ lands in tmp_path.
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name=kernel_of_this_interpreter,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    image_cells = [cell for cell in nb.cells if cell.cell_type == "code"
                   and any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))]
    # Loss curve, layer mappings, the network figure and the network before and after pruning,
    # one image each (not shown twice).
    assert len(image_cells) == 5
    for cell in image_cells:
        assert sum("image/png" in o.get("data", {}) for o in cell.outputs) == 1
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "identical predictions after reload: True" in text
    assert "after pruning: widths [3, " in text and "refined to grid 20 while training" in text
    assert "symbolic network: test RMSE" in text
    formula = text.split("symbolic network: test RMSE")[1].splitlines()[1]
    assert "x1**2" in formula and "sin(3.1" in formula and "x2" not in formula, formula  # g's law
    # kancore's own warnings (a deprecated name, say) must not show in the walkthrough.
    errs = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "FutureWarning" not in errs and "kancore:" not in errs, errs
    assert (tmp_path / "output" / "quickstart_kan.safetensors").stat().st_size > 0
