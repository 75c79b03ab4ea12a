"""The app's state, typed: what ``create_app()`` built, each part read back by one accessor.

Flask's own pattern (flaskr's ``get_db()``): code that runs in a request calls
``current_settings()``, ``current_registry()`` or ``current_endpoints()``; code
that holds the app (start-up, tests, benchmarks) passes it. Nothing else reads
``app.extensions`` by a string key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, current_app

from mysite.server import metrics as live_metrics
from mysite.server.concurrency import Gate, Runner
from mysite.server.memory import AnswerRoom, Room
from mysite.server.metrics import QueueMetrics
from mysite.vision.budget import Budget

# One client (as the server names it) holds at most this fraction of each room: of the bodies in flight,
# and of the picture answers it has not read yet, as it holds at most a quarter of the threads.
CLIENT_PARTS = 4

if TYPE_CHECKING:
    from mysite.faces.index import FaceIndex
    from mysite.models.registry import Registry
    from mysite.settings import Settings
    from mysite.web.endpoints import Endpoint, ErrorShape, FaceRoute

_KEY = "mysite"


@dataclass
class AppState:
    """The settings the app was built with, its loaded models, the endpoint table it registered, a
    request's budget, and where its CV work runs (``runner.run``): the gate, one detection at a time
    per worker process, a short queue, 503 beyond it; under gunicorn, the process pool's client,
    which the master sets once it has started the pool."""

    settings: Settings
    registry: Registry
    endpoints: tuple[Endpoint, ...] = ()
    runner: Runner = field(default_factory=Gate)
    faces: FaceIndex | None = None  # the registered faces (web/faces.py)
    face_routes: tuple[FaceRoute, ...] = ()
    # Where queues report (mysite/server/metrics.py): the gate, or the pool's dispatcher under gunicorn.
    metrics: QueueMetrics | None = None
    # What one request may cost (MYSITE_REQUEST_MEMORY_MB, MYSITE_REQUEST_WORK): the same for every request.
    budget: Budget = field(init=False)
    # What the bodies in flight in this worker may cost together, and its picture answers (MYSITE_UPLOAD_MEMORY_MB).
    room: Room = field(init=False)
    answers: AnswerRoom = field(init=False)

    def __post_init__(self) -> None:
        self.budget = Budget(self.settings.request_memory_bytes, self.settings.request_work)
        recorder = self.metrics if self.metrics is not None else live_metrics.LIVE
        self.room = Room(self.settings.upload_memory_bytes, self.settings.upload_deadline,
                         refused=lambda: recorder.room_refused("bodies"),
                         per_client=self.settings.upload_memory_bytes // CLIENT_PARTS)
        self.answers = AnswerRoom(self.settings.upload_memory_bytes, self.settings.upload_memory_bytes // CLIENT_PARTS,
                                  refused=lambda: recorder.room_refused("pictures"))

    def endpoint(self, path: str) -> Endpoint | None:
        """The registered row serving ``path`` (``/predict`` and ``/predict/`` are two rows), or None."""
        return next((ep for ep in self.endpoints if ep.path == path), None)

    def error_style(self, path: str) -> ErrorShape:
        """What an error body on ``path`` carries beside status and message (respond.ERROR_FIELDS)."""
        from mysite.web.endpoints import ErrorShape  # the table imports what imports this module

        ep = self.endpoint(path)
        if ep is not None:
            return ep.errors
        return next((r.errors for r in self.face_routes if r.path == path), ErrorShape.BOOK)


def install(app: Flask, settings: Settings, registry: Registry, metrics: QueueMetrics | None = None) -> AppState:
    """Attach the state to ``app`` (once, in ``create_app``); ``metrics``: where the gate reports its queue."""
    state = AppState(settings, registry, runner=Gate(slots=1, queue=settings.queue, metrics=metrics), metrics=metrics)
    app.extensions[_KEY] = state
    return state


def app_state(app: Flask | None = None) -> AppState:
    """The state of ``app``, or of the app handling the current request."""
    return (app or current_app).extensions[_KEY]


def current_settings(app: Flask | None = None) -> Settings:
    return app_state(app).settings


def current_registry(app: Flask | None = None) -> Registry:
    return app_state(app).registry


def current_endpoints(app: Flask | None = None) -> tuple[Endpoint, ...]:
    """The endpoint table as registered on the app: what the page, ``GET /``, OpenAPI and the tests read."""
    return app_state(app).endpoints

