"""gunicorn's access log as JSON lines, with the request id and without API keys.

One JSON object per request (``time``, ``request_id``, ``remote``, ``method``, ``path``,
``query``, ``status``, ``bytes``, ``duration_ms``, ``referer``, ``user_agent``,
``pid``, ``forwarded_for`` behind a proxy, and ``client``, whose share the request took): log
shippers parse it without a pattern, and the ``request_id`` is the one the answer carried in
``X-Request-ID`` (``observe.py``).
The site refuses a key in the query string (it wants the ``X-API-Key`` header or the
``api_key`` form field), but a client that sends one anyway must not leave it in the log: it is
written as ``[redacted]``. ``gunicorn_conf.py`` names this class as gunicorn's ``logger_class``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

from mysite.server.client_share import ENVIRON_KEY as CLIENT
from mysite.server.request_id import ENVIRON_KEY, HEADER

# Query parameter names that carry a key, as the app reads them (after percent-decoding, any case).
KEY_NAMES = frozenset({"api_key", "x-api-key"})
REDACTED = "[redacted]"


def redact_query(query: str) -> str:
    """``query`` with the value of every key-carrying parameter replaced; everything else as it was."""
    if not query:
        return query
    parts = []
    for part in query.replace(";", "&").split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and unquote_plus(name).strip().lower() in KEY_NAMES else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL or request target with its query redacted (the fragment, if any, dropped with it)."""
    path, sep, query = url.partition("?")
    return path + sep + redact_query(query.partition("#")[0]) if sep else url


class RedactingLogger(Logger):
    """gunicorn's logger, with keys taken out of every atom that can hold a URL."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        # The request line is "METHOD target PROTOCOL": only the target is a URL.
        method, _, rest = str(atoms.get("r", "")).partition(" ")
        target, _, protocol = rest.rpartition(" ")
        atoms["r"] = f"{method} {redact_url(target)} {protocol}"
        for name in ("f", "{raw_uri}e", "{http_referer}e", "{referer}i"):
            if isinstance(atoms.get(name), str):
                atoms[name] = redact_url(atoms[name])
        for name in ("q", "{query_string}e"):
            if isinstance(atoms.get(name), str):
                atoms[name] = redact_query(atoms[name])
        for name in ("{x-api-key}i", "{http_x_api_key}e"):
            if name in atoms:
                atoms[name] = REDACTED
        return atoms

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """One JSON line for the request (gunicorn's ``access_log_format`` is not used)."""
        if not getattr(self, "access_log_enabled", True):  # gunicorn < 27 has no such property: its caller checks
            return
        try:
            self.access_log.info("%s", json_line(self.atoms(resp, req, environ, request_time), environ, resp))
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            self.error(traceback.format_exc())


def json_line(atoms: dict[str, Any], environ: dict[str, Any], resp: Any) -> str:
    """The access log line from gunicorn's (redacted) atoms."""
    rid = environ.get(ENVIRON_KEY) or _header(resp, HEADER)
    record: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "request_id": rid,
        "remote": atoms.get("h"),
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "query": atoms.get("q") or "",
        "protocol": atoms.get("H"),
        "status": _int(atoms.get("s")),
        "bytes": _int(atoms.get("B")),
        "duration_ms": round(_int(atoms.get("D")) / 1000, 1),
        "referer": _dash(atoms.get("f")),
        "user_agent": _dash(atoms.get("a")),
        "pid": os.getpid(),  # the worker that answered
    }
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        record["forwarded_for"] = forwarded
    if environ.get(CLIENT):
        record["client"] = environ[CLIENT]
    return json.dumps(record, ensure_ascii=False)


def _header(resp: Any, name: str) -> str | None:
    for key, value in getattr(resp, "headers", ()) or ():
        if key.lower() == name.lower():
            return value
    return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _dash(value: Any) -> str | None:
    return None if value in (None, "-") else str(value)
