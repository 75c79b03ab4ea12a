"""The multipart stream's part counter (``web/inputs._BoundaryCounter``): every byte read once, in order,
each delimiter counted once, however the reads fall."""

from __future__ import annotations

import io
import random

import pytest

from mysite.web.inputs import _BoundaryCounter

DELIMITER = b"--xyzzy"


def _body(parts: int, seed: int) -> bytes:
    rng = random.Random(seed)
    pieces = [DELIMITER + b"\r\n" + rng.randbytes(rng.randrange(0, 40)) + b"\r\n" for _ in range(parts)]
    return b"".join(pieces) + DELIMITER + b"--\r\n"


@pytest.mark.parametrize("size", [1, 3, 7, 8, 64, 4096])
def test_reads_of_any_size_give_the_stream_back_and_count_every_delimiter(size: int) -> None:
    body = _body(25, size)
    counter = _BoundaryCounter(io.BytesIO(body), DELIMITER)
    out = b"".join(iter(lambda: counter.read(size), b""))
    assert out == body
    assert counter.count == body.count(DELIMITER) == 26


def test_a_read_of_everything_after_a_split_read_returns_the_held_piece_and_the_rest() -> None:
    body = _body(5, 1)
    counter = _BoundaryCounter(io.BytesIO(body), DELIMITER)
    first = counter.read(len(DELIMITER) + 30)
    assert len(first) < len(DELIMITER) + 30, "the read held a second delimiter: it is split there"
    assert counter.read(-1) == body[len(first):]
    assert counter.count == 6


def test_other_ways_of_reading_are_refused_not_forwarded_past_the_held_piece() -> None:
    counter = _BoundaryCounter(io.BytesIO(_body(2, 1)), DELIMITER)
    assert len(counter.read(len(DELIMITER) + 30)) < len(DELIMITER) + 30  # a piece is held
    for name in ("read1", "readall", "readinto", "readinto1", "readline", "readlines"):
        with pytest.raises(AttributeError):
            getattr(counter, name)
    assert counter.readable() and counter.seekable()  # what is not a read is the stream's own
