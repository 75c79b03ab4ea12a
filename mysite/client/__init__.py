"""The client of the site (the book's demo_request grown up), as a library and a command: one image or a batch.

Library::

    from mysite.client import Client
    faces = Client("http://localhost:5000").detect("group.jpg")   # [{"box": [x1, y1, x2, y2]}, ...]

Command (prints the answer as JSON on stdout; ``--verbose`` adds status and headers on stderr)::

    python -m mysite.client detect group.jpg --draw out.png
    python -m mysite.client detect --url https://example.org/lena.jpg
    MYSITE_SERVER=https://me.pythonanywhere.com python -m mysite.client catfacedetection cat.jpg

Several paths, a folder, a glob or ``-`` (paths on stdin) make it a batch
(``mysite.client.batch``): concurrent, JSON Lines out, resumable, with a progress bar::

    python -m mysite.client --server URL detect ~/Pictures/holiday --out faces.jsonl

A server that cannot be reached (refused, no such host, no connection within
``CONNECT_TIMEOUT`` seconds) is reported at once: waiting would not bring it.
What may pass is retried with exponential backoff: a 503 saying the server is
busy (after its ``Retry-After``), a 502 from a proxy whose app is restarting,
and a connection that was made but dropped before the answer. Other HTTP errors
are reported with the server's own message. Needs ``requests`` only; ``--draw``
also needs Pillow.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
import urllib3

from mysite.errors import Reason

DEFAULT_SERVER = "http://localhost:5000"
# 503: busy (or restarting); 502: a proxy found no app behind it. A 504 is not sent again: the same work
# would take as long again.
RETRY_STATUSES = frozenset({502, 503})
CONNECT_TIMEOUT = 2.0  # seconds to open a connection: loopback and the Internet both take far less


class ClientError(Exception):
    """The request did not give an answer we can use."""


class ConnectFailed(ClientError):
    """No connection to the server could be made (refused, no such host, or no answer to connect)."""


class NoAnswer(ClientError):
    """A connection was made but no answer came: it dropped (even after retrying) or the timeout passed."""


class HTTPError(ClientError):
    """The server answered with an error status; ``message`` is its own explanation."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        body = json_or_none(response)
        self.message = str(body.get("message", "")) if isinstance(body, dict) else response.text[:200].strip()
        self.reason = str(body.get("reason", "")) if isinstance(body, dict) else ""  # e.g. model_not_loaded
        reason = body.get("status") if isinstance(body, dict) else response.reason
        super().__init__(f"{response.request.method} {response.url} answered {self.status} {reason}: {self.message}")


