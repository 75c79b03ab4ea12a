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
are reported with the server's own message. ``timeout`` bounds each attempt as a
whole, an answer longer than ``max_answer_bytes`` is refused, and a redirect is followed
only on the same host (``transport.py``). Needs ``requests`` only; ``--draw`` also needs Pillow.
"""

from __future__ import annotations

import math
import os
import re
import ssl
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
import urllib3

from mysite.client import transport
from mysite.errors import Reason

DEFAULT_SERVER = "http://localhost:5000"
# 503: busy (or restarting); 502: a proxy found no app behind it. A 504 is not sent again: the same work
# would take as long again.
RETRY_STATUSES = frozenset({502, 503})
CONNECT_TIMEOUT = 2.0  # seconds to open a connection: loopback and the Internet both take far less
# The largest honest answer is a picture: ?output=image of a 40 MP photo as PNG, base64 in JSON.
MAX_ANSWER_BYTES = 256 * 2**20
MAX_TIMEOUT = 86400.0  # seconds: a day; past that a timeout is a mistake (and overflows timers)
MAX_RETRIES = 100


class ClientError(Exception):
    """The request did not give an answer we can use. Its message never shows a password given in a URL."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(_USERINFO.sub(r"\1\2:***@", a) if isinstance(a, str) else a for a in args))


_USERINFO = re.compile(r"(//)([^/@:\s]*):[^/@\s]*@")  # scheme://user:password@host


class ConnectFailed(ClientError):
    """No connection to the server could be made (refused, no such host, or no answer to connect)."""


class NoAnswer(ClientError):
    """A connection was made but no answer came: it dropped (even after retrying) or the timeout passed."""


class AnswerTooLarge(ClientError):
    """The answer is longer than the client's limit (``max_answer_bytes``); it was not read further."""


class RedirectRefused(ClientError):
    """The server redirected to another host, or to a ``Location`` that is not a plain URL: not followed,
    so neither the photo nor the key is sent there."""


class _Dropped(Exception):
    """The connection was dropped before the whole answer came: another try may pass."""


