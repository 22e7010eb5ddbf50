"""The router's Faust consumer thread: its assignment, converted once per rebalance."""

from __future__ import annotations

from aiokafka.structs import TopicPartition
from faust.transport.consumer import ensure_TPset
from faust.types import TP

from exchange.router.faust_bulk import AssignmentCache


def test_the_assignment_is_faust_s_view_and_follows_every_new_assignment():
    cache = AssignmentCache()
    first = frozenset(TopicPartition(f"in.{i}", p) for i in range(50) for p in range(3))
    view = cache(first)
    assert view == ensure_TPset(first) and all(type(tp) is TP for tp in view)
    assert cache(first) is view  # the same assignment: not converted again
    second = frozenset(list(first)[:10])  # a rebalance: aiokafka hands out a new frozenset
    assert cache(second) == ensure_TPset(second) != view
    assert cache(set()) == frozenset()  # no assignment (aiokafka returns a new empty set each time)
    assert cache(first) == view  # back to the first partitions: converted afresh, same contents
