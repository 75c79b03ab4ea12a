"""The multipart stream's part counter (``web/inputs._BoundaryCounter``): every byte read once, in order,
each delimiter counted once, and each part's headers measured against ``MAX_PART_HEAD`` and all of them
against ``MAX_PART_HEADS``, however the reads fall."""

from __future__ import annotations

import io
import random

import pytest

from mysite.errors import TooLarge
from mysite.web.inputs import MAX_PART_HEAD, MAX_PART_HEADS, _BoundaryCounter

BOUNDARY = b"xyzzy"
DELIMITER = b"--" + BOUNDARY


def _body(parts: int, seed: int) -> bytes:
    rng = random.Random(seed)
    pieces = [DELIMITER + b"\r\n" + rng.randbytes(rng.randrange(0, 40)) + b"\r\n" for _ in range(parts)]
    return b"".join(pieces) + DELIMITER + b"--\r\n"


@pytest.mark.parametrize("size", [1, 3, 7, 8, 64, 4096])
def test_reads_of_any_size_give_the_stream_back_and_count_every_delimiter(size: int) -> None:
    body = _body(25, size)
    counter = _BoundaryCounter(io.BytesIO(body), BOUNDARY)
    out = b"".join(iter(lambda: counter.read(size), b""))
    assert out == body
    assert counter.count == body.count(DELIMITER) == 26


def test_a_read_of_everything_after_a_split_read_returns_the_held_piece_and_the_rest() -> None:
    body = _body(5, 1)
    counter = _BoundaryCounter(io.BytesIO(body), BOUNDARY)
    first = counter.read(len(DELIMITER) + 30)
    assert len(first) < len(DELIMITER) + 30, "the read held a second delimiter: it is split there"
    assert counter.read(-1) == body[len(first):]
    assert counter.count == 6


def test_other_ways_of_reading_are_refused_not_forwarded_past_the_held_piece() -> None:
    counter = _BoundaryCounter(io.BytesIO(_body(2, 1)), BOUNDARY)
    assert len(counter.read(len(DELIMITER) + 30)) < len(DELIMITER) + 30  # a piece is held
    for name in ("read1", "readall", "readinto", "readinto1", "readline", "readlines"):
        with pytest.raises(AttributeError):
            getattr(counter, name)
    assert counter.readable() and counter.seekable()  # what is not a read is the stream's own


def _form(heads: list[bytes], data: list[bytes], epilogue: bytes = b"") -> bytes:
    parts = [DELIMITER + b"\r\n" + head + b"\r\n\r\n" + d + b"\r\n" for head, d in zip(heads, data, strict=True)]
    return b"".join(parts) + DELIMITER + b"--\r\n" + epilogue


def _head(counted: int) -> bytes:
    """Part headers that count ``counted`` bytes: the line break after the delimiter, the lines, the blank line."""
    start = b'Content-Disposition: form-data; name="image"; filename="'
    return start + b"a" * (counted - 6 - len(start) - 1) + b'"'


def _read_all(body: bytes, size: int) -> bytes:
    counter = _BoundaryCounter(io.BytesIO(body), BOUNDARY)
    return b"".join(iter(lambda: counter.read(size), b""))


# File data a careless tracker would take for the start of a part: delimiters that close no part
# (werkzeug wants blanks and a line break after one), blank lines, a delimiter cut short.
TRICKY = b"\r\n--xyzzyX" * 500 + b"\r\n\r\n" * 50 + b"\r\n--xyzz" + random.Random(5).randbytes(8000)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 11, 64, 4096, 1 << 20])
def test_part_headers_up_to_the_limit_pass_and_past_it_are_refused(size: int) -> None:
    ok = _form([_head(MAX_PART_HEAD), b'Content-Disposition: form-data; name="a"', _head(MAX_PART_HEAD)],
               [TRICKY, b"", TRICKY], epilogue=b"no part: " + b"e" * (MAX_PART_HEAD + 10))
    assert _read_all(ok, size) == ok
    for heads in ([_head(MAX_PART_HEAD + 1), b"X: y"], [b"X: y", _head(MAX_PART_HEAD + 1)]):
        with pytest.raises(TooLarge, match="headers longer than"):
            _read_all(_form(heads, [TRICKY, b"x"]), size)


@pytest.mark.parametrize("size", [1, 3, 11, 4096, 1 << 20])
def test_part_headers_up_to_the_limit_in_all_pass_and_past_it_are_refused(size: int) -> None:
    heads = [_head(MAX_PART_HEAD)] * (MAX_PART_HEADS // MAX_PART_HEAD)
    ok = _form(heads, [TRICKY] * len(heads), epilogue=b"no part: " + b"e" * (MAX_PART_HEAD + 10))
    assert _read_all(ok, size) == ok
    with pytest.raises(TooLarge, match="part headers come to more than"):
        _read_all(_form([*heads, b"X: y"], [TRICKY] * (len(heads) + 1)), size)


def test_a_header_with_no_blank_line_at_all_is_refused_once_past_the_limit() -> None:
    body = DELIMITER + b"\r\nContent-Disposition: form-data; name=image" + b";" * (4 * MAX_PART_HEAD)
    with pytest.raises(TooLarge):
        _read_all(body, 4096)
