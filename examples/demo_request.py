"""The book's demo_request.py against mysite: a wrong route, GET ?url=, a missing url, a POST, a PUT.

    python examples/demo_request.py [--server http://localhost:5000] [--image PATH] [--url IMAGE_URL]

Each answer is printed as the book prints it (status code, headers, content). Without --url
the GET-by-URL step is skipped (it needs the server to reach the internet). Like the book's
script it needs only ``requests``: copy it anywhere. ``$MYSITE_API_KEY`` is sent as
``X-API-Key`` when the server wants a key.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import requests

BOOK_IMAGE = Path(__file__).resolve().parent.parent / "tests" / "data" / "group_17_faces.jpg"


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--server", default=os.environ.get("MYSITE_SERVER", "http://localhost:5000"))
    p.add_argument("--image", default=str(BOOK_IMAGE), help="default: the book's group photo")
    return p


def read_image(p: argparse.ArgumentParser, path: str) -> bytes:
    """The photo's bytes, or a usage error that says what to pass (a copied script has no tests/data)."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        p.error(f"cannot read the photo {path} ({exc.strerror}): give one with --image PATH")


def show(response: requests.Response) -> None:
    """The book's three lines: status code, headers, content."""
    print(f"status code: {response.status_code}")
    print(f"headers: {dict(response.headers)}")
    try:
        print(f"content: {response.json()}")
    except ValueError:
        print(f"content: <{len(response.content)} bytes of {response.headers.get('Content-Type', 'unknown type')}>")


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--url", help="an image URL for the server to fetch, e.g. OpenCV's samples/data/lena.jpg")
    args = p.parse_args()
    api = args.server.rstrip("/")
    key = os.environ.get("MYSITE_API_KEY")
    headers = {"X-API-Key": key} if key else {}
    image = read_image(p, args.image)

    steps = [("GET /process (a wrong route)", lambda: requests.get(f"{api}/process", headers=headers))]
    if args.url:
        steps.append(("GET /detect?url=...",
                      lambda: requests.get(f"{api}/detect", params={"url": args.url}, headers=headers)))
    steps += [
        ("GET /detect without url", lambda: requests.get(f"{api}/detect", headers=headers)),
        ("POST /detect with the image",
         lambda: requests.post(f"{api}/detect", files={"image": image}, headers=headers)),
        ("PUT /detect (not supported)", lambda: requests.put(f"{api}/detect", files={"image": image}, headers=headers)),
    ]
    for title, send in steps:
        print(f"# {title}")
        show(send())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
