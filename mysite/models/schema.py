"""models.toml: its tables (``ModelSpec``), and the keys each may hold, per kind, with their types.

A typo (``sclae = 0.5``) or a value of the wrong type would otherwise be ignored or read
wrongly and the model would preprocess silently wrong. ``problem()`` finds the first such key
and says it in one line, naming the nearest valid key, the way an invalid ``MYSITE_*``
setting is reported; the registry then leaves that model unloaded (the others load).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mysite.params import Param
from mysite.settings import nearest

MODELS_FILE = Path(__file__).with_name("models.toml")


@dataclass(frozen=True)
class ModelSpec:
    """One ``[name]`` table of models.toml."""

    name: str
    kind: str
    doc: str = ""
    file: str | None = None
    env: str | None = None
    required: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)  # everything else: kind-specific

    def table(self) -> dict[str, Any]:
        """The models.toml table this spec was read from (keys left unset are not in it)."""
        common = {"kind": self.kind, "doc": self.doc or None, "file": self.file, "env": self.env,
                  "required": self.required or None, "params": self.params or None}
        return {**{k: v for k, v in common.items() if v is not None}, **self.options}

    @classmethod
    def from_table(cls, name: str, table: Mapping[str, Any]) -> ModelSpec:
        known = {"kind", "doc", "file", "env", "required", "params"}
        if "kind" not in table:
            raise ValueError(f"model {name!r} in models.toml has no kind")
        return cls(
            name=name,
            options={k: v for k, v in table.items() if k not in known},
            **{k: v for k, v in table.items() if k in known},
        )


def read_specs(path: Path = MODELS_FILE) -> dict[str, ModelSpec]:
    """The declared models, by name."""
    with path.open("rb") as f:
        tables = tomllib.load(f)
    return {name: ModelSpec.from_table(name, t) for name, t in tables.items()}


# A type, or a tuple of types any of which will do (TOML gives int, float, str, bool, list, dict).
Types = type | tuple[type, ...]

NUMBER = (int, float)
# Keys every kind takes (ModelSpec; ``sources`` is read by ``python -m mysite.models fetch``).
COMMON: dict[str, Types] = {
    "kind": str, "doc": str, "file": str, "env": str, "required": bool, "params": dict, "sources": list,
}
# The blob recipe and labels of the OpenCV DNN kinds that take them (model_kinds.preprocess, .labels).
PREPROCESS: dict[str, Types] = {
    "config": str, "size": list, "scale": NUMBER, "mean": (int, float, list), "std": (int, float, list),
    "rgb": bool, "crop": bool, "labels": (list, str),
}
# kind -> the keys it takes beyond COMMON. A new kind declares its options here.
KIND_OPTIONS: dict[str, dict[str, Types]] = {
    "cascade": {},
    "canny": {},
    "ssd": PREPROCESS,
    "classify": PREPROCESS,
    "blazeface": {"size": int, "strides": list, "anchors_per_layer": int},
    "digits": {},
    "yunet": {},
    "face_embedding": {"landmarks": str, "detector": str},
}
TYPE_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true or false",
              list: "a list", dict: "a table"}


def _type_name(types: Types) -> str:
    if types == NUMBER:
        return "a number"
    names = [TYPE_NAMES[t] for t in (types if isinstance(types, tuple) else (types,))]
    return " or ".join(dict.fromkeys(names))


def _is(value: Any, types: Types) -> bool:
    # TOML's true is no number, and an integer is a fine float.
    wanted = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in wanted
    return isinstance(value, wanted) or (float in wanted and isinstance(value, int))


def problem(name: str, table: Mapping[str, Any]) -> str | None:
    """What is wrong with the keys of model ``name``'s table, in one line naming the key; None if nothing."""
    kind = table.get("kind")
    if kind not in KIND_OPTIONS:
        return f"unknown kind {kind!r}{nearest(str(kind), KIND_OPTIONS)}; known: {', '.join(sorted(KIND_OPTIONS))}"
    allowed = {**COMMON, **KIND_OPTIONS[kind]}
    for key, value in table.items():
        if key not in allowed:
            return (f"models.toml [{name}]: unknown key {key!r}{nearest(key, allowed)}; "
                    f"kind {kind} takes {', '.join(allowed)}")
        if not _is(value, allowed[key]):
            return f"models.toml [{name}]: {key} must be {_type_name(allowed[key])}, not {value!r}"
    return None


def params_problem(name: str, params: Mapping[str, Any], declared: tuple[Param, ...]) -> str | None:
    """What is wrong with the ``params`` defaults of model ``name``, given the parameters its model declares."""
    by_name = {p.name: p for p in declared}
    for key, value in params.items():
        if key not in by_name:
            return (f"models.toml [{name}]: unknown key 'params.{key}'{nearest(key, by_name)}; "
                    f"this model's parameters are {', '.join(by_name) or 'none'}")
        if not _is(value, by_name[key].type):
            return f"models.toml [{name}]: params.{key} must be {_type_name(by_name[key].type)}, not {value!r}"
    return None
