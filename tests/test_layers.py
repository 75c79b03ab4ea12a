"""The package's layering, read from the source: the CV code knows nothing of the web or the server,
and the web layer asks no model what it can do by reflection (a model declares it: ``mysite/models/kinds.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mysite"
# The vision layer runs in CV processes that have no Flask and no server: it imports neither.
NOT_IN_VISION = ("flask", "werkzeug", "gunicorn", "mysite.web", "mysite.server", "mysite.faces")
# getattr/hasattr in web/ that reads no model; a new one has to be argued for here.
WEB_REFLECTION = {
    ("endpoints.py", "settings"),  # a choice's setting, named in the endpoint table
    ("inputs.py", "self._stream"),  # the counted stream passes other attributes to the one it wraps
}


def _modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", _modules("vision"), ids=lambda p: p.name)
def test_the_vision_layer_imports_nothing_of_the_web_or_the_server(path: Path) -> None:
    imported = _imports(ast.parse(path.read_text()))
    wrong = sorted(m for m in imported if any(m == n or m.startswith(n + ".") for n in NOT_IN_VISION))
    assert not wrong, f"{path.name} imports {wrong}"


def test_the_web_layer_asks_models_nothing_by_reflection() -> None:
    found = set()
    for path in _modules("web"):
        tree = ast.parse(path.read_text())
        assert "inspect" not in _imports(tree), f"{path.name} imports inspect"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
                found.add((path.name, ast.unparse(node.args[0])))
    assert found <= WEB_REFLECTION, sorted(found - WEB_REFLECTION)
