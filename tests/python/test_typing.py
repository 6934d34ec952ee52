"""kancore ships its annotations (py.typed): mypy --strict accepts a typed user script, and
catches a wrong call in one."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mypy")

HERE = Path(__file__).resolve().parent


def _mypy(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           "--python-executable", sys.executable, str(path)],
                          capture_output=True, text=True, timeout=600)


def test_mypy_accepts_a_typed_user_script():
    run = _mypy(HERE / "typing" / "user_script.py")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_sees_the_real_signatures(tmp_path):
    # Through the lazy names too: a wrong argument type is reported, not hidden behind Any.
    bad = tmp_path / "bad.py"
    bad.write_text("import kancore\n"
                   "model = kancore.KAN([2, 1])\n"
                   "kancore.fit(model, None, steps='ten')\n")
    run = _mypy(bad)
    assert run.returncode == 1 and 'steps' in run.stdout and "str" in run.stdout, run.stdout
