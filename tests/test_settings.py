"""Settings from MYSITE_* variables, the .env file and overrides; model path resolution."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import cv2
import pytest

from mysite import create_app
from mysite.models.kinds import DATA_DIR
from mysite.models.registry import resolve
from mysite.models.schema import ModelSpec, read_specs
from mysite.settings import Settings, SettingsError, load

NO_FILE = {"MYSITE_ENV_FILE": "/nonexistent/.env"}


def test_defaults():
    s = load(environ=NO_FILE)
    assert s.max_upload_mb == 10 and s.max_upload_bytes == 10 * 1024 * 1024
    assert s.max_pixels == 40_000_000 and s.url_fetch is True and s.url_allow_networks == ()
    assert s.log_level == "INFO" and s.model_dir is None and len(s.secret_key) >= 32


def test_values_are_parsed():
    s = load(environ={
        **NO_FILE, "MYSITE_MAX_UPLOAD_MB": "2.5", "MYSITE_MAX_PIXELS": "1000", "MYSITE_URL_FETCH": "off",
        "MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8, ::1/128", "MYSITE_LOG_LEVEL": "debug",
        "MYSITE_SECRET_KEY": "s3cret", "MYSITE_URL_TIMEOUT": "3",
    })
    assert s.max_upload_mb == 2.5 and s.max_pixels == 1000 and s.url_fetch is False
    assert s.url_allow_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert s.log_level == "DEBUG" and s.secret_key == "s3cret" and s.url_timeout == 3


@pytest.mark.parametrize("name,value", [
    ("MYSITE_MAX_UPLOAD_MB", "abc"), ("MYSITE_MAX_UPLOAD_MB", "-1"), ("MYSITE_MAX_UPLOAD_MB", "0"),
    ("MYSITE_MAX_PIXELS", "1.5"), ("MYSITE_MAX_PIXELS", "-5"), ("MYSITE_URL_FETCH", "maybe"),
    ("MYSITE_URL_ALLOW_NETWORKS", "not-a-network"), ("MYSITE_LOG_LEVEL", "LOUD"), ("MYSITE_URL_TIMEOUT", "nan"),
    ("MYSITE_CV_THREADS", "-2"),
])
def test_invalid_values_stop_start_up_naming_the_variable(name, value):
    with pytest.raises(SettingsError) as info:
        create_app({name: value})
    message = str(info.value)
    assert name in message and repr(value) in message and "\n" not in message


@pytest.mark.slow
def test_invalid_setting_stops_wsgi_with_one_line(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {"PATH": "/usr/bin:/bin", "MYSITE_MAX_UPLOAD_MB": "lots", "MYSITE_ENV_FILE": "/nonexistent"}
    proc = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "mysite: invalid setting: MYSITE_MAX_UPLOAD_MB must be a positive number of megabytes, not 'lots'"
    ]


def test_env_file_is_read_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# PythonAnywhere keeps secrets here\n"
        "export MYSITE_SECRET_KEY='from-file'\n"
        'MYSITE_MAX_UPLOAD_MB="3"\n'
        "MYSITE_LOG_LEVEL=WARNING\n"
        "not a line\n"
    )
    s = load(environ={"MYSITE_ENV_FILE": str(env_file), "MYSITE_LOG_LEVEL": "ERROR"})
    assert s.secret_key == "from-file" and s.max_upload_mb == 3 and s.log_level == "ERROR"
    s = load({"MYSITE_LOG_LEVEL": "DEBUG"}, environ={"MYSITE_ENV_FILE": str(env_file), "MYSITE_LOG_LEVEL": "ERROR"})
    assert s.log_level == "DEBUG"  # overrides win over both


def test_paths_expand_home_and_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SITE_USER", "opencv")
    s = load(environ={**NO_FILE, "MYSITE_MODEL_DIR": "~/models", "MYSITE_FACE_CASCADE": "/home/$SITE_USER/mysite/f.xml"})
    assert s.model_dir == tmp_path / "models"
    assert s.path("MYSITE_FACE_CASCADE") == Path("/home/opencv/mysite/f.xml")


def test_unused_variable_is_reported_as_a_likely_typo(caplog):
    with caplog.at_level(logging.WARNING, logger="mysite"):
        create_app({"MYSITE_FACE_CASCADES": "/x.xml", "MYSITE_THREADS": "2", "MYSITE_TIMEOUT": "30"})
    assert "MYSITE_FACE_CASCADES is not used" in caplog.text
    assert "MYSITE_THREADS" not in caplog.text and "MYSITE_TIMEOUT" not in caplog.text  # gunicorn's


# -- where model files are found --------------------------------------------------------------------

SPEC = ModelSpec(name="face", kind="cascade", file="haarcascade_frontalface_alt.xml", env="MYSITE_FACE_CASCADE")


def test_default_is_opencvs_own_cascade():
    assert resolve(SPEC, Settings()) == Path(cv2.data.haarcascades) / "haarcascade_frontalface_alt.xml"


def test_model_dir_comes_first(tmp_path):
    (tmp_path / SPEC.file).write_text("x")
    assert resolve(SPEC, Settings(model_dir=tmp_path)) == tmp_path / SPEC.file


def test_absolute_setting_wins(tmp_path):
    target = tmp_path / "mine.xml"
    s = Settings(model_dir=tmp_path, extra={"MYSITE_FACE_CASCADE": str(target)})
    assert resolve(SPEC, s) == target  # even while it does not exist: the error then names it


def test_relative_setting_resolves_in_model_dir(tmp_path):
    (tmp_path / "mine.xml").write_text("x")
    s = Settings(model_dir=tmp_path, extra={"MYSITE_FACE_CASCADE": "mine.xml"})
    assert resolve(SPEC, s) == tmp_path / "mine.xml"


@pytest.mark.slow
def test_setting_a_cascade_path_serves_it(tmp_path, make_app, group_jpg):
    import shutil

    from tests_helpers import multipart

    # Point the *face* endpoint at the cat cascade: it must now find no human faces.
    cat = Path(cv2.data.haarcascades) / "haarcascade_frontalcatface_extended.xml"
    shutil.copy(cat, tmp_path / "cat.xml")
    app = make_app({"MYSITE_MODEL_DIR": str(tmp_path), "MYSITE_FACE_CASCADE": "cat.xml"})
    body = app.test_client().get("/", headers={"Accept": "application/json"}).get_json()
    face = next(m for m in body["models"] if m["name"] == "face")
    assert face["path"] == "cat.xml" and face["loaded"]  # named relative to MYSITE_MODEL_DIR in public answers
    r = app.test_client().post("/detect", data=multipart("image", group_jpg))
    assert r.status_code == 200 and len(r.get_json()["result"]) < 17


def test_declared_models_are_data():
    specs = read_specs()
    assert {"face", "catface", "canny"} <= set(specs)
    assert specs["face"].env == "MYSITE_FACE_CASCADE" and specs["catface"].env == "MYSITE_CATFACE_CASCADE"
    assert specs["face"].params == {"scale_factor": 1.1, "min_neighbors": 5, "min_size": 25, "min_face": 0.025}
    assert DATA_DIR.name == "data"


def test_unknown_kind_is_reported_not_fatal(tmp_path):
    from mysite.models.registry import Registry

    reg = Registry({"odd": ModelSpec(name="odd", kind="hologram")}, Settings())
    assert not reg.entries["odd"].loaded and "unknown kind 'hologram'" in reg.entries["odd"].error


def test_models_load_with_opencvs_pool_off_then_get_the_configured_size(monkeypatch):
    """gunicorn forks workers after create_app (preload): an OpenCV pool started while loading
    would leave every worker single-threaded, so loading runs serially (the bench's
    "CPUs busy" column shows the effect)."""
    from mysite.models import registry

    seen = []
    real = dict(registry.KINDS)
    for kind, factory in real.items():
        monkeypatch.setitem(registry.KINDS, kind, lambda spec, path, f=factory: (seen.append(cv2.getNumThreads()), f(spec, path))[1])
    before = cv2.getNumThreads()
    try:
        create_app({"MYSITE_CV_THREADS": "2"})
        assert seen and all(n <= 1 for n in seen)
        assert cv2.getNumThreads() == 2
        create_app({"MYSITE_CV_THREADS": "1"})
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