class Client:
    """Talks to one mysite server; every method raises ``ClientError`` rather than returning an error."""

    def __init__(
        self,
        server: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 0.5,
        timeout: float = 60.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        api_key: str | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self.server = (server or os.environ.get("MYSITE_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.session = session or requests.Session()
        # A server with MYSITE_API_KEYS wants a key: from the environment, not the command line (ps shows that).
        key = api_key if api_key is not None else os.environ.get("MYSITE_API_KEY", "")
        if key:
            self.session.headers["X-API-Key"] = key
        self._sleep = sleep

    def url_for(self, endpoint: str) -> str:
        """The full URL of ``endpoint`` ("/detect", "detect" or a full URL)."""
        if endpoint.startswith(("http://", "https://")):
            return endpoint
        return f"{self.server}/{endpoint.lstrip('/')}"

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        image: str | Path | bytes | None = None,
        url: str | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        images: Sequence[tuple[str, bytes]] | None = None,
    ) -> requests.Response:
        """Send one request (the image as multipart field ``image``, or ``?url=``), retrying what may pass.

        ``images`` (name, bytes) go as repeated ``image`` fields: several images in one
        request. Any status is returned, as the book's scripts want to print it; a server
        that cannot be reached raises ``ConnectFailed`` at once, one that gives no answer ``NoAnswer``.
        """
        query = dict(params or {})
        if url is not None:
            query["url"] = url
        uploads = list(images or ())
        if image is not None:
            uploads.append((_name(image), _read(image)))
        target = self.url_for(endpoint)
        for attempt in range(self.retries + 1):
            files = [("image", (name, data, "application/octet-stream")) for name, data in uploads] or None
            last = attempt == self.retries
            try:
                response = self.session.request(method, target, params=query, files=files,
                                                headers=dict(headers or {}),
                                                timeout=(min(self.connect_timeout, self.timeout), self.timeout))
            except requests.ConnectionError as exc:
                if not connected(exc):
                    raise ConnectFailed(f"could not connect to {self.server}: {connect_problem(exc)}") from None
                if isinstance(exc, requests.Timeout) or last:  # a read timeout, or dropped on every try
                    raise NoAnswer(f"{target} gave no answer: {_dropped(exc, self.timeout)}") from None
            except requests.Timeout:
                raise NoAnswer(f"{target} gave no answer within {self.timeout:g} s") from None
            else:
                if response.status_code not in RETRY_STATUSES or last or model_not_loaded(response):
                    return response
                retry_after = _retry_after(response)
                if retry_after is not None:
                    self._sleep(min(retry_after, 30.0))
                    continue
            self._sleep(min(self.backoff * 2**attempt, 8.0))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def call(self, endpoint: str, image: str | Path | bytes | None = None, *, url: str | None = None,
             **params: Any) -> requests.Response:
        """POST ``image`` (or GET ``?url=``) to ``endpoint``; raise ``HTTPError`` unless the answer is 2xx."""
        method = "POST" if image is not None else "GET"
        response = self.request(method, endpoint, image=image, url=url, params=params)
        if not response.ok:
            raise HTTPError(response)
        return response

    def detect(self, image: str | Path | bytes | None = None, *, endpoint: str = "/detect", url: str | None = None,
               **params: Any) -> list[dict[str, Any]]:
        """The detections the server finds: ``[{"box": [x1, y1, x2, y2], ...}, ...]``."""
        body = json_or_none(self.call(endpoint, image, url=url, **params))
        if not isinstance(body, dict) or not isinstance(body.get("result"), list):
            raise ClientError(f"{endpoint} did not answer detections: {str(body)[:200]}")
        return body["result"]

    def annotated(self, image: str | Path | bytes | None = None, *, endpoint: str = "/detect",
                  url: str | None = None, fmt: str = "png", **params: Any) -> bytes:
        """The picture with the server's results drawn on it (``?output=image``), as PNG or JPEG bytes."""
        return self.call(endpoint, image, url=url, output="image", format=fmt, **params).content

    # --- registered faces (the server's /faces and /recognize) ---

    def register(self, name: str, images: Sequence[str | Path | bytes]) -> dict[str, Any]:
        """Register ``name`` from one or more photos (one face each); the server's answer."""
        response = self.request("POST", f"/faces/{quote(name, safe='')}",
                                images=[(_name(i), _read(i)) for i in images])
        if not response.ok:
            raise HTTPError(response)
        return response.json()

    def recognize(self, image: str | Path | bytes, **params: Any) -> list[dict[str, Any]]:
        """Every face of ``image``: ``{"box": [...], "name": str or None, "confidence": ...}``."""
        return self.detect(image, endpoint="/recognize", **params)

    def faces(self) -> list[dict[str, Any]]:
        """The registered people: ``[{"name": ..., "count": ...}, ...]``."""
        response = self.request("GET", "/faces")
        if not response.ok:
            raise HTTPError(response)
        return response.json()["faces"]

    def forget(self, name: str) -> int:
        """Delete every face of ``name``; how many there were."""
        response = self.request("DELETE", f"/faces/{quote(name, safe='')}")
        if not response.ok:
            raise HTTPError(response)
        return int(response.json()["deleted"])


def draw_file(image: bytes, detections: Sequence[Mapping[str, Any]], out: Path, label: str = "") -> None:
    """Write ``image`` with ``detections`` drawn to ``out`` (format from its suffix), like demo_request_drawing."""
    from mysite.client import drawing  # Pillow: needed only to draw

    drawing.draw_file(image, detections, out, label)


def write_image(picture: bytes, out: Path) -> None:
    """Save an image the server answered (JPEG or PNG bytes) as ``out``; its suffix picks the format."""
    from mysite.client import drawing

    drawing.save_as(picture, out)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``mysite-client`` command (``cli.py``), imported only when it runs."""
    from mysite.client.cli import main as cli_main

    return cli_main(argv)


def _read(image: str | Path | bytes) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def _name(image: str | Path | bytes | None) -> str:
    return "image" if isinstance(image, bytes) or image is None else Path(image).name


def json_or_none(response: requests.Response) -> Any:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def model_not_loaded(response: requests.Response) -> bool:
    """A 503 from mysite saying a model is not loaded: that lasts until its owner installs it, so don't wait.

    The error body's machine-readable ``reason`` says so (never its English message, which may change);
    any other 503 is taken as passing.
    """
    if response.status_code != 503:
        return False
    body = json_or_none(response)
    return isinstance(body, dict) and body.get("reason") == Reason.MODEL_NOT_LOADED.value


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


def _cause(exc: requests.RequestException) -> object:
    """urllib3's reason behind a requests error (what MaxRetryError wraps), else the error's first argument."""
    first = exc.args[0] if exc.args else None
    return getattr(first, "reason", first)


def connected(exc: requests.ConnectionError) -> bool:
    """Whether the connection was made before the failure (a reset or drop mid-request), not refused or unresolved."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    return not isinstance(_cause(exc), (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


def connect_problem(exc: requests.ConnectionError) -> str:
    """Why no connection was made, in a few words."""
    cause = _cause(exc)
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        return "the host name could not be resolved"
    if isinstance(exc, requests.ConnectTimeout) or type(cause) is urllib3.exceptions.ConnectTimeoutError:
        return "no connection within the connect timeout (is the address right, or a firewall in the way?)"
    text = str(cause)
    match = re.search(r"\[Errno -?\d+\] ([^')\]]+)", text)
    return (match.group(1).strip().lower() if match else text)[:200]


def _dropped(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"none within {timeout:g} s"
    return f"the connection was dropped ({str(_cause(exc))[:160]})"
