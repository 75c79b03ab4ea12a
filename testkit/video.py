"""A still photo as a video file Chromium's fake camera plays (``--use-file-for-fake-video-capture``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_y4m(photo: Path, out: Path, size: tuple[int, int] = (640, 480), frames: int = 2) -> Path:
    """A Y4M video of ``photo`` at ``size`` (4:2:0), shifted 2 px per frame so that frames differ."""
    image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(photo)
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            frame = np.roll(image, 2 * i, axis=1)
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return out
