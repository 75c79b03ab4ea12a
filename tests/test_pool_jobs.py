"""How a job crosses into a CV process: a memory file with the pickle and, out of band, the image's bytes."""

from __future__ import annotations

import os
import pickle

from mysite.pipeline import AnswerFormat, Job
from mysite.server import pool
from mysite.vision.budget import Budget


def _job(images: tuple[bytes, ...]) -> Job:
    return Job("face", "boxes", AnswerFormat("json", "jpeg"), {"scale": 1.1}, frozenset({"scale"}), images, False,
               "face", 40_000_000, Budget(1 << 28, 1 << 30))


def test_a_job_and_its_images_come_back_as_they_were_sent() -> None:
    photo, small = os.urandom(3_000_000), b"\xff\xd8 tiny"
    job = _job((photo, small))
    fd = pool.write_job(len, (job, photo, b"x"))
    try:
        fn, (back, raw, tiny) = pool.read_job(fd)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    assert fn is len and back == job and raw == photo and tiny == b"x"
    assert all(type(d) is bytes for d in back.images) and type(raw) is bytes
    # Each large byte string is in the file once: out of band, not also inside the pickle.
    assert 2 * len(photo) <= size < 2 * len(photo) + 4096


def test_a_job_pickles_as_before_without_protocol_5() -> None:
    job = _job((os.urandom(100_000),))
    for protocol in (2, 4, 5):
        assert pickle.loads(pickle.dumps(job, protocol=protocol)) == job
