"""The app's state, typed: what ``create_app()`` built, each part read back by one accessor.

Flask's own pattern (flaskr's ``get_db()``): code that runs in a request calls
``current_settings()``, ``current_registry()`` or ``current_endpoints()``; code
that holds the app (start-up, tests, benchmarks) passes it. Nothing else reads
``app.extensions`` by a string key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from mysite.server import pool
from mysite.server.concurrency import Gate

if TYPE_CHECKING:
    from mysite.models.registry import Registry
    from mysite.settings import Settings
    from mysite.web.endpoints import Endpoint

_KEY = "mysite"


@dataclass
class AppState:
    """The settings the app was built with, its loaded models, the endpoint table it registered, and
    its detection gate (one detection at a time per worker process, a short queue, 503 beyond it)."""

    settings: Settings
    registry: Registry
    endpoints: tuple[Endpoint, ...] = ()
    gate: Gate = field(default_factory=Gate)

    def endpoint(self, path: str) -> Endpoint | None:
        """The registered row serving ``path`` (``/predict`` and ``/predict/`` are two rows), or None."""
        return next((ep for ep in self.endpoints if ep.path == path), None)


def install(app: Flask, settings: Settings, registry: Registry) -> AppState:
    """Attach the state to ``app`` (once, in ``create_app``)."""
    state = AppState(settings, registry, gate=Gate(slots=1, queue=settings.queue))
    app.extensions[_KEY] = state
    return state


def app_state(app: Flask | None = None) -> AppState:
    """The state of ``app``, or of the app handling the current request."""
    return (app or current_app).extensions[_KEY]


def current_settings(app: Flask | None = None) -> Settings:
    return app_state(app).settings


def current_registry(app: Flask | None = None) -> Registry:
    return app_state(app).registry


def current_gate(app: Flask | None = None) -> Gate:
    return app_state(app).gate


def current_endpoints(app: Flask | None = None) -> tuple[Endpoint, ...]:
    """The endpoint table as registered on the app: what the page, ``GET /``, OpenAPI and the tests read."""
    return app_state(app).endpoints


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(models, *args)`` where this instance runs CV work: its process pool, or (without one: uWSGI,
    the test client, MYSITE_CV_PROCESSES=0) this thread, one request at a time per process."""
    client = pool.current()
    if client is not None:
        return client.call(fn, *args)
    with current_gate().slot():
        return fn(current_registry(), *args)
