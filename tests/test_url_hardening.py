"""?url= against a peer that drips, a resolver that hangs, and URLs that two parsers read differently.

Each of these held a worker (or fooled the check) before: a body dripped a byte at a time kept
``iter_content`` waiting for a full chunk until gunicorn killed the worker; a backslash before
``@`` made ``urlsplit`` check one host while urllib3 asked the proxy for another. Every peer and
proxy here is a loopback server that records what it was asked; the addresses the policy judges
come from a patched resolver and are never connected to. About 10 s.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import pytest

from loopback import serve
from mysite.errors import BadRequest
from mysite.web import fetch as fetch_mod
from mysite.web.fetch import check_url

LOOPBACK = {"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8"}
PUBLIC = ipaddress.ip_address("93.184.216.34")  # a value for the policy only: nothing connects to it
METADATA = ipaddress.ip_address("169.254.169.254")


def drip(every: float, status_line_only: bool = False):
    """A route that sends its headers (or only its status line), then one byte every ``every`` seconds."""

    def answer(h) -> None:
        try:
            if status_line_only:
                h.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for _ in range(200):
                    h.wfile.write(b"X")
                    h.wfile.flush()
                    time.sleep(every)
                return
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", "1000000")
            h.end_headers()
            h.wfile.flush()
            for _ in range(200):  # bounded: 200 bytes at most
                h.wfile.write(b"\xff")
                h.wfile.flush()
                time.sleep(every)
        except OSError:
            pass  # the fetch hung up: what we want

    return answer


def timed_get(client, url: str):
    start = time.monotonic()
    r = client.get("/detect", query_string={"url": url})
    return r, time.monotonic() - start


@pytest.mark.parametrize("route", ["/body", "/headers"])
def test_a_dripping_peer_is_cut_off_at_the_deadline(make_app, route):
    c = make_app({**LOOPBACK, "MYSITE_URL_DEADLINE": 1.5, "MYSITE_URL_TIMEOUT": 10}).test_client()
    with serve({"/body": drip(0.2), "/headers": drip(0.2, status_line_only=True)}) as (base, seen):
        r, took = timed_get(c, f"{base}{route}")
    assert r.status_code == 422, r.get_json()
    assert "1.5 s deadline" in r.get_json()["message"] and "MYSITE_URL_DEADLINE" in r.get_json()["message"]
    assert 1.4 < took < 5, took  # the read timeout (10 s) never fires: each byte came in time
    assert len(seen) == 1


def test_a_silent_peer_is_cut_off_at_the_deadline(make_app):
    # Accepts the connection, reads the request, never answers: the read timeout would wait 10 s.
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    c = make_app({**LOOPBACK, "MYSITE_URL_DEADLINE": 1, "MYSITE_URL_TIMEOUT": 10}).test_client()
    try:
        r, took = timed_get(c, f"http://127.0.0.1:{listener.getsockname()[1]}/x.jpg")
    finally:
        listener.close()
        for conn in held:
            conn.close()
    assert r.status_code == 422 and "deadline" in r.get_json()["message"]
    assert took < 4, took


def test_a_hanging_resolver_is_bounded_by_the_deadline(make_app, monkeypatch):
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: time.sleep(4) or [PUBLIC])
    c = make_app({"MYSITE_URL_DEADLINE": 1}).test_client()
    r, took = timed_get(c, "http://slow-dns.example/x.jpg")
    assert r.status_code == 422 and "resolving" in r.get_json()["message"]
    assert took < 3, took


# Forms that urlsplit and urllib3 (or a browser) read as different hosts, or that carry credentials.
TRICKS = [
    "http://169.254.169.254\\@allowed.example/latest/meta-data/",   # the reproduction
    "http://allowed.example\\@169.254.169.254/latest/meta-data/",
    "http://user@allowed.example/x.jpg",
    "http://allowed.example:80@169.254.169.254/x.jpg",
    "http://allowed.example@169.254.169.254/x.jpg",
    "http://169.254.169.254%5C@allowed.example/x.jpg",
    "http://allowed.example\t.evil/x.jpg",
    "http://allowed.example/x.jpg\r\nHost: 169.254.169.254",
    "http://allowed.example\x00.evil/x.jpg",
    "http:\\\\169.254.169.254\\x.jpg",
    "http://allowed.example /x.jpg",
]


@pytest.mark.parametrize("url", TRICKS)
def test_urls_the_parsers_could_read_differently_are_refused(url):
    with pytest.raises(BadRequest):
        check_url(url)


@pytest.fixture()
def recording_proxy(monkeypatch, group_jpg):
    """A loopback proxy in http_proxy that answers every GET with the group photo and records it."""
    names = {"allowed.example": [PUBLIC], "xn--bcher-kva.example": [PUBLIC], "metadata.example": [METADATA]}
    asked: list[str] = []

    def resolve(host: str, port: int):
        asked.append(host)
        if host not in names:
            raise socket.gaierror(-2, "Name or service not known")
        return names[host]

    monkeypatch.setattr(fetch_mod, "resolve_host", resolve)
    routes = {u: (200, {}, group_jpg) for u in (
        "http://allowed.example/latest/meta-data/", "http://allowed.example/x.jpg",
        "http://xn--bcher-kva.example/x.jpg",
    )}
    with serve(routes) as (proxy, seen):
        monkeypatch.setenv("http_proxy", proxy)
        monkeypatch.setenv("NO_PROXY", "")
        yield seen, asked


@pytest.mark.parametrize("url", TRICKS)
def test_through_a_proxy_refused_forms_never_reach_it(make_app, recording_proxy, url):
    seen, asked = recording_proxy
    r = make_app().test_client().get("/detect", query_string={"url": url})
    assert r.status_code == 400 and r.is_json
    assert seen == [] and asked == []  # refused before resolving, before the proxy heard anything


def test_through_a_proxy_the_host_checked_is_the_host_asked_for(make_app, recording_proxy):
    seen, asked = recording_proxy
    c = make_app().test_client()
    ok = c.get("/detect", query_string={"url": "http://allowed.example/x.jpg"})
    # A name is checked in the form it is sent in (IDNA), not as it was typed.
    idna = c.get("/detect", query_string={"url": "http://bücher.example/x.jpg"})
    inside = c.get("/detect", query_string={"url": "http://metadata.example/latest/meta-data/"})
    assert ok.status_code == 200 and len(ok.get_json()["result"]) == 17
    assert idna.status_code == 200, idna.get_json()
    assert inside.status_code == 400 and "169.254.169.254" in inside.get_json()["message"]
    assert seen == [
        "GET http://allowed.example/x.jpg Host=allowed.example",
        "GET http://xn--bcher-kva.example/x.jpg Host=xn--bcher-kva.example",
    ]
    assert asked == ["allowed.example", "xn--bcher-kva.example", "metadata.example"]


def test_a_dripping_proxy_is_bound_by_the_deadline_too(make_app, monkeypatch):
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: [PUBLIC])
    c = make_app({"MYSITE_URL_DEADLINE": 1.5, "MYSITE_URL_TIMEOUT": 10}).test_client()
    with serve({"http://allowed.example/x.jpg": drip(0.2)}) as (proxy, seen):
        monkeypatch.setenv("http_proxy", proxy)
        monkeypatch.setenv("NO_PROXY", "")
        r, took = timed_get(c, "http://allowed.example/x.jpg")
    assert r.status_code == 422 and "deadline" in r.get_json()["message"]
    assert 1.4 < took < 5, took
    assert seen == ["GET http://allowed.example/x.jpg Host=allowed.example"]


def test_a_netrc_never_lends_credentials_to_a_url(make_app, monkeypatch, tmp_path, group_jpg):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login operator password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    headers: list[str | None] = []

    def answer(h) -> None:
        headers.append(h.headers.get("Authorization"))
        h.send_response(200)
        h.send_header("Content-Length", str(len(group_jpg)))
        h.end_headers()
        h.wfile.write(group_jpg)

    c = make_app(LOOPBACK).test_client()
    with serve({"/g.jpg": answer}) as (base, _):
        r = c.get("/detect", query_string={"url": f"{base}/g.jpg"})
    assert r.status_code == 200 and headers == [None]
