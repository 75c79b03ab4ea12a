"""Every ``curl`` line of the shell examples in the README and the guides in docs/, run as printed
against the site as deployed.

The site runs under the Procfile's gunicorn on a free loopback port; each line is run
by the shell from a directory where the examples' relative paths (``tests/data/...``)
resolve, with ``http://localhost:5000`` (or ``127.0.0.1:5000``) rewritten to that port and
``--fail-with-body`` added so that an HTTP error fails the line. A line that sends ``$KEY``
goes to a second server with MYSITE_API_KEYS set, with KEY holding one of its keys. A line
that names any other host (an image on the web for ``?url=``) needs the internet and is
skipped; nothing else is.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from live_server import PROJECT, start_gunicorn
from tiny_models import colour_classifier, fixed_ssd

pytestmark = pytest.mark.slow

README_HOST = re.compile(r"http://(localhost|127\.0\.0\.1):5000")
API_KEY = "readme-example-key-0123456789"
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


DOCUMENTS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]


def readme_curl_lines(document: Path = PROJECT / "README.md") -> list[str]:
    """The lines of a document's shell code blocks that run curl (alone or at the end of a pipe)."""
    lines = []
    for body in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", document.read_text(), re.S):
        lines += [line.strip() for line in body.splitlines() if re.match(r"^(\S.*\|\s*)?curl\s", line.strip())]
    return lines


def needs_internet(line: str) -> bool:
    """Whether the line names a host other than this machine (also inside a query, e.g. ?url=https://...)."""
    return any(urlsplit(url).hostname not in LOOPBACK for url in re.findall(r"https?://[^\s'\"&]+", line))


LINES = sorted({line for document in DOCUMENTS for line in readme_curl_lines(document)})


def test_the_readme_and_guides_have_curl_lines_to_run() -> None:
    assert len(readme_curl_lines()) >= 3 and len(LINES) >= 10
    assert all(README_HOST.search(line) for line in LINES)


@pytest.fixture(scope="module")
def readme_models(tmp_path_factory) -> dict[str, str]:
    """Every model loaded: the tiny SSD and classifier stand in for the two that the guides fetch first
    (``python -m mysite.models fetch ...``), so those examples run here too."""
    d = tmp_path_factory.mktemp("readme-models")
    colour_classifier(d / "squeezenet1.1-7.onnx", classes=(285, 281, 0), outputs=1000)
    fixed_ssd(d / "ssd.onnx", np.array([[0, 8, 0.9, 0.1, 0.1, 0.6, 0.6]]))
    return {"MYSITE_MODEL_DIR": str(d), "MYSITE_SSD_MODEL": str(d / "ssd.onnx")}


@pytest.fixture(scope="module")
def readme_server(readme_models, tmp_path_factory):
    """The Procfile's gunicorn, open, as the examples assume."""
    with start_gunicorn(readme_models, log_dir=tmp_path_factory.mktemp("readme-log")) as server:
        yield server


@pytest.fixture(scope="module")
def keyed_server(readme_models, tmp_path_factory):
    """The same with MYSITE_API_KEYS set, for the lines that send a key."""
    with start_gunicorn({**readme_models, "MYSITE_API_KEYS": API_KEY},
                        log_dir=tmp_path_factory.mktemp("readme-keyed-log")) as server:
        yield server


@pytest.mark.parametrize("line", LINES)
def test_readme_curl_line_runs(line: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if needs_internet(README_HOST.sub("", line)):
        pytest.skip("needs the internet: " + line)
    keyed = "$KEY" in line
    server = request.getfixturevalue("keyed_server" if keyed else "readme_server")
    (tmp_path / "tests").symlink_to(PROJECT / "tests")  # the examples' relative paths, from a fresh clone's top
    command = re.sub(r"\bcurl\s", "curl -sS --fail-with-body ", README_HOST.sub(server.url, line), count=1)
    env = {**os.environ, "KEY": API_KEY} if keyed else None
    run = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=60, env=env)
    assert run.returncode == 0, f"{line}\nexit {run.returncode}: {run.stdout[:300]!r} {run.stderr[:300]!r}"
    written = re.search(r"\s-o\s+(\S+)", line)
    if written:  # the answer went to a file: a picture
        assert (tmp_path / written.group(1)).read_bytes()[:2] in (b"\xff\xd8", b"\x89P"), line
    else:
        assert run.stdout.strip(), line
