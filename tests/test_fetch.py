"""?url= fetching: the address policy on values, refusals through a patched resolver, and real
fetches from a loopback server (allowed only through the explicit MYSITE_URL_ALLOW_NETWORKS)."""

from __future__ import annotations

import ipaddress
import tracemalloc

import pytest
from loopback import endless, serve, slow

from mysite.errors import TooLarge
from mysite.web import fetch as fetch_mod
from mysite.web.fetch import AddressPolicy, Fetcher, Refused, classify_address
from testkit.hostile_inputs import gzip_of_zeros

LOOPBACK = {"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8"}


@pytest.mark.parametrize("ip,reason", [
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),   # the cloud metadata service
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "special-purpose 100.64.0.0/10 (shared address space, carrier-grade NAT)"),  # carrier-grade NAT
    ("192.0.2.10", "private"),               # documentation range
    ("::ffff:127.0.0.1", "loopback"),       # IPv4-mapped IPv6 hides an IPv4 address
    ("::ffff:169.254.169.254", "link-local"),
    ("2002:a9fe:a9fe::1", "link-local"),     # 6to4 wrapping 169.254.169.254
])
def test_non_public_addresses_are_classified(ip, reason):
    assert classify_address(ipaddress.ip_address(ip)) == reason


@pytest.mark.parametrize("ip", ["93.184.216.34", "8.8.8.8", "151.101.1.140", "2606:4700:4700::1111"])
def test_public_addresses_pass(ip):
    assert classify_address(ipaddress.ip_address(ip)) is None


def test_allow_list_admits_only_its_networks(monkeypatch):
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    assert AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),)).vet("x", 80)
    with pytest.raises(Refused):
        AddressPolicy((ipaddress.ip_network("10.0.0.0/8"),)).vet("x", 80)


def test_one_bad_address_among_many_refuses_the_host(monkeypatch):
    addrs = [ipaddress.ip_address(a) for a in ("93.184.216.34", "10.0.0.7")]
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: addrs)
    with pytest.raises(Refused, match="10.0.0.7, a private address"):
        AddressPolicy().vet("mixed.example", 80)


