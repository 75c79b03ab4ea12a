"""The one generic handler that serves every row of the endpoint table (``endpoints.py``)."""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request

from mysite.errors import ApiError, BadRequest, Reason, TooLarge
from mysite.params import parse
from mysite.server import memory
from mysite.settings import Settings
from mysite.vision import budget
from mysite.vision.boxes import clip
from mysite.vision.budget import Budget, decode_memory
from mysite.vision.decode import Decoded, Header, decode_image, read_header
from mysite.web import inputs, respond
from mysite.web.choices import pick
from mysite.web.endpoints import ENDPOINTS, Endpoint
from mysite.web.fetch import Fetcher
from mysite.web.state import app_state, current_gate, current_registry, current_settings

METHODS = ["GET", "POST"]


def register(app: Flask, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
    """Add one route per table row, all served by ``handle``; the app keeps the table (``current_endpoints``)."""
    bp = Blueprint("api", __name__)
    state = app_state(app)
    for ep in endpoints:
        if ep.choice is not None:
            ep.choice.check(state.settings)
        view = _view(ep)
        bp.add_url_rule(ep.path, endpoint=ep.name, view_func=view, methods=METHODS)
    bp.before_request(_note_memory)
    bp.after_request(_release_memory_when_sent)
    app.register_blueprint(bp)
    state.endpoints = tuple(endpoints)


# Growth of the worker's RSS beyond which the heap is trimmed once the answer is sent (mysite/server/memory.py).
RELEASER = memory.Releaser(above=8 * 1024 * 1024)


def _note_memory() -> None:
    g.mysite_rss = RELEASER.begin()


def _release_memory_when_sent(response: Response) -> Response:
    """Give the request's memory back to the system after the answer has gone out (not before: it is in it)."""
    start = g.pop("mysite_rss", None)
    if start is not None:
        response.call_on_close(lambda: RELEASER.end(start))
    return response


def _view(ep: Endpoint):
    def view() -> Response:
        return handle(ep)

    view.__doc__ = ep.doc  # the info route reads descriptions off the URL map's views
    view.__name__ = ep.name
    return view


def handle(ep: Endpoint) -> Response:
    """Every image endpoint: find the image, plan and check its cost, decode it, run the model, shape the answer."""
    started = time.perf_counter()
    registry, settings = current_registry(), current_settings()
    given = {**ep.defaults, **inputs.params(request)}  # the request's own parameters win over the row's defaults
    model = registry.get(pick(ep.model, ep.choice, given, settings))
    values = parse(model.params, given)
    _check_unread(ep, request.args.to_dict(), given)
    values.update(ep.fixed)
    explicit = {*given, *ep.fixed}
    limit = Budget(settings.request_memory_bytes, settings.request_work)
    gate = current_gate()
    # The body (or the ?url= fetch) is had before a detection slot is taken: a slow one holds a thread only.
    batch = inputs.several_images(request, settings.max_upload_bytes)
    if batch is not None:  # repeated multipart image fields: one answer per image, in order
        with gate.slot():
            response = _batch(ep, model, batch, values, explicit, settings.max_pixels, limit)
    else:
        fmt = respond.answer_format(ep.output, request, given)  # a bad output= is refused before any fetch
        data = inputs.image_bytes(request, settings.max_upload_bytes, _fetcher(settings))
        # The request's bytes (body, form copy, the image) are held throughout: what is left is the budget.
        left = limit.with_memory(limit.memory - 2 * len(data))
        plan = _plan(model, data, values, explicit, settings.max_pixels, left)
        budget.check_memory(respond.answer_memory(ep.output, fmt, plan.header, plan.decoded_pixels), left,
                            f"the answer for this {plan.header.width}x{plan.header.height} image",
                            "ask for output=json, format=jpeg, or send a smaller image")
        with gate.slot():
            decoded, result = _execute(model, data, plan)
            response = respond.answer(ep.output, fmt, result, data, decoded, ep.label or ep.model, started)
    response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def _check_unread(ep: Endpoint, query: dict[str, str], given: dict[str, str]) -> None:
    """Values the model does not read are checked all the same: a parameter only another model of the
    row's choice reads (nms with the Haar detector), and a query value that a form field of the same
    name overrides. The API document declares them; a value it calls invalid is a 400."""
    names = {ep.model, *ep.choice.models.values()} if ep.choice is not None else {ep.model}
    for name in sorted(names):
        other = current_registry().entries[name].model
        if other is not None:
            parse(ep.settable(other.params), given)
            parse(ep.settable(other.params), query)


# Work is counted in cascade windows (about 0.1-0.3 us each here); decoding and the DNN models'
# resizing cost about a tenth of that per pixel.
DECODE_WORK = 8


@dataclass(frozen=True)
class Plan:
    """How one image will be decoded and run, worked out from its header: checked against the budget."""

    header: Header
    gray: bool
    reduce: int
    values: dict[str, Any]
    work: int  # windows a cascade evaluates, plus decoded pixels / DECODE_WORK
    memory: int  # bytes the decode may take (what the budget leaves it)

    @property
    def decoded_pixels(self) -> int:
        return math.ceil(self.header.width / self.reduce) * math.ceil(self.header.height / self.reduce)


def _plan(model: Any, data: bytes, values: dict[str, Any], explicit: set[str], max_pixels: int,
          limit: Budget) -> Plan:
    """Read the header, pick the decode size, and refuse (413/422) what is over the budget, before any pixel.

    A model that can work on a smaller image (``prepare``) picks the reduction itself, checks
    its own scan against the budget and is told the decoded image's ``scale``; one that
    declares ``decode_side`` (the DNN models, whose input is a few hundred pixels) is
    decoded no larger than needed for that side; everything else is decoded in full.
    """
    gray = model.input == "gray"
    header = read_header(data, max_pixels)
    prepare = getattr(model, "prepare", None)
    work = 0
    if prepare is not None:
        # A model whose prepare takes the budget checks its own scan against it; others are costed by their decode.
        if "limit" in inspect.signature(prepare).parameters:
            reduce, values = prepare(header, values, explicit, limit=limit)
        else:
            reduce, values = prepare(header, values, explicit)
        counted = getattr(model, "work", None)  # windows a scan evaluates; a model without one costs its decode
        work = counted(header, values) if counted is not None else 0
    else:
        reduce = reduction_for(header, getattr(model, "decode_side", None))
    what = f"decoding this {header.width}x{header.height} {header.format}{' with transparency' if header.alpha else ''}"
    budget.check_memory(decode_memory(header, gray, reduce), limit, what, "send a smaller image")
    plan = Plan(header, gray, reduce, values, work, limit.memory)
    return dataclasses.replace(plan, work=work + plan.decoded_pixels // DECODE_WORK)


def _execute(model: Any, data: bytes, plan: Plan) -> tuple[Decoded, Any]:
    """Decode as planned and run the model; the decoded image and the model's answer (in original pixels)."""
    decoded = decode_image(data, max_pixels=plan.header.width * plan.header.height, gray=plan.gray,
                           reduce=plan.reduce, header=plan.header, max_bytes=plan.memory)
    if getattr(model, "prepare", None) is not None:
        return decoded, model.run(decoded.image, **plan.values, scale=decoded.scale)
    result = model.run(decoded.image, **plan.values)
    return decoded, rescale(result, decoded)


def _batch(ep: Endpoint, model: Any, batch: list[bytes], values: dict[str, Any], explicit: set[str],
           max_pixels: int, limit: Budget) -> Response:
    """``{"status": "ok", "results": [...]}``: each image's answer in the book's shape, or its own error.

    Every image is planned before any is decoded, and the request's work is the sum of its
    images': 16 images may together cost what one may, no more.
    """
    if ep.output != "boxes":
        raise BadRequest(f"{ep.path} answers one image at a time; send a single image field")
    each = limit.with_memory(limit.memory - 2 * sum(len(d) for d in batch))
    plans: list[Plan | ApiError] = []
    for data in batch:
        try:
            plans.append(_plan(model, data, dict(values), explicit, max_pixels, each))
        except ApiError as exc:  # one bad image spoils nothing for the others
            plans.append(exc)
    ok = [p for p in plans if isinstance(p, Plan)]
    total = sum(p.work for p in ok)
    pixels = sum(p.header.width * p.header.height for p in ok)
    if pixels > max_pixels:
        raise TooLarge(f"the {len(batch)} images hold {pixels / 1e6:.1f} megapixels together; "
                       f"the limit for one request is {max_pixels / 1e6:.1f} megapixels")
    budget.check_work(total, limit, f"these {len(batch)} images together", "send fewer or smaller images per request")
    results = []
    for data, plan in zip(batch, plans):
        if isinstance(plan, ApiError):
            results.append(plan.body())
            continue
        try:
            results.append({"status": "ok", "result": _execute(model, data, plan)[1]})
        except ApiError as exc:
            results.append(exc.body())
    return jsonify({"status": "ok", "results": results})


def reduction_for(header: Header, side: int | None) -> int:
    """The largest decode reduction (8, 4, 2) that keeps the long side at least ``side``; 1 without one."""
    if not side:
        return 1
    long_side = max(header.width, header.height)
    return next((r for r in (8, 4, 2) if long_side / r >= side), 1)


def rescale(result: Any, decoded: Decoded) -> Any:
    """Boxes found on a reduced decode, in original pixels (other answers as they are)."""
    if decoded.scale == 1 or not isinstance(result, list):
        return result
    w, h = decoded.header.width, decoded.header.height
    return [{**d, "box": clip([v / decoded.scale for v in d["box"]], w, h)} if isinstance(d, dict) and "box" in d
            else d for d in result]


def _fetcher(settings: Settings) -> Callable[[str], bytes]:
    if not settings.url_fetch:
        return _fetch_disabled
    return Fetcher(settings.max_upload_bytes, settings.url_timeout, settings.url_allow_networks, settings.url_deadline).fetch


def _fetch_disabled(url: str) -> bytes:
    raise BadRequest("fetching images by url is turned off on this server (MYSITE_URL_FETCH=off); POST the image instead",
                     reason=Reason.URL_REFUSED)
