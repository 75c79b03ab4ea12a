"""The book's demo_request.py against mysite: a wrong route, GET ?url=, a missing url, a POST, a PUT.

    python examples/demo_request.py [--server http://localhost:5000] [--image PATH] [--url IMAGE_URL]

Each answer is printed as the book prints it (status code, headers, content).
Without --url the GET-by-URL step is skipped (it needs the server to reach the internet).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mysite.client import Client, example_parser, show  # noqa: E402



def main() -> int:
    p = example_parser(__doc__)
    p.add_argument("--url", help="an image URL for the server to fetch, e.g. OpenCV's samples/data/lena.jpg")
    args = p.parse_args()
    client = Client(args.server)

    steps = [("GET /process (a wrong route)", lambda: client.request("GET", "/process"))]
    if args.url:
        steps.append(("GET /detect?url=...", lambda: client.request("GET", "/detect", url=args.url)))
    steps += [
        ("GET /detect without url", lambda: client.request("GET", "/detect")),
        ("POST /detect with the image", lambda: client.request("POST", "/detect", image=args.image)),
        ("PUT /detect (not supported)", lambda: client.request("PUT", "/detect", image=args.image)),
    ]
    for title, send in steps:
        print(f"# {title}")
        show(send())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
