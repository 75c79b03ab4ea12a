"""The page's "try it" part: which endpoints a visitor can try, and the form that works without JavaScript.

The tasks come from the app's URL map (the same source as the info route), so an
endpoint added to the table, or by another blueprint, appears on the page by itself.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from mysite import pipeline
from mysite.errors import ApiError
from mysite.web import endpoints, inputs, respond, security
from mysite.web.error_handlers import public_text
from mysite.web.state import app_state, current_settings

# File names a browser form may upload (the bird classifier's form checked the extension before reading the file).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
# A form that names no task (the bird classifier's bird_image form) gets the first of these whose model is loaded.
DEFAULT_UPLOAD_TASKS = ("/predict", "/detect")
THUMBNAIL = 400  # px: the long side of the upload shown with an answer that draws nothing (the bird classifier's size)

_NUMBER_ARRAY = re.compile(r"\[\s+([-\d.e+,\s]+?)\s+\]")
# Lead sentences for API errors, in words a visitor understands; the server's own message follows.
PLAIN_WORDS = {
    400: "The server could not use this request.",
    401: "This server wants an API key: type it in the API key field.",
    404: "There is no such endpoint.",
    405: "This endpoint does not take that method.",
    413: "The image is too large.",
    415: "That file is not an image the server can read.",
    422: "The image seems to be damaged.",
    503: "This model is not available on this server right now.",
}
OPERATOR_REASONS = ("model_not_loaded",)  # errors whose message speaks to the server's operator
# Where the error's reason says more than its status: a readable picture with nothing to answer for is not "damaged".
PLAIN_REASONS = {
    "unprocessable": "The model found nothing it can answer for in this picture.",
}


# Where a request parameter picks the model (``/detect?detector=``), the value the page starts on:
# the best detector, not the server's default, which stays the book's for the book's clients.
PAGE_CHOICES = {"detector": "yunet"}


def tasks(app: Flask, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every route (as the info route describes them) that takes an image by POST, with what the page needs.

    A task whose endpoint offers a choice of model gets ``choice``: each value with its model's
    own options, so the page shows the options of the model the server will really run. The
    rows are the app's registered table (``current_endpoints``), not the module's default one.
    """
    state = app_state(app)
    registry, settings = state.registry, state.settings
    out = []
    for route in routes:
        if "POST" not in route["methods"] or route["path"] == "/":
            continue
        ep = state.endpoint(route["path"])
        if ep is not None and not ep.on_page:
            continue
        if any(r.path == route["path"] for r in state.face_routes):  # a person's name and photos: not a task
            continue
        entry = registry.entries.get(ep.model) if ep else None
        choice = None
        if ep is not None and ep.choice is not None:
            values = [{"value": value, "model": model, "loaded": registry.entries[model].loaded,
                       "title": ep.choice.title_of(value), "use": ep.choice.uses.get(value, ""),
                       "params": _params(registry.entries[model], ep)}
                      for value, model in ep.choice.models.items()]
            server = ep.choice.default_value(settings)
            # After a form POST (no JavaScript) the page shows the choice that answered: the visitor's,
            # or the server's default when the form named none (a form like the bird classifier's upload form).
            if request.method == "POST":
                wanted = _posted(ep.choice.param) or server
            else:
                wanted = PAGE_CHOICES.get(ep.choice.param, server)
            usable = {v["value"] for v in values if v["loaded"]}
            choice = {"param": ep.choice.param, "options": values, "server_default": server,
                      "title": ep.choice.title or ep.choice.param.capitalize(),
                      "default": wanted if wanted in usable else server}
        out.append({
            "path": route["path"],
            "description": route["description"],
            "title": (ep.title if ep and ep.title else route["description"].split(";")[0]),
            "output": ep.output if ep else "json",
            "model": ep.model if ep else route["path"].strip("/"),
            "loaded": entry.loaded if entry else True,
            "params": _params(entry, ep) if entry and choice is None else [],
            "choice": choice,
            # The drawing pad posts to a row whose model reads handwritten digits and answers JSON.
            "digits": entry is not None and entry.spec.kind == "digits" and ep is not None
            and ep.output in respond.JSON_SHAPES,
        })
    # The table's order (faces first), then any other blueprint's routes.
    order = {ep.path: i for i, ep in enumerate(state.endpoints)}
    return sorted(out, key=lambda t: order.get(t["path"], len(order)))


def _posted(name: str) -> str | None:
    """A field of the page's form POST, or None (a GET, or a form that could not be read: run_form says so
    as a page)."""
    if request.method != "POST":
        return None
    try:
        return request.form.get(name)
    except RequestEntityTooLarge:
        return None
    except ApiError as exc:  # a form past a limit: its body is read, so the error is kept for run_form
        g.mysite_form_error = exc
        return None


def _params(entry: Any, ep: endpoints.Endpoint | None) -> list[dict[str, Any]]:
    """The model's parameters a visitor may set on this endpoint, with the endpoint's own defaults."""
    if entry.model is None:
        return []
    return [p.as_json() for p in (ep.settable(entry.model.params) if ep else entry.model.params)]


