"""What every OpenCV DNN model here shares: loading, one net per slot, softmax.

Each slot gets its own ``cv2.dnn.Net`` (``shapes.PerThread``), built from the model's bytes
read once at start-up: a file removed after start-up cannot break a slot that has not run yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mysite.vision.shapes import PerThread, UnreadableModel, WholeImage

# File suffix -> the framework name cv2.dnn.readNet takes with in-memory buffers.
FRAMEWORKS = {".onnx": "onnx", ".caffemodel": "caffe", ".tflite": "tflite", ".pb": "tensorflow"}


def find_beside(path: Path, name: str, fallback_dirs: Sequence[Path] = ()) -> Path:
    """A companion file (config, labels) named in a model entry: beside the model, else in ``fallback_dirs``."""
    candidate = Path(name)
    if candidate.is_absolute():
        return candidate
    for folder in (path.parent, *fallback_dirs):
        if (folder / name).is_file():
            return folder / name
    return path.parent / name


def read_bytes(path: Path | None) -> np.ndarray:
    """A file's bytes as the uint8 buffer OpenCV's in-memory loaders take (empty for no file)."""
    return np.fromfile(path, np.uint8) if path is not None else np.zeros(0, np.uint8)


class ThreadNets:
    """A model file's bytes, and one ``cv2.dnn.Net`` per thread built from them."""

    def __init__(self, model: Path, config: Path | None = None) -> None:
        self.model = Path(model)
        framework = FRAMEWORKS.get(self.model.suffix.lower())
        if framework is None:
            raise ValueError(f"{self.model.name}: unknown model format (known: {', '.join(sorted(FRAMEWORKS))})")
        self.framework: str = framework
        self._model_bytes = read_bytes(self.model)
        self._config_bytes = read_bytes(config)
        self._nets = PerThread(self._read)
        self.outputs: tuple[str, ...] = ()
        # Build the first net now: a broken file is reported at start-up, not on the first request.
        self.outputs = tuple(self.net().getUnconnectedOutLayersNames())

    def _read(self) -> cv2.dnn.Net:
        try:
            net = cv2.dnn.readNet(self.framework, self._model_bytes, self._config_bytes)
        except cv2.error as exc:
            raise UnreadableModel(f"OpenCV cannot read {self.model.name}: {first_line(exc)}") from None
        if net.empty():
            raise UnreadableModel(f"OpenCV read {self.model.name} but found no layers in it")
        return net

    def net(self) -> cv2.dnn.Net:
        """This thread's own net."""
        return self._nets.get()

    def forward(self, blob: np.ndarray) -> list[np.ndarray]:
        """Every output of the net for one input blob, in ``self.outputs`` order."""
        net = self.net()
        net.setInput(blob)
        outs = net.forward(list(self.outputs))
        return [np.asarray(o) for o in outs]


class NetModel(WholeImage):
    """A model file (+ config) run by cv2.dnn on colour images, with its input recipe and labels.

    Subclasses say in ``check`` what a sane first output looks like; it is run once, on a
    blank input, when the model loads, so a wrong file is reported at start-up.
    """

    input = "color"
    # Long side the image is decoded to at least (libjpeg reduces while decoding): four times
    # the largest input side there is here (SSD's 300), so the net's own resize sees plenty.
    decode_side = 1200

    def __init__(self, path: Path, config: Path | None, prep: Preprocess, labels: Sequence[Any]) -> None:
        self.prep = prep
        self.labels = tuple(labels)
        self.nets = ThreadNets(path, config)
        self.check(path, self.first_output(prep.blank()))

    def first_output(self, blob: np.ndarray) -> np.ndarray:
        return self.nets.forward(blob)[0]

    def check(self, path: Path, out: np.ndarray) -> None:
        """Raise ValueError when the net's answer to a blank input is not what this kind reads."""


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Class probabilities: ``scores`` as they are when they already are a distribution, else their softmax."""
    v = np.asarray(scores, dtype=np.float64).ravel()
    if v.size and v.min() >= 0 and abs(v.sum() - 1.0) < 1e-3:
        return v
    e = np.exp(v - v.max())
    out: np.ndarray = e / e.sum()
    return out


def first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its input blob, as OpenCV's ``models.yml`` describes it.

    Each value is ``(pixel - mean) * scale / std``, with ``mean`` in pixel units
    and in the model's channel order (RGB when ``rgb``). ``crop``: resize the
    shorter side to fit, then cut the centre; otherwise stretch to ``size``.
    """

    size: tuple[int, int] = (224, 224)  # width, height
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rgb: bool = False
    crop: bool = False

    def blank(self) -> np.ndarray:
        """An all-zero input blob: a model runs it at start-up to check its entry against its file."""
        return np.zeros((1, 3, self.size[1], self.size[0]), np.float32)

    def blob(self, image: np.ndarray) -> np.ndarray:
        """A ``1x3xHxW`` float32 blob from a BGR image."""
        blob = cv2.dnn.blobFromImage(image, self.scale, self.size, self.mean, swapRB=self.rgb, crop=self.crop)
        if self.std != (1.0, 1.0, 1.0):
            np.divide(blob, np.asarray(self.std, np.float32).reshape(1, 3, 1, 1), out=blob)
        return blob
