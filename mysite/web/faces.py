"""The registered-faces routes (``FACE_ROUTES`` in ``endpoints.py``), all served by ``handle``.

The request is read here (name, parameters, images); each image goes through the face
embedding model as a job, where the image endpoints' models run (``pipeline.run_job``); what is done with
the embeddings (store, search, list, delete) is database work, done here on the web side
(``mysite/faces/``). Two styles of answer: DeepStack's (``success``, ``predictions`` with
``userid``, ``error``) and the site's own (``status``, ``result`` with ``name``).

Registering reads one face per photo: the largest one, unless another face is nearly as
large (then it is not clear who is meant and the photo is refused); a photo without a
face is refused; nothing is stored unless every photo gave a face.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Flask, Response, request

from mysite.errors import ApiError, BadRequest, Reason, Unprocessable
from mysite.faces.index import MIN_NAMED_WIDTH, FaceIndex, Match
from mysite.faces.store import MAX_NAME, FaceStore, default_url
from mysite.params import Param, parse
from mysite.pipeline import AnswerFormat, Job, run_all
from mysite.settings import Settings
from mysite.web import api, inputs
from mysite.web.endpoints import FACE_ROUTES, FaceRoute
from mysite.web.security import check_key
from mysite.web.state import app_state, current_settings

MODEL = "faceid"  # the models.toml entry that embeds faces
# DeepStack's default recognition threshold (its documentation: "By default, the minimum confidence is 0.67").
MIN_CONFIDENCE = Param("min_confidence", float, 0.67, min=0.0, max=1.0,
                       doc="smallest match confidence for a name; below it a face is unknown")
# A second face this large (relative to the largest) makes a registration photo ambiguous.
AMBIGUOUS = 0.8
# Pixels a registered face is wide at least: smaller faces give embeddings too alike (faces 30 px wide
# of two people came as close as one person's photos do), and a registration is matched against for good.
MIN_REGISTER_WIDTH = 60
NAME_FIELDS = ("userid", "name")
# Names a list answer reads from the database and sends at a time.
LIST_PAGE = 256


def register(app: Flask, routes: tuple[FaceRoute, ...] = FACE_ROUTES) -> None:
    """Add the face routes (blueprint ``faces``) and the app's face store and index."""
    settings = current_settings(app)
    store = FaceStore(settings.faces_db or default_url(settings.data_folder))
    state = app_state(app)
    state.faces = FaceIndex(store)
    state.face_routes = routes
    bp = Blueprint("faces", __name__)
    for route in routes:
        bp.add_url_rule(route.path, endpoint=route.name, view_func=_view(route),
                        methods=list(route.methods))
    app.register_blueprint(bp)


def _view(route: FaceRoute) -> Callable[..., Response]:
    def view(name: str | None = None) -> Response:
        return handle(route, name)

    view.__doc__ = route.doc
    view.__name__ = route.action
    return view


def current_index() -> FaceIndex:
    index = app_state().faces
    assert index is not None, "faces.register() installs the index"
    return index


def handle(route: FaceRoute, name: str | None = None) -> Response:
    """Every face route: check who may change the store, read the request, act, answer in the route's style."""
    started = time.perf_counter()
    settings = current_settings()
    if route.changes and settings.admin_keys:
        check_key(request, settings.admin_keys)
    given = inputs.params(request, urlencoded=True)  # deepstack clients send delete and list as urlencoded forms
    if route.action == "list":
        response = list_answer(route, started)
    else:
        body = ACTIONS[route.action](route, name, given, settings)
        if route.style == "deepstack":
            body = {"success": True, **body, "duration": round(time.perf_counter() - started, 4)}
        else:
            body = {"status": "ok", **body}
        response = Response(utf8_json(body) + b"\n", mimetype="application/json")
    response.headers["Server-Timing"] = f"total;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


def read_name(route: FaceRoute, name: str | None, given: dict[str, str]) -> str:
    """The person's name: the path's, else the ``userid`` field; kept as sent, never interpreted."""
    if name is None:
        name = next((given[k] for k in NAME_FIELDS if given.get(k, "").strip()), "")
    if not name.strip():
        raise BadRequest("user id not specified" if route.style == "deepstack" else "the name is empty",
                         reason=Reason.BAD_PARAMETER)
    if len(name) > MAX_NAME:
        raise BadRequest(f"the name is {len(name)} characters long; the limit is {MAX_NAME}",
                         reason=Reason.BAD_PARAMETER)
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise BadRequest("the name holds control characters; send printable text", reason=Reason.BAD_PARAMETER)
    if "\ufffd" in name:  # what a decoder puts for bytes that were not UTF-8: two such names would be one person
        raise BadRequest("the name holds U+FFFD, which stands for bytes that were not UTF-8; send the name in UTF-8",
                         reason=Reason.BAD_PARAMETER)
    return name


