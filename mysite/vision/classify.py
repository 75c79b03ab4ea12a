"""Image classification with any single-output classifier cv2.dnn reads (ONNX, Caffe, TFLite)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mysite.params import Param
from mysite.vision.dnn import NetModel, probabilities

PARAMS = (Param("top", int, 5, min=1, max=1000, doc="how many of the most likely classes to answer"),)


@dataclass(frozen=True)
class Label:
    """One class: its id for clients (a WordNet id like n02124075 when the file has one, else the index) and name."""

    id: int | str
    name: str


def read_labels(path: Path) -> list[Label]:
    """Labels from a text file (one per line) or the ImageNet ``imagenet_class_index.json`` shape."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        doc = json.loads(text)
        if isinstance(doc, dict):  # {"0": ["n01440764", "tench"], ...}
            return [Label(str(doc[k][0]), str(doc[k][1])) for k in sorted(doc, key=int)]
        return [Label(i, str(name)) for i, name in enumerate(doc)]
    return [Label(i, line.strip()) for i, line in enumerate(text.splitlines()) if line.strip()]


class Classifier(NetModel):
    """A classifier file (+ config), its input preparation and its labels."""

    params = PARAMS

    def check(self, path: Path, scores: np.ndarray) -> None:
        if scores.size != len(self.labels):
            raise ValueError(f"{path.name} gives {scores.size} scores but the labels file has {len(self.labels)} labels")

    def run(self, image: np.ndarray, *, top: int) -> dict[str, Any]:
        """The ``top`` most likely classes, best first, and the best one's id and name."""
        scores = self.first_output(self.prep.blob(image))
        p = probabilities(scores)
        # Stable sort: equal probabilities keep class order, so answers repeat exactly.
        order = np.argsort(-p, kind="stable")[:top]
        predictions = [
            {"label": self.labels[i].name, "probability": round(float(p[i]), 6), "class_id": self.labels[i].id}
            for i in order
        ]
        best = self.labels[order[0]]
        return {"predictions": predictions, "class_id": best.id, "class_name": best.name}
