"""Check an answer against what /openapi.json documents for its operation: status, content type, JSON body."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator


def operation(doc: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return doc["paths"][path][method.lower()]


def problems(doc: dict[str, Any], path: str, method: str, status: int, mimetype: str, body: bytes) -> list[str]:
    """What is wrong with an answer by the document (an empty list: it is as documented)."""
    responses = operation(doc, path, method)["responses"]
    documented = responses.get(str(status)) or responses.get("default")
    if documented is None:
        return [f"status {status} is not documented (documented: {sorted(responses)})"]
    content = documented.get("content", {})
    media = content.get(mimetype) or next((v for k, v in content.items()
                                           if k.endswith("/*") and mimetype.startswith(k[:-1])), None)
    if media is None:
        return [f"{status} answered {mimetype}, documented: {sorted(content)}"]
    schema = media.get("schema", {})
    if mimetype == "application/json":
        try:
            value: Any = json.loads(body)
        except ValueError as exc:
            return [f"{status} {mimetype} body is not JSON: {exc}"]
    elif mimetype.startswith("text/") and "contentMediaType" not in schema:
        value = body.decode("utf-8", "replace")
    else:
        return []  # a picture: its media type is what was documented
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    return [f"{status} body {str(value)[:200]!r}: {e.message} at {list(e.absolute_path)}"
            for e in validator.iter_errors(value)]
