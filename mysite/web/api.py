"""The image endpoints: a table, and one generic handler that serves every row."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from mysite.errors import ApiError, BadRequest, TooLarge
from mysite.params import parse
from mysite.registry import Registry
from mysite.settings import Settings
from mysite.vision.decode import Decoded, decode_image, read_header
from mysite.web import inputs, respond
from mysite.web.choices import Choice, pick
from mysite.web.fetch import Fetcher


@dataclass(frozen=True)
class Endpoint:
    """One image endpoint: its path, the model it runs and how its answer is shaped."""

    path: str
    model: str  # a table name in models.toml
    doc: str
    output: str = "boxes"  # a key of respond.JSON_SHAPES ("boxes": the book's JSON) or TEXT_SHAPES, or "image"
    fixed: Mapping[str, Any] = field(default_factory=dict)  # parameters the endpoint pins
    choice: Choice | None = None  # a request parameter that picks another model (e.g. ?detector=dnn)
    # Request parameters the endpoint defaults and a request may override (e.g. output=base64 for seed 003).
    defaults: Mapping[str, str] = field(default_factory=dict)
    errors: str = "book"  # a key of respond.ERROR_FIELDS: what an error body carries beside status/message
    label: str = ""  # the label of a detection that has none (drawn, DeepStack answers); default: the model's name
    on_page: bool = True  # offered as a task on the page at / (routes kept for other clients' formats are not)

    @property
    def name(self) -> str:
        """The Flask endpoint name: the path without its leading slash (``predict`` and ``predict/`` differ)."""
        return self.path[1:]


FACE_DETECTORS = Choice(
    "detector", {"haar": "face", "dnn": "blazeface", "dnn-full": "blazeface_full"}, "face_detector", "haar"
)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/detect", "face", "Detect human faces; boxes as [x1, y1, x2, y2]; ?detector=haar|dnn|dnn-full",
             choice=FACE_DETECTORS),
    Endpoint("/catfacedetection", "catface", "Detect cat faces; boxes as [x1, y1, x2, y2]"),
    Endpoint("/canny", "canny", "Canny edge map of the image, as a JPEG", output="image"),
    # The book's cat client kept detections above 0.1: so does this endpoint unless the request says otherwise.
    Endpoint("/catdetection", "ssd", "Detect whole cats (MobileNet-SSD); boxes with label and confidence",
             fixed={"labels": "cat"}, defaults={"min_confidence": "0.1"}),
    Endpoint("/objectdetection", "ssd", "Detect the 20 VOC object classes (MobileNet-SSD); ?labels=cat,dog"),
    # The book's Keras client reads "success" on every answer, errors included.
    Endpoint("/predict", "classifier", "Classify the image (ImageNet); top-k predictions", output="predictions",
             errors="success"),
    Endpoint("/digits", "digits", "Read one handwritten digit (MNIST CNN); POST img or a data URL", output="fields"),
    # Seed 002's MNIST app: a distinct rule from /predict, answering the bare digit as text.
    Endpoint("/predict/", "digits", "Read one handwritten digit; answers the bare digit as text/plain (seed 002)",
             output="digit_text", on_page=False),
    # Seed 003's client posts base64 and b64decodes the answer: the drawn JPEG as base64 by default.
    Endpoint("/predictor", "face", "Faces drawn on the image, answered as base64 JPEG text (seed 003)",
             choice=FACE_DETECTORS, defaults={"output": "base64"}, on_page=False),
    # DeepStack / CodeProject.AI clients (Home Assistant, Blue Iris, deepstack-python).
    # Faces by the site's face detector, as /detect (a Haar box has no score: its confidence is 1.0).
    Endpoint("/v1/vision/face", "face", "DeepStack-compatible face detection; multipart image, min_confidence",
             choice=FACE_DETECTORS, output="deepstack", errors="deepstack", label="face", on_page=False),
    Endpoint("/v1/vision/detection", "ssd", "DeepStack-compatible object detection (MobileNet-SSD, VOC labels)",
             output="deepstack", errors="deepstack", on_page=False),
)
BY_PATH = {ep.path: ep for ep in ENDPOINTS}
METHODS = ["GET", "POST"]


def register(app: Flask, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
    """Add one route per table row, all served by ``handle``."""
    bp = Blueprint("api", __name__)
    for ep in endpoints:
        if ep.choice is not None:
            ep.choice.check(app.extensions["mysite.settings"])
        view = _view(ep)
        bp.add_url_rule(ep.path, endpoint=ep.name, view_func=view, methods=METHODS)
    app.register_blueprint(bp)


def _view(ep: Endpoint):  # type: ignore[no-untyped-def]
    def view() -> Response:
        return handle(ep)

    view.__doc__ = ep.doc  # the info route reads descriptions off the URL map's views
    view.__name__ = ep.name
    return view


def handle(ep: Endpoint) -> Response:
    """Every image endpoint: find the image, decode it, run the model, shape the answer."""
    started = time.perf_counter()
    registry: Registry = current_app.extensions["mysite.registry"]
    settings: Settings = current_app.extensions["mysite.settings"]
    given = {**ep.defaults, **inputs.params(request)}  # the request's own parameters win over the row's defaults
    model = registry.get(pick(ep.model, ep.choice, given, settings))
    values = parse(model.params, given)
    values.update(ep.fixed)
    explicit = {*given, *ep.fixed}
    batch = inputs.several_images(request, settings.max_upload_bytes)
    if batch is not None:  # repeated multipart image fields: one answer per image, in order
        response = _batch(ep, model, batch, values, explicit, settings.max_pixels)
    else:
        data = inputs.image_bytes(request, settings.max_upload_bytes, _fetcher(settings))
        decoded, result = _run(model, data, values, explicit, settings.max_pixels)
        response = respond.shape(ep.output, result, data, decoded, ep.label or ep.model, given, started)
    response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def error_fields(path: str, message: str) -> dict[str, Any]:
    """What an error body on ``path`` carries beside status and message, as its endpoint's clients read it."""
    ep = BY_PATH.get(path)
    return respond.ERROR_FIELDS[ep.errors](message) if ep is not None else {}