def page_context(app: Flask, routes: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page template needs beyond the info payload."""
    choices = tasks(app, routes)
    # The book's face API first; otherwise the first endpoint that draws boxes.
    default = next((t["path"] for t in choices if t["path"] == "/detect"),
                   next((t["path"] for t in choices if t["output"] == "boxes"), ""))
    words = {**{str(code): text for code, text in PLAIN_WORDS.items()}, **PLAIN_REASONS,
             "operator_reasons": list(OPERATOR_REASONS)}
    return {"tasks": choices, "default_task": default, "plain_words": words, "outcome": None,
            "api_key_required": bool(current_settings(app).api_keys)}


@dataclass
class Outcome:
    """What the no-JavaScript form shows after a POST: the answer, or the error in words."""

    code: int = 200
    task: str = ""
    error: str = ""
    json_text: str = ""
    image_url: str = ""  # a data: URL of the picture with the results drawn (or the answer's image)
    thumbnail_url: str = ""  # a data: URL of the upload, at most 400 px, when nothing is drawn on it
    summary: str = ""  # the answer in words: "Predicted: Egyptian_cat (97.12 %)", "17 faces found"
    server_timing: str = ""
    notes: list[str] = field(default_factory=list)


def default_upload_task(choices: list[dict[str, Any]]) -> str:
    """The task for a form that names none: classification when a classifier is loaded, else faces."""
    loaded = {t["path"] for t in choices if t["loaded"]}
    return next((path for path in DEFAULT_UPLOAD_TASKS if path in loaded), DEFAULT_UPLOAD_TASKS[-1])


# Characters of the fields passed on with a URL as the task's query: settings and the URL (2,048 at most).
MAX_QUERY_TEXT = 16 * 1024


def run_form(app: Flask, choices: list[dict[str, Any]]) -> Outcome:
    """Run the task the form names on the uploaded file (or the URL given), exactly as the API would.

    Any form with one file field works (the bird classifier's ``bird_image`` and no task): it gets the
    default task, and that form's messages for no file, no file chosen and a file type not supported.
    """
    outcome = Outcome()
    keys = current_settings().api_keys
    try:
        inputs.body_received()  # too slow, broken, or no room for it: said in the page
        if g.get("mysite_form_error") is not None:
            raise g.mysite_form_error
        inputs.params(request, urlencoded=True)  # a field sent twice is a 400, as on every route
        if keys:  # the form's api_key field (or the header), as the API itself wants it
            security.check_key(request, keys)
        upload, field_name = _upload()
        url = request.form.get("url", "").strip()
        named = request.form.get("endpoint", "")
        outcome.task = named or default_upload_task(choices)
        if outcome.task not in {t["path"] for t in choices}:
            return _failed(outcome, 400, "Choose one of the tasks in the list.")
        if (upload is None or not upload.filename) and not url:
            return _failed(outcome, 400, _nothing_sent(named, upload))
        view = _view_for(app, outcome.task)
        inputs.answer_room()  # for the picture the page shows, whichever it is
        if upload is not None and upload.filename:
            extension = os.path.splitext(upload.filename)[1].lower()
            # A form like the bird classifier's (no task named) promised image file types; this page goes by the content.
            if not named and extension and extension not in EXTENSIONS:
                return _failed(outcome, 415, f"The file type you selected: '{extension}' is not supported. "
                                             f"Please select a {', '.join(EXTENSIONS[:-1])} or {EXTENSIONS[-1]} file.")
            response = view() if field_name == "image" else _as_image_field(outcome.task, upload, view)
        elif url:
            query = {k: v for k, v in request.form.items() if k not in ("endpoint", "image", security.KEY_FIELD) and v}
            if sum(len(k) + len(v) for k, v in query.items()) > MAX_QUERY_TEXT:  # escaped and parsed again below
                return _failed(outcome, 400, f"The form's fields come to more than {MAX_QUERY_TEXT} characters; "
                                             "a task's settings and a URL need far fewer.")
            # The API reads ?url= from the query string: run the view in a GET request context built for it
            # (Flask's documented way to make one; nothing is sent over the network by this).
            with current_app.test_request_context(outcome.task, method="GET", query_string=query):
                response = view()
    except ApiError as exc:
        return _failed(outcome, exc.code, exc.message, str(exc.reason))
    except RequestEntityTooLarge:  # the body is over the limit: said as a page, not JSON, to a browser form
        limit = current_app.config["MYSITE_MAX_UPLOAD_MB"]
        return _failed(outcome, 413, f"Uploaded file too large: the limit is {limit:g} MB.")
    except HTTPException as exc:
        return _failed(outcome, exc.code or 400, exc.description or exc.name)
    label = next((t["model"] for t in choices if t["path"] == outcome.task), "")
    try:
        _show(outcome, response, _uploaded_bytes(upload), label)
    except ApiError as exc:  # no room kept for the picture shown
        return _failed(outcome, exc.code, exc.message, str(exc.reason))
    return outcome


def _nothing_sent(named: str, upload: FileStorage | None) -> str:
    """Why there is nothing to run, in this page's words or (a form that names no task) the bird classifier's."""
    if named:
        return "Choose an image file or give the URL of one."
    if upload is None:
        return "Send one file at a time." if len(request.files) > 1 else "No file uploaded."
    return "No file selected to upload."


def _upload() -> tuple[FileStorage | None, str]:
    """The uploaded file and its field: ``image`` (this page), else the form's only file field (the bird classifier's form)."""
    if "image" in request.files:
        return request.files["image"], "image"
    if len(request.files) == 1:
        name = next(iter(request.files))
        return request.files[name], name
    return None, ""


def _as_image_field(path: str, upload: FileStorage, view: Any) -> Response:
    """Run ``view`` on an upload sent under another field name, as the API's ``image`` field."""
    upload.stream.seek(0)
    form = {k: v for k, v in request.form.items() if k not in ("endpoint", "image", "submit", security.KEY_FIELD) and v}
    data = {**form, "image": (BytesIO(upload.stream.read()), upload.filename or "upload")}
    with current_app.test_request_context(path, method="POST", data=data, content_type="multipart/form-data"):
        return view()


def _view_for(app: Flask, path: str) -> Any:
    rule = next(r for r in app.url_map.iter_rules() if r.rule == path and "POST" in (r.methods or ()))
    return app.view_functions[rule.endpoint]


def _uploaded_bytes(upload: FileStorage | None) -> bytes | None:
    if upload is None or not upload.filename:
        return None
    upload.stream.seek(0)
    return upload.stream.read()


def _show(outcome: Outcome, response: Response, uploaded: bytes | None, label: str) -> None:
    outcome.server_timing = response.headers.get("Server-Timing", "")
    mimetype = response.mimetype or ""
    if mimetype.startswith("image/"):
        inputs.answer_made(len(response.data), base64=True)  # shown as a data URL
        outcome.image_url = _data_url(response.data, mimetype)
        outcome.notes.append(f"The answer is an image ({len(response.data)} bytes of {response.mimetype}).")
        return
    body = response.get_json(silent=True)
    outcome.json_text = pretty(body)
    outcome.summary = summary(body)
    detections = body.get("result") if isinstance(body, dict) else None
    state = app_state()
    settings = state.settings
    if isinstance(detections, list) and uploaded is not None:
        memory = pipeline.room_left(state.budget, (uploaded,)).memory
        drawn = state.runner.run(pipeline.drawn_upload, state.registry, uploaded, detections, label, settings.max_pixels,
                                 memory, settings.max_answer_bytes * 3 // 4)  # shown as base64
        if drawn is not None:
            inputs.answer_made(len(drawn), base64=True)
            outcome.image_url = _data_url(drawn, "image/jpeg")
        else:
            outcome.notes.append("The picture is too large to draw the boxes on here; the JSON has them.")
    elif isinstance(detections, list):
        outcome.notes.append("Boxes are drawn on uploads; for a URL, add ?output=image to the API call.")
    elif uploaded is not None:  # nothing to draw: show the upload itself, small (the bird classifier's thumbnail)
        memory = pipeline.room_left(state.budget, (uploaded,)).memory
        small = state.runner.run(pipeline.thumbnail_of, state.registry, uploaded, THUMBNAIL, settings.max_pixels,
                                 memory)
        if small is not None:
            outcome.thumbnail_url = _data_url(small, "image/jpeg")
        else:
            outcome.notes.append("The picture is too large to show here.")


def summary(body: Any) -> str:
    """An answer in words: the label and confidence of a classification, the digit, or how many were found."""
    if not isinstance(body, dict):
        return ""
    if "class_name" in body and body.get("predictions"):
        return f"Predicted: {body['class_name']} ({body['predictions'][0]['probability'] * 100:.2f} % confidence)"
    if "digit" in body:
        return f"Digit: {body['digit']} ({body.get('probability', 0) * 100:.2f} % confidence)"
    if isinstance(body.get("result"), list):
        return f"{len(body['result'])} found"
    return ""


def pretty(value: Any) -> str:
    """JSON with short arrays of numbers (boxes, probabilities) kept on one line, as the page's script shows it."""
    text = json.dumps(value, indent=2)
    return _NUMBER_ARRAY.sub(lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text)


def _failed(outcome: Outcome, code: int, message: str, reason: str = "") -> Outcome:
    outcome.code = code
    lead = PLAIN_REASONS.get(reason) or PLAIN_WORDS.get(code, "The request failed.")
    # How to install a missing model is for operators (the log, GET / as JSON), not for visitors.
    detail = "" if reason in OPERATOR_REASONS else f" {public_text(message)}"
    outcome.error = f"{lead} ({code}){detail}"
    return outcome


def _data_url(data: bytes, mimetype: str) -> str:
    return f"data:{mimetype};base64,{base64.b64encode(data).decode('ascii')}"
