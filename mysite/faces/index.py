"""Who is the nearest registered face? Every embedding in one matrix, searched at once.

The matrix is a copy of the store (``store.py``) at one generation. Before a search
it is checked against the store's generation counter, at most every
``check_every`` seconds (0.5 by default), and read again when another request or
another instance changed the store; after this process's own change it is read
at the next search.

Distances are Euclidean between dlib's embeddings. Measured (``bench.face_calibration``,
docs/faces.md): for faces 40 px wide or more, one person's photos lie 0.06-0.54 apart and two
people's 0.69 and more; below 40 px the two overlap (strangers 23-27 px wide came 0.573 from
someone, one person's own faces 0.577), so a face narrower than ``MIN_NAMED_WIDTH`` is never
named. DeepStack clients speak of a *confidence* in [0, 1] with a threshold (``min_confidence``:
0.45 in deepstack-python and codeproject-ai-api, 0.67 in DeepStack's server, 0.7 in
deepstack-sdk), so a distance becomes one by a logistic curve centred in the measured gap, steep
enough that the gap's edges get 0.9 and 0.07: min_confidence 0.45 names faces up to 0.616,
0.67 up to 0.589, 0.7 up to 0.585, 0.9 up to 0.544.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mysite.faces.store import DIMENSIONS, FaceStore, Snapshot

CENTRE = 0.61  # the distance whose confidence is 0.5
STEEPNESS = 0.03  # distance over which the odds of a match move by a factor of e
MIN_NAMED_WIDTH = 40  # pixels: narrower faces give embeddings that cannot tell people apart


def confidence(distance: float) -> float:
    """The match confidence of an embedding distance (see the module's docstring)."""
    z = (distance - CENTRE) / STEEPNESS
    return 0.0 if z > 700 else 1.0 / (1.0 + math.exp(z))


@dataclass(frozen=True)
class Match:
    """The nearest registered face to one embedding."""

    userid: str | None  # None when nothing is registered
    distance: float
    confidence: float


class FaceIndex:
    """The store's faces held in memory for search, refreshed when the store's generation moves."""

    def __init__(self, store: FaceStore, check_every: float = 0.5) -> None:
        self.store = store
        self.check_every = check_every
        self._snapshot = Snapshot(-1, (), np.zeros((0, DIMENSIONS), np.float32), 0)
        self._norms = np.zeros(0, np.float32)
        self._checked = -math.inf
        self._lock = threading.Lock()

    def changed(self) -> None:
        """This process changed the store: the next search reads it again."""
        with self._lock:
            self._checked = -math.inf

    def current(self) -> Snapshot:
        """The snapshot to search: the held one, or a fresh one when the store's generation moved."""
        return self._current()[0]

    def _current(self) -> tuple[Snapshot, np.ndarray]:
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.check_every:
                if self.store.generation() != self._snapshot.generation:
                    snap = self.store.snapshot()
                    self._snapshot = snap
                    self._norms = np.einsum("ij,ij->i", snap.matrix, snap.matrix)
                self._checked = now
            return self._snapshot, self._norms

    def search(self, embeddings: Sequence[Sequence[float]]) -> list[Match]:
        """The nearest registered face to each embedding."""
        queries = np.asarray(embeddings, np.float32).reshape(-1, DIMENSIONS)
        snap, norms = self._current()
        if not len(snap.names):
            return [Match(None, math.inf, 0.0) for _ in range(len(queries))]
        # |q - m|^2 = |q|^2 - 2 q.m + |m|^2, for all pairs in one product.
        squared = np.einsum("ij,ij->i", queries, queries)[:, None] - 2.0 * queries @ snap.matrix.T + norms[None, :]
        best = np.argmin(squared, axis=1)
        out = []
        for row, j in enumerate(best):
            distance = float(math.sqrt(max(0.0, float(squared[row, j]))))
            out.append(Match(snap.names[j], distance, confidence(distance)))
        return out

    @staticmethod
    def named(match: Match, width: float, threshold: float) -> bool:
        """Whether a face ``width`` pixels wide with this nearest match is answered with its name."""
        return match.userid is not None and width >= MIN_NAMED_WIDTH and match.confidence >= threshold

    @staticmethod
    def similarity(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
        """(distance, confidence) of two embeddings."""
        distance = float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))
        return distance, confidence(distance)
