"""Read past no offset the broker has not stored yet: a guard for Tansu's memory storage.

Tansu 0.6 (``tansu-storage/src/dynostore.rs``, the ``memory://`` engine the embedded broker
runs) hands a produce request its offsets and raises the partition's high watermark in one
step (lines 868-893), and stores the batch only later (960-980). A fetch lists the stored
batches below the high watermark and returns every one at or above the fetch offset (986-1073,
``split_off`` at 1039), without checking that the first starts where the fetch asked. With two
clients writing one partition (two producer workers, two router workers writing a delivery
topic, every worker writing a run's status topic) a fetch at ``X`` can find the batch at
``X+1`` stored and the one at ``X`` not yet; aiokafka takes the jump for compaction and moves
to ``X+2``, and the record at ``X``, acknowledged to its producer, is never read by that
consumer. Conservation saw it as records unaccounted for (1 to 4 in ~1 run of 10 of the
paused-broker chaos test with two producer workers; the records were in the broker at the end).
One client alone never races: aiokafka sends one produce request per broker at a time.

:func:`install` makes this process's aiokafka fetcher stop at such a gap: the records before
it are handed out, the consumer's position stays at the gap, and the next fetch asks for it
again, until its batch is stored (milliseconds) or :data:`HOLD_S` has passed (a hole that never
fills: logged at WARNING and skipped). Install it only for a Tansu broker: on Apache Kafka
offsets skip legitimately (compacted topics, transaction markers are batches of their own).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from aiokafka.consumer import fetcher

log = logging.getLogger(__name__)

#: How long (s) a consumer waits for the batch of a skipped offset before it reads past it.
HOLD_S = 2.0

_installed = False
_held: dict[tuple[Any, int], float] = {}  # (topic partition, offset) → when first seen missing (time.monotonic)
held_total = 0  # fetches stopped at a gap, in this process
skipped_total = 0  # gaps read past after HOLD_S


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return _installed


def install() -> None:
    """Make every aiokafka consumer of this process stop at an offset gap (see the module doc).

    Wraps whatever ``aiokafka.consumer.fetcher.PartitionRecords`` is at the time (the router's
    lenient reader included, which must be installed first); idempotent."""
    global _installed
    if _installed:
        return
    base = fetcher.PartitionRecords

    class GapGuardedPartitionRecords(base):  # type: ignore[valid-type, misc]
        def __init__(self, tp: Any, records: Any, aborted_transactions: Any, fetch_offset: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(tp, _Guard(records, tp, fetch_offset), aborted_transactions, fetch_offset, *args, **kwargs)

    fetcher.PartitionRecords = GapGuardedPartitionRecords
    _installed = True


class _Guard:
    """A fetch's batches (aiokafka's ``MemoryRecords`` interface), ending before the first batch
    that starts beyond the offset expected next while :data:`HOLD_S` has not passed for it."""

    __slots__ = ("_records", "_tp", "_expected", "_next", "_stopped")

    def __init__(self, records: Any, tp: Any, fetch_offset: int) -> None:
        self._records, self._tp, self._expected = records, tp, fetch_offset
        self._next: Any = None
        self._stopped = False

    def __getattr__(self, name: str) -> Any:  # size_in_bytes, raw (the router's lenient reader)…
        return getattr(self._records, name)

    def has_next(self) -> bool:
        if self._next is not None:
            return True
        if self._stopped or not self._records.has_next():
            return False
        batch = self._records.next_batch()
        if batch is None:
            return False
        if batch.base_offset > self._expected and _hold(self._tp, self._expected, batch.base_offset):
            self._stopped = True
            return False
        self._next = batch
        return True

    def next_batch(self) -> Any:
        if not self.has_next():
            return None
        batch, self._next = self._next, None
        self._expected = max(self._expected, batch.next_offset)
        return batch


def _hold(tp: Any, offset: int, found: int) -> bool:
    """True while the gap at ``offset`` of ``tp`` is younger than :data:`HOLD_S`; False (and a
    warning) once it is older: the consumer then reads past it."""
    global held_total, skipped_total
    now = time.monotonic()
    first = _held.setdefault((tp, offset), now)
    if len(_held) > 10_000:  # gaps that filled are never asked about again: forget the oldest
        for key in list(_held)[:5_000]:
            del _held[key]
    if now - first < HOLD_S:
        held_total += 1
        return True
    del _held[(tp, offset)]
    skipped_total += 1
    log.warning("%s: offsets %d to %d were not stored %.1f s after later ones; reading past them", tp, offset, found - 1, HOLD_S)
    return False


def add_broker_kind_argument(parser: argparse.ArgumentParser) -> None:
    """``--broker-kind tansu|kafka``, which the run controller gives the router and the consumers."""
    parser.add_argument(
        "--broker-kind",
        choices=("tansu", "kafka"),
        default=None,
        help="the run's broker: on tansu every consumer of this process waits at an offset gap (exchange/kafka/offset_gaps.py)",
    )


def install_for(broker_kind: str | None) -> None:
    """:func:`install` when ``broker_kind`` is ``"tansu"``; nothing otherwise (Kafka, or not known)."""
    if broker_kind == "tansu":
        install()
