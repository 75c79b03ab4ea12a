"""How an endpoint's answer goes on the wire: the book's JSON, or the picture with the results drawn.

A detection endpoint answers JSON unless the client asks for the image:
``?output=image`` (or ``Accept: image/jpeg`` / ``image/png`` preferred over JSON)
gives the photo with boxes and labels drawn, ``?output=base64`` the base64 text
of that image (what seed 003's client ``base64.b64decode``s). ``?format=png``
picks PNG instead of JPEG. An endpoint whose answer already is an image (Canny)
honours ``format`` and ``output=base64`` the same way.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Request, Response, jsonify

from mysite.errors import BadRequest, Reason
from mysite.vision import budget
from mysite.vision.decode import Decoded, Header, decode_image, encode
from mysite.vision.draw import draw_detections
from mysite.web.state import app_state, current_settings

OUTPUTS = ("json", "image", "base64")
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
MIMETYPES = {"jpeg": "image/jpeg", "png": "image/png"}


@dataclass(frozen=True)
class AnswerFormat:
    """What the client asked to get back, read once per request."""

    output: str  # one of OUTPUTS, or "text" for the plain-text answers
    fmt: str  # "jpeg" or "png": how a picture is encoded


def answer_format(output_kind: str, req: Request, given: Mapping[str, str]) -> AnswerFormat:
    """Read ``output``/``format`` (query or form fields, over the endpoint's defaults in ``given``), else
    the Accept header; JSON when nothing is said. What this endpoint cannot answer is a 400 here,
    before any work."""
    output = given.get("output", "").strip().lower()
    if output_kind in TEXT_SHAPES:  # seed 002's bare digit: nothing else to ask for
        return AnswerFormat("text", "jpeg")
    if output_kind != "image" and output_kind not in DETECTIONS:
        if output not in ("", "json"):
            raise BadRequest(f"this endpoint answers {output_kind}, not boxes: there is nothing to draw; drop output=",
                             reason=Reason.BAD_PARAMETER)
        return AnswerFormat("json", "jpeg")
    fmt = given.get("format", "").strip().lower()
    if output and output not in OUTPUTS:
        raise BadRequest(f"parameter output must be one of {', '.join(OUTPUTS)}, not {output!r}",
                         reason=Reason.BAD_PARAMETER)
    if fmt and fmt not in FORMATS:
        raise BadRequest(f"parameter format must be jpeg or png, not {fmt!r}", reason=Reason.BAD_PARAMETER)
    if output_kind == "image" and output == "json":
        raise BadRequest("this endpoint answers an image: output may be image or base64", reason=Reason.BAD_PARAMETER)
    accept = req.accept_mimetypes
    q_jpeg, q_png = accept.quality("image/jpeg"), accept.quality("image/png")
    if not output:
        # Only an explicit preference for an image wins: */* (requests, curl) keeps the book's JSON.
        prefers_image = max(q_jpeg, q_png) > accept.quality("application/json")
        output = "image" if output_kind == "image" or prefers_image else "json"
    if not fmt:
        fmt = "png" if q_png > q_jpeg else "jpeg"
    return AnswerFormat(output, FORMATS[fmt])


# DeepStack names objects as COCO does; the six VOC labels of MobileNet-SSD that COCO spells otherwise.
DEEPSTACK_NAMES = {"aeroplane": "airplane", "diningtable": "dining table", "motorbike": "motorcycle",
                   "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv"}


def deepstack(detections: Any, label: str, seconds: float) -> dict[str, Any]:
    """DeepStack's detection answer: corners as x_min/y_min/x_max/y_max, a label (in DeepStack's
    words) and a confidence each."""
    predictions = []
    for d in detections:
        name = d.get("label", label)
        predictions.append({"x_min": d["box"][0], "y_min": d["box"][1], "x_max": d["box"][2], "y_max": d["box"][3],
                            "label": DEEPSTACK_NAMES.get(name, name), "confidence": d.get("confidence", 1.0)})
    return {"success": True, "predictions": predictions, "duration": round(seconds, 4)}


# The JSON of each kind of answer an Endpoint.output names ("image" endpoints answer a picture):
# (model's result, label of detections without one, seconds spent) -> body.
JSON_SHAPES: dict[str, Callable[[Any, str, float], dict[str, Any]]] = {
    # The book's {"status": "ok", "result": [{"box": [...]}, ...]}.
    "boxes": lambda result, label, seconds: {"status": "ok", "result": result},
    # The model's own fields beside the status, e.g. {"status": "ok", "digit": 7, ...}.
    "fields": lambda result, label, seconds: {"status": "ok", **result},
    # The book's Keras client reads success/predictions; the PyTorch tutorial's reads class_id/class_name.
    "predictions": lambda result, label, seconds: {"success": True, "status": "ok", **result},
    # DeepStack / CodeProject.AI: {"success": true, "predictions": [...], "duration": ...}.
    "deepstack": deepstack,
}
# Kinds whose result is a list of detections: they can be drawn on the upload instead (output=image).
DETECTIONS = {"boxes", "deepstack"}
# Answers that are plain text: seed 002's MNIST app answers the bare digit.
TEXT_SHAPES: dict[str, Callable[[Any], str]] = {
    "digit_text": lambda result: str(result["digit"]),
}
# What an error body carries beside the book's status and message, by Endpoint.errors.
ERROR_FIELDS: dict[str, Callable[[str], dict[str, Any]]] = {
    "book": lambda message: {},
    "success": lambda message: {"success": False},  # the book's Keras client: its "Request failed" branch
    "deepstack": lambda message: {"success": False, "error": message, "duration": 0},
}


def answer_memory(output_kind: str, fmt: AnswerFormat, header: Header, decoded_pixels: int) -> int:
    """Peak bytes of making this request's answer (0 for JSON and text)."""
    if fmt.output in ("json", "text"):
        return 0
    if output_kind == "image":  # the model's picture (as large as the decoded image), encoded
        encoded = (3 if fmt.fmt == "png" else 2) * decoded_pixels
        return 2 * decoded_pixels + encoded + (encoded * 4 // 3 if fmt.output == "base64" else 0)
    return budget.answer_memory(header, fmt.fmt, fmt.output == "base64")  # detections drawn on the upload


def answer(output_kind: str, fmt: AnswerFormat, result: Any, data: bytes, decoded: Decoded, label: str,
           started: float | None = None) -> Response:
    """The response for one request, given the endpoint's kind of output and what its model returned.

    "boxes" endpoints answer the book's JSON, or draw their detections on the upload when a
    picture is asked for; "image" endpoints send their picture as JPEG, PNG or base64; the
    other kinds answer their JSON or text. ``data`` are the uploaded bytes, decoded again in
    colour and full size to draw on when the model saw less; ``started`` when the work began.
    """
    seconds = time.perf_counter() - started if started is not None else 0.0
    if output_kind in TEXT_SHAPES:
        return Response(TEXT_SHAPES[output_kind](result), mimetype="text/plain")
    if output_kind == "image":
        return _image_response(result, fmt)
    if output_kind not in JSON_SHAPES:
        raise TypeError(f"no shape for answers of kind {output_kind!r}")
    if fmt.output == "json":
        response = jsonify(JSON_SHAPES[output_kind](result, label, seconds))
    else:
        response = _image_response(annotate(data, result, label, decoded), fmt)
    if output_kind in DETECTIONS:
        response.vary.add("Accept")  # the same URL answers JSON or an image by Accept: caches must know
    return response


def annotate(data: bytes, detections: Any, label: str, decoded: Decoded | None = None) -> np.ndarray:
    """The uploaded picture with ``detections`` drawn on it, in colour and at full size.

    Boxes are in original pixels: ``decoded`` is drawn on only when it is the upload as it is,
    not a gray or reduced copy; otherwise the upload is decoded again in colour.
    """
    if decoded is not None and decoded.image.ndim == 3 and decoded.scale == 1:
        photo = decoded.image
    else:
        photo = decode_image(data, max_pixels=current_settings().max_pixels).image
    return draw_detections(photo, detections, default_label=label)


def _image_response(image: np.ndarray, fmt: AnswerFormat) -> Response:
    body = encode(image, fmt.fmt)
    if fmt.output == "base64":
        return Response(base64.b64encode(body), mimetype="text/plain")
    return Response(body, mimetype=MIMETYPES[fmt.fmt])


# Statuses an endpoint's clients expect instead of ours, by Endpoint.errors: DeepStack answers a file
# that is no image with 400 ("invalid image file"), and its clients know no 415.
ERROR_CODES: dict[str, dict[int, int]] = {"deepstack": {415: 400}}


def error_code(errors: str, code: int) -> int:
    """The status an error of ``code`` has on an endpoint whose error kind is ``errors``."""
    return ERROR_CODES.get(errors, {}).get(code, code)


def error_status(path: str, code: int) -> int:
    """The status an error of ``code`` has on ``path`` (its endpoint's clients' own, where they differ)."""
    ep = app_state().endpoint(path)
    return error_code(ep.errors, code) if ep is not None else code


def error_fields(path: str, message: str) -> dict[str, Any]:
    """What an error body on ``path`` carries beside status and message, as its endpoint's clients read it."""
    ep = app_state().endpoint(path)
    return ERROR_FIELDS[ep.errors](message) if ep is not None else {}
