"""Exactly-once counting on top of at-least-once delivery.

Trace ids are ``<producer>.<seq>`` with sequences dense from 1, so "seen" is one bit per
record in a growing bitmap per (scope, producer): 10 million records cost 1.25 MB, where
a set of strings would cost a gigabyte.
"""

from __future__ import annotations

import base64

from schemas.envelope import parse_trace_id


class SeenSet:
    def __init__(self) -> None:
        self._bits: dict[tuple[str, int], bytearray] = {}
        self._other: set[tuple[str, bytes]] = set()  # trace ids that are not ours, kept as-is

    def add(self, scope: str, trace: bytes) -> bool:
        """True when (scope, trace) is new; False for a duplicate."""
        parsed = parse_trace_id(trace)
        if parsed is None:
            key = (scope, trace)
            if key in self._other:
                return False
            self._other.add(key)
            return True
        producer, seq = parsed
        bits = self._bits.get((scope, producer))
        if bits is None:
            bits = self._bits[(scope, producer)] = bytearray()
        byte, mask = seq >> 3, 1 << (seq & 7)
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))
        if bits[byte] & mask:
            return False
        bits[byte] |= mask
        return True

    def snapshot(self) -> dict:
        """Everything seen, as JSON-ready data (bitmaps base64) for a consumer checkpoint."""
        return {
            "bits": [[scope, producer, base64.b64encode(bytes(bits)).decode()] for (scope, producer), bits in self._bits.items()],
            "other": [[scope, base64.b64encode(trace).decode()] for scope, trace in self._other],
        }

    @classmethod
    def restore(cls, data: dict) -> SeenSet:
        seen = cls()
        seen._bits = {(scope, producer): bytearray(base64.b64decode(b)) for scope, producer, b in data.get("bits", [])}
        seen._other = {(scope, base64.b64decode(t)) for scope, t in data.get("other", [])}
        return seen
