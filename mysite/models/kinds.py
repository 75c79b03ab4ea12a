"""The kinds of models.toml: an entry's options and file -> a ready vision model.

``KINDS`` maps each ``kind`` to its constructor ``(spec, path) -> Model``. The
deep-learning ones read the kind-specific options of an entry (input size, mean,
scale, labels, config file, anchors), check their types, and find companion files
(config, labels) beside the model file, else in the package's data folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mysite.vision.blazeface import BlazeFace
from mysite.vision.cascade import Cascade
from mysite.vision.classify import Classifier, Label, read_labels
from mysite.vision.digits import DigitReader
from mysite.vision.dnn import Preprocess, find_beside
from mysite.vision.edges import Canny
from mysite.vision.faceid import FaceEmbedder
from mysite.vision.shapes import Rescaling, WholeImage
from mysite.vision.ssd import SSD
from mysite.vision.yunet import YuNet

if TYPE_CHECKING:
    from mysite.models.schema import ModelSpec

DATA_DIR = Path(__file__).with_name("data")  # the shipped model files and their companions
SELF_CONTAINED = {".onnx", ".tflite"}  # model formats whose file holds the whole graph: no config file


# Every kind builds one of the two shapes the request pipeline knows (mysite/vision/shapes.py).
Model = WholeImage | Rescaling[Any]


def _opt(spec: ModelSpec, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
    value = spec.options.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ValueError(f"option {key!r} of model {spec.name!r} must be {getattr(kind, '__name__', kind)}, not {value!r}")
    return value


def _triple(spec: ModelSpec, key: str, default: float) -> tuple[float, float, float]:
    value = _opt(spec, key, default, (int, float, list))
    values = [float(v) for v in (value if isinstance(value, list) else [value] * 3)]
    if len(values) != 3:
        raise ValueError(f"option {key!r} of model {spec.name!r} needs 3 values (one per channel), not {value!r}")
    return values[0], values[1], values[2]


def required_file(path: Path | None, spec: ModelSpec) -> Path:
    """The model's file, which its kind cannot do without."""
    if path is None:
        raise ValueError(f"model {spec.name!r} names no file")
    return path


def preprocess(spec: ModelSpec) -> Preprocess:
    """The blob recipe of an entry: ``size``, ``scale``, ``mean``, ``std``, ``rgb``, ``crop``."""
    size = _opt(spec, "size", [224, 224], list)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(f"option 'size' of model {spec.name!r} must be [width, height], not {size!r}")
    return Preprocess(
        size=(size[0], size[1]),
        scale=float(_opt(spec, "scale", 1.0, (int, float))),
        mean=_triple(spec, "mean", 0.0),
        std=_triple(spec, "std", 1.0),
        rgb=_opt(spec, "rgb", False, bool),
        crop=_opt(spec, "crop", False, bool),
    )


def companion_path(path: Path, name: str) -> Path:
    """Where a companion file of the model file ``path`` is: beside it, else shipped in the package's data."""
    return find_beside(path, name, [DATA_DIR])


def companion(spec: ModelSpec, path: Path, key: str) -> Path | None:
    """A file named by option ``key`` (config, labels), found beside the model or in the package data."""
    name = _opt(spec, key, None, (str, type(None)))
    if name is None:
        return None
    found = companion_path(path, name)
    if not found.is_file():
        raise ValueError(f"{key} file {name} not found beside {path.name} nor in {DATA_DIR}")
    return found


def labels(spec: ModelSpec, path: Path) -> list[Label]:
    """``labels`` as an inline list, or the name of a labels file."""
    value = spec.options.get("labels")
    if isinstance(value, list):
        return [Label(i, str(v)) for i, v in enumerate(value)]
    found = companion(spec, path, "labels")
    if found is None:
        raise ValueError(f"model {spec.name!r} needs labels (a list, or a labels file name)")
    return read_labels(found)


def config(spec: ModelSpec, path: Path) -> Path | None:
    """The entry's ``config`` file, for a format that keeps its graph apart (a Caffe .caffemodel needs its
    .prototxt); an ONNX or TFLite file holds its own graph, so the same entry serves either format."""
    if path.suffix.lower() in SELF_CONTAINED:
        return None
    return companion(spec, path, "config")


def ssd(spec: ModelSpec, path: Path | None) -> SSD:
    path = required_file(path, spec)
    return SSD(path, config(spec, path), preprocess(spec), [lb.name for lb in labels(spec, path)])


def classify(spec: ModelSpec, path: Path | None) -> Classifier:
    path = required_file(path, spec)
    return Classifier(path, config(spec, path), preprocess(spec), labels(spec, path))


def blazeface(spec: ModelSpec, path: Path | None) -> BlazeFace:
    strides: Sequence[int] = _opt(spec, "strides", [8, 16, 16, 16], list)
    return BlazeFace(
        required_file(path, spec),
        size=_opt(spec, "size", 128, int),
        strides=[int(s) for s in strides],
        anchors_per_layer=_opt(spec, "anchors_per_layer", 2, int),
    )


def digits(spec: ModelSpec, path: Path | None) -> DigitReader:
    return DigitReader(required_file(path, spec))


def yunet(spec: ModelSpec, path: Path | None) -> YuNet:
    return YuNet(required_file(path, spec))


def face_embedding(spec: ModelSpec, path: Path | None) -> FaceEmbedder:
    """dlib's embedding network; its shape predictor beside it; YuNet (shipped) finds the faces."""
    path = required_file(path, spec)
    landmarks = companion(spec, path, "landmarks")
    detector = companion(spec, path, "detector")
    if landmarks is None or detector is None:
        raise ValueError(f"model {spec.name!r} needs landmarks and detector files")
    return FaceEmbedder(path, landmarks, YuNet(detector))


# kind -> constructor from (spec, resolved path). A new kind is one entry here.
KINDS: dict[str, Callable[[ModelSpec, Path | None], Model]] = {
    "cascade": lambda spec, path: Cascade(required_file(path, spec)),
    "canny": lambda spec, path: Canny(),
    "ssd": ssd, "classify": classify, "blazeface": blazeface, "digits": digits, "yunet": yunet,
    "face_embedding": face_embedding,
}
