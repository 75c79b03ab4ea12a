"""``GET /openapi.json``: the API described as OpenAPI 3.1, generated from what the app registered.

Nothing here is written by hand per endpoint: the image endpoints come from the
registered table (``current_endpoints``), their query parameters from the
``Param`` declarations of the models they run (defaults as configured, the
row's own defaults and pinned values applied), the model choice from the row's
``ModelChoice`` with the server's setting as default, the answer bodies from the
row's output kind and the error bodies from its error kind. Every other route
of the URL map is listed with its docstring.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from mysite import __version__
from mysite.errors import REASONS, ApiError
from mysite.faces.store import MAX_NAME, StoreFull
from mysite.params import Param
from mysite.web import inputs, respond, security
from mysite.web.endpoints import Endpoint, FaceRoute
from mysite.web.state import app_state

bp = Blueprint("openapi", __name__)
OPENAPI_VERSION = "3.1.0"
_HIDDEN_METHODS = {"HEAD", "OPTIONS"}
_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}
# An uploaded image: binary, as OpenAPI 3.0 tools read it (format) and as 3.1 says it (contentMediaType).
_BINARY = {"type": "string", "format": "binary", "contentMediaType": "image/*"}
# An image as base64 text ("byte" is OpenAPI's format name for base64).
_BASE64 = {"type": "string", "format": "byte", "contentEncoding": "base64", "contentMediaType": "image/*",
           "minLength": 1, "description": "the image, base64 (or a data: URL)"}
# Any other multipart field: a part's value is text whatever its JSON type, so the one thing a form can get
# wrong in it is sending the field more than once (a list is repeated parts; inputs.params refuses those).
# A field the route does not read is ignored, as an unknown query parameter is.
ONCE = {"not": {"type": "array", "minItems": 2},
        "description": "text, sent once: a parameter of the route, or a field it ignores"}
# The raw image bodies the server reads (any image/* type is taken; the bytes say which format it is).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff", "image/heic",
               "image/avif")
# A real photo (64x48, one face) for the examples: a tool that sends them gets an answer, not an error.
EXAMPLE_IMAGE = Path(__file__).with_name("static") / "example-face.jpg"


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _examples() -> dict[str, Any]:
    """The example photo as each kind of body carries it, referenced by every image operation."""
    photo = base64.b64encode(EXAMPLE_IMAGE.read_bytes()).decode("ascii")
    return {"photo_base64": {"summary": "a 64x48 JPEG photo with one face, as base64", "value": photo},
            "photo_json": {"summary": "a 64x48 JPEG photo with one face, as JSON", "value": {"image": photo}},
            "photo_data_url": {"summary": "the same photo as a data URL (what a page's canvas gives)",
                               "value": f"data:image/jpeg;base64,{photo}"}}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """This API described as OpenAPI 3.1 (generated from the endpoint table and the models' parameters)"""
    return jsonify(document(current_app))


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``: every route of its URL map, the image endpoints in full."""
    state = app_state(app)
    paths: dict[str, dict[str, Any]] = {}
    faces = {f"faces.{r.name}": r for r in state.face_routes}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        ep = state.endpoint(rule.rule)
        methods = sorted(set(rule.methods or ()) - _HIDDEN_METHODS)
        if rule.endpoint in faces:
            route = faces[rule.endpoint]
            paths.setdefault(openapi_path(rule.rule), {}).update(
                {m.lower(): _face_operation(app, route, m) for m in methods})
        elif ep is not None and rule.endpoint == f"api.{ep.name}":
            paths[rule.rule] = _image_operations(app, ep)
        else:
            doc = (app.view_functions[rule.endpoint].__doc__ or "").strip().splitlines()
            paths[rule.rule] = {m.lower(): _other_operation(rule.endpoint, m, doc[0] if doc else "") for m in methods}
    if "post" in paths.get("/", {}):
        paths["/"]["post"]["requestBody"] = _page_form(state.endpoints)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "mysite", "version": __version__,
                 "description": "Computer vision over HTTP. POST an image (multipart, raw body, JSON or base64) "
                                "or GET with ?url=; errors are JSON with status and message."},
        "paths": paths,
        "components": {"schemas": _schemas(), "examples": _examples(), **_security_schemes(state.settings.api_keys)},
    }


def _security_schemes(keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """With MYSITE_API_KEYS set: the key, in the X-API-Key header (or an api_key form field, as DeepStack's clients)."""
    if not keys:
        return {}
    return {"securitySchemes": {security.KEY_HEADER: {
        "type": "apiKey", "in": "header", "name": security.KEY_HEADER,
        "description": f"one of the server's keys; a multipart {security.KEY_FIELD} field works too, never the URL"}}}


# --- image endpoints -----------------------------------------------------------------------------------


def _image_operations(app: Flask, ep: Endpoint) -> dict[str, Any]:
    """GET (``?url=``) and POST (the image in the body) of one table row."""
    params = [_query(p, ep) for p in _model_params(app, ep)] + _choice_params(app, ep) + _output_params(ep)
    url = {"name": "url", "in": "query", "schema": {"type": "string", "format": "uri"},
           "description": "the address of an image to fetch (http or https)"}
    keys = bool(app_state(app).settings.api_keys)
    responses = _image_responses(ep, keys)
    common: dict[str, Any] = {"summary": ep.doc, "description": _status(app, ep), "responses": responses}
    get = {"operationId": f"{ep.name}_get", **common, "parameters": [{**url, "required": True}, *params]}
    # With a body, a POST's url is not read: any text is accepted there.
    post_url = {**url, "schema": {"type": "string"},
                "description": "without a body: the address of an image to fetch, as GET (with a body: not read)"}
    post = {"operationId": f"{ep.name}_post", **common, "parameters": [post_url, *params],
            "requestBody": _request_body(ep, params)}
    if keys:  # MYSITE_API_KEYS: the image endpoints want a key (security.py)
        get["security"] = post["security"] = [{security.KEY_HEADER: []}]
    return {"get": get, "post": post}


def _status(app: Flask, ep: Endpoint) -> str:
    """Which models are loaded on this server: one that is not answers 503, and its parameters are not listed."""
    entries = app_state(app).registry.entries
    names = ep.choice.models.values() if ep.choice else [ep.model]
    missing = [n for n in names if not entries[n].loaded]
    if not missing:
        return "Every model this endpoint runs is loaded on this server."
    return (f"Not loaded on this server: {', '.join(missing)} (answers 503 until it is; "
            "its parameters are listed once it is loaded).")


def _model_params(app: Flask, ep: Endpoint) -> list[tuple[Param, list[str]]]:
    """The parameters a request may set on ``ep``: each with the choice values it applies to ([] = always).

    Where a choice offers several models, a parameter two of them share is described as the
    server's default model declares it.
    """
    state = app_state(app)
    if ep.choice is None:
        models = [("", ep.model)]
    else:
        server = ep.choice.default_value(state.settings)
        models = sorted(ep.choice.models.items(), key=lambda vm: vm[0] != server)  # the server's own first
    found: dict[str, tuple[Param, list[str]]] = {}
    for value, name in models:
        model = state.registry.entries[name].model
        for p in ep.settable(model.params) if model is not None else ():
            found.setdefault(p.name, (p, []))[1].append(value)
    out = []
    for p, values in found.values():
        out.append((p, [] if ep.choice is None or len(values) == len(ep.choice.models) else values))
    return out


def _query(param_and_values: tuple[Param, list[str]], ep: Endpoint) -> dict[str, Any]:
    p, values = param_and_values
    doc = p.doc
    if values and ep.choice is not None:  # read only by some of the models the choice offers
        doc = f"{doc} (with {ep.choice.param}={' or '.join(values)})".strip()
    return {"name": p.name, "in": "query", "schema": param_schema(p), "description": doc}


def param_schema(p: Param) -> dict[str, Any]:
    """The JSON Schema of one declared parameter: type, range, pattern and default."""
    schema: dict[str, Any] = {"type": _JSON_TYPES.get(p.type, "string"), "default": p.default}
    if p.min is not None:
        schema["minimum"] = p.min
    if p.max is not None:
        schema["maximum"] = p.max
    if p.pattern is not None:
        schema["pattern"] = p.pattern
    return schema


def _choice_params(app: Flask, ep: Endpoint) -> list[dict[str, Any]]:
    if ep.choice is None:
        return []
    server = ep.choice.default_value(app_state(app).settings)
    return [{"name": ep.choice.param, "in": "query",
             "schema": {"type": "string", "enum": [*ep.choice.models, ""], "default": server},
             "description": "which model runs: " + "; ".join(
                 f"{v} ({m}{': ' + ep.choice.uses[v] if v in ep.choice.uses else ''})" for v, m in ep.choice.models.items())
                            + f"; without one, the server's MYSITE_{ep.choice.setting.upper()} ({server})"}]


def _output_params(ep: Endpoint) -> list[dict[str, Any]]:
    """``output`` and ``format`` where the answer can be a picture."""
    if ep.output not in respond.DETECTIONS and ep.output != "image":
        return []
    default = ep.defaults.get("output") or ("image" if ep.output == "image" else "json")
    outputs = [o for o in respond.OUTPUTS if ep.output != "image" or o != "json"]
    return [
        {"name": "output", "in": "query", "schema": {"type": "string", "enum": [*outputs, ""], "default": default},
         "description": "json: the answer; image: the picture (with the detections drawn); base64: that picture as "
                        "base64 text. Without one, an Accept header preferring image/jpeg or image/png asks for the picture"},
        {"name": "format", "in": "query", "schema": {"type": "string", "enum": [*respond.FORMATS, ""], "default": "jpeg"},
         "description": "the picture's format (empty: as not given)"},
    ]


def _request_body(ep: Endpoint, params: list[dict[str, Any]]) -> dict[str, Any]:
    """Every way inputs.py takes an image: multipart field, raw image body, JSON base64, base64 text.

    The image field is a binary upload whose part is an image (``encoding``), so a generic tool
    sends a file where the image goes. The document names the field ``image``; the other names
    the server takes (``file``, ``img``, for other clients) are told in words, not declared,
    so that a tool sends the image once. The query parameters may be sent as form fields
    instead (DeepStack's clients do), once: they are told in words too, as one sent in both
    places is a 400.
    """
    fields: dict[str, Any] = {"image": _BINARY}
    if ep.output == "boxes":  # repeated image fields: one answer per image (api._batch)
        fields["image"] = {"oneOf": [_BINARY, {"type": "array", "items": _BINARY, "minItems": 1,
                                               "maxItems": inputs.MAX_IMAGES}]}
    return {
        "required": True,
        "description": "a multipart form may also carry the query parameters as fields (each sent once); "
                       f"the image: one of the fields {', '.join(inputs.FIELDS)} of a multipart form (a file, with "
                       "or without a filename, or base64 text), a raw image body, a JSON body "
                       "{\"image\": \"<base64>\"} or base64 text. A POST without a body and with ?url= has the "
                       "server fetch the image, as GET does",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": fields, "required": ["image"],
                           "additionalProperties": ONCE},
                "encoding": {"image": {"contentType": ", ".join(IMAGE_TYPES)}},
            },
            **{kind: {"schema": _BINARY} for kind in IMAGE_TYPES},
            "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {"image": _BASE64}},
                                 "examples": {"photo": _ref("photo_json", "examples")}},
            "text/plain": {"schema": _BASE64, "examples": {"photo": _ref("photo_base64", "examples"),
                                                           "data_url": _ref("photo_data_url", "examples")}},
        },
    }


