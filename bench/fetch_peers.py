"""``python -m bench.fetch_peers``: what a ``?url=`` peer that sends endless framing costs the fetching thread.

Each peer of ``testkit/framing_peers.py`` (endless ``100 Continue`` responses, 60 KB chunk
extensions with one byte of data each, one-byte chunks, gzip chunks of empty deflate blocks,
endless trailer lines, three interim responses before each of four redirects) and a peer dripping a body byte every 0.2 s is fetched
once, in-process, by the site's ``Fetcher`` with the shipped limits (10 MB, 10 s read timeout,
``--deadline`` 20 s), loopback allowed. Prints a Markdown table: the answer, its wall time, and
the CPU seconds of the fetching thread (``time.thread_time``). Up to ``--deadline`` per peer.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections.abc import Callable

from mysite.errors import ApiError
from mysite.web.fetch import Fetcher
from testkit import framing_peers as peers

PEERS: dict[str, Callable[[str], peers.Answer]] = {
    "continue": peers.interim_flood,
    "chunkext": peers.chunk_extensions,
    "tinychunks": peers.tiny_chunks,
    "emptygzip": peers.empty_gzip_chunks,
    "trailers": peers.trailer_flood,
    "redirects": peers.interims_then_redirect(3),
    "drip": lambda path: (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"\xff"),
}


def fetch_once(fetcher: Fetcher, url: str) -> tuple[str, float, float]:
    """The answer to fetching ``url`` (status and message), its wall seconds and this thread's CPU seconds."""
    wall, cpu = time.monotonic(), time.thread_time()
    try:
        outcome = f"200, {len(fetcher.fetch(url))} bytes"
    except ApiError as exc:
        outcome = f"{exc.code} {exc.reason.value}: {exc.message[:90]}"
    return outcome, time.monotonic() - wall, time.thread_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=20.0, help="MYSITE_URL_DEADLINE (s)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated, of: " + ", ".join(PEERS))
    parser.add_argument("--port", type=int, default=0, help="the peers' loopback port (default: a free one)")
    args = parser.parse_args()
    fetcher = Fetcher(10 * 2**20, 10.0, (ipaddress.ip_network("127.0.0.0/8"),), args.deadline)
    print("| peer | answer | wall s | fetching thread's CPU s |\n| --- | --- | --- | --- |")
    for name in args.peers.split(","):
        with peers.framing_peer(PEERS[name], args.port, pause=0.2 if name == "drip" else 0.0) as base:
            outcome, wall, cpu = fetch_once(fetcher, f"{base}/{name}")
        print(f"| {name} | {outcome} | {wall:.2f} | {cpu:.2f} |", flush=True)


if __name__ == "__main__":
    main()
