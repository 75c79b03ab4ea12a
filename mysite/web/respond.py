"""How an endpoint's answer goes on the wire: the book's JSON, or the picture with the results drawn.

A detection endpoint answers JSON unless the client asks for the image:
``?output=image`` (or ``Accept: image/jpeg`` / ``image/png`` preferred over JSON)
gives the photo with boxes and labels drawn, ``?output=base64`` the base64 text
of that image (what the AIDemo client ``base64.b64decode``s). ``?format=png``
picks PNG instead of JPEG. An endpoint whose answer already is an image (Canny)
honours ``format`` and ``output=base64`` the same way.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Request, Response, jsonify

from mysite.errors import BadRequest, Reason
from mysite.pipeline import DETECTIONS, AnswerFormat, Outcome
from mysite.web.endpoints import ErrorShape, Output
from mysite.web.state import app_state

OUTPUTS = ("json", "image", "base64")
FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png"}
MIMETYPES = {"jpeg": "image/jpeg", "png": "image/png"}


def answer_format(output_kind: Output, req: Request, given: Mapping[str, str]) -> AnswerFormat:
    """Read ``output``/``format`` (query or form fields, over the endpoint's defaults in ``given``), else
    the Accept header; JSON when nothing is said. What this endpoint cannot answer is a 400 here,
    before any work."""
    output = given.get("output", "").strip().lower()
    if output_kind in TEXT_SHAPES:  # the MNIST Flask API's bare digit: nothing else to ask for
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


# The JSON of each Output that is JSON: (model's result, label of detections without one, seconds spent) -> body.
JSON_SHAPES: dict[Output, Callable[[Any, str, float], dict[str, Any]]] = {
    Output.BOXES: lambda result, label, seconds: {"status": "ok", "result": result},
    Output.FIELDS: lambda result, label, seconds: {"status": "ok", **result},
    Output.PREDICTIONS: lambda result, label, seconds: {"success": True, "status": "ok", **result},
    Output.DEEPSTACK: deepstack,
}
# Outputs that are plain text.
TEXT_SHAPES: dict[Output, Callable[[Any], str]] = {
    Output.DIGIT_TEXT: lambda result: str(result["digit"]),
}
# What an error body carries beside the book's status, message and reason.
ERROR_FIELDS: dict[ErrorShape, Callable[[str], dict[str, Any]]] = {
    ErrorShape.BOOK: lambda message: {},
    ErrorShape.SUCCESS: lambda message: {"success": False},  # the book's Keras client: its "Request failed" branch
    ErrorShape.DEEPSTACK: lambda message: {"success": False, "error": message, "duration": 0},
}
# Every member has its shape, or the site does not start.
if set(Output) != {*JSON_SHAPES, *TEXT_SHAPES, Output.IMAGE} or set(ErrorShape) != set(ERROR_FIELDS):
    raise RuntimeError("respond.py has no shape for some Output or ErrorShape")


def answer(output_kind: Output, fmt: AnswerFormat, outcome: Outcome, label: str, started: float | None = None) -> Response:
    """The response for one request, given the endpoint's kind of output and what its job returned.

    "boxes" endpoints answer the book's JSON, or the upload with their detections drawn when a
    picture was asked for; "image" endpoints send their picture as JPEG, PNG or base64; the
    other kinds answer their JSON or text. ``started`` is when the request began.
    """
    seconds = time.perf_counter() - started if started is not None else 0.0
    if output_kind in TEXT_SHAPES:
        return Response(TEXT_SHAPES[output_kind](outcome.result), mimetype="text/plain")
    if outcome.picture is not None:
        response = _picture_response(outcome.picture, fmt)
    else:
        response = jsonify(JSON_SHAPES[output_kind](outcome.result, label, seconds))
    if output_kind in DETECTIONS:
        response.vary.add("Accept")  # the same URL answers JSON or an image by Accept: caches must know
    return response


def _picture_response(body: bytes, fmt: AnswerFormat) -> Response:
    if fmt.output == "base64":
        return Response(base64.b64encode(body), mimetype="text/plain")
    return Response(body, mimetype=MIMETYPES[fmt.fmt])


# Statuses an endpoint's clients expect instead of ours, by Endpoint.errors: DeepStack answers a file
# that is no image with 400 ("invalid image file"), and its clients know no 415.
ERROR_CODES: dict[ErrorShape, dict[int, int]] = {ErrorShape.DEEPSTACK: {415: 400}}


def error_code(errors: ErrorShape, code: int) -> int:
    """The status an error of ``code`` has on an endpoint whose error kind is ``errors``."""
    return ERROR_CODES.get(errors, {}).get(code, code)


def error_status(path: str, code: int) -> int:
    """The status an error of ``code`` has on ``path`` (its endpoint's clients' own, where they differ)."""
    ep = app_state().endpoint(path)
    return error_code(ep.errors, code) if ep is not None else code


def error_fields(path: str, message: str) -> dict[str, Any]:
    """What an error body on ``path`` carries beside status and message, as its endpoint's clients read it."""
    return ERROR_FIELDS[app_state().error_style(path)](message)
