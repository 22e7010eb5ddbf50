"""Latency histograms (HdrHistogram) in microseconds, mergeable across processes.

Every process records into its own histograms and ships them encoded in its final
status line; the run controller decodes and adds them, so percentiles are computed over
every record, never averaged from per-process percentiles.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: a stalled run must still be measurable
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"50pct": 50.0, "75pct": 75.0, "95pct": 95.0, "99pct": 99.0, "999pct": 99.9, "9999pct": 99.99, "99999pct": 99.999}
#: percentiles of the aggregated quantile maps (OpenMessaging Benchmark's ``aggregated…Quantiles``)
MAP_PERCENTILES = (
    1.0,
    5.0,
    10.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    70.0,
    75.0,
    80.0,
    85.0,
    90.0,
    95.0,
    97.5,
    99.0,
    99.5,
    99.9,
    99.95,
    99.99,
    99.995,
    99.999,
    100.0,
)


#: The longest end-to-end latency taken as true: one hour, the histograms' range (a stalled
#: run must still be measurable). A delivery measured as negative, or as longer than this,
#: was stamped by a clock that disagrees with the receiver's (or by a header that lies): it
#: is clock skew, counted per source by :class:`ClockSkew` and kept out of every percentile,
#: average and per-interval figure.
MAX_PLAUSIBLE_NS = HIGHEST_US * 1000


class ClockSkew:
    """Deliveries whose latency cannot be true, per source department.

    Per source: how many, and the lowest and highest impossible latency seen (ns, signed:
    ``-600_000_000_000`` is a sender ten minutes ahead). Mergeable across processes.
    """

    __slots__ = ("by_source",)

    def __init__(self, by_source: dict[str, list[int]] | None = None) -> None:
        self.by_source: dict[str, list[int]] = by_source or {}  # source → [records, lowest ns, highest ns]

    def add(self, source: str, *latencies_ns: int) -> None:
        """Count one delivery whose latencies (ns; from sent and from intended time) are not all plausible."""
        wrong = [ns for ns in latencies_ns if not 0 <= ns <= MAX_PLAUSIBLE_NS] or list(latencies_ns)
        row = self.by_source.get(source)
        if row is None:
            self.by_source[source] = [1, min(wrong), max(wrong)]
        else:
            row[0] += 1
            row[1], row[2] = min(row[1], *wrong), max(row[2], *wrong)

    def merge(self, other: ClockSkew) -> None:
        for source, (n, lo, hi) in other.by_source.items():
            row = self.by_source.get(source)
            if row is None:
                self.by_source[source] = [n, lo, hi]
            else:
                row[0] += n
                row[1], row[2] = min(row[1], lo), max(row[2], hi)

    def __bool__(self) -> bool:
        return bool(self.by_source)

    def snapshot(self) -> dict[str, list[int]]:
        return {source: list(row) for source, row in self.by_source.items()}

    @classmethod
    def restore(cls, data: dict[str, list[int]]) -> ClockSkew:
        return cls({source: list(row) for source, row in data.items()})

    def report(self) -> dict[str, dict[str, float]]:
        """Per source: ``records``, ``min_ms`` and ``max_ms`` (the impossible latencies, ms)."""
        return {
            source: {"records": n, "min_ms": round(lo / 1e6, 3), "max_ms": round(hi / 1e6, 3)}
            for source, (n, lo, hi) in sorted(self.by_source.items())
        }


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def record_ns(hist: HdrHistogram, nanoseconds: int, count: int = 1) -> None:
    """Record a duration given in ns, clamped to the histogram's range.

    Callers keep latencies that cannot be true out (see :data:`MAX_PLAUSIBLE_NS`); the clamp
    only guards the histogram.
    """
    us = nanoseconds // 1000
    hist.record_value(min(max(us, LOWEST_US), HIGHEST_US), count)


def record_many_ns(hist: HdrHistogram, nanoseconds: list[int]) -> None:
    """Record many durations (ns) with one ``record_value`` per histogram bucket they fill.

    ``record_value`` costs ~1.5 µs in pure Python, and a producer recorded one per record
    (13 % of its time at 80,000 records/s). Each value is first brought down to the lowest
    value of its bucket (what the histogram keeps of it anyway, at 3 significant digits:
    2,048 sub-buckets), so the counts, and every percentile, min and max read from them,
    are the same as recording one by one.
    """
    counts: dict[int, int] = {}
    get = counts.get
    for ns in nanoseconds:
        us = min(max(ns // 1000, LOWEST_US), HIGHEST_US)
        shift = us.bit_length() - _SUB_BUCKET_BITS
        if shift > 0:
            us = us >> shift << shift
        counts[us] = get(us, 0) + 1
    for us, n in counts.items():
        hist.record_value(us, n)


_SUB_BUCKET_BITS = 11  # 2,048 sub-buckets for 3 significant digits from a lowest value of 1


def encode(hist: HdrHistogram) -> str:
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: list[str]) -> HdrHistogram:
    total = new_histogram()
    for text in encoded:
        total.add(decode(text))
    return total


def quantile_map(hist: HdrHistogram, scale: float = 1000.0) -> dict[str, float]:
    """Percentile → value (ms by default), in one pass over the histogram."""
    if hist.get_total_count() == 0:
        return {}
    values = hist.get_percentile_to_value_dict(list(MAP_PERCENTILES))
    return {str(p): values[p] / scale for p in MAP_PERCENTILES}


def sample_quantiles(values: list[int], scale: float = 1e6) -> dict[str, float]:
    """Avg, p50 … p99.999 and max of raw samples in ns (ms by default): one interval's figures.

    Per-interval figures come from sorting the interval's samples, because reading a
    percentile from an HdrHistogram of this range costs milliseconds in pure Python.
    """
    if not values:
        return {}
    values.sort()
    n = len(values)
    out = {name: values[min(n - 1, int(p / 100 * n))] / scale for name, p in PERCENTILES.items()}
    out["max"] = values[-1] / scale
    out["avg"] = sum(values) / n / scale
    return out


def quantiles_ms(hist: HdrHistogram) -> dict[str, float]:
    """p50 … p99.99, max and mean in milliseconds (OpenMessaging Benchmark's unit)."""
    if hist.get_total_count() == 0:
        return {**{k: 0.0 for k in PERCENTILES}, "max": 0.0, "avg": 0.0}
    out = {name: hist.get_value_at_percentile(p) / 1000.0 for name, p in PERCENTILES.items()}
    out["max"] = hist.get_max_value() / 1000.0
    out["avg"] = hist.get_mean_value() / 1000.0
    return out
