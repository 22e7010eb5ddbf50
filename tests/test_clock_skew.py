"""Clocks that disagree: a latency that cannot be true is clock skew, counted per source, measured nowhere.

The issue's case: a record whose ``sent-ns`` and ``intended-ns`` were ten minutes in the
future gave a per-second ``endToEndLatencyAvg`` of -119,993.6 ms while the percentiles
clamped it to 1 µs. Here a real subscriber reads deliveries from a real broker, stamped by
clocks ahead, behind, and right; then the figures go through the result, the summary and
the report.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio
from rich.console import Console

from consumers.dedupe import SeenSet
from consumers.process import _clock_skew, _interval
from consumers.subscriber import Subscriber
from exchange.kafka.tansu import EmbeddedBroker
from exchange.kafka.topics import create_topics
from exchange.results.latency import MAX_PLAUSIBLE_NS, ClockSkew, sample_quantiles
from exchange.results.report import build_report_html
from exchange.runner.display import summary_table
from schemas.envelope import H_ENTRY, H_INTENDED, H_RUN, H_SCHEMA, H_SENT, H_SOURCE, H_SUBSCRIPTION, H_TRACE, SCHEMA_VERSION
from schemas.results import Result

from .harness import new_run, publish

ASYNC = pytest.mark.asyncio(loop_scope="module")

MS = 1_000_000
MINUTE = 60_000 * MS
TOPIC = "dx.t1.out.a"


def test_clock_skew_counts_per_source_and_keeps_the_impossible_values():
    skew = ClockSkew()
    skew.add("ahead", -10 * MINUTE, -10 * MINUTE - 5 * MS)
    skew.add("ahead", -9 * MINUTE, 3 * MS)  # only the impossible one is kept as a value
    skew.add("behind", 2 * 60 * MINUTE, 2 * 60 * MINUTE)
    other = ClockSkew.restore(skew.snapshot())
    other.add("ahead", -11 * MINUTE, -11 * MINUTE)
    skew.merge(other)
    report = skew.report()
    assert report["ahead"] == {"records": 5, "min_ms": -660_000.0, "max_ms": -540_000.0}
    assert report["behind"] == {"records": 2, "min_ms": 7_200_000.0, "max_ms": 7_200_000.0}
    assert MAX_PLAUSIBLE_NS == 3_600_000_000_000  # one hour, the histograms' range


def _delivery(trace: str, source: str, sent_ns: int, intended_ns: int, run: str) -> tuple[bytes, bytes, list]:
    headers = [
        (H_TRACE, trace.encode()),
        (H_ENTRY, b"open"),
        (H_SOURCE, source.encode()),
        (H_INTENDED, b"%d" % intended_ns),
        (H_SENT, b"%d" % sent_ns),
        (H_SCHEMA, SCHEMA_VERSION),
        (H_RUN, run.encode()),
        (H_SUBSCRIPTION, b"a.open"),
    ]
    return b"k", b'{"person.status": "ok"}', headers


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bootstrap():
    async with EmbeddedBroker() as broker:
        await create_topics(broker.bootstrap, {TOPIC: 2})
        yield broker.bootstrap


async def _read(bootstrap: str, run: str, total: int) -> Subscriber:
    sub = Subscriber("a", TOPIC, bootstrap, f"g-{run}", SeenSet(), run_id=run)
    await sub.start()
    try:
        deadline = time.monotonic() + 30
        while sub.received < total and time.monotonic() < deadline:
            await sub.poll(200)
    finally:
        await sub.stop()
    return sub


@ASYNC
async def test_deliveries_stamped_by_clocks_that_disagree_are_counted_as_skew_and_kept_out_of_every_latency(bootstrap):
    run = new_run()
    now = time.time_ns()
    messages = [_delivery(f"1.{i}", "prov", now - 5 * MS, now - 6 * MS, run) for i in range(1, 21)]
    ahead = now + 10 * MINUTE  # the issue's record: both stamps ten minutes in the future
    messages += [_delivery(f"2.{i}", "fast-clock", ahead, ahead, run) for i in range(1, 4)]
    messages += [_delivery(f"3.{i}", "slow-clock", now - 120 * MINUTE, now - 120 * MINUTE, run) for i in range(1, 3)]
    messages.append(_delivery("4.1", "half", now - 5 * MS, now + 2 * MINUTE, run))  # only intended-ns is ahead
    messages.append(_delivery("5.1", "epoch", 1, 1, run))  # the Unix epoch: decades "late"
    messages.append(_delivery("7.1795976000000", "prov", now - 5 * MS, now - 6 * MS, run))  # a trace id in another shape
    await publish(bootstrap, TOPIC, messages)
    sub = await _read(bootstrap, run, len(messages))

    flow = sub.flows["a.open"]
    assert flow.delivered == len(messages), "skewed records are delivered and counted"
    assert flow.e2e.get_total_count() == 21 and flow.e2e_intended.get_total_count() == 21
    assert flow.e2e.get_min_value() >= 1_000 and flow.e2e.get_max_value() < 60_000_000  # µs: none clamped in
    interval = _interval([sub])
    assert len(flow.interval) == 0 and interval["flow_latency"]["a.open"].n == 21
    assert interval["e2e"]["avg"] > 0, "the per-second average is never negative"
    skew = _clock_skew([sub])
    assert set(skew) == {"fast-clock", "slow-clock", "half", "epoch"}
    assert skew["fast-clock"]["records"] == 3 and -600_100 < skew["fast-clock"]["max_ms"] < -570_000
    assert skew["slow-clock"]["records"] == 2 and 7_199_000 < skew["slow-clock"]["min_ms"] < 7_230_000
    assert skew["half"] == {"records": 1, "min_ms": skew["half"]["min_ms"], "max_ms": skew["half"]["max_ms"]}
    assert -120_100 < skew["half"]["min_ms"] < -90_000
    assert skew["epoch"]["records"] == 1 and skew["epoch"]["min_ms"] > 50 * 365 * 24 * 3600 * 1000


def test_sample_quantiles_of_plausible_samples_never_go_negative():
    assert sample_quantiles([5 * MS, 6 * MS])["avg"] == 5.5


DEMO = Path(__file__).parent / "data" / "demo" / "result.json"


def test_the_summary_and_the_report_flag_clock_skew_and_undecodable_batches():
    result = Result.model_validate_json(DEMO.read_text())
    console = Console(width=200, record=True, color_system=None)
    console.print(summary_table(result))
    assert "clock skew" not in console.export_text()
    assert 'id="clock-skew"' not in build_report_html(result.model_dump(by_alias=True))

    data = result.model_dump(by_alias=True)
    data["clock_skew"] = {"fast-clock": {"records": 3, "min_ms": -600_010.5, "max_ms": -599_990.0}}
    data["counts"]["undecodable"] = 4
    flagged = Result.model_validate(data)
    console = Console(width=300, record=True, color_system=None)
    console.print(summary_table(flagged))
    text = console.export_text()
    assert "clock skew:" in text and "fast-clock 3 (-600,010 … -599,990 ms)" in text
    assert "undecodable batches: 4 ingress records" in text
    page = build_report_html(flagged.model_dump(by_alias=True))
    assert 'id="clock-skew"' in page and "fast-clock: 3" in page and 'id="undecodable"' in page


@ASYNC
async def test_many_skewed_deliveries_do_not_slow_or_stop_the_subscriber(bootstrap):
    run = new_run()
    now = time.time_ns()
    messages = [_delivery(f"9.{i}", f"dept-{i % 7}", now + (i % 3 + 1) * MINUTE, now - 200 * MINUTE, run) for i in range(1, 2001)]
    await asyncio.wait_for(publish(bootstrap, TOPIC, messages), 60)
    sub = await _read(bootstrap, run, len(messages))
    assert sub.flows["a.open"].delivered == 2000 and sub.flows["a.open"].e2e.get_total_count() == 0
    skew = _clock_skew([sub])
    assert sum(v["records"] for v in skew.values()) == 2000 and len(skew) == 7
    # both stamps were wrong: the values kept run from the intended time's +200 min to the sent time's -3 min
    assert max(v["max_ms"] for v in skew.values()) == pytest.approx(200 * 60_000, rel=0.01)
