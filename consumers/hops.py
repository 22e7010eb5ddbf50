"""Latency per hop and per path, read from the stamps every hub leaves on a record.

Each hub a record crosses appends ``<hub>:<in ns>:<out ns>`` to its ``hops`` header (the
X-Road way: in and out timestamps per node). From them and the producer's send time a
delivery splits into segments: the link into each hub (``producer → gz``, ``gz → gy``),
the time inside it (``gz``), and the last link (``gy → consumer``); the hubs in order are
its path. Unparseable stamps are counted, never guessed at.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hdrh.histogram import HdrHistogram

from exchange import metrics
from exchange.results.latency import new_histogram, record_many_ns
from schemas.envelope import HOP_CONSUMER, HOP_PRODUCER, hop_link


class HopStats:
    """Histograms per segment and per path, for one consumer process."""

    def __init__(self, observe=None) -> None:
        self.observe = observe  # (consumer's hub, segment) → a Prometheus histogram child; None: not exported
        self._children: dict[tuple[str, str], Any] = {}  # Prometheus histogram children
        self.segments: dict[str, HdrHistogram] = defaultdict(new_histogram)
        self.paths: dict[str, HdrHistogram] = defaultdict(new_histogram)
        self.path_hubs: dict[str, tuple[str, ...]] = {}
        # per path and per segment: warm-up deliveries (exchange/runner/warmup.py), counted, not in the histograms
        self.warmup_paths: dict[str, int] = defaultdict(int)
        self.warmup_segments: dict[str, int] = defaultdict(int)
        self._names: dict[tuple[str, str], str] = {}
        # durations waiting for flush(), recorded a histogram bucket at a time: one
        # record_value each was ~19 % of a subscriber process's samples at 10,000/s
        self._pending_segments: dict[str, list[int]] = defaultdict(list)
        self._pending_paths: dict[str, list[int]] = defaultdict(list)
        # and for Prometheus, per (consumer's hub, segment): observed a bucket at a time too
        self._pending_observed: dict[tuple[str, str], list[int]] = defaultdict(list)

    def _link(self, a: str, b: str) -> str:
        name = self._names.get((a, b))
        if name is None:
            name = self._names[(a, b)] = hop_link(a, b)
        return name

    def record(self, hops: bytes, sent_ns: int, received_ns: int, measured: bool = True) -> None:
        """Split one delivery's time into its segments; in the histograms after :meth:`flush`.

        A warm-up delivery (``measured`` false, exchange/runner/warmup.py) is only counted, per path and segment.
        """
        try:
            stamps = [(h.decode(), int(i), int(o)) for h, i, o in (s.split(b":") for s in hops.split(b";"))]
        except (ValueError, UnicodeDecodeError):
            return  # not our stamps: no time to split
        add = self._add if measured else self._count_warmup
        previous, left, last = HOP_PRODUCER, sent_ns, stamps[-1][0]
        for hub, taken_in, let_out in stamps:
            add(last, self._link(previous, hub), taken_in - left)
            add(last, hub, let_out - taken_in)
            previous, left = hub, let_out
        add(last, self._link(previous, HOP_CONSUMER), received_ns - left)
        path = " > ".join(h for h, _, _ in stamps)
        if path not in self.path_hubs:
            self.path_hubs[path] = tuple(h for h, _, _ in stamps)
        if measured:
            self._pending_paths[path].append(received_ns - sent_ns)
        else:
            self.warmup_paths[path] += 1

    def _count_warmup(self, hub: str, segment: str, ns: int) -> None:
        self.warmup_segments[segment] += 1

    def flush(self) -> None:
        for segment, values in self._pending_segments.items():
            record_many_ns(self.segments[segment], values)
        for path, values in self._pending_paths.items():
            record_many_ns(self.paths[path], values)
        for key, values in self._pending_observed.items():
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = self.observe(*key)  # type: ignore[misc]  # pending only when observe is set
            metrics.observe_many_ns(child, values)
        self._pending_segments.clear()
        self._pending_paths.clear()
        self._pending_observed.clear()

    def _add(self, hub: str, segment: str, ns: int) -> None:
        self._pending_segments[segment].append(ns)
        if self.observe is not None:
            self._pending_observed[(hub, segment)].append(ns)