def read_images(settings: Settings) -> list[bytes]:
    """Every image the request carries: each multipart file (any field name) and each photo sent as a text
    field (``image``, ``image1``…, ``file``, ``img``: base64, or a part without a filename), else the one
    image, or the one at ``?url=``."""
    multipart = request.mimetype == "multipart/form-data"
    form = inputs.body_is_form(request) and (multipart or bool(request.form))
    uploads = [(key, f) for key in request.files for f in request.files.getlist(key)] if multipart else []
    texts = [(name, value) for name, values in request.form.lists() if inputs.photo_field(name)
             for value in values if value.strip()] if form else []
    if not uploads and not texts:  # the body itself (raw, base64, JSON), or ?url=
        fetch = api.fetcher(settings)
        data = inputs.image_bytes(request, settings.max_upload_bytes, fetch)
        if form and not inputs.looks_like_image(data):  # a form of parameters, not base64 sent as curl -d
            url = request.args.get("url", "").strip()
            if url:  # and the photo by its URL
                return [fetch(url)]
            raise BadRequest("Parameter image is not present", reason=Reason.MISSING_IMAGE)
        return [data]
    inputs.check_image_count(len(uploads) + len(texts))
    photos = [(key, inputs.file_bytes(u)) for key, u in uploads] + [(name, inputs.field_image(value, f"form field {name}"))
                                                      for name, value in texts]
    # In the order of their fields' numbers (image1, image2 ...), whether sent as files or text, so that
    # "image 2" in an answer is the client's image2.
    images = [data for _, data in sorted(photos, key=lambda photo: _field_number(photo[0]))]
    return inputs.each_within(images, settings.max_upload_bytes)


MAX_FIELD_DIGITS = 9


def _field_number(name: str) -> int:
    """The number a photo's field name ends in (``image2``: 2); 0 for a name without one. A number of more
    digits than any client sends comes after the rest (Python refuses ints of more than 4,300 digits)."""
    digits = name[5:] if name.startswith("image") else ""
    if not digits.isdecimal():
        return 0
    return int(digits) if len(digits) <= MAX_FIELD_DIGITS else 10**MAX_FIELD_DIGITS


def embed(images: list[bytes], given: dict[str, str], settings: Settings,
          most: int | None = None) -> list[list[dict[str, Any]]]:
    """The faces of each image, each face with its embedding, as the model finds them (largest first), at
    most ``most`` of them: one job for all of the request's images, done where the models run, so they
    share the request's budget and its work deadline as a batch's images do."""
    state = app_state()
    model = state.registry.get(MODEL)  # not loaded: a 503 naming the fix, before any work
    values = parse(model.params, given)
    if most is not None:
        values["max_faces"] = min(values["max_faces"], most)
    job = Job(MODEL, "boxes", AnswerFormat("json", "jpeg"), values, frozenset(given), tuple(images), True, "face",
              settings.max_pixels, state.budget, settings.max_answer_bytes)
    return state.runner.run(run_all, state.registry, job).result


# one_face reads the two largest faces of a photo (the second only to see whether it is nearly as large):
# embedding more would be work thrown away.
ONE_FACE_NEEDS = 2


def one_face(faces: list[dict[str, Any]], which: str, min_width: int = 0) -> dict[str, Any]:
    """The face a registration or match photo is of: its only or clearly largest face, ``min_width`` wide at least."""
    if not faces:
        raise Unprocessable(f"no face found in {which}", reason=Reason.UNPROCESSABLE)
    if len(faces) > 1 and _width(faces[1]) >= AMBIGUOUS * _width(faces[0]):
        raise Unprocessable(f"more than one face of about the same size in {which}: it is not clear who is meant; "
                            "send a photo of one person (or crop it)", reason=Reason.UNPROCESSABLE)
    if min_width and _width(faces[0]) < min_width:
        raise Unprocessable(f"the face in {which} is {_width(faces[0]):.0f} pixels wide; a face to register must be "
                            f"at least {min_width} pixels wide: send a larger or sharper photo",
                            reason=Reason.UNPROCESSABLE)
    return faces[0]


def _width(face: dict[str, Any]) -> float:
    return float(face["box"][2] - face["box"][0])


def _which(i: int, n: int) -> str:
    return "the image" if n == 1 else f"image {i}"


def do_register(route: FaceRoute, name: str | None, given: dict[str, str], settings: Settings) -> dict[str, Any]:
    userid = read_name(route, name, given)
    images = read_images(settings)
    index = current_index()
    index.store.check_room(len(images), settings.faces_max)  # a full store is a 507 before any work
    faces = [one_face(found, _which(i, len(images)), MIN_REGISTER_WIDTH)
             for i, found in enumerate(embed(images, given, settings, ONE_FACE_NEEDS), 1)]
    added = index.store.add(userid, [f["embedding"] for f in faces], settings.faces_max)
    index.changed()
    if route.style == "deepstack":
        return {"message": "face added"}
    return {"name": userid, "added": added, "boxes": [f["box"] for f in faces]}


