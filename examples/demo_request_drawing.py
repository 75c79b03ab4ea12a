"""The book's demo_request_drawing.py against mysite: POST a photo, draw the faces it finds, save the picture.

    python examples/demo_request_drawing.py [--server http://localhost:5000] [--image PATH] [--out faces.png]

The book showed the result with matplotlib; this writes it to a file (OpenCV only, no GUI),
with the book's yellow boxes and its red/blue corner dots. Needs ``requests``, ``numpy`` and
``opencv-python-headless`` and demo_request.py beside it, nothing else of this repository.
"""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np
import requests
from demo_request import parser, read_image, show

YELLOW, RED, BLUE = (0, 255, 255), (0, 0, 255), (255, 0, 0)  # BGR, as the book draws


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--out", default="demo_request_drawing.png")
    args = p.parse_args()

    image = read_image(p, args.image)
    key = os.environ.get("MYSITE_API_KEY")
    response = requests.post(f"{args.server.rstrip('/')}/detect", files={"image": image},
                             headers={"X-API-Key": key} if key else {})
    show(response)
    if not response.ok:
        print(f"error: {response.json().get('message')}", file=sys.stderr)
        return 1
    faces = response.json()["result"]

    picture = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
    thickness = max(1, round(min(picture.shape[:2]) / 320))
    for face in faces:
        left, top, right, bottom = face["box"]
        cv2.rectangle(picture, (left, top), (right, bottom), YELLOW, thickness)
        cv2.circle(picture, (left, top), 5, RED, -1)  # the book's corner check: top-left red
        cv2.circle(picture, (right, bottom), 5, BLUE, -1)  # bottom-right blue
    if not cv2.imwrite(args.out, picture):
        print(f"error: could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} with {len(faces)} faces drawn")
    return 0


if __name__ == "__main__":
    sys.exit(main())