@pytest.fixture()
def no_connections(monkeypatch):
    """Fail the test if anything tries to open a connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(fetch_mod, "create_connection", refuse)
    monkeypatch.setattr(fetch_mod.socket, "create_connection", refuse)


@pytest.mark.parametrize("ip", ["169.254.169.254", "10.0.0.5", "127.0.0.1", "192.168.0.10", "::1"])
def test_refused_before_any_connection(client, monkeypatch, no_connections, ip):
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: [ipaddress.ip_address(ip)])
    r = client.get("/detect", query_string={"url": "http://images.example/face.jpg"})
    assert r.status_code == 400
    assert r.get_json()["status"] == "bad request"
    assert "refusing to fetch" in r.get_json()["message"] and ip in r.get_json()["message"]


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/x.jpg", "gopher://example.com/", "javascript:alert(1)",
    "//example.com/x.jpg", "http://", "http://[::1", "http://example.com:99999/x.jpg",
])
def test_other_schemes_and_malformed_urls_are_400(client, no_connections, url):
    r = client.get("/detect", query_string={"url": url})
    assert r.status_code == 400 and r.get_json()["status"] == "bad request"


def test_unresolvable_host_is_422(client, monkeypatch, no_connections):
    import socket

    def fail(host, port):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(fetch_mod, "resolve_host", fail)
    r = client.get("/detect", query_string={"url": "http://no-such-host.invalid/x.jpg"})
    assert r.status_code == 422 and "could not be resolved" in r.get_json()["message"]


def test_fetching_can_be_turned_off(make_app, no_connections):
    r = make_app({"MYSITE_URL_FETCH": "off"}).test_client().get("/detect", query_string={"url": "http://x/y.jpg"})
    assert r.status_code == 400 and "MYSITE_URL_FETCH" in r.get_json()["message"]


def test_loopback_is_refused_by_default_even_when_a_server_is_there(client, group_jpg):
    with serve({"/g.jpg": (200, {"Content-Type": "image/jpeg"}, group_jpg)}) as (base, seen):
        r = client.get("/detect", query_string={"url": f"{base}/g.jpg"})
    assert r.status_code == 400 and "loopback" in r.get_json()["message"]
    assert seen == []


@pytest.mark.slow
def test_fetch_from_an_allowed_loopback_server(make_app, group_jpg):
    c = make_app(LOOPBACK).test_client()
    with serve({"/g.jpg": (200, {"Content-Type": "image/jpeg"}, group_jpg)}) as (base, seen):
        r = c.get("/detect", query_string={"url": f"{base}/g.jpg"})
        edges = c.get("/canny", query_string={"url": f"{base}/g.jpg"})
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17
    assert edges.status_code == 200 and edges.mimetype == "image/jpeg"
    assert len(seen) == 2


@pytest.mark.slow
def test_post_with_url_and_no_body(make_app, group_jpg):
    c = make_app(LOOPBACK).test_client()
    with serve({"/g.jpg": (200, {}, group_jpg)}) as (base, _):
        r = c.post("/detect", query_string={"url": f"{base}/g.jpg"})
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17


def test_redirects_are_followed_and_each_is_checked(make_app, monkeypatch, group_jpg):
    c = make_app(LOOPBACK).test_client()
    real = fetch_mod.resolve_host
    # "inside.example" stands for a name that resolves into the private network.
    monkeypatch.setattr(
        fetch_mod, "resolve_host",
        lambda host, port: [ipaddress.ip_address("10.0.0.8")] if host == "inside.example" else real(host, port),
    )
    with serve({
        "/ok": (302, {"Location": "/g.jpg"}, b""),
        "/g.jpg": (200, {}, group_jpg),
        "/inside": (301, {"Location": "http://inside.example/secret.jpg"}, b""),
        "/file": (302, {"Location": "file:///etc/passwd"}, b""),
        "/r1": (302, {"Location": "/r2"}, b""),
        "/r2": (302, {"Location": "/r3"}, b""),
        "/r3": (302, {"Location": "/r4"}, b""),
        "/r4": (302, {"Location": "/g.jpg"}, b""),
    }) as (base, seen):
        ok = c.get("/detect", query_string={"url": f"{base}/ok"})
        inside = c.get("/detect", query_string={"url": f"{base}/inside"})
        to_file = c.get("/detect", query_string={"url": f"{base}/file"})
        too_many = c.get("/detect", query_string={"url": f"{base}/r1"})
    assert ok.status_code == 200 and len(ok.get_json()["result"]) == 17
    assert inside.status_code == 400 and "10.0.0.8" in inside.get_json()["message"]
    assert to_file.status_code == 400 and "'file'" in to_file.get_json()["message"]
    assert too_many.status_code == 400 and "redirects" in too_many.get_json()["message"]
    assert not any("secret" in line for line in seen)


def test_upstream_errors_are_422(make_app):
    c = make_app(LOOPBACK).test_client()
    with serve({"/gone": (404, {}, b"not here"), "/page": (200, {"Content-Type": "text/html"}, b"<html></html>")}) as (base, _):
        gone = c.get("/detect", query_string={"url": f"{base}/gone"})
        page = c.get("/detect", query_string={"url": f"{base}/page"})
    assert gone.status_code == 422 and "HTTP 404" in gone.get_json()["message"]
    assert page.status_code == 415 and "HTML" in page.get_json()["message"]


def test_reading_stops_past_the_upload_limit(make_app):
    c = make_app({**LOOPBACK, "MYSITE_MAX_UPLOAD_MB": 1}).test_client()
    with serve({"/declared": (200, {}, b"\0" * 2_000_000), "/stream": endless()}) as (base, _):
        declared = c.get("/detect", query_string={"url": f"{base}/declared"})
        stream = c.get("/detect", query_string={"url": f"{base}/stream"})
    assert declared.status_code == 413 and stream.status_code == 413


def test_timeouts_are_422(make_app):
    c = make_app({**LOOPBACK, "MYSITE_URL_TIMEOUT": 0.5}).test_client()
    with serve({"/slow": slow(3)}) as (base, _):
        r = c.get("/detect", query_string={"url": f"{base}/slow"})
    assert r.status_code == 422 and "timed out" in r.get_json()["message"]


def test_proxy_from_the_environment_is_used_and_the_target_still_checked(make_app, monkeypatch, group_jpg):
    # PythonAnywhere's free accounts reach the web only through the proxy in http_proxy.
    public = ipaddress.ip_address("93.184.216.34")  # a value for the policy only: nothing connects to it
    names = {"images.example": [public], "inside.example": [ipaddress.ip_address("10.1.1.1")]}
    monkeypatch.setattr(fetch_mod, "resolve_host", lambda host, port: names[host])
    c = make_app().test_client()  # no allow list: the proxy's own (loopback) address is not the target
    with serve({"http://images.example/face.jpg": (200, {}, group_jpg)}) as (proxy, seen):
        monkeypatch.setenv("http_proxy", proxy)
        monkeypatch.setenv("NO_PROXY", "")
        ok = c.get("/detect", query_string={"url": "http://images.example/face.jpg"})
        refused = c.get("/detect", query_string={"url": "http://inside.example/face.jpg"})
    assert ok.status_code == 200 and len(ok.get_json()["result"]) == 17
    assert seen == ["GET http://images.example/face.jpg Host=images.example"]
    assert refused.status_code == 400 and "10.1.1.1" in refused.get_json()["message"]


def _peak_mb(fn):
    """What ``fn()`` returns (or raises) and the peak of Python's allocations meanwhile, in MB."""
    tracemalloc.start()
    try:
        try:
            outcome = fn()
        except Exception as exc:  # noqa: BLE001 - handed back to be checked
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_redirects_body_is_never_read(group_jpg):
    fetcher = Fetcher(10 * 2**20, timeout=3, allow=(ipaddress.ip_network("127.0.0.0/8"),), deadline=3)
    with serve({"/bomb": (302, {"Location": "/g.jpg", "Content-Encoding": "gzip"}, gzip_of_zeros(256)),
                "/endless": endless(status=302, headers={"Location": "/g.jpg"}), "/g.jpg": (200, {}, group_jpg)}) as (base, _):
        bomb, peak = _peak_mb(lambda: fetcher.fetch(f"{base}/bomb"))
        long, peak_long = _peak_mb(lambda: fetcher.fetch(f"{base}/endless"))
    assert bomb == group_jpg and long == group_jpg
    assert peak < 16, f"{peak:.0f} MB allocated following a redirect whose body decompresses to 256 MB"
    assert peak_long < 16, f"{peak_long:.0f} MB allocated following a redirect with a 64 MB body"


def test_a_compressed_body_is_decoded_only_as_far_as_the_limit():
    fetcher = Fetcher(2**20, allow=(ipaddress.ip_network("127.0.0.0/8"),))
    headers = {"Content-Type": "image/jpeg", "Content-Encoding": "gzip, gzip"}
    with serve({"/twice": (200, headers, gzip_of_zeros(256, layers=2))}) as (base, _):
        outcome, peak = _peak_mb(lambda: fetcher.fetch(f"{base}/twice"))
    assert isinstance(outcome, TooLarge)
    assert peak < 16, f"{peak:.0f} MB allocated for a 1 MB limit"
