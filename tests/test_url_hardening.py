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
from mysite.web.fetch import check_url, classify_address

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
@pytest.mark.slow
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


def test_hanging_lookups_do_not_starve_the_next_fetch(make_app, monkeypatch):
    # A name whose DNS never answers costs its fetch the deadline, and nothing more: lookups left
    # hanging must not queue the next fetch's lookup behind them (six threads fetch at once).
    release = threading.Event()

    def resolve(host: str, port: int):
        if host == "hangs.example":
            release.wait(10)  # bounded: the test sets it at the end
        return [METADATA]

    monkeypatch.setattr(fetch_mod, "resolve_host", resolve)
    c = make_app({"MYSITE_URL_DEADLINE": 1}).test_client()
    try:
        hanging = [threading.Thread(target=timed_get, args=(c, "http://hangs.example/x.jpg")) for _ in range(6)]
        for t in hanging:
            t.start()
        time.sleep(0.3)  # every hanging lookup has started
        r, took = timed_get(c, "http://metadata.example/x.jpg")
    finally:
        release.set()
    for t in hanging:
        t.join(5)
    assert r.status_code == 400 and "169.254.169.254" in r.get_json()["message"], r.get_json()
    assert took < 0.5, took


def test_too_many_hanging_lookups_are_a_quick_503(make_app, monkeypatch):
    # The threads left behind by hanging lookups are capped; past the cap a fetch is refused at once.
    release = threading.Event()
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: release.wait(10) and [METADATA])
    monkeypatch.setattr(fetch_mod, "_LOOKUPS", threading.BoundedSemaphore(1))
    c = make_app({"MYSITE_URL_DEADLINE": 1}).test_client()
    try:
        first, _ = timed_get(c, "http://hangs.example/x.jpg")
        second, took = timed_get(c, "http://hangs.example/x.jpg")
    finally:
        release.set()
    assert first.status_code == 422 and "resolving" in first.get_json()["message"]
    assert second.status_code == 503 and "lookups" in second.get_json()["message"] and took < 0.5, took
    assert second.headers["Retry-After"] == "1"


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
        try:
            return [ipaddress.ip_address(host)]  # a literal address: what getaddrinfo would return
        except ValueError:
            pass
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


@pytest.mark.slow
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


# Encodings of the metadata address that are valid URLs: each is checked as the address it is sent as.
ENCODED = [
    "http://%31%36%39.254.169.254/latest/meta-data/",
    "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
    "http://[::ffff:169.254.169.254]:80/latest/meta-data/",
]


@pytest.mark.parametrize("url", ENCODED)
def test_through_a_proxy_encoded_addresses_are_checked_as_sent(make_app, recording_proxy, url):
    seen, asked = recording_proxy
    r = make_app().test_client().get("/detect", query_string={"url": url})
    assert r.status_code == 400 and "link-local" in r.get_json()["message"], r.get_json()
    assert seen == [] and len(asked) == 1


@pytest.mark.slow
def test_through_a_proxy_fragments_and_at_signs_after_the_host_stay_out_of_the_request_line(make_app, recording_proxy):
    seen, asked = recording_proxy
    c = make_app().test_client()
    for url in ("http://allowed.example/x.jpg#@169.254.169.254", "http://allowed.example/x.jpg?@169.254.169.254"):
        assert c.get("/detect", query_string={"url": url}).status_code == 200
    assert seen == [
        "GET http://allowed.example/x.jpg Host=allowed.example",
        "GET http://allowed.example/x.jpg?@169.254.169.254 Host=allowed.example",
    ]
    assert asked == ["allowed.example", "allowed.example"]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_through_a_proxy_each_redirect_is_checked_before_the_proxy_is_asked(make_app, monkeypatch, recording_proxy, group_jpg):
    # The proxy relays the origin's redirects; where they point is checked as the first URL was.
    seen, asked = recording_proxy
    c = make_app().test_client()
    with serve({
        "http://allowed.example/to-metadata": (302, {"Location": "http://metadata.example/latest/meta-data/"}, b""),
        "http://allowed.example/to-trick": (302, {"Location": "http://169.254.169.254\\@allowed.example/x.jpg"}, b""),
        "http://allowed.example/to-ok": (302, {"Location": "/x.jpg"}, b""),
        "http://allowed.example/x.jpg": (200, {}, group_jpg),
    }) as (proxy, via):
        monkeypatch.setenv("http_proxy", proxy)
        inside = c.get("/detect", query_string={"url": "http://allowed.example/to-metadata"})
        trick = c.get("/detect", query_string={"url": "http://allowed.example/to-trick"})
        ok = c.get("/detect", query_string={"url": "http://allowed.example/to-ok"})
    assert inside.status_code == 400 and "169.254.169.254" in inside.get_json()["message"]
    assert trick.status_code == 400 and "backslash" in trick.get_json()["message"]
    assert ok.status_code == 200 and len(ok.get_json()["result"]) == 17
    assert via == [
        "GET http://allowed.example/to-metadata Host=allowed.example",
        "GET http://allowed.example/to-trick Host=allowed.example",
        "GET http://allowed.example/to-ok Host=allowed.example",
        "GET http://allowed.example/x.jpg Host=allowed.example",
    ]
    assert seen == [] and "metadata.example" in asked


