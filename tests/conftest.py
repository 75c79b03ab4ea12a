"""Shared fixtures: an app per test from create_app(overrides), and the real test photos."""

from __future__ import annotations

import os

import pytest

# Tests never read a developer's .env or MYSITE_* variables: each app gets exactly its overrides.
os.environ["MYSITE_ENV_FILE"] = os.devnull
for _name in [n for n in os.environ if n.startswith("MYSITE_") and n != "MYSITE_ENV_FILE"]:
    del os.environ[_name]

from tests_helpers import DATA, read, require  # noqa: E402 - after the environment is cleaned


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test served by the site under gunicorn (the ``live_server`` fixture) is a system test: slow."""
    for item in items:
        if "live_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.needs("nginx", ...)``: skip without the tool, fail without it under CI=true
    (before any fixture starts a server for nothing)."""
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            require(name)


@pytest.fixture(scope="session")
def group_jpg() -> bytes:
    return read("group_17_faces.jpg")


@pytest.fixture(scope="session")
def cat_jpg() -> bytes:
    return read("cat.jpg")


@pytest.fixture(scope="session")
def car_jpg() -> bytes:
    return read("car.jpg")


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    return read("astronaut.png")


@pytest.fixture(scope="session")
def app():
    """One app with default settings for the whole session (models load once, as in production)."""
    from mysite import create_app

    return create_app({"MYSITE_LOG_LEVEL": "WARNING"})


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def make_app():
    """Build an app with particular settings: make_app({"MYSITE_MAX_UPLOAD_MB": 1})."""
    from mysite import create_app

    def make(overrides: dict | None = None):
        return create_app({"MYSITE_LOG_LEVEL": "WARNING", **(overrides or {})})

    return make


@pytest.fixture(scope="session")
def image_server():
    """The test photos served over HTTP on loopback: image URLs for ?url= that never leave the machine."""
    from loopback import serve

    kinds = {".jpg": "image/jpeg", ".png": "image/png"}
    routes = {f"/{p.name}": (200, {"Content-Type": kinds[p.suffix]}, p.read_bytes())
              for p in DATA.iterdir() if p.suffix in kinds}
    with serve(routes) as (url, _seen):
        yield url


@pytest.fixture(scope="session")
def live_server():
    """The site as deployed (the Procfile's gunicorn command), on a free loopback port.

    Loopback is allowed for ?url= so tests can fetch from ``image_server``; nothing else is.
    """
    from live_server import start_gunicorn

    with start_gunicorn({"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.1/32"}) as server:
        yield server


@pytest.fixture(scope="session")
def full_app(tmp_path_factory):
    """An app with every model of models.toml loaded: the tiny SSD and classifier (tests/tiny_models.py) stand in
    for the two that are downloaded, so each registered endpoint can answer 200. ?url= may fetch from loopback."""
    import numpy as np
    from tiny_models import colour_classifier, fixed_ssd

    from mysite import create_app

    d = tmp_path_factory.mktemp("models")
    colour_classifier(d / "squeezenet1.1-7.onnx", classes=(285, 281, 0), outputs=1000)
    # A cat (VOC 8) and a person (15), in fractions of the image.
    fixed_ssd(d / "ssd.onnx", np.array([[0, 8, 0.9, 0.1, 0.1, 0.6, 0.6], [0, 15, 0.6, 0.5, 0.2, 0.9, 0.9]]))
    return create_app({"MYSITE_LOG_LEVEL": "ERROR", "MYSITE_MODEL_DIR": str(d), "MYSITE_SSD_MODEL": str(d / "ssd.onnx"),
                       "MYSITE_URL_ALLOW_NETWORKS": "127.0.0.1/32"})