class HTTPError(ClientError):
    """The server answered with an error status; ``message`` is its own explanation."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        body = json_or_none(response)
        text = response.content[:800].decode("utf-8", "replace")[:200].strip()
        self.message = str(body.get("message", "")) if isinstance(body, dict) else text
        self.reason = str(body.get("reason", "")) if isinstance(body, dict) else ""  # e.g. model_not_loaded
        reason = body.get("status") if isinstance(body, dict) else None
        reason = reason if reason is not None else response.reason
        super().__init__(printable(f"{response.request.method} {response.url} answered {self.status} {reason}: "
                                   f"{self.message}"))


class Client:
    """Talks to one mysite server; every method raises ``ClientError`` rather than returning an error.

    ``timeout`` bounds each attempt as a whole (connecting, the answer's headers and body, redirects);
    an answer longer than ``max_answer_bytes`` (decoded) is refused; a redirect is followed only on the
    same host. A ``session`` given is fitted with the adapter that enforces the timeout.
    """

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
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        check_options(retries=retries, backoff=backoff, timeout=timeout, connect_timeout=connect_timeout,
                      max_answer_bytes=max_answer_bytes)
        self.server, credentials = _without_credentials(
            (server or os.environ.get("MYSITE_SERVER") or DEFAULT_SERVER).rstrip("/"))
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_answer_bytes = max_answer_bytes
        self.session = session or requests.Session()
        self._credentials = credentials  # sent to this server as requests sends a URL's, never in a message
        # Each attempt's sockets are watched, so ``timeout`` bounds the whole answer, not each read.
        adapter = transport.WatchedAdapter()
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
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
            last = attempt == self.retries
            try:
                response = self._attempt(method, target, query, uploads, dict(headers or {}))
            except _Dropped as exc:
                if last:
                    raise NoAnswer(f"{target} gave no answer: the connection was dropped ({exc})") from None
            else:
                if response.status_code not in RETRY_STATUSES or last or model_not_loaded(response):
                    return response
                retry_after = _retry_after(response)
                if retry_after is not None:
                    self._sleep(min(retry_after, 30.0))
                    continue
            self._sleep(min(self.backoff * 2**attempt, 8.0))
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _attempt(self, method: str, target: str, query: dict[str, Any], uploads: list[tuple[str, bytes]],
                 headers: dict[str, str]) -> requests.Response:
        """One try, its redirects on the same host followed, its answer read whole, all within ``timeout``."""
        url, params = target, query
        with transport.Deadline(self.timeout) as deadline:
            for _ in range(transport.MAX_REDIRECTS + 1):
                response = self._send(deadline, method, url, params, uploads, headers)
                if response.status_code < 200:  # only an interim answer came (the transport skips a few)
                    response.close()
                    raise ClientError(f"{url} sent no final answer, only {response.status_code} {response.reason}")
                if not response.is_redirect:
                    self._read(deadline, response)
                    return response
                response.close()  # its body unread: a redirect's body is not what we asked for
                url = self._follow(url, response)
                params = {}  # the Location carries its own query
                if response.status_code == 303:  # "see other": fetch it, the upload is done
                    method, uploads = "GET", []
        raise ClientError(f"{target} redirected more than {transport.MAX_REDIRECTS} times")

    def _send(self, deadline: transport.Deadline, method: str, url: str, params: dict[str, Any],
              uploads: list[tuple[str, bytes]], headers: dict[str, str]) -> requests.Response:
        """The request, up to the answer's headers.

        Prepared by the session (its headers, proxies and certificates from the environment) but sent by
        the adapter alone: ``Session.send`` would read a redirect's whole body, past the limit and the deadline.
        """
        files = [("image", (name, data, "application/octet-stream")) for name, data in uploads] or None
        try:
            auth = self._credentials if transport.same_site(self.server, url) else None
            prepared = self.session.prepare_request(
                requests.Request(method, url, params=params, files=files, headers=headers, auth=auth))
            settings = self.session.merge_environment_settings(prepared.url, {}, True, None, None)
            adapter = self.session.get_adapter(str(prepared.url))
            verify = settings["verify"] if settings["verify"] is not None else True
            response = adapter.send(prepared, stream=True, verify=verify, cert=settings["cert"],
                                    timeout=(min(self.connect_timeout, self.timeout), self.timeout),
                                    proxies=settings["proxies"])
            # As Session.send does: a load balancer's stickiness, or a proxy's gate, may rest on a cookie.
            requests.cookies.extract_cookies_to_jar(self.session.cookies, prepared, response.raw)
            return response
        except requests.ConnectionError as exc:
            if _certificate_refused(exc):  # refused again on every try: no retry
                raise ConnectFailed(f"could not connect to {self._where(url)}: its TLS certificate was refused "
                                    f"({str(_cause(exc))[:200]})") from None
            if deadline.passed():
                raise self._late(url) from None
            if not connected(exc):
                raise ConnectFailed(f"could not connect to {self._where(url)}: {connect_problem(exc)}") from None
            if isinstance(exc, requests.Timeout):
                raise self._late(url) from None
            raise _Dropped(str(_cause(exc))[:160]) from None
        except requests.Timeout:
            raise self._late(url) from None
        except transport.InterimAnswers as exc:
            raise ClientError(f"{url} gave no answer: {exc}") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise ClientError(f"{url}: the request failed: {exc}"[:300]) from None

    def _read(self, deadline: transport.Deadline, response: requests.Response) -> None:
        """The answer's body, read into ``response`` within the deadline and the size limit."""
        try:
            transport.read_body(response, self.max_answer_bytes)
        except transport.TooLarge as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise AnswerTooLarge(f"{response.url} answered more than the limit of {self.max_answer_bytes} bytes"
                                 f"{detail}; not read further (max_answer_bytes, --max-answer)") from None
        except urllib3.exceptions.DecodeError as exc:
            if deadline.passed():
                raise self._late(str(response.url)) from None
            raise ClientError(f"{response.url} answered a body that could not be decoded ({exc})"[:300]) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise self._late(str(response.url)) from None
        except transport.BODY_ERRORS as exc:
            if deadline.passed():
                raise self._late(str(response.url)) from None
            raise _Dropped(f"the answer was cut short: {exc}"[:160]) from None
        if deadline.passed():  # an answer without a length ends when the deadline shuts its socket
            raise self._late(str(response.url))

    def _late(self, url: str) -> NoAnswer:
        return NoAnswer(f"{url} gave no answer within {self.timeout:g} s")

    def _where(self, url: str) -> str:
        """The server ``url`` is on, as the user named it when it is theirs."""
        return self.server if url.startswith(self.server) else _origin(url)

    def _follow(self, source: str, response: requests.Response) -> str:
        """Where a redirect may be followed: the same host only, so neither the photo nor the key goes elsewhere."""
        try:
            target = transport.redirect_target(response)
        except transport.BadLocation as exc:
            location = printable(response.headers.get("Location", "")[:200])
            raise RedirectRefused(f"{source} redirected ({response.status_code}) to {location!r}; not followed: "
                                  f"{exc}") from None
        if not transport.same_site(str(response.url), target):
            raise RedirectRefused(f"{source} redirected ({response.status_code}) to another host: {target[:200]}; "
                                  "not followed (give that server with --server if it is the right one)")
        return target

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
        response = self.call(endpoint, image, url=url, **params)
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("result"), list):
            raise ClientError(f"{endpoint} did not answer detections: {_preview(response)}")
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
        body = json_or_none(response)
        if not isinstance(body, dict):
            raise ClientError(f"{response.url} did not answer JSON: {_preview(response)}")
        return body

    def recognize(self, image: str | Path | bytes, **params: Any) -> list[dict[str, Any]]:
        """Every face of ``image``: ``{"box": [...], "name": str or None, "confidence": ...}``."""
        return self.detect(image, endpoint="/recognize", **params)

    def faces(self) -> list[dict[str, Any]]:
        """The registered people: ``[{"name": ..., "count": ...}, ...]``."""
        response = self.request("GET", "/faces")
        if not response.ok:
            raise HTTPError(response)
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("faces"), list):
            raise ClientError(f"{response.url} did not answer the registered faces: {_preview(response)}")
        return body["faces"]

    def forget(self, name: str) -> int:
        """Delete every face of ``name``; how many there were."""
        response = self.request("DELETE", f"/faces/{quote(name, safe='')}")
        if not response.ok:
            raise HTTPError(response)
        body = json_or_none(response)
        deleted = body.get("deleted") if isinstance(body, dict) else None
        if not isinstance(deleted, int) or isinstance(deleted, bool):
            raise ClientError(f"{response.url} did not say how many faces it deleted: {_preview(response)}")
        return deleted