class TunnelProxy:
    """A loopback https proxy that records each request head it receives and answers 403 (or nothing)."""

    def __init__(self, answer: bytes | None) -> None:
        self.heads: list[str] = []
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)  # bounded: the thread gives up after 10 s without a client
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                conn, _ = self.listener.accept()
                self.held.append(conn)
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 8192:
                    piece = conn.recv(1024)
                    if not piece:
                        break
                    head += piece
                lines = head.decode("latin-1").split("\r\n")
                host = next((line[5:].strip() for line in lines if line.lower().startswith("host:")), None)
                self.heads.append(f"{lines[0]} Host={host}")
                if self.answer is not None:
                    conn.sendall(self.answer)
                    conn.close()
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("answer", [b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", None])
def test_through_an_https_proxy_the_tunnel_asks_for_the_host_checked(make_app, monkeypatch, answer):
    # https goes through the proxy as CONNECT host:port: that line must name the checked host, and
    # a proxy that never answers the CONNECT is bound by the deadline like any peer.
    names = {"allowed.example": [PUBLIC], "metadata.example": [METADATA]}
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: names[host])
    proxy = TunnelProxy(answer)
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    c = make_app({"MYSITE_URL_DEADLINE": 1, "MYSITE_URL_TIMEOUT": 10}).test_client()
    try:
        tricks = [c.get("/detect", query_string={"url": u.replace("http:", "https:", 1)}) for u in TRICKS[:6]]
        inside = c.get("/detect", query_string={"url": "https://metadata.example/latest/meta-data/"})
        r, took = timed_get(c, "https://allowed.example:8443/x.jpg")
    finally:
        proxy.close()
    assert all(t.status_code == 400 and t.is_json for t in tricks), [t.get_json() for t in tricks]
    assert inside.status_code == 400 and "169.254.169.254" in inside.get_json()["message"]
    assert r.status_code == 422 and r.is_json, r.get_json()
    if answer is None:
        assert "deadline" in r.get_json()["message"] and took < 4, took
    # http.client tunnels with "CONNECT host:port HTTP/1.0" (a Host header only on some versions).
    assert [head.split(" Host=")[0] for head in proxy.heads] == ["CONNECT allowed.example:8443 HTTP/1.0"]


# Ranges of IANA's special-purpose registries that Python 3.11's tables call global (or that wrap an address).
SPECIAL_PURPOSE = [
    "http://192.0.0.8/x.jpg", "http://192.0.0.9/x.jpg", "http://192.31.196.1/x.jpg", "http://192.52.193.1/x.jpg",
    "http://192.175.48.1/x.jpg", "http://[64:ff9b::808:808]/x.jpg", "http://[2001:1::1]/x.jpg",
    "http://[2002:808:808::1]/x.jpg", "http://[3fff::1]/x.jpg", "http://[5f00::1]/x.jpg",
]


@pytest.mark.parametrize("url", SPECIAL_PURPOSE)
def test_through_a_proxy_special_purpose_addresses_are_refused_before_it_hears_of_them(make_app, recording_proxy, url):
    seen, asked = recording_proxy
    r = make_app().test_client().get("/detect", query_string={"url": url})
    body = r.get_json()
    assert r.status_code == 400 and body["reason"] == "url_refused", body
    assert seen == []  # no connection to the proxy


def test_every_special_purpose_range_is_refused_at_both_ends():
    from mysite.web.special_addresses import SPECIAL

    for net, _ in SPECIAL:
        for ip in (net[0], net[-1]):
            assert classify_address(ip) is not None, (net, ip)
