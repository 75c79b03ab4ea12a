"""Every request gets an id and is counted: WSGI middleware around the whole app.

- Request id (``request_id.py``): kept from ``X-Request-ID`` when safe, else made; it goes back
  in ``X-Request-ID`` on every answer, errors included, into the WSGI environ (``ENVIRON_KEY``)
  where the access log reads it (``accesslog.py``), and into ``request_id.CURRENT`` while the request runs.
- Metrics: route (the URL rule that matched, ``other`` for none), method, status and seconds
  of each request go to ``metrics.py``, once the server has taken the whole answer.

Outside Flask on purpose: it sees the answers of every layer inside it (the upload deadline's
408, the error handlers' JSON, an exception no handler caught).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from mysite.server.metrics import OTHER_ROUTE, Metrics
from mysite.server.request_id import CURRENT, ENVIRON_KEY, HEADER, request_id

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def route_of(environ: dict[str, Any]) -> str:
    """The URL rule Flask matched for this request (werkzeug keeps the request in the environ while it runs)."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return rule.rule if rule is not None else OTHER_ROUTE


class Observe:
    """WSGI middleware: a request id on every answer, and each request's metrics."""

    def __init__(self, app: WSGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID"))
        environ[ENVIRON_KEY] = rid
        token = CURRENT.set(rid)
        seen = ["500", OTHER_ROUTE]  # status, route

        def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Flask drops the request from the environ once the answer is made: the route is read now.
            seen[0], seen[1] = line[:3], route_of(environ)
            headers.append((HEADER, rid))
            return start_response(line, headers, exc_info)

        def done() -> None:
            self.metrics.request(seen[1], environ.get("REQUEST_METHOD", ""), seen[0], time.perf_counter() - started)
            try:
                CURRENT.reset(token)
            except ValueError:  # closed from another context than the one that called: nothing to undo there
                pass

        try:
            result = self.app(environ, start)
        except BaseException:
            done()
            raise
        return _Closing(result, done)


class _Closing:
    """The app's answer, with ``done`` called once the server closes it (WSGI's ``close``)."""

    def __init__(self, result: Iterable[bytes], done: Callable[[], None]) -> None:
        self._result, self._done = result, done

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        done, self._done = self._done, _nothing
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            done()


def _nothing() -> None:
    pass
