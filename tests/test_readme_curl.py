"""Every ``curl`` line of the README's shell examples, run as printed against the site as deployed.

The site runs under the Procfile's gunicorn on a free loopback port; each line is run
by the shell from a directory where the README's relative paths (``tests/data/...``)
resolve, with ``http://localhost:5000`` rewritten to that port and ``--fail-with-body``
added so that an HTTP error fails the line. A line that names any other host (an image
on the web for ``?url=``) needs the internet and is skipped; nothing else is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from live_server import PROJECT, start_gunicorn
from tiny_models import colour_classifier, fixed_ssd

README_HOST = "http://localhost:5000"
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def readme_curl_lines(readme: Path = PROJECT / "README.md") -> list[str]:
    """The lines of the README's shell code blocks that run curl (alone or at the end of a pipe)."""
    lines = []
    for body in re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", readme.read_text(), re.S):
        lines += [line.strip() for line in body.splitlines() if re.match(r"^(\S.*\|\s*)?curl\s", line.strip())]
    return lines


def needs_internet(line: str) -> bool:
    """Whether the line names a host other than this machine (also inside a query, e.g. ?url=https://...)."""
    return any(urlsplit(url).hostname not in LOOPBACK for url in re.findall(r"https?://[^\s'\"&]+", line))


LINES = readme_curl_lines()


def test_the_readme_has_curl_lines_to_run() -> None:
    assert len(LINES) >= 10 and all(README_HOST in line for line in LINES)


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory):
    """The Procfile's gunicorn with every model loaded: the tiny SSD and classifier stand in for the two that
    the README fetches first (``python -m mysite.models fetch ...``), so those examples run here too."""
    d = tmp_path_factory.mktemp("readme-models")
    colour_classifier(d / "squeezenet1.1-7.onnx", classes=(285, 281, 0), outputs=1000)
    fixed_ssd(d / "ssd.onnx", np.array([[0, 8, 0.9, 0.1, 0.1, 0.6, 0.6]]))
    with start_gunicorn({"MYSITE_MODEL_DIR": str(d), "MYSITE_SSD_MODEL": str(d / "ssd.onnx")},
                        log_dir=tmp_path_factory.mktemp("readme-log")) as server:
        yield server


@pytest.mark.parametrize("line", LINES)
def test_readme_curl_line_runs(line: str, readme_server, tmp_path: Path) -> None:
    if needs_internet(line.replace(README_HOST, "")):
        pytest.skip("needs the internet: " + line)
    (tmp_path / "tests").symlink_to(PROJECT / "tests")  # the README's relative paths, from a fresh clone's top
    command = re.sub(r"\bcurl\s", "curl -sS --fail-with-body ", line.replace(README_HOST, readme_server.url), count=1)
    run = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=60)
    assert run.returncode == 0, f"{line}\nexit {run.returncode}: {run.stdout[:300]!r} {run.stderr[:300]!r}"
    written = re.search(r"\s-o\s+(\S+)", line)
    if written:  # the answer went to a file: a picture
        assert (tmp_path / written.group(1)).read_bytes()[:2] in (b"\xff\xd8", b"\x89P"), line
    else:
        assert run.stdout.strip(), line
