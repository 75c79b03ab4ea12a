"""One frozen settings object, read from ``MYSITE_*`` environment variables.

Precedence: ``create_app(overrides)`` > the process environment > a ``.env``
file beside ``wsgi.py`` (PythonAnywhere's suggested place for secrets).
An invalid value stops start-up with one line naming the variable.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mysite.params import parse_bool

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFIX = "MYSITE_"
MB = 1024 * 1024
# Read elsewhere (gunicorn_conf.py, the client), not by the app: not typos, not app settings.
OTHER_VARIABLES = frozenset({"MYSITE_ENV_FILE", "MYSITE_THREADS", "MYSITE_TIMEOUT", "MYSITE_GRACEFUL_TIMEOUT",
                             "MYSITE_SERVER", "MYSITE_API_KEY"})


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def nearest(word: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the valid word closest to a mistyped one, else ``""``."""
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one running site."""

    model_dir: Path | None = None
    max_upload_mb: float = 10.0
    max_pixels: int = 40_000_000
    # Scans a progressive JPEG may have (vision/header_scan.py): each is a pass over the whole image;
    # an eighth of it bounds the passes over its coefficients the scans make together.
    max_scans: int = 256
    # What one request may cost (vision/budget.py): peak memory over the worker's own, and pixels of work.
    request_memory_mb: float = 150.0
    request_work: int = 25_000_000
    url_fetch: bool = True
    url_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    url_timeout: float = 10.0
    # The whole of one ?url= fetch (resolving, connecting, redirects, every byte): a dripping peer holds a worker no longer.
    url_deadline: float = 20.0
    # Seconds a request body may take to arrive once its first byte is read (then a JSON 408).
    upload_deadline: float = 20.0
    # ... and a second more for every this many kilobytes that arrive: a slow but steady upload gets through.
    upload_min_rate_kb: float = 32.0
    # What the bodies still arriving in one web worker may hold together, in temporary files (upload_deadline.py).
    upload_spool_mb: float = 256.0
    # What the request bodies in flight in one web worker may cost together (mysite/server/memory.py).
    upload_memory_mb: float = 128.0
    # Seconds a request's line and headers may take to arrive, under gunicorn (mysite/server/worker.py).
    header_deadline: float = 10.0
    # Threads of a web worker one client address may hold at once (server/client_share.py); 0: no limit.
    client_threads: int = 16
    # Seconds an answer may wait for the client to read any of it (mysite/server/send_deadline.py).
    send_timeout: float = 30.0
    # Without the process pool (MYSITE_CV_PROCESSES=0, uWSGI, the test client): requests that may wait
    # for a web worker's detection slot; more are told 503 + Retry-After at once.
    queue: int = 6
    # The process pool (mysite/server/pool.py): processes that run the CV work, -1: one per CPU.
    cv_processes: int = -1
    # Seconds a request may wait in the pool's queue (then 503 busy), and that its CV work may take (then
    # its process is killed and replaced: 503 timeout).
    queue_deadline: float = 10.0
    work_deadline: float = 10.0
    # Memory a CV process may take beyond what it starts with (an rlimit: past it, the request fails with
    # a 413 and the process is replaced).
    cv_memory_mb: float = 192.0
    secret_key: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    log_level: str = "INFO"
    cv_threads: int = -1
    face_detector: str = "haar"  # which model /detect runs when the request names none (web/endpoints.py)
    # Default smallest face (fraction of the long side) for the models that plan by it; None: models.toml's.
    min_face: float | None = None
    # Absolute model paths and OpenCV's folders in public answers (GET /, 503 bodies); off: names only.
    debug: bool = False
    # Keys a client must send (X-API-Key header or form field api_key) to the image endpoints; () = open.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # Origins a browser may call the API from (CORS); ("*",) = any; () = no Access-Control-* headers.
    cors_origins: tuple[str, ...] = ()
    # Where the instance keeps what it writes (the default face database); None: instance/ in the project.
    data_dir: Path | None = None
    # The face database (a SQLAlchemy URL); "": a SQLite file in data_dir. PostgreSQL shares it between instances.
    faces_db: str = field(default="", repr=False)
    # Faces the face database may hold: each costs every process memory and every search time.
    faces_max: int = 10_000
    # Keys that may also register and delete faces; () = any API key may (or anyone, without API keys).
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    # GET /metrics and the counting behind it: on, off, key (behind MYSITE_API_KEYS); auto: key when keys are set, else on.
    metrics: str = "auto"
    # Every other MYSITE_* variable, e.g. MYSITE_FACE_CASCADE: models.toml says which model reads which.
    extra: Mapping[str, str] = field(default_factory=dict)

    # Derived once from the sizes above (``__post_init__``): what the request path reads, in bytes.
    max_upload_bytes: int = field(init=False, repr=False, compare=False)
    request_memory_bytes: int = field(init=False, repr=False, compare=False)
    upload_memory_bytes: int = field(init=False, repr=False, compare=False)
    upload_spool_bytes: int = field(init=False, repr=False, compare=False)
    # The largest answer body (a picture, or its base64): three upload limits, a 12 MP photo as PNG.
    max_answer_bytes: int = field(init=False, repr=False, compare=False)
    # The largest request body: the image as base64 (4/3 of it) plus room for the form around it;
    # Flask's MAX_CONTENT_LENGTH and nginx's client_max_body_size (mysite/server/proxy_conf.py) both use it.
    max_body_bytes: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        upload = int(self.max_upload_mb * MB)
        derived = {"max_upload_bytes": upload, "request_memory_bytes": int(self.request_memory_mb * MB),
                   "upload_memory_bytes": int(self.upload_memory_mb * MB),
                   "upload_spool_bytes": int(self.upload_spool_mb * MB),
                   "max_answer_bytes": upload * 3, "max_body_bytes": upload * 4 // 3 + 64 * 1024}
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def data_folder(self) -> Path:
        """The instance's data folder: ``MYSITE_DATA_DIR``, else ``instance/`` in the project."""
        return self.data_dir if self.data_dir is not None else PROJECT_DIR / "instance"

    @property
    def metrics_access(self) -> str:
        """Who may read ``/metrics``: ``on`` (anyone), ``key`` (an API key) or ``off`` (no route, no counting)."""
        if self.metrics == "auto":
            return "key" if self.api_keys else "on"
        return self.metrics

    def path(self, name: str) -> Path | None:
        """An expanded path from an extra ``MYSITE_*`` variable, or None when unset."""
        raw = self.extra.get(name, "").strip()
        return expand_path(raw) if raw else None


