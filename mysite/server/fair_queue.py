"""A queue that takes its clients in turn: one item of each client with items waiting, then round again.

One first-come-first-served queue lets a client that keeps many requests in it hold everyone else
behind them. Here each client (any hashable key; ``None`` for requests no one is named for) has its
own queue, oldest first, and the next item is the oldest of the client the caller picks from
``clients()``, which lists them in turn (the CV pool: fewest jobs running, then served longest ago,
then the first in turn).
Standard library only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Items kept per client and taken in turn (round robin), each client's oldest first."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, deque[T]] = {}
        self._turns: deque[Hashable] = deque()  # the clients with items waiting, whose turn comes first first

    def append(self, client: Hashable, item: T) -> None:
        """Queue ``item`` behind ``client``'s others; a client new to the queue takes the last turn."""
        queue = self._queues.get(client)
        if queue is None:
            queue = self._queues[client] = deque()
            self._turns.append(client)
        queue.append(item)

    def pop(self, client: Hashable) -> T:
        """``client``'s oldest item (the caller chose whose turn it is); its next turn comes after the others'."""
        self._turns.remove(client)
        queue = self._queues[client]
        item = queue.popleft()
        if queue:
            self._turns.append(client)
        else:
            del self._queues[client]
        return item

    def appendleft(self, client: Hashable, item: T) -> None:
        """Put back an item just taken: at the head of its client's queue, whose turn is next."""
        queue = self._queues.get(client)
        if queue is None:
            queue = self._queues[client] = deque()
        else:
            self._turns.remove(client)
        queue.appendleft(item)
        self._turns.appendleft(client)

    def take_if(self, taken: Callable[[T], bool], heads_only: bool = False) -> list[T]:
        """Take out the items for which ``taken`` holds (with ``heads_only``, each client's from its oldest
        on, stopping at its first that does not); the clients' turns keep their order."""
        out: list[T] = []
        for client in list(self._turns):
            queue = self._queues[client]
            if heads_only:
                while queue and taken(queue[0]):
                    out.append(queue.popleft())
            else:
                kept: deque[T] = deque()
                for item in queue:
                    (out if taken(item) else kept).append(item)
                queue = self._queues[client] = kept
            if not queue:
                del self._queues[client]
                self._turns.remove(client)
        return out

    def clients(self) -> list[Hashable]:
        """The clients with items waiting, in turn."""
        return list(self._turns)

    def oldest(self) -> Iterator[T]:
        """Each client's oldest item."""
        return (self._queues[client][0] for client in self._turns)

    def __iter__(self) -> Iterator[T]:
        return (item for client in self._turns for item in self._queues[client])

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())
