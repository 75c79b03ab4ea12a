"""Which files a batch sends: files, folders walked for images, globs and ``-`` (paths on stdin), streamed.

Paths come out one at a time, in a stable order (sorted within each folder), so a
walk of 10,000 photos never holds them all, and the same command walks the same
files in the same order when it is run again (resuming).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from typing import TextIO

# What a folder walk picks up: the still-image formats the server decodes (OpenCV or Pillow).
IMAGE_SUFFIXES = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp",
    ".jp2", ".pbm", ".pgm", ".ppm", ".pnm", ".sr", ".ras",
})
GLOB_CHARS = frozenset("*?[")


def is_image_name(name: str) -> bool:
    """A file a folder walk sends: an image suffix, and not hidden (``.DS_Store``, macOS ``._IMG.jpg``)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def is_glob(arg: str) -> bool:
    return any(c in GLOB_CHARS for c in arg)


def expand(args: Iterable[str], stdin: TextIO | None = None) -> Iterator[str]:
    """Every path the arguments name, in order: a file as given (any type: the server judges it),
    a folder's image files recursively, a glob's matches (folders among them walked), ``-``: one
    path per line of ``stdin``, each expanded the same way. A name that matches nothing is
    yielded as it is, so the batch records it as missing rather than dropping it silently."""
    for arg in args:
        if arg == "-":
            if stdin is not None:
                yield from expand((line.rstrip("\r\n") for line in stdin if line.strip()), None)
            continue
        if os.path.isdir(arg):
            yield from walk(arg)
        elif os.path.exists(arg) or not is_glob(arg):
            yield arg
        else:
            # sorted() holds one pattern's matches (names only): the price of a stable order.
            matches = sorted(glob.iglob(arg, recursive=True))
            if not matches:
                yield arg  # recorded as unreadable: a typo in a pattern is not silently an empty batch
            for match in matches:
                if os.path.isdir(match):
                    yield from walk(match)
                elif os.path.isfile(match):
                    yield match


def walk(folder: str) -> Iterator[str]:
    """Image files under ``folder``, depth first, sorted by name within each folder; hidden folders skipped."""
    for root, dirs, files in os.walk(folder, onerror=None, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_image_name(name):
                yield os.path.join(root, name)


def count(args: Iterable[str]) -> int | None:
    """How many paths ``expand(args)`` will give, walking again without keeping them; None with ``-``
    (stdin can be read once only)."""
    args = list(args)
    if "-" in args:
        return None
    return sum(1 for _ in expand(args))
