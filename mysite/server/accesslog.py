"""gunicorn's access log without API keys: a key sent in a URL is written as ``[redacted]``.

The site refuses a key in the query string (it wants the ``X-API-Key`` header or the
``api_key`` form field), but a client that sends one anyway must not leave it in the log.
``gunicorn_conf.py`` names this class as gunicorn's ``logger_class``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

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
