"""Hosts a model fetch could not connect to, remembered in the model folder for a while.

A deploy on an instance with no route out would otherwise wait for every source again on every
deploy. A host that could not be connected to (no route, refused, no name, the connect timeout)
is written to ``.unreachable.json`` beside the models, with when and why; until ``remember``
seconds have passed its sources are skipped with that reason. Answers (an HTTP error, a file
that does not verify) say nothing about reachability and are not remembered.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

FILE = ".unreachable.json"


def host_of(url: str) -> str:
    """``host[:port]`` of a URL: what a route reaches or not."""
    return urlsplit(url).netloc.rpartition("@")[2].lower()


@dataclass
class Reachability:
    """The unreachable hosts of one model folder; ``remember`` = 0 forgets them all."""

    folder: Path
    remember: float
    hosts: dict[str, dict[str, object]] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path, remember: float) -> Reachability:
        try:
            data = json.loads((folder / FILE).read_text(encoding="utf-8"))
            hosts = {str(k): v for k, v in data.items() if isinstance(v, dict)}
        except (OSError, ValueError, AttributeError):
            hosts = {}
        return cls(folder, remember, hosts)

    def skip_reason(self, url: str, now: float | None = None) -> str | None:
        """Why ``url`` is not tried now, or None to try it."""
        entry = self.hosts.get(host_of(url))
        if entry is None or self.remember <= 0:
            return None
        now = time.time() if now is None else now
        try:
            age = now - float(entry["when"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None
        if not 0 <= age < self.remember:
            return None
        return (f"{host_of(url)} could not be reached {_ago(age)} ago ({entry.get('why', 'no connection')}); "
                f"not tried again for {_ago(self.remember - age)} (--retry-unreachable tries now)")

    def failed(self, url: str, why: str) -> None:
        self.hosts[host_of(url)] = {"when": time.time(), "why": why}
        self._save()

    def reached(self, url: str) -> None:
        if self.hosts.pop(host_of(url), None) is not None:
            self._save()

    def _save(self) -> None:
        """Written whole (a temporary file, then renamed): a deploy stopped halfway leaves no torn file."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{FILE}.", dir=self.folder)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.hosts, f, indent=1)
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.folder / FILE)
        except OSError:
            pass  # not remembered: the next fetch tries again, as it would have


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
