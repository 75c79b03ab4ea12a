"""The one generic handler that serves every row of the endpoint table (``endpoints.py``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request

from mysite.errors import BadRequest, Reason
from mysite.params import parse
from mysite.pipeline import AnswerFormat, Job, run_job
from mysite.server import memory
from mysite.settings import Settings
from mysite.web import inputs, respond
from mysite.web.endpoints import ENDPOINTS, Endpoint, pick
from mysite.web.fetch import Fetcher
from mysite.web.state import AppState, app_state

METHODS = ["GET", "POST"]


def register(app: Flask, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
    """Add one route per table row, all served by ``handle``; the app keeps the table (``current_endpoints``)."""
    bp = Blueprint("api", __name__)
    state = app_state(app)
    for ep in endpoints:
        if ep.choice is not None:
            ep.choice.check(state.settings)
        view = _view(ep, state)
        bp.add_url_rule(ep.path, endpoint=ep.name, view_func=view, methods=METHODS)
    bp.before_request(_note_memory)
    bp.after_request(_release_memory_when_sent)
    app.register_blueprint(bp)
    state.endpoints = tuple(endpoints)


# Growth of the worker's RSS beyond which the heap is trimmed once the answer is sent (mysite/server/memory.py).
RELEASER = memory.Releaser(above=memory.WEB_KEEP)


def _note_memory() -> None:
    g.mysite_rss = RELEASER.begin()


def _release_memory_when_sent(response: Response) -> Response:
    """Give the request's memory back to the system after the answer has gone out (not before: it is in it)."""
    start = g.pop("mysite_rss", None)
    if start is not None:
        response.call_on_close(lambda: RELEASER.end(start))
    return response


def _view(ep: Endpoint, state: AppState):
    def view() -> Response:
        return handle(ep, state)

    view.__doc__ = ep.doc  # the info route reads descriptions off the URL map's views
    view.__name__ = ep.name
    return view


def handle(ep: Endpoint, state: AppState) -> Response:
    """Every image endpoint: read the request into a job, have it done where the models run, shape the answer.

    ``state`` is the app's (bound when the route is added): nothing is looked up per request."""
    started = time.perf_counter()
    registry, settings = state.registry, state.settings
    given = {**ep.defaults, **inputs.params(request)}  # the request's own parameters win over the row's defaults
    name = pick(ep.model, ep.choice, given, settings)
    model = registry.get(name)  # a model that is not loaded is a 503 before the body is read
    values = parse(model.params, given)
    _check_unread(ep, model, given, registry)
    values.update(ep.fixed)
    batch = inputs.several_images(request, settings.max_upload_bytes)
    if batch is not None:  # repeated multipart image fields: one answer per image, in order
        if ep.output != "boxes":
            raise BadRequest(f"{ep.path} answers one image at a time; send a single image field")
        fmt = AnswerFormat("json", "jpeg")
        images = tuple(batch)
    else:
        fmt = respond.answer_format(ep.output, request, given)  # a bad output= is refused before any fetch
        images = (inputs.image_bytes(request, settings.max_upload_bytes, fetcher(settings)),)
    job = Job(name, ep.output, fmt, values, frozenset({*given, *ep.fixed}), images, batch is not None,
              ep.label or ep.model, settings.max_pixels, state.budget, settings.max_answer_bytes)
    if fmt.picture:
        inputs.answer_room()
    outcome = state.runner.run(run_job, registry, job)
    if outcome.picture is not None:
        inputs.answer_made(len(outcome.picture), base64=fmt.output == "base64")
    if job.batch:
        response = jsonify({"status": "ok", "results": outcome.result})
    else:
        response = respond.answer(ep.output, fmt, outcome, job.label, started)
    response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def _check_unread(ep: Endpoint, model: Any, given: dict[str, str], registry: Any) -> None:
    """400 for a value out of its declared type or range, also where the model picked does not read it.

    An endpoint offering several models (``?detector=``) declares each one's parameters
    (``/v1/vision/face``'s ``min_confidence`` is yunet's and BlazeFace's, not Haar's): a
    client's ``min_confidence=abc`` is wrong whichever model runs.
    """
    if ep.choice is None:
        return
    read = {p.name for p in model.params}
    for name in dict.fromkeys(ep.choice.models.values()):
        other = registry.entries[name].model
        if other is not None and other is not model:
            parse(tuple(p for p in ep.settable(other.params) if p.name not in read), given)
            read.update(p.name for p in other.params)


def fetcher(settings: Settings) -> Callable[[str], bytes]:
    """What fetches a ``?url=`` image under these settings (or refuses to), made only when a request names one."""
    return functools.partial(_fetch, settings)


def _fetch(settings: Settings, url: str) -> bytes:
    if not settings.url_fetch:
        return _fetch_disabled(url)
    return Fetcher(settings.max_upload_bytes, settings.url_timeout, settings.url_allow_networks,
                   settings.url_deadline, hold=inputs.hold_fetched).fetch(url)


def _fetch_disabled(url: str) -> bytes:
    raise BadRequest("fetching images by url is turned off on this server (MYSITE_URL_FETCH=off); POST the image instead",
                     reason=Reason.URL_REFUSED)
