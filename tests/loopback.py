"""A tiny HTTP server on 127.0.0.1 for tests that need something to fetch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from testkit.net import reply

# path -> (status, headers, body) or a callable(handler) that answers itself
Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def serve(routes: dict[str, Route]) -> Iterator[tuple[str, list[str]]]:
    """Serve ``routes`` on a free loopback port; yields (base URL, list of request lines seen).

    A POST's body is read (and dropped) before its route answers."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(f"{self.command} {self.path} Host={self.headers.get('Host')}")
            route = routes.get(self.path) or routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            if callable(route):
                route(self)
                return
            reply(self, *route)

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as url:
        yield url, seen


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port, a thread per request; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    # A short poll: shutdown() waits for the loop's next poll, and every test using this waits for shutdown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def slow(seconds: float) -> Callable[[BaseHTTPRequestHandler], None]:
    """A route that sends headers, then stalls before the body."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        h.wfile.flush()
        time.sleep(seconds)
        try:
            h.wfile.write(b"\xff\xd8\xff")
        except OSError:
            pass

    return answer


def endless(chunk: bytes = b"\0" * 65536, status: int = 200, headers: dict[str, str] | None = None
            ) -> Callable[[BaseHTTPRequestHandler], None]:
    """A route that streams a body with no Content-Length until the client hangs up (at most 64 MB)."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in (headers or {"Content-Type": "image/jpeg"}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            for _ in range(1024):
                h.wfile.write(chunk)
        except OSError:
            pass

    return answer
