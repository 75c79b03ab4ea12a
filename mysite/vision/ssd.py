"""SSD object detection (the book's MobileNet-SSD, or any net with a DetectionOutput layer).

The net answers one ``[1, 1, N, 7]`` tensor: ``[image_id, class_id,
confidence, x1, y1, x2, y2]`` per detection, corners as fractions of the
image. We keep the confident ones, optionally only some labels, and scale the
corners back to the original image's pixels, clipped to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mysite.errors import BadRequest, Reason
from mysite.params import Param
from mysite.vision.dnn import NetModel, Preprocess
from mysite.vision.shapes import Detection, clip, sort

PARAMS = (
    Param("min_confidence", float, 0.5, min=0.0, max=1.0, doc="smallest detection score kept (the book used 0.1)"),
    Param("labels", str, "", doc="comma-separated labels to keep, e.g. cat,dog (empty: every label)"),
)


class SSD(NetModel):
    """An SSD detector file (+ config), its input preparation and its class labels."""

    params: tuple[Param, ...] = PARAMS

    def __init__(self, path: Path, config: Path | None, prep: Preprocess, labels: Sequence[Any]) -> None:
        super().__init__(path, config, prep, labels)
        # A label filter may name this file's labels only: its declaration says so.
        self.params = tuple(replace(p, pattern=self.labels_pattern()) if p.name == "labels" else p for p in PARAMS)

    def check(self, path: Path, out: np.ndarray) -> None:
        if out.ndim != 4 or out.shape[-1] != 7:
            raise ValueError(f"{path.name} answers {out.shape}, not the SSD shape [1, 1, N, 7]")

    def wanted(self, labels: str) -> set[str] | None:
        """The label filter of a request, checked against the model's labels (400 for one it does not know)."""
        names = {s.strip(" ") for s in labels.split(",") if s.strip(" ")}  # the grammar of ``labels_pattern``
        if not names:
            return None
        unknown = sorted(names - set(self.labels))
        if unknown:
            raise BadRequest(f"unknown label(s) {', '.join(unknown)}; this model knows: {', '.join(self.labels)}",
                             reason=Reason.BAD_PARAMETER)
        return names

    def labels_pattern(self) -> str:
        """What ``labels`` may hold, as a regular expression: known labels, comma-separated, spaces around."""
        known = "|".join(re.escape(label) for label in self.labels)
        return f"^ *(?:(?:{known}) *)?(?:, *(?:(?:{known}) *)?)*$"

    def run(self, image: np.ndarray, *, min_confidence: float, labels: str) -> list[Detection]:
        """Boxes with their label and confidence, in original-image pixels."""
        keep = self.wanted(labels)
        height, width = image.shape[:2]
        out = self.first_output(self.prep.blob(image))
        found = []
        for _, class_id, conf, x1, y1, x2, y2 in out.reshape(-1, 7):
            if not conf >= min_confidence:
                continue
            k = int(class_id)
            label = self.labels[k] if 0 <= k < len(self.labels) else str(k)
            if keep is not None and label not in keep:
                continue
            box = clip([x1 * width, y1 * height, x2 * width, y2 * height], width, height)
            if box[2] > box[0] and box[3] > box[1]:  # nothing left of a box wholly outside the image
                found.append({"box": box, "label": label, "confidence": round(float(conf), 4)})
        return sort(found)
