"""Per-request parameters: declared once, validated in one place.

A model declares the knobs a request may turn (``Param``); its defaults come
from ``models.toml``. ``parse`` checks the strings a request sent and names the
parameter that is wrong, so the web layer can answer 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from mysite.errors import BadRequest, Reason


@dataclass(frozen=True)
class Param:
    """One request parameter: its type, default and allowed range."""

    name: str
    type: type  # int, float, str or bool
    default: Any
    min: float | None = None
    max: float | None = None
    doc: str = ""
    # A regular expression every value the model accepts matches: the API description shows it.
    pattern: str | None = None

    def convert(self, raw: str) -> Any:
        """Turn the request's string into a checked value, or raise 400 naming the parameter."""
        try:
            if self.type is bool:
                value: Any = parse_bool(raw)
            elif self.type is int:
                value = parse_int(raw)
            elif self.type is float:
                value = parse_float(raw)
            else:
                value = str(raw)
        except ValueError:
            raise BadRequest(f"parameter {self.name} must be {_article(self.type)}, not {_shown(raw)}",
                             reason=Reason.BAD_PARAMETER) from None
        if self.min is not None and value < self.min:
            raise BadRequest(f"parameter {self.name} must be at least {self.min}, not {_shown(raw)}",
                             reason=Reason.BAD_PARAMETER)
        if self.max is not None and value > self.max:
            raise BadRequest(f"parameter {self.name} must be at most {self.max}, not {_shown(raw)}",
                             reason=Reason.BAD_PARAMETER)
        return value

    def as_json(self) -> dict[str, Any]:
        """A JSON-able description for the info route."""
        out: dict[str, Any] = {"name": self.name, "type": self.type.__name__, "default": self.default}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.doc:
            out["doc"] = self.doc
        return out


def parse(params: tuple[Param, ...], given: Mapping[str, str]) -> dict[str, Any]:
    """Values for every declared parameter: the request's where it sent one, else the default.

    An empty value is a text parameter's default; for a number or a flag it is no value (400), as
    the API document says (an HTML form's empty fields are dropped before, in ``web/inputs.py``).
    """
    out = {}
    for p in params:
        raw = given.get(p.name)
        out[p.name] = p.default if raw is None or (raw == "" and p.type is str) else p.convert(raw)
    return out


def with_defaults(params: tuple[Param, ...], defaults: Mapping[str, Any]) -> tuple[Param, ...]:
    """The same parameters with defaults taken from configuration, each checked like a request value."""
    unknown = set(defaults) - {p.name for p in params}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; known: {[p.name for p in params]}")
    out = []
    for p in params:
        if p.name in defaults:
            value = p.convert(str(defaults[p.name]).lower() if p.type is bool else str(defaults[p.name]))
            p = replace(p, default=value)
        out.append(p)
    return tuple(out)


# Numbers as people write them in ASCII: Python's int() and float() also take other scripts'
# digits ("\u0665"), underscores ("1_0"), surrounding spaces, "nan" and "inf". Short, so no
# parameter can make the conversion itself costly.
MAX_NUMBER_LENGTH = 40
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def parse_int(raw: str) -> int:
    """An optional minus and ASCII digits; anything else is a ValueError."""
    if len(raw) > MAX_NUMBER_LENGTH or not _INT.fullmatch(raw):
        raise ValueError(raw)
    return int(raw)


def parse_float(raw: str) -> float:
    """A finite decimal number in ASCII (``-1.5``, ``.5``, ``1e-3``); NaN, infinities and overflow are ValueErrors."""
    if len(raw) > MAX_NUMBER_LENGTH or not _FLOAT.fullmatch(raw):
        raise ValueError(raw)
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(raw)
    return value


def parse_bool(raw: str) -> bool:
    """on/off, true/false, yes/no, 1/0 (any case); anything else is a ValueError."""
    v = raw.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _shown(raw: str, limit: int = 40) -> str:
    """``raw`` quoted for an error message, cut short: a client's megabyte is not echoed back."""
    return repr(raw if len(raw) <= limit else raw[:limit] + "...")


def _article(t: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false"}.get(t, "text")
