"""Handwritten digits: make any picture of one digit look like MNIST, then read it.

MNIST digits are white ink on black, the ink scaled to fit a 20x20 box and
placed in a 28x28 field so that its centre of mass is the centre. ``to_mnist``
does the same to a photo, a scan or a canvas drawing; the training script
(``tools/train_digits.py``) runs its training digits through the same
function, so what the model learnt and what it is shown agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.errors import Unprocessable
from mysite.params import Param
from mysite.vision.dnn import ThreadNets, probabilities
from mysite.vision.shapes import WholeImage

SIDE = 28  # the model's input: 28x28
BOX = 20  # the ink is scaled to fit this box, as in MNIST
INK = 0.1  # after normalising, fainter pixels are paper, not ink
SPECK = 0.05  # ink blobs smaller than this share of the largest are dust, not part of the digit


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """A 28x28 float32 image in [0, 1], white ink on black, centred like an MNIST digit.

    Raises 422 when the picture holds no ink (a blank page or an empty canvas).
    """
    img = gray.astype(np.float32)
    if img.ndim != 2:
        raise ValueError("to_mnist expects a single-channel image")
    # The paper is whatever the border mostly is: light paper means dark ink, so invert.
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    if np.median(border) > 127:
        img = 255.0 - img
        border = 255.0 - border
    paper, ink = float(np.median(border)), float(img.max())
    if ink - paper < 32:
        raise Unprocessable("no digit found: the image has no ink that stands out from its background")
    img = np.clip((img - paper) / (ink - paper), 0.0, 1.0)
    img[img < INK] = 0.0
    img = _without_specks(img)
    ys, xs = np.nonzero(img)
    img = img[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = img.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(img, (nw, nh), interpolation=interp)
    # Place the ink so its centre of mass lands on the field's centre (MNIST's rule), clipped to the field.
    m = cv2.moments(small)
    cx, cy = (m["m10"] / m["m00"], m["m01"] / m["m00"]) if m["m00"] > 0 else (nw / 2, nh / 2)
    shift = np.array([[1, 0, SIDE / 2 - cx], [0, 1, SIDE / 2 - cy]], np.float32)
    out = cv2.warpAffine(small, shift, (SIDE, SIDE), flags=cv2.INTER_LINEAR, borderValue=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _without_specks(img: np.ndarray) -> np.ndarray:
    """Drop ink blobs under 5 % of the largest one: dust on a photo would otherwise widen the crop."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((img > 0).astype(np.uint8), connectivity=8)
    if n <= 2:  # background and one blob
        return img
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = areas >= areas.max() * SPECK
    return np.where(keep[labels], img, 0.0).astype(np.float32)


class DigitReader(WholeImage):
    """A 10-class MNIST model (ONNX): one 1x1x28x28 input in [0, 1], ten scores out."""

    input = "gray"
    params: tuple[Param, ...] = ()
    # The digit becomes 20x20 pixels: a photo of a page is decoded with its long side 1000 px or
    # more (libjpeg reduces while decoding, so a 40 MP JPEG costs 0.6 MP, not 40).
    decode_side = 1000

    def __init__(self, path: Path) -> None:
        self.nets = ThreadNets(path)
        # A model that does not answer ten scores is refused at start-up, not on a request.
        (scores,) = self.nets.forward(np.zeros((1, 1, SIDE, SIDE), np.float32))
        if scores.size != 10:
            raise ValueError(f"{path} gives {scores.size} scores, not 10: not a digit model")

    def run(self, gray: np.ndarray) -> dict[str, Any]:
        """The digit, its probability and all ten probabilities."""
        return self.read(to_mnist(gray))

    def read(self, digit: np.ndarray) -> dict[str, Any]:
        """Read one already-normalised 28x28 digit (as ``to_mnist`` returns)."""
        (scores,) = self.nets.forward(digit.reshape(1, 1, SIDE, SIDE))
        p = probabilities(scores)
        best = int(np.argmax(p))
        return {"digit": best, "probability": round(float(p[best]), 4), "probabilities": [round(float(x), 4) for x in p]}
