"""The image endpoints: a table, and one generic handler that serves every row."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from mysite.errors import BadRequest
from mysite.params import parse
from mysite.registry import Registry
from mysite.settings import Settings
from mysite.vision.decode import decode_image
from mysite.web import inputs, respond
from mysite.web.choices import Choice, pick
from mysite.web.fetch import Fetcher


@dataclass(frozen=True)
class Endpoint:
    """One image endpoint: its path, the model it runs and how its answer is shaped."""

    path: str
    model: str  # a table name in models.toml
    doc: str
    output: str = "boxes"  # "boxes": the book's JSON; "image": a JPEG of what the model returns
    fixed: Mapping[str, Any] = field(default_factory=dict)  # parameters the endpoint pins
    choice: Choice | None = None  # a request parameter that picks another model (e.g. ?detector=dnn)


# The JSON of answers that are neither boxes nor an image (respond.shape handles those two);
# Endpoint.output names one.
SHAPES: dict[str, Callable[[Any], Response]] = {
    # The model's own fields beside the status, e.g. {"status": "ok", "digit": 7, ...}.
    "fields": lambda result: jsonify({"status": "ok", **result}),
    # The book's Keras client reads success/predictions; the PyTorch tutorial's reads class_id/class_name.
    "predictions": lambda result: jsonify({"success": True, "status": "ok", **result}),
}
FACE_DETECTORS = Choice(
    "detector", {"haar": "face", "dnn": "blazeface", "dnn-full": "blazeface_full"}, "face_detector", "haar"
)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/detect", "face", "Detect human faces; boxes as [x1, y1, x2, y2]; ?detector=haar|dnn|dnn-full",
             choice=FACE_DETECTORS),
    Endpoint("/catfacedetection", "catface", "Detect cat faces; boxes as [x1, y1, x2, y2]"),
    Endpoint("/canny", "canny", "Canny edge map of the image, as a JPEG", output="image"),
    Endpoint("/catdetection", "ssd", "Detect whole cats (MobileNet-SSD); boxes with label and confidence",
             fixed={"labels": "cat"}),
    Endpoint("/objectdetection", "ssd", "Detect the 20 VOC object classes (MobileNet-SSD); ?labels=cat,dog"),
    Endpoint("/predict", "classifier", "Classify the image (ImageNet); top-k predictions", output="predictions"),
    Endpoint("/digits", "digits", "Read one handwritten digit (MNIST CNN); POST img or a data URL", output="fields"),
)
METHODS = ["GET", "POST"]


def register(app: Flask, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
    """Add one route per table row, all served by ``handle``."""
    bp = Blueprint("api", __name__)
    for ep in endpoints:
        if ep.choice is not None:
            ep.choice.check(app.extensions["mysite.settings"])
        view = _view(ep)
        bp.add_url_rule(ep.path, endpoint=ep.path.strip("/"), view_func=view, methods=METHODS)
    app.register_blueprint(bp)


def _view(ep: Endpoint):  # type: ignore[no-untyped-def]
    def view() -> Response:
        return handle(ep)

    view.__doc__ = ep.doc  # the info route reads descriptions off the URL map's views
    view.__name__ = ep.path.strip("/")
    return view


def handle(ep: Endpoint) -> Response:
    """Every image endpoint: find the image, decode it, run the model, shape the answer."""
    started = time.perf_counter()
    registry: Registry = current_app.extensions["mysite.registry"]
    settings: Settings = current_app.extensions["mysite.settings"]
    given = inputs.params(request)
    model = registry.get(pick(ep.model, ep.choice, given, settings))
    values = parse(model.params, given)
    values.update(ep.fixed)
    data = inputs.image_bytes(request, settings.max_upload_bytes, _fetcher(settings))
    decoded = decode_image(data, max_pixels=settings.max_pixels, gray=model.input == "gray")
    result = model.run(decoded.image, **values)
    response = respond.shape(ep.output, result, data, decoded, ep.model, SHAPES.get(ep.output))
    response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def _fetcher(settings: Settings) -> Fetcher:
    if not settings.url_fetch:
        return _fetch_disabled
    return Fetcher(settings.max_upload_bytes, settings.url_timeout, settings.url_allow_networks).fetch


def _fetch_disabled(url: str) -> bytes:
    raise BadRequest("fetching images by url is turned off on this server (MYSITE_URL_FETCH=off); POST the image instead")
