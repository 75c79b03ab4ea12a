"""The README and the guides in docs/: every relative link resolves (files and #anchors), the README
stays a front door, and no word only the project's insiders know is left in them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from live_server import PROJECT

DOCUMENTS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    """Every heading's anchor in ``document``, with GitHub's -1, -2 … for repeated headings."""
    found: set[str] = set()
    code = re.sub(r"^```.*?^```", "", document.read_text(), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", code, re.M):
        base, n = slug(heading), 0
        while (name := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(name)
    return found


def links(document: Path) -> list[str]:
    return [target for target in LINK.findall(prose(document.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: are not checked


def test_the_guides_exist_and_the_readme_links_them() -> None:
    names = {p.name for p in DOCUMENTS[1:]}
    assert {"index.md", "api.md", "compatibility.md", "deploy-pythonanywhere.md", "deploy-elastic-beanstalk.md",
            "deploy-docker.md", "models.md", "performance.md", "reliability-security.md", "development.md",
            "page-and-client.md", "settings.md"} <= names
    readme_links = {target.split("#")[0] for target in links(PROJECT / "README.md")}
    assert {f"docs/{name}" for name in names} <= readme_links | {"docs/images"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_every_relative_link_resolves(document: Path) -> None:
    broken = []
    for target in links(document):
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{document.name}: {broken}"


def test_the_readme_is_a_front_door() -> None:
    text = (PROJECT / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert re.search(r"open <http://127\.0\.0\.1:5000/> in a browser", text, re.I)  # it sends a visitor to the page
    assert "docs/images/page.png" in text and (PROJECT / "docs/images/page.png").stat().st_size > 10_000


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(PROJECT).as_posix())
def test_no_insider_words(document: Path) -> None:
    """Things are called by what they are: no numbered reference systems, issue numbers or people."""
    words = re.findall(r"\bseed \d+|\bseeds\b|\bthe seed\b|\bissue \d+|\bthe lead\b|\bthis machine\b",
                       document.read_text(), re.I)
    assert not words, f"{document.name}: {words}"
