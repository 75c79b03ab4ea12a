"""PythonAnywhere as docs/deploy-pythonanywhere.md tells it: its ``.env`` example works pasted as is, and uWSGI run as
PythonAnywhere runs it (one process, no threads, touch-reload) loses no request across a reload.

The uWSGI test needs uWSGI beside this interpreter (``pip install -r bench/requirements.txt``;
``python -m bench.pythonanywhere`` installs it). Without it the test skips on a laptop, but
fails with ``CI=true``: ``.ci/run`` installs it (pip builds it once, about 90 s). The bench is
the full rehearsal. About 6 s when it runs.
"""

from __future__ import annotations

import os

import pytest

from bench import pythonanywhere
from mysite import create_app
from mysite.web.state import current_settings


def test_readme_env_example_works_when_pasted(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text(pythonanywhere.readme_env_example())
    for name in [n for n in os.environ if n.startswith("MYSITE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MYSITE_ENV_FILE", str(env))
    monkeypatch.setenv("HOME", str(tmp_path))
    app = create_app()
    assert app.test_client().get("/healthz").status_code == 200
    settings = current_settings(app)
    assert settings.max_upload_mb == 5 and settings.model_dir == tmp_path / "mysite-models"
    assert settings.extra == {}  # every line is a setting the app reads: no typo warning


@pytest.mark.slow
@pytest.mark.needs("uwsgi")
def test_uwsgi_touch_reload_under_load_drops_nothing():
    r = pythonanywhere.rehearse(reloads=1, clients=1)
    assert r["failed"] == 0, r["first_failure"]
    assert r["requests"] >= 5 and len(r["touch_to_serving_ms"]) == 1
    assert r["env_limit_413"] == 413 and r["healthz"] == '{"status":"ok"}'
    assert r["errors_in_log"] == []
