"""The page's "try it" part: which endpoints a visitor can try, and the form that works without JavaScript.

The tasks come from the app's URL map (the same source as the info route), so an
endpoint added to the table, or by another blueprint, appears on the page by itself.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from mysite.errors import ApiError
from mysite.registry import Registry
from mysite.settings import Settings
from mysite.vision import budget
from mysite.vision.decode import encode, read_header
from mysite.web import api, respond

_NUMBER_ARRAY = re.compile(r"\[\s+([-\d.e+,\s]+?)\s+\]")
# Lead sentences for API errors, in words a visitor understands; the server's own message follows.
PLAIN_WORDS = {
    400: "The server could not use this request.",
    404: "There is no such endpoint.",
    405: "This endpoint does not take that method.",
    413: "The image is too large.",
    415: "That file is not an image the server can read.",
    422: "The image seems to be damaged.",
    503: "This model is not available on this server right now.",
}


# Where a request parameter picks the model (``/detect?detector=``), the value the page starts on:
# the best detector, not the server's default, which stays the book's for the book's clients.
PAGE_CHOICES = {"detector": "yunet"}


def tasks(app: Flask, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every route (as the info route describes them) that takes an image by POST, with what the page needs.

    A task whose endpoint offers a choice of model gets ``choice``: each value with its model's
    own options, so the page shows the options of the model the server will really run.
    """
    table = {ep.path: ep for ep in api.ENDPOINTS}
    registry: Registry = app.extensions["mysite.registry"]
    settings: Settings = app.extensions["mysite.settings"]
    out = []
    for route in routes:
        if "POST" not in route["methods"] or route["path"] == "/":
            continue
        ep = table.get(route["path"])
        entry = registry.entries.get(ep.model) if ep else None
        fixed = ep.fixed if ep else {}
        choice = None
        if ep is not None and ep.choice is not None:
            values = [{"value": value, "model": model, "loaded": registry.entries[model].loaded,
                       "params": _params(registry.entries[model], fixed)} for value, model in ep.choice.models.items()]
            server = ep.choice.default_value(settings)
            # After a form POST (no JavaScript), the page keeps what the visitor chose.
            posted = request.form.get(ep.choice.param) if request.method == "POST" else None
            wanted = posted or PAGE_CHOICES.get(ep.choice.param, server)
            usable = {v["value"] for v in values if v["loaded"]}
            choice = {"param": ep.choice.param, "options": values, "server_default": server,
                      "default": wanted if wanted in usable else server}
        out.append({
            "path": route["path"],
            "description": route["description"],
            "output": ep.output if ep else "json",
            "model": ep.model if ep else route["path"].strip("/"),
            "loaded": entry.loaded if entry else True,
            "params": _params(entry, fixed) if entry and choice is None else [],
            "choice": choice,
            "digits": route["path"].rstrip("/").endswith("/digits"),
        })
    return out


def _params(entry: Any, fixed: Any) -> list[dict[str, Any]]:
    """The options a visitor may set: the model's parameters but those the endpoint pins."""
    return [p for p in entry.describe()["params"] if p["name"] not in fixed]


def page_context(app: Flask, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page template needs beyond the info payload."""
    choices = tasks(app, routes)
    # The book's face API first; otherwise the first endpoint that draws boxes.
    default = next((t["path"] for t in choices if t["path"] == "/detect"),
                   next((t["path"] for t in choices if t["output"] == "boxes"), ""))
    return {"tasks": choices, "default_task": default, "plain_words": PLAIN_WORDS, "outcome": None}


@dataclass
class Outcome:
    """What the no-JavaScript form shows after a POST: the answer, or the error in words."""

    code: int = 200
    task: str = ""
    error: str = ""
    json_text: str = ""
    image_url: str = ""  # a data: URL of the picture with the results drawn (or the answer's image)
    server_timing: str = ""
    notes: list[str] = field(default_factory=list)


def run_form(app: Flask, choices: list[dict[str, Any]]) -> Outcome:
    """Run the task the form names on the uploaded file (or the URL given), exactly as the API would."""
    outcome = Outcome()
    try:
        outcome.task = request.form.get("endpoint", "")
        if outcome.task not in {t["path"] for t in choices}:
            return _failed(outcome, 400, "Choose one of the tasks in the list.")
        view = _view_for(app, outcome.task)
        upload = request.files.get("image")
        url = request.form.get("url", "").strip()
        if upload is not None and upload.filename:
            response = view()
        elif url:
            query = {k: v for k, v in request.form.items() if k not in ("endpoint", "image") and v}
            # The API reads ?url= from the query string: run the view in a GET request context built for it
            # (Flask's documented way to make one; nothing is sent over the network by this).
            with current_app.test_request_context(outcome.task, method="GET", query_string=query):
                response = view()
        else:
            return _failed(outcome, 400, "Choose an image file or give the URL of one.")
    except ApiError as exc:
        return _failed(outcome, exc.code, exc.message)
    except HTTPException as exc:
        return _failed(outcome, exc.code or 400, exc.description or exc.name)
    label = next((t["model"] for t in choices if t["path"] == outcome.task), "")
    _show(outcome, response, _uploaded_bytes(), label)
    return outcome


def _view_for(app: Flask, path: str) -> Any:
    rule = next(r for r in app.url_map.iter_rules() if r.rule == path and "POST" in (r.methods or ()))
    return app.view_functions[rule.endpoint]


def _uploaded_bytes() -> bytes | None:
    upload = request.files.get("image")
    if upload is None or not upload.filename:
        return None
    upload.stream.seek(0)
    return upload.stream.read()


def _show(outcome: Outcome, response: Response, uploaded: bytes | None, label: str) -> None:
    outcome.server_timing = response.headers.get("Server-Timing", "")
    if response.mimetype.startswith("image/"):
        outcome.image_url = _data_url(response.data, response.mimetype)
        outcome.notes.append(f"The answer is an image ({len(response.data)} bytes of {response.mimetype}).")
        return
    body = response.get_json(silent=True)
    outcome.json_text = pretty(body)
    detections = body.get("result") if isinstance(body, dict) else None
    if isinstance(detections, list) and uploaded is not None and not _too_large_to_draw(uploaded):
        outcome.image_url = _data_url(encode(respond.annotate(uploaded, detections, label)), "image/jpeg")
    elif isinstance(detections, list) and uploaded is not None:
        outcome.notes.append("The picture is too large to draw the boxes on here; the JSON has them.")
    elif isinstance(detections, list):
        outcome.notes.append("Boxes are drawn on uploads; for a URL, add ?output=image to the API call.")


def _too_large_to_draw(uploaded: bytes) -> bool:
    """Whether drawing on the full-size upload would take more than a request's memory budget (as ?output=image)."""
    settings = current_app.extensions["mysite.settings"]
    try:
        header = read_header(uploaded, settings.max_pixels)
    except ApiError:
        return True
    return budget.answer_memory(header, "jpeg", base64=True) > settings.request_memory_bytes - 2 * len(uploaded)


def pretty(value: Any) -> str:
    """JSON with short arrays of numbers (boxes, probabilities) kept on one line, as the page's script shows it."""
    text = json.dumps(value, indent=2)
    return _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text)


def _failed(outcome: Outcome, code: int, message: str) -> Outcome:
    outcome.code = code
    lead = PLAIN_WORDS.get(code, "The request failed.")
    outcome.error = f"{lead} ({code}) {message}"
    return outcome


def _data_url(data: bytes, mimetype: str) -> str:
    return f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"
