"""What a model is and what every model shares, declared rather than found out by probing:

- its shape, one of two the request pipeline (``mysite/pipeline.py``) knows: ``WholeImage`` or ``Rescaling``;
- its OpenCV objects, one per CV slot (``PerThread``);
- its answer, detections as plain data: boxes in original-image pixels, in a stable order.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from mysite.params import Param
from mysite.vision.budget import Budget
from mysite.vision.decode import Header
from mysite.vision.fastpath import ScanPlan


class WholeImage(ABC):
    """Runs on the whole decoded image — no larger than ``decode_side`` on its long side when one is
    set — and answers in that image's pixels (the pipeline scales boxes back)."""

    input: ClassVar[str]  # "gray" or "color": how the upload is decoded for it
    params: tuple[Param, ...]  # per-request knobs, defaults included
    decode_side: ClassVar[int | None] = None

    @abstractmethod
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``run(image, **values)``: the model's answer for one image (each kind names its own ``params``)."""


P = TypeVar("P", bound=ScanPlan)


class Rescaling(ABC, Generic[P]):
    """Plans its own decode reduction and scan from the header (checked against the request's budget),
    then runs that plan on the decoded image and answers in the original image's pixels."""

    input: ClassVar[str]
    params: tuple[Param, ...]

    @abstractmethod
    def plan(self, header: Header, values: dict[str, Any], explicit: Collection[str],
             limit: Budget | None = None) -> P:
        """The plan for this image, values as the request meant them; a 422 for a scan over ``limit``."""

    @abstractmethod
    def run(self, image: np.ndarray, plan: P) -> Any:
        """The answer for the decoded ``image`` (``plan.reduce`` or less of the original), in original pixels."""

    def plan_for(self, image: np.ndarray, **given: Any) -> P:
        """The plan for an image already decoded at its own size: ``given`` values over the defaults."""
        height, width = image.shape[:2]
        values = {p.name: p.default for p in self.params} | given
        return self.plan(Header("raw", width, height), values, given.keys())


class UnreadableModel(ValueError):
    """OpenCV cannot read the model file at all (not a model of that format, or a damaged one)."""


T = TypeVar("T")
_slot = threading.local()


@contextmanager
def model_slot(number: int) -> Iterator[None]:
    """Mark this thread as the one using slot ``number``'s model objects for the block (see ``PerThread``)."""
    _slot.number = number
    try:
        yield
    finally:
        _slot.number = None


def current_slot() -> int | None:
    """The slot this thread holds, or None outside one."""
    return getattr(_slot, "number", None)


class PerThread(Generic[T]):
    """One object per CV slot (or per thread outside the slots), made by ``build()`` on first use.

    OpenCV's nets and classifiers are not safe to share between threads running at once. Inside
    a slot (``model_slot``) exactly one thread at a time uses the slot's object, so a web worker
    with many threads and one slot keeps one copy, not one per thread.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._local = threading.local()
        self._by_slot: dict[int, T] = {}

    def get(self) -> T:
        """This slot's (or this thread's) own object."""
        slot = current_slot()
        if slot is not None:
            obj = self._by_slot.get(slot)
            if obj is None:
                obj = self._by_slot[slot] = self._build()
            return obj
        obj = getattr(self._local, "obj", None)
        if obj is None:
            obj = self._local.obj = self._build()
        return obj

    def reset(self) -> None:
        """Drop this slot's (or thread's) object (the next ``get`` builds a fresh one), giving back what it holds."""
        slot = current_slot()
        if slot is not None:
            self._by_slot.pop(slot, None)
        else:
            self._local.obj = None


Detection = dict[str, Any]  # {"box": [x1, y1, x2, y2], optional "label", "confidence", "landmarks"}


def from_xywh(rects: Iterable[Iterable[float]], scale: float = 1.0) -> list[Detection]:
    """OpenCV ``(x, y, w, h)`` rectangles found at ``scale`` to the book's ``{"box": [x1, y1, x2, y2]}``."""
    out = []
    for x, y, w, h in rects:
        out.append({"box": [round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)]})
    return sort(out)


def sort(detections: list[Detection]) -> list[Detection]:
    """Reading order (top to bottom, then left to right): OpenCV's own order varies run to run."""
    return sorted(detections, key=lambda d: (d["box"][1], d["box"][0], d["box"][3], d["box"][2], d.get("label", "")))


def clip(box: list[float], width: int, height: int) -> list[int]:
    """Round a box to whole pixels inside a ``width`` x ``height`` image."""
    x1, y1, x2, y2 = box
    return [
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    ]
