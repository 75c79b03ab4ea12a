"""The info route (``GET /``) and the load balancer's health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, render_template, request, url_for

from mysite import __version__
from mysite.errors import Reason
from mysite.server import pool
from mysite.web import inputs, tryit
from mysite.web.faces import MODEL as FACE_MODEL
from mysite.web.state import app_state, current_registry, current_settings

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static")
_HIDDEN_METHODS = {"HEAD", "OPTIONS"}


def route_list(app: Flask) -> list[dict[str, Any]]:
    """Every route of the app, read off its URL map: path, methods, one-line description."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        view = app.view_functions[rule.endpoint]
        doc = (view.__doc__ or "").strip().splitlines()
        routes.append({
            "path": rule.rule,
            "methods": sorted(set(rule.methods or ()) - _HIDDEN_METHODS),
            "description": doc[0] if doc else "",
        })
    return sorted(routes, key=lambda r: r["path"])


def _info() -> dict[str, Any]:
    return {
        "name": "mysite",
        "version": __version__,
        "openapi": url_for("openapi.openapi_json"),  # the machine-readable description of every route
        "routes": route_list(current_app),
        "models": current_registry().statuses(),
    }


@bp.route("/", methods=["GET", "POST"])
@inputs.says_body_errors  # the form's, in the page (tryit.run_form)
def info() -> Response | str | tuple[str, int]:
    """This page: the routes, the models and the version (POST: the page's form, without JavaScript)"""
    payload = _info()
    if request.method == "POST":
        return _try_it(payload)
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    wants_html = best == "text/html" and (
        request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]
    )
    if wants_html:
        return render_template("info.html", **payload, **tryit.page_context(current_app, payload["routes"]),
                               **_faces_context())
    return jsonify(payload)


def _try_it(payload: dict[str, Any]) -> tuple[str, int]:
    """Run the task the form names and show its answer in the page, with the API's status code."""
    context = tryit.page_context(current_app, payload["routes"])
    outcome = context["outcome"] = tryit.run_form(current_app, context["tasks"])
    return render_template("info.html", **payload, **context, **_faces_context()), outcome.code


def _faces_context() -> dict[str, bool]:
    """Whether the page shows the faces card (the embedding model is loaded), and asks for an admin key."""
    entry = current_registry().entries.get(FACE_MODEL)
    return {"faces_loaded": bool(entry and entry.loaded), "admin_key_required": bool(current_settings().admin_keys)}


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Health check: 200 while the required models are loaded and the detection processes answer, else 503"""
    state = app_state()
    registry = state.registry
    if not registry.healthy:
        missing = [e.spec.name for e in registry.entries.values() if e.spec.required and not e.loaded]
        return _unhealthy(f"required models not loaded: {', '.join(missing)}", Reason.MODEL_NOT_LOADED)
    client = state.runner
    if not isinstance(client, pool.Client):  # no pool: the models run in this process, which answers
        return jsonify({"status": "ok"}), 200
    # The dispatcher never runs client work, so it answers at once whatever the detections do.
    queue = client.status(timeout=0.5)
    if queue is None:
        return _unhealthy("the detection processes do not answer", Reason.UNAVAILABLE)
    if queue["processes"] == 0:
        return _unhealthy("no detection process is running", Reason.UNAVAILABLE)
    return jsonify({"status": "ok", "queue": queue}), 200


def _unhealthy(message: str, reason: Reason) -> tuple[Response, int]:
    return jsonify({"status": "unavailable", "message": message, "reason": reason.value}), 503
