"""What the client knows about each route: where an answer keeps its boxes, what else the route takes.

Data, not code: a route the server gains (or a DeepStack-compatible one) is one more row.
A route not in the table is still sent to; it just gets the cautious defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Route:
    """One image route as the batch client uses it."""

    path: str
    boxes: str | None = "result"  # the answer's key holding the list of detections; None: no boxes
    several: bool = False  # takes repeated multipart ``image`` fields and answers {"results": [...]}
    draws: bool = True  # ?output=image answers the photo with the detections drawn
    answers_image: bool = False  # the answer itself is a picture (an edge map)

    def count_boxes(self, answer: Any) -> int:
        """Detections in a JSON answer (0 when the route has none or the answer is an error)."""
        if self.boxes is None or not isinstance(answer, dict):
            return 0
        found = answer.get(self.boxes)
        return len(found) if isinstance(found, list) else 0


ROUTES: dict[str, Route] = {r.path: r for r in (
    Route("/detect", several=True),
    Route("/catfacedetection", several=True),
    Route("/catdetection", several=True),
    Route("/objectdetection", several=True),
    Route("/canny", boxes=None, draws=False, answers_image=True),
    Route("/predict", boxes=None, draws=False),
    Route("/digits", boxes=None, draws=False),
    # DeepStack's API (the clients written for it): {"success": true, "predictions": [{"x_min": ...}]}.
    Route("/v1/vision/face", boxes="predictions"),
    Route("/v1/vision/detection", boxes="predictions"),
)}


def route_for(endpoint: str) -> Route:
    """The table's row for ``endpoint`` ("detect", "/detect", "v1/vision/face"), or one with cautious defaults."""
    path = "/" + endpoint.strip("/")
    return ROUTES.get(path, Route(path))
