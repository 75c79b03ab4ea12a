"""The CV queue takes its clients in turn (mysite/server/fair_queue.py)."""

from __future__ import annotations

from mysite.server.fair_queue import FairQueue


def _in_turn(queue: FairQueue[str]) -> tuple[object, str]:
    """The first client in turn and its oldest item, taken."""
    client = queue.clients()[0]
    return client, queue.pop(client)


def test_clients_take_turns_each_oldest_first():
    queue: FairQueue[str] = FairQueue()
    for client, item in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), (None, "n1"), ("b", "b2")]:
        queue.append(client, item)
    assert len(queue) == 6 and list(queue.oldest()) == ["a1", "b1", "n1"]
    assert [_in_turn(queue)[1] for _ in range(3)] == ["a1", "b1", "n1"]
    client, item = _in_turn(queue)
    assert (client, item) == ("a", "a2")
    queue.appendleft(client, item)  # put back (its process died): its turn is next again
    assert [_in_turn(queue)[1] for _ in range(len(queue))] == ["a2", "b2", "a3"]
    assert not queue


def test_items_are_taken_out_by_what_they_are_and_the_turns_keep_their_order():
    queue: FairQueue[int] = FairQueue()
    for client, item in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]:
        queue.append(client, item)
    assert queue.take_if(lambda i: i in (2, 5)) == [2, 5]  # b is gone
    assert queue.take_if(lambda i: i < 4, heads_only=True) == [1, 3]  # each client's old ones, from its oldest
    queue.append("d", 0)
    assert queue.take_if(lambda i: i == 0, heads_only=True) == [0] and list(queue) == [4]
    assert queue.pop("c") == 4 and len(queue) == 0


def test_the_caller_may_pick_whose_turn_it_is():
    queue: FairQueue[str] = FairQueue()
    for client, item in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1"), ("b", "b2")]:
        queue.append(client, item)
    running = {"a": 1}  # the CV pool's choice: fewest jobs running first, ties in turn
    pick = lambda: min(queue.clients(), key=lambda c: running.get(c, 0))  # noqa: E731
    assert [queue.pop(pick()) for _ in range(4)] == ["b1", "c1", "b2", "a1"] and queue.clients() == ["a"]
