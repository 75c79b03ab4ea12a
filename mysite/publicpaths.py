"""Server paths as a public answer may show them: relative to a known folder, never absolute.

A site on PythonAnywhere lives in ``/home/<user name>/``; a model path or an OpenCV folder in
``GET /`` or a 503 body would tell anyone the account's name and layout. Public answers name a
file relative to the folder it was found in (``MYSITE_MODEL_DIR``, the package's ``data/``,
OpenCV's cascade folder); ``MYSITE_DEBUG=1`` shows the absolute paths again. The logs always
have the absolute paths: they are the operator's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# The rest of a path after a known folder: up to a space, quote or punctuation.
_REST = r"(?:/[^\s'\"`,;:()<>\[\]{}]*)?"
# Anyone's home folder, wherever it appears: the user name is what must not show.
_HOME = re.compile(r"(?<![\w.])/(?:home|Users)/[^/\s'\"]+" + _REST)


@dataclass(frozen=True)
class PathNamer:
    """Names paths relative to known folders, each shown under a short label ("" for the model folder)."""

    roots: tuple[tuple[str, str], ...]  # (absolute folder, label), most specific first

    @classmethod
    def of(cls, folders: Iterable[tuple[Path | None, str]]) -> PathNamer:
        roots = {str(p).rstrip("/"): label for p, label in folders if p is not None and str(p).startswith("/")}
        roots.pop("", None)  # "/" itself (a HOME of /) would hold everything
        # Longest first: a model folder inside the project is named from the model folder.
        return cls(tuple(sorted(roots.items(), key=lambda r: len(r[0]), reverse=True)))

    def name(self, path: Path | str) -> str:
        """``path`` relative to the first known folder holding it (with that folder's label), else its last part."""
        text = str(path)
        if not text.startswith("/"):
            return text  # already relative: as the operator wrote it
        for root, label in self.roots:
            if text == root or text.startswith(root + "/"):
                rest = text[len(root):].lstrip("/")
                return f"{label}/{rest}" if label and rest else (rest or label or ".")
        return PurePosixPath(text).name or "."

    def scrub(self, text: str, paths: Iterable[Path | str] = ()) -> str:
        """``text`` with ``paths``, anything under a known folder and anything in a home folder named by ``name``."""
        for path in sorted({str(p) for p in paths if str(p).startswith("/")}, key=len, reverse=True):
            text = text.replace(path, self.name(path))
        if self.roots:
            known = re.compile("(?:" + "|".join(re.escape(root) for root, _ in self.roots) + ")" + _REST)
            text = known.sub(lambda m: self.name(m.group(0)), text)
        return _HOME.sub(lambda m: self.name(m.group(0)), text)
