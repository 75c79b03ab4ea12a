"""The two shapes of model the request pipeline (``mysite/pipeline.py``) knows, declared by each model's
class rather than found out by probing it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
from typing import Any, ClassVar

from mysite.params import Param
from mysite.vision.budget import Budget
from mysite.vision.decode import Header


class WholeImage(ABC):
    """Runs on the whole decoded image — no larger than ``decode_side`` on its long side when one is
    set — and answers in that image's pixels (the pipeline scales boxes back)."""

    input: ClassVar[str]  # "gray" or "color": how the upload is decoded for it
    params: tuple[Param, ...]  # per-request knobs, defaults included
    decode_side: ClassVar[int | None] = None

    @abstractmethod
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``run(image, **values)``: the model's answer for one image (each kind names its own ``params``)."""


class Rescaling(ABC):
    """Picks its own decode reduction from the header, checks its own cost against the request's budget,
    and answers in the original image's pixels, told how the decoded image was scaled."""

    input: ClassVar[str]
    params: tuple[Param, ...]

    @abstractmethod
    def prepare(self, header: Header, values: dict[str, Any], explicit: Collection[str],
                limit: Budget | None = None) -> tuple[int, dict[str, Any]]:
        """The decode reduction, and the values as the request meant them; a 422 for a scan over ``limit``."""

    def work(self, header: Header, values: dict[str, Any]) -> int:
        """What the scan costs in the budget's units; 0 when the decode's cost says it all."""
        return 0

    @abstractmethod
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``run(image, scale=..., **values)``: the answer for the decoded image, which has ``scale``
        pixels per original pixel, in original pixels."""
