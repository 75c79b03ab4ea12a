"""What models.toml says each model file must be: its sources and their digests, and the check of a file against them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mysite.models.schema import ModelSpec

DIGESTS = ("sha256", "sha1", "git_blob")
CHUNK = 256 * 1024
# The first line of a Git LFS pointer: what a clone without git-lfs holds in place of a large file.
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


@dataclass(frozen=True)
class Source:
    """Where one file of a model comes from, and the digest it must have."""

    file: str
    url: str
    algo: str | None = None  # "sha256", "sha1" or "git_blob"; None when the publisher gives no digest
    digest: str | None = None
    member: str | None = None  # a file inside a zip or tar archive at ``url``
    archive_sha256: str | None = None  # the archive's own digest, checked before a member is taken out

    @classmethod
    def from_table(cls, model: str, table: Mapping[str, Any]) -> Source:
        if not isinstance(table, Mapping) or not table.get("file") or not table.get("url"):
            raise ValueError(f"model {model!r}: every source needs a file and a url, not {table!r}")
        url = str(table["url"])
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"model {model!r}: source url must be http(s), not {url!r}")
        algos = [a for a in DIGESTS if a in table]
        if len(algos) > 1:
            raise ValueError(f"model {model!r}: source {table['file']} names more than one digest")
        algo = algos[0] if algos else None
        archive = table.get("archive_sha256")
        return cls(str(table["file"]), url, algo, str(table[algo]).lower() if algo else None, table.get("member"),
                   str(archive).lower() if archive else None)


def sources(spec: ModelSpec) -> list[Source]:
    """The declared sources of a model (``sources = [...]``, or ``source = {...}`` for its main file)."""
    tables = list(spec.options.get("sources") or [])
    if "source" in spec.options:
        tables.append({"file": spec.file, **spec.options["source"]})
    return [Source.from_table(spec.name, t) for t in tables]


def file_digest(path: Path, algo: str) -> str:
    """The file's digest; ``git_blob`` is git's object id: sha1 of ``blob <size>\\0`` and the bytes."""
    h = hashlib.new("sha1" if algo == "git_blob" else algo)
    if algo == "git_blob":
        h.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check(path: Path, source: Source | list[Source] | None) -> str:
    """``missing``, ``ok`` (a digest verified), ``present`` (no digest to check) or ``digest mismatch``."""
    if not path.is_file():
        return "missing"
    checkable = [s for s in (source if isinstance(source, list) else [source]) if s is not None and s.algo]
    if not checkable:
        return "present"
    return "ok" if any(file_digest(path, str(s.algo)) == s.digest for s in checkable) else "digest mismatch"


def by_file(todo: Iterable[Source]) -> dict[str, list[Source]]:
    """Sources grouped by the file they give, in their declared order (the order they are tried in)."""
    out: dict[str, list[Source]] = {}
    for source in todo:
        out.setdefault(source.file, []).append(source)
    return out


def mismatch(path: Path, spec: ModelSpec) -> str | None:
    """Why the file at ``path`` is not the one ``spec`` declares by digest (None when it is, or nothing is declared)."""
    declared = by_file(sources(spec)).get(path.name)
    if not declared or check(path, declared) != "digest mismatch":
        return None
    algo = next(s.algo for s in declared if s.algo)
    with path.open("rb") as f:
        head = f.read(len(LFS_POINTER))
    what = "a Git LFS pointer, not the file (git lfs pull, or fetch it)" if head == LFS_POINTER else \
        f"{path.stat().st_size} bytes, damaged or another file"
    return f"digest mismatch: {path.name} is {what}; its {algo} is not the one models.toml declares"
