"""The hosting files agree with the app: Elastic Beanstalk's config, nginx's body limit, the
Procfile, and the PythonAnywhere WSGI template."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_elastic_beanstalk_points_at_the_app_and_its_health_check(app):
    config = (ROOT / ".ebextensions" / "01-mysite.config").read_text()
    assert re.search(r"WSGIPath:\s*wsgi:application", config)
    assert re.search(r"PORT:\s*8000", config)
    health = re.search(r"HealthCheckPath:\s*(\S+)", config).group(1)
    assert health in {r.rule for r in app.url_map.iter_rules()}
    assert app.test_client().get(health).status_code == 200


def test_nginx_lets_the_largest_accepted_body_through(app):
    conf = (ROOT / ".platform" / "nginx" / "conf.d" / "mysite.conf").read_text()
    megabytes = int(re.search(r"client_max_body_size\s+(\d+)M;", conf).group(1))
    assert megabytes * 1024 * 1024 >= app.config["MAX_CONTENT_LENGTH"]


def test_procfile_serves_wsgi_application_with_gunicorn():
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    assert "gunicorn" in line and line.rstrip().endswith("wsgi:application")


def test_pythonanywhere_template_loads_the_app_from_home(tmp_path):
    # PythonAnywhere runs the WSGI file from /var/www with the project in ~/mysite.
    (tmp_path / "mysite").symlink_to(ROOT)
    code = "import runpy; g = runpy.run_path(%r); print(type(g['application']).__name__)" % str(
        ROOT / "deploy" / "pythonanywhere_wsgi.py")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MYSITE_LOG_LEVEL": "ERROR"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Flask"


def test_nginx_waits_as_long_as_gunicorn_lets_a_request_run():
    import importlib

    conf = (ROOT / ".platform" / "nginx" / "conf.d" / "mysite.conf").read_text()
    gunicorn_timeout = importlib.import_module("mysite.gunicorn_conf").timeout
    assert int(re.search(r"proxy_read_timeout\s+(\d+)s;", conf).group(1)) >= gunicorn_timeout
