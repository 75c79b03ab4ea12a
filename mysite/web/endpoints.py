"""The image endpoints as data: one row per route, served by the one handler in ``api.py``.

A row names its path, the models.toml model it runs, how its answer is shaped (an ``Output``)
and what its error bodies carry (an ``ErrorShape``); a new endpoint is a new row. A row with an
output or error shape that does not exist fails when the table is built, not on a request.

A row may let a request parameter pick another model (a ``ModelChoice``): ``/detect?detector=dnn``
runs BlazeFace instead of the Haar cascade, and a setting names the value used when none is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mysite.errors import BadRequest, Reason
from mysite.params import Param
from mysite.settings import Settings, SettingsError, nearest


@dataclass(frozen=True)
class ModelChoice:
    """``param`` value -> model name; the default value comes from the setting ``setting``."""

    param: str
    models: Mapping[str, str]
    setting: str  # a Settings attribute, e.g. "face_detector" (MYSITE_FACE_DETECTOR)
    default: str
    title: str = ""  # the choice in the page's words ("Face detector"); default: the parameter's name
    titles: Mapping[str, str] = field(default_factory=dict)  # each value in the page's words

    uses: Mapping[str, str] = field(default_factory=dict)  # value -> what to pick it for (page, OpenAPI)

    def title_of(self, value: str) -> str:
        return self.titles.get(value, value)

    def default_value(self, settings: Settings) -> str:
        return str(getattr(settings, self.setting, "") or self.default)

    def check(self, settings: Settings) -> None:
        """Stop start-up when the setting names a value this choice does not have."""
        value = self.default_value(settings)
        if value not in self.models:
            raise SettingsError(f"MYSITE_{self.setting.upper()} must be one of {', '.join(self.models)}, "
                                f"not {value!r}{nearest(value, self.models)}")

    def model(self, given: Mapping[str, str], settings: Settings) -> str:
        """The model name for this request (400 for a value not offered)."""
        value = (given.get(self.param) or "").strip().lower() or self.default_value(settings)
        if value not in self.models:
            raise BadRequest(f"parameter {self.param} must be one of {', '.join(self.models)}, not {value!r}",
                             reason=Reason.BAD_PARAMETER)
        return self.models[value]


def pick(model: str, choice: ModelChoice | None, given: Mapping[str, str], settings: Settings) -> str:
    """The model an endpoint runs for one request: its own, or the one its choice names."""
    return model if choice is None else choice.model(given, settings)


class Output(StrEnum):
    """How an endpoint's answer is shaped (``respond`` has one shape for each)."""

    BOXES = "boxes"  # the book's {"status": "ok", "result": [{"box": [...]}, ...]}
    FIELDS = "fields"  # the model's own fields beside the status, e.g. {"status": "ok", "digit": 7, ...}
    PREDICTIONS = "predictions"  # classifier predictions, read by the book's Keras and the PyTorch tutorial's clients
    DEEPSTACK = "deepstack"  # DeepStack / CodeProject.AI's {"success": true, "predictions": [...]}
    DIGIT_TEXT = "digit_text"  # the bare digit as text/plain (the MNIST Flask API)
    IMAGE = "image"  # a picture (Canny's edge map)


class ErrorShape(StrEnum):
    """What an endpoint's error bodies carry beside status, message and reason."""

    BOOK = "book"  # nothing else
    SUCCESS = "success"  # "success": false, which the book's Keras client reads on every answer
    DEEPSTACK = "deepstack"  # DeepStack's "success": false, "error" and "duration"


def _member(kind: type[StrEnum], value: str, path: str) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"endpoint {path}: {value!r} is not an {kind.__name__}; "
                         f"one of {', '.join(m.value for m in kind)}") from None


@dataclass(frozen=True)
class Endpoint:
    """One image endpoint: its path, the model it runs and how its answer is shaped."""

    path: str
    model: str  # a table name in models.toml
    doc: str
    output: Output = Output.BOXES
    fixed: Mapping[str, Any] = field(default_factory=dict)  # parameters the endpoint pins
    choice: ModelChoice | None = None  # a request parameter that picks another model (e.g. ?detector=dnn)
    # Request parameters the endpoint defaults and a request may override (e.g. output=base64 on /predictor).
    defaults: Mapping[str, str] = field(default_factory=dict)
    errors: ErrorShape = ErrorShape.BOOK
    label: str = ""  # the label of a detection that has none (drawn, DeepStack answers); default: the model's name
    on_page: bool = True  # offered as a task on the page at / (routes kept for other clients' formats are not)
    title: str = ""  # the task in the page's words ("Find faces"); default: the doc up to its first ";"

    def __post_init__(self) -> None:
        # Rows may name shapes by their values ("image"); a value that is no member stops the table here.
        object.__setattr__(self, "output", _member(Output, self.output, self.path))
        object.__setattr__(self, "errors", _member(ErrorShape, self.errors, self.path))

    def settable(self, params: tuple[Param, ...]) -> tuple[Param, ...]:
        """A model's parameters a request may set on this row (not those it pins), with the row's own defaults."""
        return tuple(dataclasses.replace(p, default=p.convert(self.defaults[p.name])) if p.name in self.defaults
                     else p for p in params if p.name not in self.fixed)

    @property
    def name(self) -> str:
        """The Flask endpoint name: the path without its leading slash (``predict`` and ``predict/`` differ)."""
        return self.path[1:]