def do_recognize(route: FaceRoute, name: str | None, given: dict[str, str], settings: Settings) -> dict[str, Any]:
    threshold = parse((MIN_CONFIDENCE,), given)["min_confidence"]
    images = read_images(settings)
    if len(images) != 1:
        raise BadRequest("recognize takes one image", reason=Reason.BAD_REQUEST)
    (faces,) = embed(images, given, settings)
    matches = current_index().search([f["embedding"] for f in faces]) if faces else []
    faces, matches = _reading_order(faces, matches)
    if route.style == "deepstack":
        return {"predictions": [_deepstack_prediction(f, m, threshold) for f, m in zip(faces, matches)]}
    return {"result": [_native_prediction(f, m, threshold) for f, m in zip(faces, matches)]}


def _reading_order(faces: list[dict[str, Any]], matches: list[Match]) -> tuple[list[dict[str, Any]], list[Match]]:
    order = sorted(range(len(faces)), key=lambda i: (faces[i]["box"][1], faces[i]["box"][0]))
    return [faces[i] for i in order], [matches[i] for i in order]


def _deepstack_prediction(face: dict[str, Any], match: Match, threshold: float) -> dict[str, Any]:
    known = FaceIndex.named(match, _width(face), threshold)
    x1, y1, x2, y2 = face["box"]
    return {"userid": match.userid if known else "unknown", "confidence": round(match.confidence, 4) if known else 0,
            "x_min": x1, "y_min": y1, "x_max": x2, "y_max": y2}


def _native_prediction(face: dict[str, Any], match: Match, threshold: float) -> dict[str, Any]:
    known = FaceIndex.named(match, _width(face), threshold)
    return {"box": face["box"], "name": match.userid if known else None, "confidence": round(match.confidence, 4),
            "distance": round(match.distance, 4) if match.userid is not None else None,
            "detection_confidence": face["confidence"], "too_small": _width(face) < MIN_NAMED_WIDTH}


def utf8_json(value: Any) -> bytes:
    """``value`` as compact JSON in UTF-8: a name of astral characters is a third of its escaped size. A lone
    surrogate, which UTF-8 cannot carry, is written as its JSON escape."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def list_answer(route: FaceRoute, started: float) -> Response:
    """Everyone registered, streamed: read and sent ``LIST_PAGE`` names at a time, so an answer holds one
    page however large the store and however slowly the client reads. The first page is read before
    anything is sent, so a failing database is still a 503."""
    store = current_index().store
    first = store.names_page(None, LIST_PAGE)
    return Response(_list_pieces(store, first, route.style == "deepstack", started), mimetype="application/json")


def _list_pieces(store: FaceStore, page: list[tuple[str, int]], deepstack: bool, started: float) -> Iterator[bytes]:
    yield b'{"success":true,"faces":[' if deepstack else b'{"status":"ok","faces":['
    comma = b""
    while page:
        yield comma + b",".join(utf8_json(n if deepstack else {"name": n, "count": c}) for n, c in page)
        comma = b","
        page = store.names_page(page[-1][0], LIST_PAGE) if len(page) == LIST_PAGE else []
    yield b"]" + (b',"duration":' + utf8_json(round(time.perf_counter() - started, 4)) if deepstack else b"") + b"}\n"


def do_delete(route: FaceRoute, name: str | None, given: dict[str, str], settings: Settings) -> dict[str, Any]:
    userid = read_name(route, name, given)
    index = current_index()
    deleted = index.store.delete(userid)
    index.changed()
    if route.style == "deepstack":
        return {}  # DeepStack answers {"success": true} whether or not the userid was there
    if not deleted:
        raise NotRegistered(f"no faces are registered as {userid!r}")
    return {"name": userid, "deleted": deleted}


def do_match(route: FaceRoute, name: str | None, given: dict[str, str], settings: Settings) -> dict[str, Any]:
    images = read_images(settings)
    if len(images) != 2:
        raise BadRequest(f"match takes two images (image1 and image2), not {len(images)}",
                         reason=Reason.MISSING_IMAGE)
    a, b = (one_face(found, f"image {i}") for i, found in enumerate(embed(images, given, settings, ONE_FACE_NEEDS), 1))
    distance, similarity = FaceIndex.similarity(a["embedding"], b["embedding"])
    return {"similarity": round(similarity, 4), "distance": round(distance, 4)}


class NotRegistered(ApiError):
    code, status, reason = 404, "not found", Reason.NOT_FOUND


ACTIONS: dict[str, Callable[[FaceRoute, str | None, dict[str, str], Settings], dict[str, Any]]] = {
    "register": do_register, "recognize": do_recognize, "delete": do_delete, "match": do_match,
}
