"""Exactly-once counting on top of at-least-once delivery.

Trace ids are ``<producer>.<seq>`` with sequences dense from 1, so "seen" is one bit per
record in a growing bitmap per (scope, producer): 10 million records cost 1.25 MB, where
a set of strings would cost a gigabyte.

A trace id is a header, and any client can write any header: ``7.1795976000000``
(department id, then epoch milliseconds, as other systems shape them) must not make the
bitmap as long as the number says (224 GB). The memory taken is bounded by the ids
received, whatever they say:

- a (scope, producer) bitmap only grows to cover sequences up to :data:`DENSITY` bits per
  id it holds, plus :data:`SLACK_BITS` (≤ 1 byte per id + 128 bytes); our own producers'
  dense sequences stay well inside that, read in any order across partitions;
- a sequence beyond that window is kept exactly, in a set of ints for its (scope,
  producer), and found there when it comes again;
- a trace id that is not ``<digits>.<digits>`` (or whose numbers exceed 18 digits) is kept
  as-is, and one longer than :data:`MAX_KEPT_TRACE` bytes as its BLAKE2b digest, so a
  megabyte-long header costs 17 bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from schemas.envelope import parse_trace_id

#: at most this many bitmap bits per id a (scope, producer) holds (plus SLACK_BITS)
DENSITY = 8
#: bits any (scope, producer) bitmap may cover before it holds enough ids (128 bytes)
SLACK_BITS = 1024
#: trace ids kept as-is up to this many bytes; longer ones as a digest
MAX_KEPT_TRACE = 64


class _Producer:
    """What was seen of one producer in one scope: a bitmap window and the exact rest."""

    __slots__ = ("bits", "ids", "beyond")

    def __init__(self, bits: bytearray | None = None, beyond: set[int] | None = None) -> None:
        self.bits = bits if bits is not None else bytearray()
        self.beyond = beyond if beyond is not None else set()  # sequences outside the bitmap
        self.ids = int.from_bytes(self.bits, "little").bit_count() + len(self.beyond)


class SeenSet:
    """Trace ids seen per scope; :meth:`add` says whether one is new. Memory grows with the ids added, never with their values."""

    def __init__(self) -> None:
        self._producers: dict[tuple[str, int], _Producer] = {}
        self._other: set[tuple[str, bytes]] = set()  # trace ids that are not ours, kept as-is (or digested)

    def add(self, scope: str, trace: bytes) -> bool:
        """True when (scope, trace) is new; False for a duplicate."""
        parsed = parse_trace_id(trace)
        if parsed is None:
            if len(trace) > MAX_KEPT_TRACE:
                trace = b"#" + hashlib.blake2b(trace, digest_size=16).digest()
            key = (scope, trace)
            if key in self._other:
                return False
            self._other.add(key)
            return True
        return self._add_seq(scope, *parsed)

    def add_scopes(self, scopes: Iterable[str], trace: bytes) -> list[str]:
        """The ``scopes`` in which ``trace`` is new, in order; the trace id is parsed once for all.

        Same answers as :meth:`add` per scope (a scope given twice is new only the first time);
        one audit row of a denied group covers dozens of subscriptions with one trace id.
        """
        parsed = parse_trace_id(trace)
        if parsed is None:
            return [scope for scope in scopes if self.add(scope, trace)]
        producer, seq = parsed
        byte, mask = seq >> 3, 1 << (seq & 7)
        producers = self._producers
        fresh = []
        for scope in scopes:
            p = producers.get((scope, producer))
            if p is None or p.beyond or byte >= len(p.bits):
                if self._add_seq(scope, producer, seq):
                    fresh.append(scope)
                continue
            bits = p.bits  # the common case, inline: inside the bitmap, nothing kept beyond it
            if not bits[byte] & mask:
                bits[byte] |= mask
                p.ids += 1
                fresh.append(scope)
        return fresh

    def _add_seq(self, scope: str, producer: int, seq: int) -> bool:
        p = self._producers.get((scope, producer))
        if p is None:
            p = self._producers[(scope, producer)] = _Producer()
        bits = p.bits
        byte = seq >> 3
        if byte >= len(bits):
            allowed = (DENSITY * (p.ids + 1) + SLACK_BITS) >> 3  # bytes the window may span now
            if byte >= allowed:  # beyond the window: kept exactly
                if seq in p.beyond:
                    return False
                p.beyond.add(seq)
                p.ids += 1
                return True
            bits.extend(bytes(min(max(byte + 1, 2 * len(bits)), allowed) - len(bits)))
        if p.beyond and seq in p.beyond:  # seen when it was beyond a window that has grown since
            return False
        mask = 1 << (seq & 7)
        if bits[byte] & mask:
            return False
        bits[byte] |= mask
        p.ids += 1
        return True

    def memory_bytes(self) -> int:
        """Bytes held by bitmaps and exact sets (an estimate: ~100 bytes per exactly-kept id)."""
        return sum(len(p.bits) + 100 * len(p.beyond) for p in self._producers.values()) + sum(100 + len(t) for _, t in self._other)

    def snapshot(self) -> dict:
        """Everything seen, as JSON-ready data (bitmaps base64) for a consumer checkpoint."""
        return {
            "bits": [[scope, producer, base64.b64encode(bytes(p.bits)).decode()] for (scope, producer), p in self._producers.items()],
            "beyond": [[scope, producer, sorted(p.beyond)] for (scope, producer), p in self._producers.items() if p.beyond],
            "other": [[scope, base64.b64encode(trace).decode()] for scope, trace in self._other],
        }

    @classmethod
    def restore(cls, data: dict) -> SeenSet:
        seen = cls()
        beyond = {(scope, producer): set(seqs) for scope, producer, seqs in data.get("beyond", [])}
        seen._producers = {
            (scope, producer): _Producer(bytearray(base64.b64decode(b)), beyond.pop((scope, producer), None))
            for scope, producer, b in data.get("bits", [])
        }
        for key, seqs in beyond.items():
            seen._producers[key] = _Producer(None, seqs)
        seen._other = {(scope, base64.b64decode(t)) for scope, t in data.get("other", [])}
        return seen
