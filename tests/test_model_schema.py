"""models.toml is checked per kind: a typo or a wrong type stops that model, in one line, and only it."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from mysite.models import registry
from mysite.models import schema as model_schema
from mysite.models.registry import Registry
from mysite.models.schema import MODELS_FILE, read_specs
from mysite.settings import Settings, SettingsError

GOOD_FACE = """
[face]
kind = "cascade"
file = "haarcascade_frontalface_alt.xml"
params = { scale_factor = 1.1, min_neighbors = 5 }
"""


def _load(tmp_path: Path, broken: str) -> Registry:
    toml = tmp_path / "models.toml"
    toml.write_text(GOOD_FACE + broken)
    return Registry(read_specs(toml), Settings())


@pytest.mark.parametrize("broken, says", [
    # A typo in a DNN option: the blob would be scaled wrongly without a word.
    ('[net]\nkind = "ssd"\nfile = "MobileNetSSD_deploy.prototxt"\nsclae = 0.5\n',
     "unknown key 'sclae' (did you mean 'scale'?)"),
    # A typo in the parameters' table: the defaults would be ignored.
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nenv = "MYSITE_EYE_CASCADE"\n'
     'parms = { min_neighbors = 3 }\n',
     "unknown key 'parms' (did you mean 'params'?)"),
    # Wrong types.
    ('[net]\nkind = "ssd"\nfile = "MobileNetSSD_deploy.prototxt"\nsize = "300"\n', "size must be a list, not '300'"),
    ('[net]\nkind = "ssd"\nfile = "MobileNetSSD_deploy.prototxt"\nscale = "0.5"\n',
     "scale must be a number, not '0.5'"),
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nrequired = "yes"\n',
     "required must be true or false, not 'yes'"),
    ('[bf]\nkind = "blazeface"\nfile = "face_detection_short_range.tflite"\nsize = 128.5\n',
     "size must be an integer, not 128.5"),
    # A key another kind takes is still unknown to this one.
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nscale = 0.5\n', "unknown key 'scale'"),
    # The parameters' own keys and types, against what the model declares.
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nparams = { min_neighbours = 3 }\n',
     "unknown key 'params.min_neighbours' (did you mean 'min_neighbors'?)"),
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nparams = { min_neighbors = "3" }\n',
     "params.min_neighbors must be an integer, not '3'"),
    ('[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\nparams = { min_neighbors = true }\n',
     "params.min_neighbors must be an integer, not True"),
    ('[edges]\nkind = "canny"\nparams = { low = 10, hihg = 20 }\n', "unknown key 'params.hihg' (did you mean 'high'?)"),
    ('[edges]\nkind = "cany"\n', "unknown kind 'cany' (did you mean 'canny'?)"),
])
def test_a_bad_key_stops_that_model_only_with_one_line_naming_it(tmp_path, caplog, broken, says) -> None:
    with caplog.at_level(logging.WARNING, logger="mysite.models.registry"):
        reg = _load(tmp_path, broken)
    name = next(n for n in reg.entries if n != "face")
    entry = reg.entries[name]
    assert not entry.loaded and says in (entry.error or ""), entry.error
    assert reg.entries["face"].loaded  # the others still load
    logged = [r.getMessage() for r in caplog.records if says in r.getMessage()]
    assert len(logged) == 1 and "\n" not in logged[0] and f"model {name!r}" in logged[0], logged
    assert "set MYSITE_" not in logged[0]  # the fix is in models.toml, not a setting


def test_a_good_table_of_every_kind_loads(tmp_path) -> None:
    reg = _load(tmp_path, '[eyes]\nkind = "cascade"\nfile = "haarcascade_eye.xml"\n'
                          'params = { min_neighbors = 3, scale_factor = 2 }\n'  # an integer is a fine number
                          '[edges]\nkind = "canny"\nparams = { low = 10, high = 20 }\n')
    assert all(e.loaded for e in reg.entries.values()), {n: e.error for n, e in reg.entries.items()}
    params = {p.name: p.default for p in reg.entries["eyes"].model.params}
    assert params["scale_factor"] == 2.0 and params["min_neighbors"] == 3


def test_the_shipped_models_toml_follows_the_schema() -> None:
    tables = tomllib.loads(MODELS_FILE.read_text())
    assert tables and all(model_schema.problem(name, t) is None for name, t in tables.items())


def test_every_kind_declares_its_keys() -> None:
    assert set(model_schema.KIND_OPTIONS) == set(registry.KINDS)


def test_face_detector_is_checked_at_start_naming_the_values_and_the_nearest(make_app) -> None:
    with pytest.raises(SettingsError) as info:
        make_app({"MYSITE_FACE_DETECTOR": "yunett"})
    message = str(info.value)
    assert "MYSITE_FACE_DETECTOR" in message and "haar, yunet, dnn, dnn-full" in message
    assert "did you mean 'yunet'?" in message and "\n" not in message
    with pytest.raises(SettingsError, match="not 'hologram'$"):  # nothing near: no guess
        make_app({"MYSITE_FACE_DETECTOR": "hologram"})
