"""One /detect of the book's group photo, median of 20: in-process and over the Procfile's gunicorn.

    python -m bench.group20

The foundation's headline number: the same request through Flask's test client and
over HTTP on 127.0.0.1 (defaults of the Procfile's gunicorn settings).
"""

from __future__ import annotations

import argparse
import json

from bench.measure import timed
from bench.server import ROOT, Server, multipart, request
from mysite import create_app

REPS = 20


def main() -> None:
    argparse.ArgumentParser(prog="python -m bench.group20", description=__doc__.split("\n\n")[0]).parse_args()
    body, ctype = multipart((ROOT / "tests" / "data" / "group_17_faces.jpg").read_bytes())
    client = create_app({"MYSITE_LOG_LEVEL": "WARNING"}).test_client()
    local, answer = timed(lambda: client.post("/detect", data=body, content_type=ctype).get_json(), REPS)
    assert len(answer["result"]) == 17
    with Server(workers=2, cv_threads=-1) as srv:
        http, (status, raw) = timed(lambda: request(srv.port, "POST", "/detect", body, ctype)[:2], REPS)
    assert status == 200 and len(json.loads(raw)["result"]) == 17
    print(f"/detect, group_17_faces.jpg, median / p90 of {REPS}: in-process {local} ms, over HTTP {http} ms")


if __name__ == "__main__":
    main()