def _image_responses(ep: Endpoint, keys: bool) -> dict[str, Any]:
    ok: dict[str, Any] = {}
    if ep.output in respond.JSON_SHAPES:
        schema: dict[str, Any] = _ref(f"Answer_{ep.output}")
        if ep.output == "boxes":
            schema = {"oneOf": [schema, _ref("Answer_several")]}
        ok["application/json"] = {"schema": schema}
    elif ep.output in respond.TEXT_SHAPES:
        ok["text/plain"] = {"schema": _ref(f"Answer_{ep.output}")}
    if ep.output in respond.DETECTIONS or ep.output == "image":
        ok.update({mime: {"schema": {"type": "string", "contentMediaType": mime}}
                   for mime in respond.MIMETYPES.values()})
        ok["text/plain"] = {"schema": {"type": "string", "contentEncoding": "base64"}}
    responses: dict[str, Any] = {"200": {"description": "the answer", "content": ok}}
    error = {"application/json": {"schema": _ref(f"Error_{ep.errors}")}}
    codes: dict[int, set[str]] = {}
    for code, statuses in error_codes().items():  # as this endpoint's clients expect them (DeepStack: no 415)
        codes.setdefault(respond.error_code(ep.errors, code), set()).update(statuses)
    if not keys:  # without MYSITE_API_KEYS nothing answers 401
        codes.pop(security.Unauthorized.code, None)
    for code, statuses in sorted(codes.items()):
        responses[str(code)] = {"description": ", ".join(sorted(statuses)), "content": error}
    return responses


