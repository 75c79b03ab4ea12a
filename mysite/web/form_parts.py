"""A multipart body's file parts, counted before werkzeug parses it.

A file part is held as sent; a text field may become a str of up to four bytes a character. So a
form is counted by its parts (``web/inputs.body_share``), which means finding them in a body the
client wrote: read forward in pieces with ``bytes.find`` only, split only where werkzeug's parser
splits it however its reads fall, and the file/text choice made by werkzeug's own header reading.
A body that splits any other way has no file parts here: it is all counted as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import MultipartDecoder

# werkzeug reads each part's header parameters a step of Python at a time, and reads them again for the
# part's charset: the bytes of part headers bound that work. A real part has two short lines; a long file
# name, the longest real case, percent-encoded (``filename*=``), takes a few hundred bytes to 2.3 KB.
MAX_PART_HEAD = 4 * 1024  # bytes of one part's headers
MAX_PART_HEADS = 64 * 1024  # bytes of all part headers in one body: 16 photos with long names, and fields
MAX_SCANNED_PARTS = 1000  # werkzeug's max_form_parts: the parser refuses a form with more
# Bytes read per piece: each ``find`` over one holds the GIL, so other threads (/healthz) run between pieces.
_PIECE = 1 << 20


def file_bytes(stream: Any, mimetype: str, params: Mapping[str, str], length: int) -> int:
    """How many bytes of a multipart body, received whole into the seekable ``stream``, are its file parts'
    contents: every ``--boundary`` a delimiter between CRLFs, each part's headers in CRLF lines ending before
    the next. Any other body (a boundary in a part, bare CR or LF line breaks, no closing delimiter, more
    parts than the parser takes) has none. The stream is left at its start."""
    boundary = params.get("boundary", "")
    if mimetype != "multipart/form-data" or not boundary or not boundary.isascii() or not length:
        return 0
    try:
        if not stream.seekable() or stream.tell() != 0:
            return 0  # not the received body's file, or read already
        try:
            return _files_in(_Body(stream, length), b"--" + boundary.encode("ascii"))
        finally:
            stream.seek(0)
    except (AttributeError, OSError, ValueError):
        return 0


def _files_in(body: _Body, marker: bytes) -> int:
    """The bytes of file parts' contents in ``body``, whose delimiters hold ``marker``; 0 unless it splits cleanly."""
    at, files, heads = body.find(marker, 0), 0, MAX_PART_HEADS  # the parser skips what precedes it
    for parts in range(MAX_SCANNED_PARTS + 1):
        after = body.get(at + len(marker), at + len(marker) + 2) if at >= 0 else b""
        if after == b"--":
            return files  # the closing delimiter; the parser skips what follows
        if after != b"\r\n" or parts == MAX_SCANNED_PARTS:
            return 0
        head = at + len(marker) + 2
        lines = body.get(head, head + MAX_PART_HEAD + 4)
        blank = lines.find(b"\r\n\r\n")
        lines, data, at = lines[:blank], head + blank + 4, body.find(marker, head)
        # The data must begin past the blank line (werkzeug reads the short form, a boundary right after the
        # blank line, by where its reads fall), and end with a CRLF before the next delimiter.
        if blank < 0 or at - 2 < data or body.get(at - 2, at) != b"\r\n":
            return 0
        heads -= len(lines)
        if heads < 0:
            return 0  # more part headers than the parser takes
        if b"filename" in lines.lower() and _is_file(lines):  # else a text field
            files += at - 2 - data
    return 0


_HEADERS = MultipartDecoder(b"-")  # for its reading of a part's headers, which needs no boundary


def _is_file(lines: bytes) -> bool:
    """Whether werkzeug's parser takes a part with these header lines for a file: its Content-Disposition has
    a filename (read by werkzeug's own code, so that a text field is never counted as a file)."""
    if not lines.count(b"\r") == lines.count(b"\n") == lines.count(b"\r\n"):
        return False  # a bare CR or LF: werkzeug may end the headers before the blank line found
    try:
        disposition = _HEADERS._parse_headers(lines).get("content-disposition")
    except ValueError:  # not UTF-8: the parser refuses the part
        return False
    return disposition is not None and parse_options_header(disposition)[1].get("filename") is not None


class _Body:
    """A body read forward from its file a piece at a time (``_PIECE``), keeping only the piece in hand."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream, self._length = stream, length
        self._data, self._at = b"", 0  # the body's bytes from position self._at

    def find(self, sub: bytes, start: int) -> int:
        """Where ``sub`` next begins at or after ``start``; -1: nowhere."""
        while True:
            self._hold(start, start + len(sub))
            found = self._data.find(sub, start - self._at)
            end = self._at + len(self._data)
            if found >= 0 or end >= self._length:
                return self._at + found if found >= 0 else -1
            start = end - len(sub) + 1

    def get(self, start: int, end: int) -> bytes:
        """The body's bytes from ``start`` to ``end`` (fewer past its end); positions only move forward."""
        self._hold(start, end)
        return self._data[start - self._at:end - self._at]

    def _hold(self, start: int, end: int) -> None:
        """Hold the bytes from ``start`` to ``end``, and the two before ``start`` (a delimiter's line break)."""
        start, end = max(start - 2, 0), min(end, self._length)
        have = self._at + len(self._data)
        if self._at <= start and end <= have:
            return
        kept = self._data[start - self._at:] if self._at <= start < have else b""
        self._stream.seek(start + len(kept))
        self._data = kept + self._stream.read(max(end - start - len(kept), _PIECE))
        self._at = start
        if start + len(self._data) < end:
            raise ValueError("the body's file is shorter than its length")