def draw_file(image: bytes, detections: Sequence[Any], out: Path, label: str = "") -> int:
    """Write ``image`` with ``detections`` drawn to ``out`` (format from its suffix), like demo_request_drawing;
    how many detections could not be drawn (malformed) and were skipped."""
    from mysite.client import drawing  # Pillow: needed only to draw

    return drawing.draw_file(image, detections, out, label)


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
    return "image" if isinstance(image, bytes) or image is None else upload_name(Path(image).name)


def upload_name(name: str) -> str:
    """A file name as the multipart filename: one that is not UTF-8 (a byte the file system kept as a
    surrogate) goes with replacement characters, as it cannot be encoded as it is."""
    return os.fsencode(name).decode("utf-8", "replace") or "image"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _preview(response: requests.Response) -> str:
    return printable(response.content[:800].decode("utf-8", "replace")[:200])


def printable(text: str) -> str:
    """``text`` with control and format characters escaped, so a server's message cannot drive the terminal
    nor turn the text around (U+202E)."""
    return _NOT_PLAIN.sub(_escape, text)


_NOT_PLAIN = re.compile(r"[^\x20-\x7e]")
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format characters, lone surrogates, line breaks


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return char.encode("unicode_escape").decode("ascii") if unicodedata.category(char) in _HIDDEN else char


def check_options(*, retries: int, backoff: float, timeout: float, connect_timeout: float,
                  max_answer_bytes: int) -> None:
    """``ValueError`` saying which of the client's options is out of range."""
    for name, seconds in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if not isinstance(seconds, (int, float)) or not 0 < seconds <= MAX_TIMEOUT:  # NaN fails too
            raise ValueError(f"{name} wants seconds above 0 and at most {MAX_TIMEOUT:g}, not {seconds!r}")
    if not isinstance(backoff, (int, float)) or not math.isfinite(backoff) or backoff < 0:
        raise ValueError(f"backoff wants seconds, 0 or more, not {backoff!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries wants a whole number from 0 to {MAX_RETRIES}, not {retries!r}")
    if not isinstance(max_answer_bytes, int) or isinstance(max_answer_bytes, bool) or max_answer_bytes < 1:
        raise ValueError(f"max_answer_bytes wants a whole number of bytes, 1 or more, not {max_answer_bytes!r}")


def json_or_none(response: requests.Response) -> Any:
    """The answer's JSON, or None when it is not JSON (or nested too deep for Python to parse)."""
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except (ValueError, RecursionError):
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
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isascii() and value.isdigit() else None  # not "²", a digit to isdigit()


def _cause(exc: requests.RequestException) -> object:
    """urllib3's reason behind a requests error (what MaxRetryError wraps), else the error's first argument."""
    first = exc.args[0] if exc.args else None
    return getattr(first, "reason", first)


def _without_credentials(server: str) -> tuple[str, tuple[str, str] | None]:
    """``server`` without a user and password in it, and those (unquoted), if it had them."""
    parts = urlsplit(server)
    if "@" not in parts.netloc:
        return server, None
    user, _, host = parts.netloc.rpartition("@")
    name, _, password = user.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(name), unquote(password))


def _certificate_refused(exc: BaseException) -> bool:
    """Whether ``exc`` comes of a server certificate this client does not trust (not of a handshake cut short)."""
    seen: BaseException | None = exc
    for _ in range(8):  # requests' error wraps urllib3's, which wraps ssl's: a few links at most
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        reason = getattr(seen, "reason", None)
        first = seen.args[0] if seen.args else None
        seen = reason if isinstance(reason, BaseException) else first if isinstance(first, BaseException) else (
            seen.__cause__ or seen.__context__)
    return False


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