def error_codes(stores: bool = False) -> dict[int, set[str]]:
    """Every status a route may answer besides 200: the ApiError classes', and a body over the limit.

    ``stores``: the route adds faces to the store, which may be full (``StoreFull``).
    """
    codes: dict[int, set[str]] = {413: {"too large"}}
    for cls in _subclasses(ApiError):
        if stores or cls is not StoreFull:
            codes.setdefault(cls.code, set()).add(cls.status)
    return codes


def _subclasses(cls: type[ApiError]) -> Iterable[type[ApiError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


# --- registered faces ----------------------------------------------------------------------------------


def openapi_path(rule: str) -> str:
    """A Flask rule as an OpenAPI path: ``/faces/<name>`` -> ``/faces/{name}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


# The name's pattern holds the characters themselves, not regex escapes, which JSON Schema's dialects read differently.
_SPACES = "\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # what str.strip takes off
_CONTROLS = "\x00-\x1f\x7f-\x9f"
NAME_PATTERN = f"^[^{_CONTROLS}]*[^{_SPACES}{_CONTROLS}][^{_CONTROLS}]*$"
_USERID = {"type": "string", "pattern": NAME_PATTERN, "maxLength": MAX_NAME,
           "description": "the person's name (DeepStack's routes): printable text, not blank"}
# Each action's multipart fields and the ones it needs.
_FACE_FIELDS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "register": ({"userid": _USERID, "image": _BINARY}, ["userid", "image"]),
    "recognize": ({"image": _BINARY}, ["image"]),
    "match": ({"image1": _BINARY, "image2": _BINARY}, ["image1", "image2"]),
    "delete": ({"userid": _USERID}, ["userid"]),
    "list": ({}, []),
}
_MORE_PHOTOS = "; more photos of the person as more file fields of any name (image1, image2, ...)"


def _face_operation(app: Flask, route: FaceRoute, method: str) -> dict[str, Any]:
    """One method of a face route: its fields, parameters, answer and errors."""
    from mysite.web import faces  # the face routes' module reads this one's neighbours: imported when used

    state = app_state(app)
    params: list[dict[str, Any]] = []
    if "{name}" in openapi_path(route.path):
        params.append({"name": "name", "in": "path", "required": True,
                       "schema": {"type": "string", "pattern": NAME_PATTERN, "maxLength": MAX_NAME},
                       "description": "the person's name, as registered (printable text, not blank)"})
    if route.action == "recognize":
        params.append(_query((faces.MIN_CONFIDENCE, []), _NO_ROW))
    if route.action in ("register", "recognize", "match"):
        entry = state.registry.entries.get(faces.MODEL)
        if entry is not None and entry.model is not None:
            params += [_query((p, []), _NO_ROW) for p in entry.model.params]
    error = {"application/json": {"schema": _ref(f"Error_{route.errors}")}}
    codes = error_codes(stores=route.action == "register")
    if not state.settings.api_keys and not (route.changes and state.settings.admin_keys):
        codes.pop(security.Unauthorized.code, None)
    responses: dict[str, Any] = {"200": {"description": "the answer", "content": {
        "application/json": {"schema": _ref(f"Faces_{route.style}_{route.action}")}}}}
    for code, statuses in sorted(codes.items()):
        responses[str(code)] = {"description": ", ".join(sorted(statuses)), "content": error}
    op: dict[str, Any] = {"operationId": f"faces_{route.style}_{route.action}_{method.lower()}", "summary": route.doc,
                          "parameters": params, "responses": responses}
    fields, required = _FACE_FIELDS[route.action]
    if route.style == "native":  # the name is the path's
        fields = {k: v for k, v in fields.items() if k != "userid"}
        required = [k for k in required if k != "userid"]
    if method in ("POST", "PUT") and fields:
        images = [k for k, v in fields.items() if v is _BINARY]
        form = {"type": "object", "properties": fields, "required": required, "additionalProperties": ONCE,
                "description": "other text fields are read as parameters or ignored"
                               + (_MORE_PHOTOS if route.action == "register" else "")}
        content: dict[str, Any] = {"multipart/form-data": {
            "schema": form, "encoding": {k: {"contentType": ", ".join(IMAGE_TYPES)} for k in images}}}
        if not images:  # DeepStack's clients send a delete as a urlencoded form
            content["application/x-www-form-urlencoded"] = {"schema": form}
        op["requestBody"] = {"required": bool(required), "content": content}
    if state.settings.api_keys:
        op["security"] = [{security.KEY_HEADER: []}]
    return op


_NO_ROW = Endpoint("/", "", "")
_BOX = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
_DS_OK = {"success": {"const": True}, "duration": {"type": "number"}}


def _face_schemas() -> dict[str, Any]:
    """The answer of each face action in each style."""
    def obj(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "required": required, "properties": props}

    prediction = obj(["userid", "confidence", "x_min", "y_min", "x_max", "y_max"],
                     {"userid": {"type": "string", "description": "the name, or unknown"},
                      "confidence": {"type": "number"},
                      **{k: {"type": "number"} for k in ("x_min", "y_min", "x_max", "y_max")}})
    face = obj(["box", "name", "confidence"], {"box": _BOX, "name": {"type": ["string", "null"]},
                                               "confidence": {"type": "number"},
                                               "distance": {"type": ["number", "null"]},
                                               "detection_confidence": {"type": "number"},
                                               "too_small": {"type": "boolean", "description":
                                                             "narrower than 40 px: never named"}})
    return {
        "Faces_deepstack_register": obj(["success", "message"], {**_DS_OK, "message": {"type": "string"}}),
        "Faces_deepstack_recognize": obj(["success", "predictions"],
                                         {**_DS_OK, "predictions": {"type": "array", "items": prediction}}),
        "Faces_deepstack_list": obj(["success", "faces"],
                                    {**_DS_OK, "faces": {"type": "array", "items": {"type": "string"}}}),
        "Faces_deepstack_delete": obj(["success"], _DS_OK),
        "Faces_deepstack_match": obj(["success", "similarity"], {**_DS_OK, "similarity": {"type": "number"},
                                                                 "distance": {"type": "number"}}),
        "Faces_native_register": obj(["status", "name", "added"], {"status": _OK, "name": {"type": "string"},
                                                                   "added": {"type": "integer"},
                                                                   "boxes": {"type": "array", "items": _BOX}}),
        "Faces_native_recognize": obj(["status", "result"], {"status": _OK, "result": {"type": "array", "items": face}}),
        "Faces_native_list": obj(["status", "faces"], {"status": _OK, "faces": {"type": "array", "items": obj(
            ["name", "count"], {"name": {"type": "string"}, "count": {"type": "integer"}})}}),
        "Faces_native_delete": obj(["status", "name", "deleted"], {"status": _OK, "name": {"type": "string"},
                                                                   "deleted": {"type": "integer"}}),
    }


# --- other routes --------------------------------------------------------------------------------------

# What the page routes answer, by Flask endpoint name; any other route gets a plain description.
_OTHER_RESPONSES: dict[str, dict[str, Any]] = {
    "pages.info GET": {"200": {"description": "the routes, the models and the version",
                               "content": {"application/json": {"schema": _ref("Info")},
                                           "text/html": {"schema": {"type": "string"}}}}},
    "pages.info POST": {"200": {"description": "the page with the answer of the task its form names",
                                "content": {"text/html": {"schema": {"type": "string"}}}},
                        "default": {"description": "the page with the error in words, with the API's status",
                                    "content": {"text/html": {"schema": {"type": "string"}}}}},
    "pages.healthz GET": {"200": {"description": "the required models are loaded",
                                  "content": {"application/json": {"schema": _ref("Health")}}},
                          "503": {"description": "a required model is not loaded",
                                  "content": {"application/json": {"schema": _ref("Health")}}}},
    "metrics.metrics_text GET": {"200": {"description": "Prometheus' text exposition format (MYSITE_METRICS)",
                                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
    "openapi.openapi_json GET": {"200": {"description": "this document",
                                         "content": {"application/json": {"schema": {"type": "object"}}}}},
}


def _page_form(endpoints: tuple[Endpoint, ...]) -> dict[str, Any]:
    """The page's form (and the bird classifier's upload form): a task of the page, a file or a URL, and its options."""
    tasks = [ep.path for ep in endpoints if ep.on_page]
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "properties": {"endpoint": {"type": "string", "enum": tasks,
                                    "description": "the task; a form without one (the bird classifier's) gets classification, "
                                                   "else faces"},
                       "image": _BINARY, "url": {"type": "string", "format": "uri"}},
        "additionalProperties": {"type": "string", "description": "the task's options, as its query parameters"},
        "description": "one file field (image, or any name, as the bird classifier's bird_image) or url",
    }}}}


def _other_operation(endpoint: str, method: str, summary: str) -> dict[str, Any]:
    default = {"200": {"description": summary or "the answer", "content": {"text/html": {"schema": {"type": "string"}}}}}
    return {"operationId": f"{endpoint.replace('.', '_')}_{method.lower()}", "summary": summary,
            "responses": _OTHER_RESPONSES.get(f"{endpoint} {method}", default)}


# --- schemas -------------------------------------------------------------------------------------------


_DETECTION = {
    "type": "object", "required": ["box"],
    "properties": {
        "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
                "description": "x1, y1, x2, y2 in the image's pixels"},
        "confidence": {"type": "number"}, "label": {"type": "string"},
        "landmarks": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "number"}}},
    },
}
_OK = {"type": "string", "const": "ok"}

# The body of each kind of answer (respond.JSON_SHAPES and TEXT_SHAPES): a test checks none is missing.
ANSWERS: dict[str, dict[str, Any]] = {
    "boxes": {"type": "object", "required": ["status", "result"],
              "properties": {"status": _OK, "result": {"type": "array", "items": _ref("Detection")}}},
    "fields": {"type": "object", "required": ["status"], "properties": {"status": _OK},
               "description": "status, and the model's own fields (e.g. digit, probability, probabilities)"},
    "predictions": {"type": "object", "required": ["success", "status", "predictions"],
                    "properties": {"success": {"const": True}, "status": _OK,
                                   "predictions": {"type": "array", "items": {
                                       "type": "object", "required": ["label", "probability"],
                                       "properties": {"label": {"type": "string"}, "probability": {"type": "number"},
                                                      "class_id": {"type": ["string", "integer"]}}}},
                                   "class_id": {"type": ["string", "integer"]}, "class_name": {"type": "string"}}},
    "deepstack": {"type": "object", "required": ["success", "predictions", "duration"],
                  "properties": {"success": {"const": True}, "duration": {"type": "number"},
                                 "predictions": {"type": "array", "items": {
                                     "type": "object",
                                     "required": ["x_min", "y_min", "x_max", "y_max", "label", "confidence"],
                                     "properties": {**{k: {"type": "number"} for k in ("x_min", "y_min", "x_max", "y_max")},
                                                    "label": {"type": "string"}, "confidence": {"type": "number"}}}}}},
    "digit_text": {"type": "string", "pattern": "^[0-9]$", "description": "the digit, as text"},
}


def _error_schemas() -> dict[str, Any]:
    """``Error``: the book's status and message, and the machine-readable reason (mysite.errors.REASONS);
    ``Error_<kind>``: what respond.ERROR_FIELDS adds for an endpoint's clients, typed from what it adds."""
    out: dict[str, Any] = {"Error": {
        "type": "object", "required": ["status", "message", "reason"],
        "properties": {"status": {"type": "string"}, "message": {"type": "string", "description": "for people"},
                       "reason": {"type": "string", "enum": list(REASONS),
                                  "description": "for programs: a stable name of the error"}},
    }}
    for kind, fields in respond.ERROR_FIELDS.items():
        extra = fields("message")
        props = {k: ({"const": v} if isinstance(v, bool) else {"type": _JSON_TYPES.get(type(v), "string")})
                 for k, v in extra.items()}
        out[f"Error_{kind}"] = {"allOf": [_ref("Error"), {"type": "object", "required": sorted(extra),
                                                          "properties": props}]}
    return out


def _schemas() -> dict[str, Any]:
    several = {"type": "object", "required": ["status", "results"],
               "properties": {"status": _OK, "results": {"type": "array", "items": {
                   "oneOf": [_ref("Answer_boxes"), _ref("Error")]}}},
               "description": "one answer per image of repeated multipart image fields, in order"}
    return {
        "Detection": _DETECTION,
        **{f"Answer_{kind}": schema for kind, schema in ANSWERS.items()},
        "Answer_several": several,
        **_error_schemas(),
        **_face_schemas(),
        "Info": {"type": "object", "required": ["name", "version", "routes", "models"],
                 "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                "openapi": {"type": "string"},
                                "routes": {"type": "array", "items": {"type": "object"}},
                                "models": {"type": "array", "items": {"type": "object"}}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                                  "message": {"type": "string"},
                                  "reason": {"type": "string", "enum": list(REASONS)}}},
    }
