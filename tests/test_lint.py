"""The linters the project keeps clean (settings in pyproject.toml): ruff over everything, mypy over mysite/.

Both come with requirements-dev.txt; without them the test skips on a laptop but fails with
``CI=true``. About 10 s (mypy's first run; its cache makes later runs faster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: requirements-dev.txt installs it")
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt)")
    return path


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]])
def test_linter_is_clean(command):
    done = subprocess.run([_tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
