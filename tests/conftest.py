"""Shared fixtures: the app in-process, and the real site under gunicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import LiveServer, serve_directory, start_gunicorn

DATA = Path(__file__).with_name("data")


@pytest.fixture()
def app():  # type: ignore[no-untyped-def]
    from mysite import create_app

    return create_app({"MYSITE_LOG_LEVEL": "WARNING"})


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def image_server() -> Iterator[str]:
    """tests/data served over HTTP on loopback: an image URL for ?url= that never leaves the machine."""
    with serve_directory(DATA) as url:
        yield url


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """The site as deployed (the Procfile's gunicorn command), on a free loopback port.

    Loopback is allowed for ?url= so tests can fetch from ``image_server``; nothing else is.
    """
    with start_gunicorn({"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.1/32"}) as server:
        yield server
