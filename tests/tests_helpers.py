"""Small helpers shared by the test modules."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"

# The book's printed answer for its own photo (demo_request.py output), sorted.
BOOK_GROUP_BOXES = sorted([
    [151, 29, 193, 71], [77, 38, 115, 76], [448, 37, 490, 79], [81, 172, 127, 218], [536, 47, 574, 85],
    [288, 173, 331, 216], [509, 170, 553, 214], [357, 48, 399, 90], [182, 179, 219, 216], [251, 38, 293, 80],
    [400, 174, 444, 218], [390, 87, 430, 127], [54, 89, 97, 132], [499, 91, 542, 134], [159, 95, 198, 134],
    [310, 115, 344, 149], [225, 116, 265, 156],
])


def read(name: str) -> bytes:
    """The bytes of a test photo in tests/data."""
    return (DATA / name).read_bytes()


def multipart(field: str, data: bytes, filename: str = "photo.jpg") -> dict:
    """A Flask test-client form with one uploaded file."""
    return {field: (io.BytesIO(data), filename)}


def boxes_of(body: dict) -> list[list[int]]:
    return [d["box"] for d in body["result"]]


def nginx_path() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _beside_python(name: str) -> str | None:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else shutil.which(name)


def _chromium() -> bool:
    from webdriver import find_chromium

    return find_chromium() is not None


def _dev_venv() -> bool:
    """Whether deploy/dev.sh made this .venv: its stamp for requirements.txt says so (never let a test run pip)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256((root / "requirements.txt").read_bytes() * 2).hexdigest()[:16]
    return (root / ".venv" / f".installed-requirements.txt-{digest}").exists()


# What a test may need beyond requirements-dev.txt: how to tell it is there, and how to install it.
NEEDS: dict[str, tuple[Callable[[], object], str]] = {
    "nginx": (nginx_path, "nginx is not installed (apt-get install -y nginx, or .ci/install-nginx)"),
    "chromium": (_chromium, "headless Chromium is not installed (apt-get install -y chromium chromium-driver, "
                            "or .ci/install-browser)"),
    "jquery": (Path("/usr/share/javascript/jquery/jquery.min.js").is_file,
               "Debian's libjs-jquery is not installed (apt-get install -y libjs-jquery, or .ci/install-browser)"),
    "curl": (lambda: shutil.which("curl"), "curl is not installed (apt-get install -y curl, or .ci/install-browser)"),
    "uwsgi": (lambda: Path(sys.executable).with_name("uwsgi").exists(),
              "uWSGI is not installed (pip install -r bench/requirements.txt)"),
    "dev-venv": (_dev_venv, "run through deploy/dev.sh test (its .venv stamps) to check serve"),
    "ruff": (lambda: _beside_python("ruff"), "ruff is not installed (pip install -r requirements-dev.txt)"),
    "mypy": (lambda: _beside_python("mypy"), "mypy is not installed (pip install -r requirements-dev.txt)"),
}


def require(name: str) -> None:
    """Skip the test when ``name`` (a key of NEEDS) is missing, but fail it under CI=true: CI installs
    everything (.ci/run), so there a missing tool is a broken setup, never a reason to skip."""
    present, reason = NEEDS[name]
    if present():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires this test to run")
    pytest.skip(reason)