def _positive_float(v: str) -> float:
    x = float(v)
    if not x > 0 or x == float("inf"):
        raise ValueError
    return x


def _positive_int(v: str) -> int:
    x = int(v)
    if x <= 0:
        raise ValueError
    return x


def _threads(v: str) -> int:
    x = int(v)
    if x < -1:
        raise ValueError
    return x


def _fraction(v: str) -> float:
    x = float(v)
    if not 0.0 <= x <= 1.0:
        raise ValueError
    return x


def _whole(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError
    return n


def _networks(v: str) -> tuple:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in v.split(",") if part.strip())


def _list(v: str) -> tuple[str, ...]:
    """Comma-separated values, blanks dropped."""
    return tuple(part.strip() for part in v.split(",") if part.strip())


def _api_keys(v: str) -> tuple[str, ...]:
    keys = _list(v)
    # A key is sent in a header and a form field: printable ASCII, no commas (they separate keys).
    if any(not k.isascii() or not k.isprintable() or " " in k for k in keys):
        raise ValueError
    return keys


def _origins(v: str) -> tuple[str, ...]:
    origins = tuple(o.rstrip("/") for o in _list(v))
    # An origin is scheme://host[:port], exactly as a browser sends it in the Origin header.
    if any(o != "*" and not re.fullmatch(r"https?://[^/\s?#@]+", o) for o in origins):
        raise ValueError
    return origins


def _database_url(v: str) -> str:
    from mysite.faces.store import check_url  # SQLAlchemy is imported only by a site that sets the URL
    return check_url(v.strip()) if v.strip() else ""


def _metrics(v: str) -> str:
    s = v.strip().lower()
    if s in ("key", "auto"):
        return s
    return "on" if parse_bool(s) else "off"


def _log_level(v: str) -> str:
    s = v.strip().upper()
    if s not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError
    return s


def expand_path(raw: str) -> Path:
    """``~`` and ``$VARS`` expanded, as PythonAnywhere paths like ``~/mysite/x.xml`` need."""
    return Path(os.path.expandvars(os.path.expanduser(raw)))


