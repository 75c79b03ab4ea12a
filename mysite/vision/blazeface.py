"""MediaPipe BlazeFace face detection (TFLite) through cv2.dnn.

The net sees a square RGB image scaled to [-1, 1] and answers, for each of a
fixed grid of SSD anchors, one score (``(1, N, 1)``, a logit) and sixteen
regressors (``(1, N, 16)``: box centre offset, width and height in input
pixels, then six key points we do not use). The anchors follow MediaPipe's
``SsdAnchorsCalculator`` with a fixed anchor size: a cell centre per feature
map position, repeated ``anchors_per_layer`` times for each layer of that
stride. The short-range model: 128x128, strides 8, 16, 16, 16, two anchors per
layer (896 anchors); the full-range model: 192x192, stride 4, one (2304).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.params import Param
from mysite.vision import fastpath
from mysite.vision.budget import Budget
from mysite.vision.decode import Header
from mysite.vision.dnn import ThreadNets
from mysite.vision.fastpath import ScanPlan
from mysite.vision.shapes import Detection, Rescaling, clip, sort

PARAMS = (
    Param("min_confidence", float, 0.5, min=0.0, max=1.0, doc="smallest face score kept"),
    Param("nms", float, 0.3, min=0.0, max=1.0, doc="overlap (IoU) above which the weaker of two boxes is dropped"),
)


def anchors(size: int, strides: Sequence[int], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres, ``(N, 2)`` as (x, y) in [0, 1], in the order the net's outputs use."""
    out = []
    for stride, group in groupby(strides):
        per_cell = anchors_per_layer * len(list(group))
        cells = -(-size // stride)
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


class BlazeFace(Rescaling[ScanPlan]):
    """A BlazeFace ``.tflite`` file with its anchor layout; answers boxes with a confidence."""

    input = "color"
    params = PARAMS

    def __init__(self, path: Path, *, size: int = 128, strides: Sequence[int] = (8, 16, 16, 16),
                 anchors_per_layer: int = 2) -> None:
        self.size = int(size)
        self.anchors = anchors(self.size, strides, anchors_per_layer)
        self.nets = ThreadNets(path)
        # Check the layout against the file now, so a wrong entry fails at start-up with a clear reason.
        outs = self.nets.forward(np.zeros((1, 3, self.size, self.size), np.float32))
        shapes = sorted(o.shape[-1] for o in outs)
        counts = {int(np.prod(o.shape[:-1])) for o in outs}
        if len(outs) != 2 or shapes[0] != 1 or shapes[1] < 4 or counts != {len(self.anchors)}:
            raise ValueError(
                f"{path.name} answers {[o.shape for o in outs]}; the entry's anchors expect "
                f"(1, {len(self.anchors)}, 1) scores and (1, {len(self.anchors)}, 16) boxes"
            )

    def plan(self, header: Header, values: dict[str, Any], explicit: Collection[str],
             limit: Budget | None = None) -> ScanPlan:
        """Decode reduced: the net sees the photo at ``size`` pixels, so a 12 MP photo needs 1/8 of it."""
        return ScanPlan(header.width, header.height, fastpath.reduction(2 * self.size / max(header.width, header.height)),
                        values)

    def run(self, image: np.ndarray, plan: ScanPlan) -> list[Detection]:
        """Faces in a BGR image (decoded as ``plan`` says): ``{"box": [x1, y1, x2, y2], "confidence": c}``,
        in original pixels."""
        min_confidence, nms, scale = plan.values["min_confidence"], plan.values["nms"], plan.scale_of(image)
        height, width = image.shape[:2]
        # Letterbox: the net wants a square, and squashing would distort faces.
        fit = self.size / max(height, width)
        rw, rh = max(1, round(width * fit)), max(1, round(height * fit))
        pad_x, pad_y = (self.size - rw) // 2, (self.size - rh) // 2
        square = cv2.copyMakeBorder(
            cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if fit < 1 else cv2.INTER_LINEAR),
            pad_y, self.size - rh - pad_y, pad_x, self.size - rw - pad_x, cv2.BORDER_CONSTANT, value=(0, 0, 0),
        )
        blob = cv2.dnn.blobFromImage(square, 1 / 127.5, (self.size, self.size), (127.5, 127.5, 127.5), swapRB=True)
        outs = self.nets.forward(blob)
        scores, regs = sorted(outs, key=lambda o: o.shape[-1])
        logits = np.clip(scores.reshape(-1).astype(np.float64), -100, 100)
        conf = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(conf >= min_confidence)
        if keep.size == 0:
            return []
        r = regs.reshape(len(self.anchors), -1)[keep, :4] / self.size
        cx = r[:, 0] + self.anchors[keep, 0]
        cy = r[:, 1] + self.anchors[keep, 1]
        # From the letterboxed square's [0, 1] back to the original image's pixels.
        # (The decoded image may itself be reduced: ``scale`` of the original's pixels.)
        fit *= scale
        width, height = plan.width, plan.height
        x1 = ((cx - r[:, 2] / 2) * self.size - pad_x) / fit
        y1 = ((cy - r[:, 3] / 2) * self.size - pad_y) / fit
        w, h = r[:, 2] * self.size / fit, r[:, 3] * self.size / fit
        rects = [[float(a), float(b), float(c), float(d)] for a, b, c, d in zip(x1, y1, w, h)]
        picked = cv2.dnn.NMSBoxes(rects, conf[keep].tolist(), min_confidence, nms)
        out = []
        for i in np.asarray(picked).reshape(-1):
            x, y, bw, bh = rects[i]
            out.append({"box": clip([x, y, x + bw, y + bh], width, height), "confidence": round(float(conf[keep][i]), 4)})
        return sort(out)
