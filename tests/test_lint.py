"""The linters the project keeps clean (settings in pyproject.toml): ruff over everything, mypy over mysite/.

Both come with requirements-dev.txt; without them the test skips on a laptop but fails with
``CI=true``. About 10 s (mypy's first run; its cache makes later runs faster).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import require

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str:
    require(name)
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else str(shutil.which(name))


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]])
def test_linter_is_clean(command):
    done = subprocess.run([_tool(command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
