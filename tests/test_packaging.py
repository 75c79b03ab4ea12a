"""Packaging: the installed project is this checkout, with requirements.txt's dependencies; no sys.path edits."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement

import mysite

ROOT = Path(__file__).resolve().parent.parent


def _requirements(lines: list[str]) -> set[str]:
    return {str(Requirement(line.split("#")[0].strip())) for line in lines if line.split("#")[0].strip()}


def test_installed_metadata_has_requirements_txt_dependencies():
    # deploy/dev.sh installs requirements-dev.txt, which installs the project (-e .).
    meta = importlib.metadata.metadata("mysite")
    assert meta["Version"] == mysite.__version__
    wanted = _requirements((ROOT / "requirements.txt").read_text().splitlines())
    assert _requirements(importlib.metadata.requires("mysite") or []) == wanted
    assert Path(mysite.__file__).resolve().parent == ROOT / "mysite"  # editable: the checkout itself


def test_package_data_covers_every_file_the_package_reads():
    text = (ROOT / "pyproject.toml").read_text()
    globs = re.search(r"mysite = \[(.*?)\]", text).group(1).replace('"', "").split(", ")
    shipped = {p for g in globs for p in (ROOT / "mysite").glob(g) if p.is_file()}
    needed = {p for p in (ROOT / "mysite").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
              and "__pycache__" not in p.parts}
    assert needed <= shipped, sorted(str(p.relative_to(ROOT)) for p in needed - shipped)


def test_nothing_edits_sys_path_but_the_pythonanywhere_wsgi_file():
    # PythonAnywhere runs its WSGI file from /var/www: putting the project on the path is its documented job.
    offenders = [str(p.relative_to(ROOT)) for folder in ("mysite", "tests", "bench", "examples", "tools", "deploy")
                 for p in (ROOT / folder).rglob("*.py")
                 if p.name != "test_packaging.py" and re.search(r"sys\.path\.(insert|append)\(", p.read_text())]
    assert offenders == ["deploy/pythonanywhere_wsgi.py"]
