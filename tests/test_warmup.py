"""The warm-up (``exchange run --warmup``): counted like any record, kept out of the aggregated latency.

A subscriber is fed synthetic deliveries whose latencies are known: warm-up records a
minute late must not move the aggregated p99; then one short real run checks
the warm-up block of result.json, that every count still includes the warm-up, and that
the per-flow histograms hold each delivery exactly once (warm-up or measured), and that
the SLO verdict reads only the measured ones.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers.dedupe import SeenSet
from consumers.hops import HopStats
from consumers.subscriber import Subscriber
from exchange.results.latency import decode, new_histogram
from exchange.results.report import build_report_html
from exchange.runner.status import read_messages
from exchange.runner.warmup import WarmupError, read_warmup_end, warmup_end_ns, warmup_seconds, write_schedule
from schemas.envelope import H_ENTRY, H_HOPS, H_INTENDED, H_RUN, H_SENT, H_SOURCE, H_SUBSCRIPTION, H_TRACE
from schemas.results import Result

from .harness import ROOT

MS = 1_000_000
S = 1_000_000_000
TOPIC = "dx.t.out.a"


def test_the_default_warmup_is_five_seconds_or_a_fifth_of_a_short_run():
    assert warmup_seconds(None, None, 60) == 5.0
    assert warmup_seconds(None, None, 10) == 2.0
    assert warmup_seconds(None, 3.0, 60) == 3.0  # the scenario's load.warmup
    assert warmup_seconds(1.5, 3.0, 60) == 1.5  # --warmup wins
    assert warmup_seconds(0, None, 60) == 0.0  # off
    # an Apache Kafka broker the run starts: a cold JVM, 20 s, capped at a fifth of the run as well
    assert warmup_seconds(None, None, 60, cold_kafka=True) == 12.0
    assert warmup_seconds(None, None, 300, cold_kafka=True) == 20.0
    assert warmup_seconds(None, 3.0, 60, cold_kafka=True) == 3.0 and warmup_seconds(1.5, None, 60, cold_kafka=True) == 1.5
    with pytest.raises(WarmupError, match="--warmup 10 s is not shorter than the run"):
        warmup_seconds(10, None, 10)
    with pytest.raises(WarmupError, match=r"load\.warmup 5 s is not shorter than the run \(4 s\).*a shorter --warmup, or 0, overrides it"):
        warmup_seconds(None, 5, 4)  # the scenario's, under a shorter --duration: the way out
    with pytest.raises(WarmupError, match=r"load\.warmup -1 s"):
        warmup_seconds(None, -1, 10)


def _record(offset: int, trace: int, intended_ns: int, sent_ns: int, hops: bytes | None = None) -> ConsumerRecord:
    headers = [
        (H_TRACE, b"1.%d" % trace),
        (H_ENTRY, b"open"),
        (H_SOURCE, b"src"),
        (H_INTENDED, b"%d" % intended_ns),
        (H_SENT, b"%d" % sent_ns),
        (H_RUN, b"r1"),
        (H_SUBSCRIPTION, b"a.open"),
    ]
    if hops is not None:
        headers.append((H_HOPS, hops))
    return ConsumerRecord(TOPIC, 0, offset, sent_ns // MS, 0, b"k", b"{}", None, 2, 2, headers)


@pytest.mark.asyncio  # aiokafka builds its consumer on a running loop; it is never started here
async def test_warmup_records_are_counted_but_do_not_move_the_aggregated_percentiles(tmp_path):
    start = 1_800_000_000 * S  # the schedule's start, epoch ns
    schedule = tmp_path / "schedule.json"
    write_schedule(schedule, start, 5.0)
    assert read_warmup_end(schedule) == warmup_end_ns(start, 5.0) == start + 5 * S
    sub = Subscriber("a", TOPIC, "127.0.0.1:9", "g", SeenSet(), run_id="r1", hops=HopStats())
    sub.warmup_file = schedule
    now = start + 70 * S
    # 1,000 records of the warm-up, a minute late or more; 1,000 after it, 2-3 ms late
    warm = [_record(i, i, start + i * MS, now - 60 * S - i * MS, b"gz:%d:%d" % (now - 60 * S, now - 60 * S)) for i in range(1000)]
    late_start = start + 5 * S
    measured = [
        _record(1000 + i, 1000 + i, late_start + i * MS, now - 2 * MS - (i % 1000) * 1000, b"gz:%d:%d" % (now - MS, now - MS)) for i in range(1000)
    ]
    last = _record(2000, 2000, late_start - 1, now - 3 * MS)  # one nanosecond before the end: warm-up
    assert sub.ingest({TopicPartition(TOPIC, 0): [*warm, *measured, last]}, now) == 2001
    flow = sub.flows["a.open"]
    assert flow.delivered == 2001 and flow.warmup_delivered == 1001  # counts include the warm-up
    assert flow.e2e.get_total_count() == 1000 and flow.warmup_e2e.get_total_count() == 1001
    assert flow.e2e_intended.get_total_count() == 1000 and flow.warmup_e2e_intended.get_total_count() == 1001
    assert flow.e2e.get_value_at_percentile(99) / 1000 == pytest.approx(3.0, abs=0.05)  # ms: not a minute
    assert flow.e2e.get_max_value() / 1000 < 3.1
    assert flow.warmup_e2e.get_value_at_percentile(50) / 1000 > 60_000
    assert len(flow.interval) == 2001  # the per-second series keep every record
    # hops and paths: the warm-up only counted, per path and segment
    assert sub.hops.paths["gz"].get_total_count() == 1000 and sub.hops.warmup_paths["gz"] == 1000
    assert sub.hops.segments["gz"].get_total_count() == 1000 and sub.hops.warmup_segments["gz"] == 1000
    assert sub.hops.segments["producer → gz"].get_max_value() / 1000 < 3.1  # ms: the warm-up's minute is not there
    # a checkpoint keeps both halves apart
    restored = type(flow).restore(flow.snapshot())
    assert restored.warmup_delivered == 1001 and restored.e2e.get_total_count() == 1000
    assert decode(flow.snapshot()["warmup_e2e"]).get_total_count() == 1001


@pytest.mark.asyncio
async def test_without_a_warmup_every_record_is_measured():
    sub = Subscriber("a", TOPIC, "127.0.0.1:9", "g", SeenSet(), run_id="r1")
    now = 1_800_000_000 * S
    sub.ingest({TopicPartition(TOPIC, 0): [_record(i, i, now - S, now - 5 * MS) for i in range(10)]}, now)
    flow = sub.flows["a.open"]
    assert flow.warmup_delivered == 0 and flow.e2e.get_total_count() == 10 and flow.warmup_e2e.get_total_count() == 0


def test_a_short_run_reports_its_warmup_apart_and_still_accounts_for_every_record(tmp_path):
    out = tmp_path / "warm"
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--duration", "4", "--warmup", "1.5", "--rate-multiplier", "0.5", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warm-up, first 1.5 s" in done.stdout and "after the 1.5 s warm-up" in done.stdout
    result = Result.model_validate_json((out / "result.json").read_text())
    assert result.conservation.ok and result.counts.unaccounted == 0
    w = result.warmup
    assert w is not None and w.seconds == 1.5 and result.run.warmup_s == 1.5
    # ~a third of the records were intended in the first 1.5 s of 4
    assert 0.25 * result.counts.produced < w.published < 0.5 * result.counts.produced
    assert w.delivered > 0 and w.delivered == sum(f.warmup_delivered for f in result.flows.values())
    assert w.delivered < result.counts.delivered  # counted among the deliveries, not instead of them
    assert w.end_to_end_ms.p99 > 0 and w.publish_latency_ms.p99 > 0
    # each delivery is in exactly one of the two histograms of its flow (no clock skew on one machine)
    final = next(m.body for m in read_messages(out / "consumers.jsonl") if m.kind == "final")
    for name, raw in final.flows.items():
        measured, warm = decode(raw.e2e).get_total_count(), decode(raw.warmup_e2e).get_total_count()
        assert measured + warm == raw.delivered == result.flows[name].delivered, name
        assert warm == raw.warmup_delivered
    # the SLO verdict is read from the measured histograms only (the warm-up's would move it)
    gps = new_histogram()
    for name, raw in final.flows.items():
        if result.flows[name].entry == "gps-fix":
            gps.add(decode(raw.e2e))
    verdict = next(v for v in result.slos if v.metric == "e2e_p99_ms")
    assert verdict.measured == round(gps.get_value_at_percentile(99) / 1000, 4)
    page = build_report_html(json.loads((out / "result.json").read_text()))
    assert 'id="warmup"' in page and "Warm-up: the first 1.5 s" in page and "after warm-up, ms" in page
