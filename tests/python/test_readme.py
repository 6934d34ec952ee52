"""Every ```python block of README.md runs exactly as written.

Each block runs in its own interpreter, in a temporary directory (files it writes land there),
with matplotlib's headless backend. Blocks fenced as ```python fragment are excerpts and are
skipped; the C++ blocks are compiled by the GoogleTest suite (tests/cpp/test_readme_*.cpp).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.S | re.M)


def python_blocks():
    blocks = []
    for m in FENCE.finditer(README.read_text()):
        info = m.group(1).split()
        if info[:1] == ["python"] and "fragment" not in info[1:]:
            line = README.read_text()[:m.start()].count("\n") + 1
            blocks.append(pytest.param(m.group(2), id=f"README.md:{line}"))
    return blocks


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 6


@pytest.mark.parametrize("code", python_blocks())
def test_readme_python_block_runs(code, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="error:kancore:FutureWarning")  # ours only, not torch's
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"the block failed:\n{code}\n--- stderr ---\n{run.stderr[-3000:]}"