FACE_DETECTORS = ModelChoice(
    "detector", {"haar": "face", "yunet": "yunet", "dnn": "blazeface", "dnn-full": "blazeface_full"},
    "face_detector", "haar", title="Face detector",
    titles={"haar": "Haar cascade", "yunet": "YuNet", "dnn": "BlazeFace", "dnn-full": "BlazeFace full range"},
    uses={
        "haar": "the book's boxes, exactly, for the book's clients",
        "yunet": "every face, the fastest at every photo size (0.3 to 24 MP); confidence and landmarks",
        "dnn": "one face near the camera",
        "dnn-full": "a few faces within a few metres",
    },
)


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/detect", "face", "Detect human faces; boxes as [x1, y1, x2, y2]; ?detector=haar|yunet|dnn|dnn-full",
             choice=FACE_DETECTORS, title="Find faces"),
    Endpoint("/catfacedetection", "catface", "Detect cat faces; boxes as [x1, y1, x2, y2]", title="Find cat faces"),
    Endpoint("/canny", "canny", "Canny edge map of the image, as a JPEG", output=Output.IMAGE,
             title="Outline the edges"),
    # The book's cat client kept detections above 0.1: so does this endpoint unless the request says otherwise.
    Endpoint("/catdetection", "ssd", "Detect whole cats (MobileNet-SSD); boxes with label and confidence",
             fixed={"labels": "cat"}, defaults={"min_confidence": "0.1"}, title="Find cats"),
    Endpoint("/objectdetection", "ssd", "Detect the 20 VOC object classes (MobileNet-SSD); ?labels=cat,dog",
             title="Find people, animals and vehicles (20 kinds)"),
    # The book's Keras client reads "success" on every answer, errors included.
    Endpoint("/predict", "classifier", "Classify the image (ImageNet); top-k predictions", output=Output.PREDICTIONS,
             errors=ErrorShape.SUCCESS, title="Say what the photo shows (1,000 kinds)"),
    Endpoint("/digits", "digits", "Read one handwritten digit (MNIST CNN); POST img or a data URL", output=Output.FIELDS,
             title="Read a handwritten digit"),
    # The MNIST Flask API's route: a distinct rule from /predict, answering the bare digit as text.
    Endpoint("/predict/", "digits",
             "Read one handwritten digit; answers the bare digit as text/plain (the MNIST Flask API's route)",
             output=Output.DIGIT_TEXT, on_page=False),
    # The AIDemo client posts base64 and b64decodes the answer: the drawn JPEG as base64 by default.
    Endpoint("/predictor", "face", "Faces drawn on the image, answered as base64 JPEG text (the AIDemo client's route)",
             choice=FACE_DETECTORS, defaults={"output": "base64"}, on_page=False),
    # DeepStack / CodeProject.AI clients (Home Assistant, Blue Iris, deepstack-python).
    # Faces by the site's face detector, as /detect (a Haar box has no score: its confidence is 1.0).
    Endpoint("/v1/vision/face", "face", "DeepStack-compatible face detection; multipart image, min_confidence",
             choice=FACE_DETECTORS, output=Output.DEEPSTACK, errors=ErrorShape.DEEPSTACK, label="face", on_page=False),
    # DeepStack's server keeps detections from 0.40 when a request names no min_confidence (Frigate sends none).
    Endpoint("/v1/vision/detection", "ssd", "DeepStack-compatible object detection (MobileNet-SSD, VOC labels)",
             output=Output.DEEPSTACK, errors=ErrorShape.DEEPSTACK, on_page=False, defaults={"min_confidence": "0.4"}),
)


@dataclass(frozen=True)
class FaceRoute:
    """One route of the registered-faces store, served by the one handler in ``faces.py``.

    These read a person's name and any number of images (or none), run the face
    embedding model on each image and then work on the database, so they are rows of
    their own rather than image rows of ``ENDPOINTS``.
    """

    path: str
    action: str  # list (streamed: faces.list_answer), or a key of faces.ACTIONS: register, recognize, delete, match
    doc: str
    methods: tuple[str, ...] = ("POST",)
    style: str = "deepstack"  # "deepstack": DeepStack's fields and errors; "native": the site's own
    changes: bool = False  # changes the store: with MYSITE_ADMIN_KEYS set, it takes an admin key

    @property
    def errors(self) -> ErrorShape:
        """What an error body carries beside status and message."""
        return ErrorShape.DEEPSTACK if self.style == "deepstack" else ErrorShape.BOOK

    @property
    def name(self) -> str:
        """The Flask endpoint name (in blueprint ``faces``): action and style, e.g. ``register_deepstack``."""
        return f"{self.action}_{self.style}"


FACE_ROUTES: tuple[FaceRoute, ...] = (
    # DeepStack / CodeProject.AI face recognition, as deepstack-python, deepstack-sdk and codeproject-ai-api send it.
    FaceRoute("/v1/vision/face/register", "register",
              "DeepStack-compatible: register a person (userid) from one or more photos (image, image1, ...)",
              changes=True),
    FaceRoute("/v1/vision/face/recognize", "recognize",
              "DeepStack-compatible: name every face of the image (userid, or unknown below min_confidence)"),
    FaceRoute("/v1/vision/face/list", "list", "DeepStack-compatible: the registered people (faces)"),
    FaceRoute("/v1/vision/face/delete", "delete", "DeepStack-compatible: forget a person (userid)", changes=True),
    FaceRoute("/v1/vision/face/match", "match",
              "DeepStack-compatible: how alike the faces of two images are (image1, image2; similarity)"),
    # The site's own style.
    FaceRoute("/faces", "list", "The registered people and how many faces each has", methods=("GET",),
              style="native"),
    FaceRoute("/faces/<path:name>", "register", "Register the person <name> from one or more photos (multipart image)",
              methods=("POST",), style="native", changes=True),
    FaceRoute("/faces/<path:name>", "delete", "Forget the person <name>", methods=("DELETE",), style="native",
              changes=True),
    FaceRoute("/recognize", "recognize", "Name every face of the image: box, name (null: unknown), confidence",
              style="native"),
)
