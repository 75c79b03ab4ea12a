"""Form bodies read under limits, and a 413 that says which limit was passed.

werkzeug raises the same bare ``RequestEntityTooLarge`` for too many multipart parts, a
text field over its memory limit and a body over the length limit. Here the multipart
stream is read through a counter of part boundaries, so a refusal names the limit passed:
parts (count), a field (bytes of one field) or fields (count, urlencoded forms).
"""

from __future__ import annotations

from typing import IO, Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from mysite.errors import TooLarge


class _BoundaryCounter:
    """A read-only stream that counts how often ``delimiter`` went through it (across reads too), and
    splits a read at its first delimiter.

    werkzeug's multipart decoder, once its buffer holds a delimiter, searches the buffer for the
    boundary with a regex from the start: the closing boundary late in a 256 KB read cost a scan of
    the whole read. Split there, the read's second piece starts at the boundary and is matched at
    once. One split per read, not one per delimiter: a file of delimiters would make a piece each.
    """

    def __init__(self, stream: IO[bytes], delimiter: bytes) -> None:
        self._stream, self._delimiter = stream, delimiter
        self._tail = b""
        self._held = b""
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if self._held:
            data, self._held = self._held, b""
            return data
        data = self._stream.read(size)
        if self._count(data):
            cut = data.find(self._delimiter, 1)
            if cut > 0:
                data, self._held = data[:cut], data[cut:]
        return data

    def _count(self, data: bytes) -> int:
        """Count the delimiters that ``data`` completes; how many lie wholly inside it."""
        if not data:
            return 0
        # The delimiters in this read, and one split between the last read and this one (not the
        # whole read joined to the tail: that would copy it).
        keep = len(self._delimiter) - 1
        inside = data.count(self._delimiter)
        self.count += inside + (self._tail + data[:keep]).count(self._delimiter)
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[len(data) - keep:]
        return inside

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class LimitedFormParser(FormDataParser):
    """werkzeug's form parser, whose 413s name the limit passed."""

    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        boundary = options.get("boundary", "").encode("ascii", "replace")
        counter = _BoundaryCounter(stream, b"--" + boundary) if boundary else stream
        try:
            return super()._parse_multipart(counter, mimetype, content_length, options)  # type: ignore[arg-type]
        except RequestEntityTooLarge:
            parts = counter.count - 1 if isinstance(counter, _BoundaryCounter) else 0
            if self.max_form_parts is not None and parts > self.max_form_parts:
                raise TooLarge(f"the form has more than {self.max_form_parts} parts ({parts} or more sent); "
                               f"the limit is {self.max_form_parts} parts") from None
            raise TooLarge(f"a text field of the form is larger than the limit of {self.max_form_memory_size} "
                           "bytes for one field; send the image as a file part") from None

    def _parse_urlencoded(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                          options: dict[str, str]) -> Any:
        # werkzeug counts no fields here; a million empty ones would each become an entry.
        body = stream.read()
        fields = body.count(b"&") + 1 if body else 0
        if self.max_form_parts is not None and fields > self.max_form_parts:
            raise TooLarge(f"the form has {fields} fields; the limit is {self.max_form_parts} fields")
        items = parse_qsl(body.decode(), keep_blank_values=True, errors="werkzeug.url_quote")
        return stream, self.cls(items), self.cls()


def body_too_large(content_length: int | None, limit: int | None, upload_mb: float) -> str:
    """The message for werkzeug's own 413: the body over the length limit (the only one it raises bare)."""
    sent = f"is {content_length} bytes" if content_length else "is longer"
    return (f"the request body {sent}; the limit is {limit} bytes (the {upload_mb:g} MB upload limit "
            "as base64, plus room for the form around it)")
