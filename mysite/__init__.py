"""mysite: computer vision over HTTP, the Flask app factory."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

# numpy's BLAS threads: one. The site runs in parallel by its processes; on shared CPUs a small
# product (the face search) spread over threads waits on them, spinning, many times its own time.
# Set before numpy is first imported (nothing here imports it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

if TYPE_CHECKING:
    from flask import Flask

    from mysite.models.registry import Registry
    from mysite.models.schema import ModelSpec
    from mysite.settings import Settings
    from mysite.web.endpoints import Endpoint

__version__ = "0.1.0"


def create_app(overrides: Mapping[str, Any] | None = None, *, settings: Settings | None = None,
               endpoints: tuple[Endpoint, ...] | None = None) -> Flask:
    """Build the site: settings, models (loaded once, here), routes and JSON errors.

    Heavy imports (OpenCV, Flask) happen here, not when ``mysite`` is imported.

    ``overrides`` maps ``MYSITE_*`` variable names to values and wins over the
    environment; tests use it. Raises ``SettingsError`` for an invalid setting.
    ``settings`` is an already loaded ``Settings`` instead (not with ``overrides``);
    ``endpoints`` is the endpoint table to serve (default: ``ENDPOINTS``).
    """
    import cv2
    from flask import Flask

    from mysite import settings as settings_mod
    from mysite.errors import TooLarge
    from mysite.models.schema import read_specs
    from mysite.server import metrics, native_output
    from mysite.server.memory import Room
    from mysite.server.observe import Observe
    from mysite.server.send_deadline import SendDeadline
    from mysite.server.upload_deadline import UploadDeadline
    from mysite.vision import header_scan
    from mysite.web import api, digit_page, error_handlers, faces, inputs, metrics_route, openapi, pages, security, state

    if settings is None:
        settings = settings_mod.load(overrides)
    elif overrides:
        raise TypeError("create_app takes overrides or settings, not both")
    from mysite.server.request_id import LogFilter

    # A line written while a request runs names its request id, as its access log line and its answer do.
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s%(request)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogFilter) for f in handler.filters):
            handler.addFilter(LogFilter())
    logging.getLogger("mysite").setLevel(settings.log_level)

    app = Flask(__name__, static_folder=None)
    app.request_class = inputs.MemoryRequest
    # base64 bodies are 4/3 the size of the image they carry; the image itself is checked against the limit.
    body_limit = settings.max_body_bytes
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=body_limit,
        MAX_FORM_MEMORY_SIZE=body_limit,
        MYSITE_MAX_UPLOAD_MB=settings.max_upload_mb,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]  # an attribute of Flask's default provider
    # The processes that read image headers are forked from this one: they inherit the limit.
    header_scan.MAX_SCANS = settings.max_scans
    registry = _load_models(cv2, read_specs(), settings)
    # Past start-up, OpenCV logs what it makes of clients' bytes: a line a TIFF strip. The CV
    # processes forked from here bound it per job and turn it back on.
    native_output.opencv_log(bounded=False)
    recorder = metrics.NULL if settings.metrics_access == "off" else metrics.LIVE
    recorder.models((e.spec.name, e.spec.kind, e.spec.required, e.loaded) for e in registry.entries.values())
    state.install(app, settings, registry, recorder)
    _warn_unused(settings, registry)
    # First of the hooks, before any reads the body: request bodies in flight may cost a worker
    # MYSITE_UPLOAD_MEMORY_MB together, and more wait their turn (mysite/server/memory.py).
    inputs.hold_room(app)

    app.register_blueprint(pages.bp)
    app.register_blueprint(digit_page.bp)
    api.register(app, api.ENDPOINTS if endpoints is None else endpoints)
    faces.register(app)
    app.register_blueprint(openapi.bp)
    metrics_route.register(app, settings)
    error_handlers.register(app)
    # Headers on every answer, JSON OPTIONS, and (when set) API keys for the image endpoints and CORS.
    security.register(app, protected={"api", "faces"})
    # Bodies are received whole before the app runs; one that arrives too slowly is cut off with a JSON 408,
    # not waited for (mysite/server/upload_deadline.py).
    spool = Room(settings.upload_spool_bytes, 0, what="request bodies arriving",
                 refused=lambda: recorder.room_refused("arriving"))
    too_long = lambda: TooLarge(inputs.body_too_large(None, body_limit, settings.max_upload_mb))  # noqa: E731
    app.wsgi_app = UploadDeadline(app.wsgi_app, settings.upload_deadline,  # type: ignore[method-assign]
                                  settings.upload_min_rate_kb * 1024, spool, body_limit, too_long)
    # An answer the client does not read is cut off, not held (mysite/server/send_deadline.py).
    app.wsgi_app = SendDeadline(app.wsgi_app, settings.send_timeout)  # type: ignore[method-assign]
    # Outermost: an X-Request-ID on every answer, and every answer counted (mysite/server/observe.py).
    app.wsgi_app = Observe(app.wsgi_app, recorder)  # type: ignore[method-assign]
    return app


def _load_models(cv2: ModuleType, specs: Mapping[str, ModelSpec], settings: Settings) -> Registry:
    """Load the models with OpenCV's thread pool off, then give it its configured size.

    Under gunicorn's preload this runs in the master before it forks the workers. A model
    that computes while loading (the DNN kinds check their output once) would start OpenCV's
    pool there, and a forked worker cannot use that pool: it would run single-threaded.
    """
    from mysite.models.registry import Registry

    threads = settings.cv_threads if settings.cv_threads >= 0 else cv2.getNumThreads()
    cv2.setNumThreads(0)
    try:
        return Registry(specs, settings)
    finally:
        cv2.setNumThreads(threads)


def _warn_unused(settings: Settings, registry: Registry) -> None:
    """A MYSITE_* variable nothing reads is most likely a typo: say so at start."""
    used = {e.spec.env for e in registry.entries.values()}
    for name in sorted(set(settings.extra) - used):
        logging.getLogger("mysite").warning("setting %s is not used by anything (a typo?)", name)

