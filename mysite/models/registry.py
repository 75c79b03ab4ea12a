"""Declared models (``models.toml``) + settings -> loaded models and their status.

Loading happens once per process, in ``create_app()``. A model that is missing
or broken never stops the site: it is recorded as not loaded, with the reason
and the setting that fixes it, and its endpoints answer 503.
"""

from __future__ import annotations

import logging
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from mysite.errors import Unavailable
from mysite.models import digests
from mysite.models import schema as model_schema
from mysite.models.kinds import DATA_DIR, KINDS, Model
from mysite.models.schema import ModelSpec
from mysite.params import with_defaults
from mysite.publicpaths import PathNamer
from mysite.settings import PROJECT_DIR, Settings
from mysite.vision.shapes import UnreadableModel

log = logging.getLogger(__name__)

OPENCV_DATA_DIR = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]  # cv2.data has no stubs


def resolve(spec: ModelSpec, settings: Settings) -> Path | None:
    """Where the model's file is: the first candidate that exists, else the first candidate."""
    candidates: list[Path] = []
    override = settings.path(spec.env) if spec.env else None
    if override is not None:
        if override.is_absolute():
            candidates = [override]
        elif settings.model_dir is not None:
            candidates = [settings.model_dir / override, override.resolve()]
        else:
            candidates = [override.resolve()]
    elif spec.file:
        if settings.model_dir is not None:
            candidates.append(settings.model_dir / spec.file)
        candidates += [DATA_DIR / spec.file, OPENCV_DATA_DIR / spec.file]
    if not candidates:
        return None
    return next((p for p in candidates if p.is_file()), candidates[0])


@dataclass
class DeclaredModel:
    """A declared model, its resolved path and whether it loaded."""

    spec: ModelSpec
    path: Path | None
    model: Model | None = None
    error: str | None = None
    schema_error: bool = False  # the error is in the models.toml table itself

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def public_error(self, namer: PathNamer | None) -> str | None:
        """Why the model is not loaded, its paths named by ``namer`` (as they are without one)."""
        return namer.scrub(self.error, [self.path or ""]) if namer and self.error else self.error

    def status(self, namer: PathNamer | None = None) -> dict[str, Any]:
        """JSON-able status for the info route; with a ``namer``, paths as a public answer may show them."""
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "doc": self.spec.doc,
            "path": (namer.name(self.path) if namer else str(self.path)) if self.path else None,
            "setting": self.spec.env,
            "required": self.spec.required,
            "loaded": self.loaded,
            "error": self.public_error(namer),
            "params": [p.as_json() for p in self.model.params] if self.model else [],
        }


class Registry:
    """The process's models, loaded once."""

    def __init__(self, specs: Mapping[str, ModelSpec], settings: Settings) -> None:
        self.entries: dict[str, DeclaredModel] = {}
        # How public answers (GET /, 503 bodies) name paths; None (MYSITE_DEBUG=1): absolute, as the logs do.
        self.namer: PathNamer | None = None if settings.debug else public_namer(settings)
        for name, spec in specs.items():
            self.entries[name] = _load(spec, settings)

    def get(self, name: str) -> Model:
        """The loaded model, or a 503 that says which setting to fix."""
        entry = self.entries[name]
        if entry.model is None:
            raise Unavailable(unavailable_message(entry, self.namer))
        return entry.model

    @property
    def healthy(self) -> bool:
        return all(e.loaded for e in self.entries.values() if e.spec.required)

    def statuses(self) -> list[dict[str, Any]]:
        """Every model's status, as a public answer shows it."""
        return [e.status(self.namer) for e in self.entries.values()]


def public_namer(settings: Settings) -> PathNamer:
    """Names relative to the folders a model file is looked for in (and the folders around them)."""
    model_dir = settings.model_dir.resolve() if settings.model_dir is not None else None
    return PathNamer.of([
        (model_dir, ""), (DATA_DIR, "mysite/models/data"), (OPENCV_DATA_DIR, "opencv-data"),
        (Path(sysconfig.get_paths()["purelib"]), "site-packages"), (PROJECT_DIR, "."),
        (Path(sys.prefix), "python"), (Path.home(), "~"),
    ])


def unavailable_message(entry: DeclaredModel, namer: PathNamer | None = None) -> str:
    """Why a model is not loaded and what to set, in one sentence (paths named by ``namer`` when given)."""
    spec = entry.spec
    msg = f"model {spec.name!r} is not loaded: {entry.public_error(namer)}"
    if entry.schema_error:  # the fix is in models.toml, not in a file or a setting
        return msg
    if spec.env:
        msg += f"; set {spec.env} to the path of {spec.file or 'its file'}"
        if spec.file:
            msg += " (or put it in MYSITE_MODEL_DIR)"
    if spec.options.get("sources"):
        msg += f"; or download it: python -m mysite.models fetch {spec.name}"
    return msg


def _setting_defaults(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    """Parameter defaults set by environment (``MYSITE_MIN_FACE``), for the models whose models.toml
    entry sets that default (the face models: an eye cascade added without ``min_face`` keeps none)."""
    return {k: v for k, v in {"min_face": settings.min_face}.items() if v is not None and k in spec.params}


def _load(spec: ModelSpec, settings: Settings) -> DeclaredModel:
    path = resolve(spec, settings)
    entry = DeclaredModel(spec, path)
    factory = KINDS.get(spec.kind)
    # A typo or a wrong type in the table stops this model before anything reads the wrong value.
    problem = model_schema.problem(spec.name, spec.table())
    if problem or factory is None:
        entry.error = problem or f"unknown kind {spec.kind!r} (known: {', '.join(sorted(KINDS))})"
        entry.schema_error = True
    elif path is not None and not path.is_file():
        entry.error = f"file {path} not found"
    else:
        try:
            model = factory(spec, path)
            entry.error = model_schema.params_problem(spec.name, spec.params, model.params)
            entry.schema_error = entry.error is not None
            if not entry.error:
                model.params = with_defaults(model.params, {**spec.params, **_setting_defaults(spec, settings)})
                entry.model = model
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported, never fatal
            entry.error = f"{path or spec.kind} could not be loaded: {exc}"
            wrong = digests.mismatch(path, spec) if path is not None and path.is_file() else None
            if wrong and isinstance(exc, (cv2.error, UnreadableModel)):
                # OpenCV could not parse a file that is not the declared one (a Git LFS pointer, a cut
                # download): that is the news, not the parser's C++ text.
                entry.error = wrong
            elif wrong:
                entry.error += f"; {wrong}"
    if entry.error:
        # The message names the model and the fix; an optional model that is absent only warns.
        log.log(logging.ERROR if spec.required else logging.WARNING, "%s", unavailable_message(entry))
    else:
        log.info("model %s loaded from %s", spec.name, path or "(built in)")
    return entry
