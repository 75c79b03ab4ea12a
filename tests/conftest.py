"""Shared fixtures: the app in-process, and the real site under gunicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from live_server import LiveServer, start_gunicorn

DATA = Path(__file__).with_name("data")


@pytest.fixture()
def app():  # type: ignore[no-untyped-def]
    from mysite import create_app

    return create_app({"MYSITE_LOG_LEVEL": "WARNING"})


@pytest.fixture()
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


@pytest.fixture(scope="session")
def live_server() -> Iterator[LiveServer]:
    """The site as deployed (the Procfile's gunicorn command), on a free loopback port."""
    with start_gunicorn() as server:
        yield server
