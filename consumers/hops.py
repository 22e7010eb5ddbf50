"""Latency per hop and per path, read from the stamps every hub leaves on a record.

Each hub a record crosses appends ``<hub>:<in ns>:<out ns>`` to its ``hops`` header (the
X-Road way: in and out timestamps per node). From them and the producer's send time a
delivery splits into segments: the link into each hub (``producer → gz``, ``gz → gy``),
the time inside it (``gz``), and the last link (``gy → consumer``); the hubs in order are
its path. Unparseable stamps are counted, never guessed at.
"""

from __future__ import annotations

from collections import defaultdict

from hdrh.histogram import HdrHistogram

from exchange.latency import new_histogram, record_ns

CONSUMER = "consumer"
PRODUCER = "producer"


class HopStats:
    """Histograms per segment and per path, for one consumer process."""

    def __init__(self) -> None:
        self.segments: dict[str, HdrHistogram] = defaultdict(new_histogram)
        self.paths: dict[str, HdrHistogram] = defaultdict(new_histogram)
        self.path_hubs: dict[str, tuple[str, ...]] = {}
        self.unparsed = 0
        self._names: dict[tuple[str, str], str] = {}

    def _link(self, a: str, b: str) -> str:
        name = self._names.get((a, b))
        if name is None:
            name = self._names[(a, b)] = f"{a} → {b}"
        return name

    def record(self, hops: bytes, sent_ns: int, received_ns: int) -> None:
        try:
            stamps = [(h.decode(), int(i), int(o)) for h, i, o in (s.split(b":") for s in hops.split(b";"))]
        except (ValueError, UnicodeDecodeError):
            self.unparsed += 1
            return
        previous, left = PRODUCER, sent_ns
        for hub, taken_in, let_out in stamps:
            record_ns(self.segments[self._link(previous, hub)], taken_in - left)
            record_ns(self.segments[hub], let_out - taken_in)
            previous, left = hub, let_out
        record_ns(self.segments[self._link(previous, CONSUMER)], received_ns - left)
        path = " > ".join(h for h, _, _ in stamps)
        if path not in self.path_hubs:
            self.path_hubs[path] = tuple(h for h, _, _ in stamps)
        record_ns(self.paths[path], received_ns - sent_ns)
