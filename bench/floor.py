"""``python -m bench.floor``: YuNet's HTTP floor, through the Procfile's gunicorn and its CV process pool.

1. The 12 MP composition (testkit.compose) with ``detector=yunet``: in-process (the app's test
   client) and over HTTP (one web worker, the pool's default processes), timed in turn rep by rep;
   the ratio of the medians, wall and CPU (the server's CPU: master, workers and CV processes).
2. The book's group photo with ``detector=yunet``: the in-process time with one OpenCV thread,
   then requests/s of two CV processes of one thread each under four closed-loop clients,
   against 2 ÷ that time; and the CPU per request in-process, on the web side and on the CV side,
   whose ratio bounds that rate whatever else runs on the machine.

Figures taken on a busy machine say little: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import cv2

from bench.measure import interleaved, ratio, timed
from bench.server import ROOT, Server, multipart, request
from mysite import create_app
from testkit import compose

PATH = "/detect?detector=yunet"


def _post(port: int, body: bytes, ctype: str) -> None:
    status, text = request(port, "POST", PATH, body, ctype)
    if status != 200:
        raise RuntimeError(f"{PATH} answered {status}: {text[:200]!r}")


def throughput(port: int, body: bytes, ctype: str, clients: int, seconds: float) -> tuple[float, int]:
    """Requests/s of ``clients`` closed-loop threads for about ``seconds``, and the requests answered."""
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def client(i: int) -> None:
        while time.perf_counter() < stop:
            _post(port, body, ctype)
            done[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return sum(done) / (time.perf_counter() - started), sum(done)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args(argv)
    print(f"bench.floor: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start\n")
    client = create_app({"MYSITE_URL_FETCH": "off", "MYSITE_LOG_LEVEL": "WARNING"}).test_client()
    data, _ = compose.build_jpeg()
    body, ctype = multipart(data)
    with Server(1, cv2.getNumThreads()) as srv:
        t = interleaved({
            "in-process": lambda: client.post(PATH, data=body, content_type=ctype).status_code,
            "HTTP": lambda: _post(srv.port, body, ctype),
        }, args.reps, {"HTTP": srv.cpu_seconds})
    local, http = t["in-process"][0], t["HTTP"][0]
    print("| 12 MP composition, detector=yunet | wall ms (median / p90) | CPU ms |")
    print("|---|---|---|")
    print(f"| in-process | {local} | {local.cpu:.0f} |")
    print(f"| over HTTP | {http} | {http.cpu:.0f} |")
    print(f"| HTTP ÷ in-process | {ratio(http.median, local.median):.2f}x | {ratio(http.cpu, local.cpu):.2f}x |\n")

    group = (ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes()
    gbody, gctype = multipart(group)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        c0 = time.process_time()
        one, _ = timed(lambda: client.post(PATH, data=gbody, content_type=gctype).status_code, args.reps * 2)
        one_cpu = (time.process_time() - c0) * 1000 / (args.reps * 2 + 1)  # one warm-up call
    finally:
        cv2.setNumThreads(threads)
    with Server(1, 1, {"MYSITE_CV_PROCESSES": "2"}) as srv:
        web0, cv0 = srv.cpu_split()
        rps, answered = throughput(srv.port, gbody, gctype, 4, args.seconds)
        web1, cv1 = srv.cpu_split()
    ideal = 2000 / one.median
    print("| group photo, detector=yunet | |")
    print("|---|---|")
    print(f"| in-process, one OpenCV thread | {one} ms |")
    print(f"| 2 ÷ that | {ideal:.1f} req/s |")
    print(f"| two CV processes (one thread each), 4 clients | {rps:.1f} req/s = {100 * rps / ideal:.0f} % |")
    web, cv = (web1 - web0) * 1000 / answered, (cv1 - cv0) * 1000 / answered
    print(f"| CPU per request: in-process / web side / CV side (dispatcher and processes) | {one_cpu:.1f} / {web:.1f} / "
          f"{cv:.1f} ms |")
    print(f"| CPU bound on the rate: in-process CPU / (web + CV side) | {100 * one_cpu / (web + cv):.0f} % |")
    print(f"\n(load average {os.getloadavg()[0]:.2f} at end)")


if __name__ == "__main__":
    main()
