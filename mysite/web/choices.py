"""A request parameter that picks which model an endpoint runs, declared as data.

``/detect?detector=dnn`` runs BlazeFace instead of the Haar cascade: the
endpoint table maps each value of ``detector`` to a models.toml name, and a
setting names the value used when the request gives none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mysite.errors import BadRequest, Reason
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