# variable suffix -> (field, parser, what a valid value is); docs/settings.md lists the same names.
FIELDS: dict[str, tuple[str, Any, str]] = {
    "MODEL_DIR": ("model_dir", lambda v: expand_path(v) if v.strip() else None, "a folder path"),
    "MAX_UPLOAD_MB": ("max_upload_mb", _positive_float, "a positive number of megabytes"),
    "MAX_PIXELS": ("max_pixels", _positive_int, "a positive whole number of pixels"),
    "MAX_SCANS": ("max_scans", _positive_int, "a positive whole number of scans"),
    "REQUEST_MEMORY_MB": ("request_memory_mb", _positive_float, "a positive number of megabytes"),
    "REQUEST_WORK": ("request_work", _positive_int, "a positive whole number of pixels"),
    "URL_FETCH": ("url_fetch", parse_bool, "on or off"),
    "URL_ALLOW_NETWORKS": ("url_allow_networks", _networks, "comma-separated networks like 127.0.0.0/8"),
    "URL_TIMEOUT": ("url_timeout", _positive_float, "a positive number of seconds"),
    "URL_DEADLINE": ("url_deadline", _positive_float, "a positive number of seconds"),
    "UPLOAD_DEADLINE": ("upload_deadline", _positive_float, "a positive number of seconds"),
    "UPLOAD_MIN_RATE_KB": ("upload_min_rate_kb", _positive_float, "a positive number of kilobytes a second"),
    "UPLOAD_SPOOL_MB": ("upload_spool_mb", _positive_float, "a positive number of megabytes"),
    "UPLOAD_MEMORY_MB": ("upload_memory_mb", _positive_float, "a positive number of megabytes"),
    "HEADER_DEADLINE": ("header_deadline", _positive_float, "a positive number of seconds"),
    "CLIENT_THREADS": ("client_threads", _whole, "a whole number >= 0 (0: no limit)"),
    "SEND_TIMEOUT": ("send_timeout", _positive_float, "a positive number of seconds"),
    "QUEUE": ("queue", _whole, "a whole number >= 0"),
    "CV_PROCESSES": ("cv_processes", _threads, "a whole number >= -1 (-1: one per CPU, 0: no pool)"),
    "QUEUE_DEADLINE": ("queue_deadline", _positive_float, "a positive number of seconds"),
    "WORK_DEADLINE": ("work_deadline", _positive_float, "a positive number of seconds"),
    "CV_MEMORY_MB": ("cv_memory_mb", _positive_float, "a positive number of megabytes"),
    "SECRET_KEY": ("secret_key", str, "any text"),
    "LOG_LEVEL": ("log_level", _log_level, "DEBUG, INFO, WARNING or ERROR"),
    "CV_THREADS": ("cv_threads", _threads, "a whole number >= -1 (-1: OpenCV's default)"),
    "FACE_DETECTOR": ("face_detector", lambda v: v.strip().lower(), "haar, yunet, dnn or dnn-full"),
    "MIN_FACE": ("min_face", _fraction, "a fraction of the long side between 0 and 1, like 0.025"),
    "DEBUG": ("debug", parse_bool, "on or off"),
    "API_KEYS": ("api_keys", _api_keys, "comma-separated keys of printable ASCII without spaces"),
    "CORS_ORIGINS": ("cors_origins", _origins, "* or comma-separated origins like https://example.com"),
    "DATA_DIR": ("data_dir", lambda v: expand_path(v) if v.strip() else None, "a folder path"),
    "FACES_DB": ("faces_db", _database_url,
                 "a database URL like sqlite:////path/faces.sqlite3 or postgresql+psycopg://user:pw@host/db"),
    "FACES_MAX": ("faces_max", _positive_int, "a positive whole number of faces"),
    "ADMIN_KEYS": ("admin_keys", _api_keys, "comma-separated keys of printable ASCII without spaces"),
    "METRICS": ("metrics", _metrics, "on, off, key or auto"),
}
# Settings whose values never appear in a message or a log line.
SECRET = frozenset({"SECRET_KEY", "API_KEYS", "ADMIN_KEYS", "FACES_DB"})


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a ``.env`` file (comments, ``export`` and quotes allowed)."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``.env``, the environment and ``overrides`` (keys are variable names)."""
    environ = os.environ if environ is None else environ
    env_file = expand_path(environ.get("MYSITE_ENV_FILE", str(PROJECT_DIR / ".env")))
    merged: dict[str, str] = {**read_env_file(env_file), **environ}
    merged.update({k: _as_text(v) for k, v in (overrides or {}).items()})
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, raw in merged.items():
        if not key.startswith(PREFIX) or key in OTHER_VARIABLES:
            continue
        suffix = key[len(PREFIX):]
        if suffix not in FIELDS:
            extra[key] = raw
            continue
        name, parse, expected = FIELDS[suffix]
        try:
            values[name] = parse(raw)
        except ValueError:
            shown = "(not shown: it is secret)" if suffix in SECRET else repr(raw)
            raise SettingsError(f"{key} must be {expected}, not {shown}") from None
    settings = Settings(**values, extra=extra)
    if settings.metrics == "key" and not settings.api_keys:
        raise SettingsError("MYSITE_METRICS=key needs keys in MYSITE_API_KEYS (or set MYSITE_METRICS to on or off)")
    return settings


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
