"""?url= peers that send framing instead of an image, as fast as loopback carries it: endless interim
responses, long chunk extensions, endless trailers, one-byte chunks. Each must be refused by a count, not
spin the fetching thread until the deadline (``python -m bench.fetch_peers`` measures the CPU each costs).
Only 127.0.0.1 is contacted (peers from ``testkit/framing_peers.py``)."""

from __future__ import annotations

import ipaddress

import pytest

from mysite.web.fetch import HEAD_BYTES, MAX_INTERIM, Fetcher, WireMeter
from testkit import framing_peers as peers

# A deadline short enough that the code before these limits fails quickly, long enough to see it spin.
SETTINGS = {"MYSITE_URL_ALLOW_NETWORKS": "127.0.0.0/8", "MYSITE_URL_DEADLINE": 4, "MYSITE_URL_TIMEOUT": 4}


def get(client, url: str):
    """The answer to ``GET /detect?url=url``."""
    return client.get("/detect", query_string={"url": url})


def _refusal(make_app, answer, path: str) -> tuple[int, dict]:
    """The status and body of ``GET /detect?url=`` a peer answering with ``answer``."""
    with peers.framing_peer(answer) as base:
        r = get(make_app(SETTINGS).test_client(), f"{base}{path}")
    return r.status_code, r.get_json()


def test_endless_interim_responses_are_refused_after_a_few(make_app):
    status, body = _refusal(make_app, peers.interim_flood, "/continue")
    assert status == 422 and body["reason"] == "url_failed", body
    assert f"more than {MAX_INTERIM} interim (1xx) responses" in body["message"]


@pytest.mark.parametrize("answer", [peers.chunk_extensions, peers.trailer_flood], ids=["extensions", "trailers"])
def test_chunk_framing_counts_against_the_upload_limit(make_app, answer):
    status, body = _refusal(make_app, answer, "/framing")
    assert status == 413 and body["reason"] == "too_large" and "chunk framing" in body["message"], body


@pytest.mark.parametrize("answer", [peers.tiny_chunks, peers.empty_gzip_chunks, peers.short_trailer_flood],
                         ids=["one-byte", "empty-gzip", "two-byte-trailer-lines"])
def test_a_body_in_tiny_pieces_is_refused(make_app, answer):
    # Few bytes each, so the byte count alone would let them spin the fetch until the deadline.
    status, body = _refusal(make_app, answer, "/pieces")
    assert status == 422 and body["reason"] == "url_failed" and "pieces" in body["message"], body


def test_interim_responses_are_counted_over_redirects(make_app):
    # Three before each redirect: under the limit per response, over it by the third response.
    with peers.framing_peer(peers.interims_then_redirect(3)) as base:
        r = get(make_app(SETTINGS).test_client(), f"{base}/hop/0")
    body = r.get_json()
    assert r.status_code == 422 and "interim" in body["message"] and "/hop/2" in body["message"], body


def test_early_hints_before_the_image_are_skipped_as_100_continue_is(make_app, group_jpg):
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"

    def answer(path: str) -> peers.Answer:
        return hints * 2 + b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(group_jpg) + group_jpg, b""

    with peers.framing_peer(answer) as base:
        r = get(make_app(SETTINGS).test_client(), f"{base}/hinted")
    assert r.status_code == 200 and len(r.get_json()["result"]) == 17, r.get_json()


def test_endless_early_hints_are_refused_after_a_few(make_app):
    with peers.framing_peer(lambda path: (b"", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 100)) as base:
        r = get(make_app(SETTINGS).test_client(), f"{base}/hints")
    body = r.get_json()
    assert r.status_code == 422 and f"more than {MAX_INTERIM} interim (1xx) responses" in body["message"], body


def test_a_head_is_held_to_its_allowance(make_app, group_jpg):
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(HEAD_BYTES // 1000 + 8))

    def answer(path: str) -> peers.Answer:
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(group_jpg) + headers + b"\r\n" + group_jpg, b""

    with peers.framing_peer(answer) as base:
        r = get(make_app(SETTINGS).test_client(), f"{base}/big-head")
    body = r.get_json()
    assert r.status_code == 422 and f"longer than {HEAD_BYTES} bytes" in body["message"], body


def test_an_honest_chunked_answer_at_the_limit_passes():
    limit = 2**20
    data = bytes(range(256)) * (limit // 256)
    framed = b"".join(b"%x\r\n%s\r\n" % (1024, data[i:i + 1024]) for i in range(0, limit, 1024)) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    fetcher = Fetcher(limit, timeout=4, allow=(ipaddress.ip_network("127.0.0.0/8"),), deadline=4)
    with peers.framing_peer(lambda path: (head + framed, b"")) as base:
        assert fetcher.fetch(f"{base}/honest") == data
    assert len(head + framed) < WireMeter(limit, "").limit


@pytest.mark.slow
def test_a_slow_trickle_of_framing_is_cut_by_the_deadline(make_app):
    # Within the byte allowance (about 300 KB a second): the deadline, not the meter, ends it.
    settings = {**SETTINGS, "MYSITE_URL_DEADLINE": 1.5}
    with peers.framing_peer(lambda path: peers.chunk_extensions(path, size=100), pause=0.2) as base:
        r = get(make_app(settings).test_client(), f"{base}/trickle")
    body = r.get_json()
    assert r.status_code == 422 and body["reason"] == "timeout" and "1.5 s deadline" in body["message"], body
