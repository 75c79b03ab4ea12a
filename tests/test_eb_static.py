"""The page's CSS and scripts through Elastic Beanstalk's nginx: the platform serves ``/static``
from disk, never asking the app, so the bundle must map it to the folder the assets are in.

Needs nginx (``.ci/install-nginx``): skipped without it on a laptop, a failure under ``CI=true``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import requests
from eb_nginx import eb_nginx
from live_server import start_gunicorn
from test_deploy import ROOT

from testkit.ebconfig import eb_options

STATIC_NS = "aws:elasticbeanstalk:environment:proxy:staticfiles"
TYPES = {".css": {"text/css"}, ".js": {"application/javascript", "text/javascript"}}


pytestmark = [pytest.mark.slow, pytest.mark.needs("nginx")]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with start_gunicorn(log_dir=tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def _bundle(tmp_path: Path) -> Path:
    """The parts of the source bundle nginx reads: the package's static folder and .platform/nginx."""
    bundle = tmp_path / "bundle"
    (bundle / "mysite" / "web").mkdir(parents=True)
    shutil.copytree(ROOT / "mysite" / "web" / "static", bundle / "mysite" / "web" / "static")
    shutil.copytree(ROOT / ".platform" / "nginx", bundle / ".platform" / "nginx")
    return bundle


@pytest.mark.parametrize("page", ["/", "/mnist"])
def test_the_pages_assets_are_served_with_their_types_through_eb_nginx(app_server, tmp_path, page):
    port = int(app_server.url.rsplit(":", 1)[1])
    with eb_nginx(_bundle(tmp_path), port, eb_options()[STATIC_NS]) as front:
        base = f"http://127.0.0.1:{front}"
        html = requests.get(base + page, headers={"Accept": "text/html"}, timeout=30)
        assert html.status_code == 200 and html.headers["Content-Type"].startswith("text/html")
        assets = _assets(html.text)
        assert len(assets) >= 3, html.text[:500]  # the stylesheet and two scripts
        for url in assets:
            got = requests.get(base + url, timeout=30)
            path = url.split("?")[0]
            assert got.status_code == 200, (url, got.status_code, got.text[:200])
            assert got.headers["Content-Type"].split(";")[0] in TYPES[Path(path).suffix], (url, got.headers)
            assert got.content == (ROOT / "mysite" / "web" / path.lstrip("/")).read_bytes()
            # The bytes the app itself would serve at that path: nginx serves the same file.
            assert got.content == requests.get(app_server.url + url, timeout=30).content


def test_without_the_mapping_the_platforms_default_loses_the_assets(app_server, tmp_path):
    """What the page got on Elastic Beanstalk before the mapping: nginx's 404 for every asset."""
    port = int(app_server.url.rsplit(":", 1)[1])
    with eb_nginx(_bundle(tmp_path), port, {}) as front:
        got = requests.get(f"http://127.0.0.1:{front}/static/page.css", timeout=30)
    assert got.status_code == 404