def _run(model: Any, data: bytes, values: dict[str, Any], explicit: set[str], max_pixels: int) -> tuple[Decoded, Any]:
    """Decode the image for the model and run it; the decoded image and the model's answer.

    A model that can work on a smaller image (``prepare``) picks the decode size from the
    header and is told the decoded image's ``scale`` so it answers in original pixels.
    """
    gray = model.input == "gray"
    prepare = getattr(model, "prepare", None)
    if prepare is None:
        decoded = decode_image(data, max_pixels=max_pixels, gray=gray)
        return decoded, model.run(decoded.image, **values)
    header = read_header(data, max_pixels)
    reduce, values = prepare(header, values, explicit)
    decoded = decode_image(data, max_pixels=max_pixels, gray=gray, reduce=reduce, header=header)
    return decoded, model.run(decoded.image, **values, scale=decoded.scale)


def _batch(ep: Endpoint, model: Any, batch: list[bytes], values: dict[str, Any], explicit: set[str],
           max_pixels: int) -> Response:
    """``{"status": "ok", "results": [...]}``: each image's answer in the book's shape, or its own error."""
    if ep.output != "boxes":
        raise BadRequest(f"{ep.path} answers one image at a time; send a single image field")
    # One request may hold as many pixels as one image may: 16 small files that each declare 40 MP
    # would otherwise keep a worker busy past its timeout.
    total = sum(_declared_pixels(data) for data in batch)
    if total > max_pixels:
        raise TooLarge(f"the {len(batch)} images hold {total / 1e6:.1f} megapixels together; "
                       f"the limit for one request is {max_pixels / 1e6:.1f} megapixels")
    results = []
    for data in batch:
        try:
            results.append({"status": "ok", "result": _run(model, data, values, explicit, max_pixels)[1]})
        except ApiError as exc:  # one bad image spoils nothing for the others
            results.append(exc.body())
    return jsonify({"status": "ok", "results": results})


def _declared_pixels(data: bytes) -> int:
    """Pixels an image's header declares; 0 for one that is no image (it gets its own error)."""
    try:
        header = read_header(data)
    except ApiError:
        return 0
    return header.width * header.height


def _fetcher(settings: Settings) -> Fetcher:
    if not settings.url_fetch:
        return _fetch_disabled
    return Fetcher(settings.max_upload_bytes, settings.url_timeout, settings.url_allow_networks).fetch


def _fetch_disabled(url: str) -> bytes:
    raise BadRequest("fetching images by url is turned off on this server (MYSITE_URL_FETCH=off); POST the image instead")
