"""The two shapes of model the request pipeline (``mysite/pipeline.py``) knows, declared by each model's
class rather than found out by probing it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection
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
