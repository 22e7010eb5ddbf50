"""The controller times each round of the consumers' stats when it was sent, not when it was read.

Two rounds read in one poll (a loaded machine, a slow controller) used to be ~0 s apart in
``consume_samples``, and the result's ``consumeRate`` showed a spike ~1,000 times the real rate.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from exchange.results.build import rates
from exchange.runner.controller import Progress, _Watch
from schemas.clock import ClockOffset
from schemas.status import ConsumersStats, Role, Sender, message


def _stats(received: int) -> ConsumersStats:
    return ConsumersStats(
        received=received, first_ns=0, last_ns=0, delivered=received, duplicates=0, unlabelled=0, foreign=0, denied=0,
        dead_lettered=0, dead_letter_records=0, audited_deliveries=0, conflicts=0, lag={}, clock_skew={},
        reactions_produced={}, reactions_pending=0, e2e={"99pct": 5.0}, flow_latency={}, lag_known=True,
    )  # fmt: skip


class _Consumers:
    """A consumers worker whose status lines have all arrived by the time the controller polls."""

    def __init__(self, name: str, messages: list, offset_ns: int = 0) -> None:
        self.name, self.messages = name, messages
        self.offset = ClockOffset(offset_ns=offset_ns, error_ns=0, samples=0, min_delay_ns=0)

    def read(self) -> list:
        out, self.messages = self.messages, []
        return out

    def current(self, messages: list) -> list:
        return messages

    def clock(self) -> ClockOffset:
        return self.offset


def _watch(workers: list[_Consumers], t0: float) -> _Watch:
    run = SimpleNamespace(progress=Progress(duration=10.0), consumer_workers=workers, injector=None, t0=t0)
    return _Watch(run)  # type: ignore[arg-type]


def _sent(worker: str, received: int, sent_ns: int):
    return message(Sender(run_id="r", role=Role.consumers, worker=worker, pid=1), _stats(received), sent_ns=sent_ns)


def test_two_rounds_read_in_one_poll_are_a_second_apart() -> None:
    now_ns, now = time.time_ns(), time.monotonic()
    # three rounds a second apart, the last sent just now, all read at once; 300 records a second
    lines = [_sent("0", 300 * (i + 1), now_ns - (2 - i) * 1_000_000_000) for i in range(3)]
    watch = _watch([_Consumers("consumers", lines)], t0=now - 3.0)
    watch.read_consumers()
    times = [t for t, _ in watch.reports.consume_samples]
    assert [round(t, 1) for t in times] == [0.0, 1.0, 2.0, 3.0]
    assert all(290 <= r <= 310 for r in rates(watch.reports.consume_samples))


def test_a_round_of_several_workers_is_timed_by_its_last_message_with_each_senders_offset() -> None:
    now_ns, now = time.time_ns(), time.monotonic()
    # worker b's clock runs 5 s behind the controller's: its sent_ns + offset is the controller's time
    a = _Consumers("consumers-0", [_sent("0", 100, now_ns - 2_000_000_000)])
    b = _Consumers("consumers-1", [_sent("1", 100, now_ns - 6_000_000_000)], offset_ns=5_000_000_000)
    watch = _watch([a, b], t0=now - 10.0)
    watch.read_consumers()
    ((t, received),) = watch.reports.consume_samples[1:]
    assert received == 200
    assert abs(t - 9.0) < 0.2  # b's message, sent at the controller's now − 1 s, is the round's last


def test_a_round_sent_in_the_future_by_a_fast_clock_is_no_later_than_now() -> None:
    now_ns, now = time.time_ns(), time.monotonic()
    watch = _watch([_Consumers("consumers", [_sent("0", 10, now_ns + 60_000_000_000)])], t0=now - 1.0)
    watch.read_consumers()
    assert watch.reports.consume_samples[1][0] <= time.monotonic() - (now - 1.0)
