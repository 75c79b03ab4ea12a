"""The book's demo_request_drawing.py against mysite: POST a photo, draw the faces it finds, save the picture.

    python examples/demo_request_drawing.py [--server http://localhost:5000] [--image PATH] [--out faces.png]

The book showed the result with matplotlib; this writes it to a file (OpenCV only, no GUI),
with the book's yellow boxes and its red/blue corner dots.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mysite.client import Client, ClientError, example_parser, show  # noqa: E402
from mysite.vision.draw import draw_detections  # noqa: E402



def main() -> int:
    p = example_parser(__doc__)
    p.add_argument("--out", default="demo_request_drawing.png")
    args = p.parse_args()

    image = Path(args.image).read_bytes()
    response = Client(args.server).request("POST", "/detect", image=image)
    show(response)
    if not response.ok:
        print(f"error: {response.json().get('message')}", file=sys.stderr)
        return 1
    faces = response.json()["result"]

    picture = draw_detections(cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR), faces)
    for face in faces:
        left, top, right, bottom = face["box"]
        cv2.circle(picture, (left, top), 5, (0, 0, 255), -1)  # the book's corner check: top-left red
        cv2.circle(picture, (right, bottom), 5, (255, 0, 0), -1)  # bottom-right blue
    if not cv2.imwrite(args.out, picture):
        raise ClientError(f"could not write {args.out}")
    print(f"wrote {args.out} with {len(faces)} faces drawn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
