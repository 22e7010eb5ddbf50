"""Several producer and consumer workers in one run (``exchange run --producer-workers P
--consumer-workers C``): the producers divide every schedule record by record, the consumers
divide the departments, and the run's counts are the one-process run's."""

from __future__ import annotations

import functools
import random
import re
from collections import Counter

import pytest

from consumers.assignment import ACCOUNTANT_WORKER, assign_departments, subscribing_units
from exchange.results import merge
from exchange.results.latency import decode, encode, new_histogram, record_ns
from exchange.runner.options import RunOptions, WorkersError, check_workers
from exchange.runner.status import read_messages
from exchange.scenarios.loader import load
from producers.process import build_publishers, worker_gate
from producers.publisher import PublishStats, WorkerShare
from producers.records import EntityPool, entity_pool
from schemas.envelope import H_INTENDED, H_TRACE, parse_trace_id
from schemas.scenario import Gateway, LoadProfile, Scenario
from schemas.status import ConsumersFinal, DecisionCount, FlowReport, ProducersFinal

from .harness import small_run

NOW = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
PROFILES = [
    None,
    LoadProfile(kind="poisson"),
    LoadProfile(kind="batch", every=1.0),
    LoadProfile(kind="ramp"),
    LoadProfile(kind="burst", at=0.2, length=0.3),
]


# ---------------------------------------------------------------- the producers' split


@pytest.mark.parametrize("workers", [1, 2, 3, 5])
def test_worker_shares_divide_every_schedule_position_once(workers):
    shares = [WorkerShare(k, workers) for k in range(workers)]
    positions = [p for s in shares for p in s.positions(103)]
    assert sorted(positions) == list(range(103))
    assert max(len(s.positions(103)) for s in shares) - min(len(s.positions(103)) for s in shares) <= 1  # the rate divided evenly
    for s in shares:  # from any position, skip() finds the worker's next one
        for start in range(0, 20):
            assert (start + s.skip(start)) % workers == s.index and s.skip(start) < workers


@pytest.mark.parametrize(("index", "workers"), [(2, 2), (-1, 2), (0, 0)])
def test_a_worker_index_outside_the_workers_is_refused(index, workers):
    with pytest.raises(ValueError, match="--worker-index"):
        WorkerShare(index, workers)


@functools.cache
def _pool(scenario: Scenario, seed: int) -> EntityPool:
    return entity_pool(scenario, seed)


async def _published(workers: int, index: int, profile: LoadProfile | None, seed: int = 3) -> list[tuple[str, int, bytes | None, bytes, bytes]]:
    """What worker ``index`` of ``workers`` builds over a 2-second demo schedule, ticked unevenly
    (the schedule asked in odd-sized steps, as a loaded event loop would): (entry, intended
    offset ns, key, value, trace id) per record. A ``datetime`` item is the clock's time when
    the corpus is built (producers/records.py), in every process its own: left out."""
    scenario = load("demo")
    with pytest.MonkeyPatch.context() as mp:  # the pool is the same for every worker: built once here
        mp.setattr("producers.process.entity_pool", _pool)
        publishers = build_publishers(scenario, "127.0.0.1:1", seed, PublishStats(), "run", 0.5, WorkerShare(index, workers))
    out = []
    rng = random.Random(index)  # each worker ticks differently
    for p in publishers:
        for s in p.schedules:
            s.profile = profile
            s.partitions = [0, 1, 2]  # no broker here: the partition is not what is compared
        p.prepare(2.0)
        for s in p.schedules:
            while not s.schedule.finished(s.next_index, 2_000_000_000):
                batches: dict = {}
                due = s.schedule.due(2_000_000_000)
                p._build(s, min(due - s.next_index, rng.randint(1, 50)), 0, batches)
                for records in batches.values():
                    for key, value, headers, intended, entry in records:
                        h = dict(headers)
                        assert int(h[H_INTENDED]) == intended
                        out.append((entry, intended, key, NOW.sub(b"<now>", value), h[H_TRACE]))
    for p in publishers:
        await p.stop()
    return out


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.kind if p else "constant")
@pytest.mark.parametrize("workers", [2, 3])
async def test_producer_workers_publish_together_exactly_the_one_workers_records(profile, workers):
    single = await _published(1, 0, profile)
    parts = [await _published(workers, k, profile) for k in range(workers)]
    assert single and all(parts)
    # the same records (entry, intended time, key, value), each once
    assert Counter(r[:4] for part in parts for r in part) == Counter(r[:4] for r in single)
    # every entry's records divided evenly, so is its rate
    for entry, n in Counter(r[0] for r in single).items():
        shares = [sum(1 for r in part if r[0] == entry) for part in parts]
        assert max(shares) - min(shares) <= 1 and sum(shares) == n
    # trace ids: disjoint between the workers, dense together per producer, as one worker numbers them
    traces = [r[4] for part in parts for r in part]
    assert len(set(traces)) == len(traces)
    by_producer: dict[int, list[int]] = {}
    for t in traces:
        producer, seq = parse_trace_id(t)
        by_producer.setdefault(producer, []).append(seq)
    single_by_producer = Counter(parse_trace_id(r[4])[0] for r in single)
    for producer, seqs in by_producer.items():
        assert sorted(seqs) == list(range(1, single_by_producer[producer] + 1))


def test_a_gateway_cap_is_divided_between_the_producer_workers():
    gateway = Gateway(id="g", latency_ms=5, max_records_per_s=1000)
    assert worker_gate(gateway, 1).rate == 1000 and worker_gate(gateway, 4).rate == 250
    assert worker_gate(gateway, 4).latency_s == 0.005  # the latency is each record's, not shared
    assert worker_gate(Gateway(id="g", latency_ms=5), 4).rate is None and worker_gate(None, 4) is None


# ---------------------------------------------------------------- the consumers' split


def test_departments_are_divided_round_robin_each_on_one_worker():
    scenario = load("demo")
    departments = sorted({s.consumer for s in scenario.subscriptions})
    for workers in range(1, len(departments) + 1):
        assigned = assign_departments(scenario, workers)
        assert len(assigned) == workers and all(assigned)
        assert sorted(d for w in assigned for d in w) == departments  # each once
        assert max(map(len, assigned)) - min(map(len, assigned)) <= 1
    assert assign_departments(scenario, 2) == assign_departments(scenario, 2)  # the scenario alone decides


def test_departments_receiving_a_workflows_steps_stay_on_one_worker_with_the_accountant():
    scenario = load("hubei-business-startup")
    steps = {step for w in scenario.workflows for step in w.steps}
    receivers = {s.consumer for s in scenario.subscriptions if s.entry in steps}
    assert receivers and subscribing_units(scenario)[0] == tuple(sorted(receivers))
    for workers in range(1, len(subscribing_units(scenario)) + 1):
        assert receivers <= set(assign_departments(scenario, workers)[ACCOUNTANT_WORKER])


def test_more_consumer_workers_than_departments_or_chaos_with_several_are_refused_before_anything_starts():
    scenario = load("demo")
    units = len(subscribing_units(scenario))
    with pytest.raises(WorkersError, match=rf"--consumer-workers {units + 1}: demo has {units} unit"):
        check_workers(RunOptions(scenario, consumer_workers=units + 1))
    with pytest.raises(WorkersError, match="--chaos needs one consumer worker"):
        check_workers(RunOptions(scenario, consumer_workers=2, chaos="kill-consumers@2s"))
    check_workers(RunOptions(scenario, producer_workers=3, consumer_workers=units, chaos=None))


# ---------------------------------------------------------------- merging the reports


def _hist(*ms: int) -> str:
    h = new_histogram()
    for v in ms:
        record_ns(h, v * 1_000_000)
    return encode(h)


def test_final_reports_merge_counts_and_histograms_exactly():
    a = ProducersFinal(
        elapsed_s=2.0,
        produced={"x": 3, "y": 1},
        sent=4,
        retried=1,
        publish_delay=_hist(1, 2),
        publish_latency=_hist(5),
        warmup_published=1,
        warmup_publish_delay=_hist(),
        warmup_publish_latency=_hist(9),
    )
    b = a.model_copy(update={"elapsed_s": 2.5, "produced": {"x": 2}, "publish_latency": _hist(7, 8)})
    m = merge.producers_final([a, b])
    assert (m.elapsed_s, m.produced, m.sent, m.retried, m.warmup_published) == (2.5, {"x": 5, "y": 1}, 8, 2, 2)
    assert decode(m.publish_latency).get_total_count() == 3 and decode(m.warmup_publish_latency).get_total_count() == 2

    def consumers(**kw) -> ConsumersFinal:
        base = dict.fromkeys(("received", "delivered", "duplicates", "unlabelled", "foreign", "denied", "dead_lettered", "dead_letter_records"), 0)
        base |= {"audited_deliveries": 0, "conflicts": 0, "reactions_pending": 0, "first_ns": 0, "last_ns": 0}
        base |= {"lag": {}, "clock_skew": {}, "reactions_produced": {}, "flows": {}, "hops": {}, "warmup_hops": {}, "paths": {}}
        base |= {"decisions": [], "dead_letters": [], "undecodable": [], "foreign_dead_letters": [], "quality_events": []}
        return ConsumersFinal(**(base | {"samples": None, "workflows": {}} | kw))

    flow = FlowReport(
        within_cycle=0,
        delivered=2,
        duplicates=0,
        e2e=_hist(3, 4),
        e2e_intended=_hist(3, 4),
        warmup_delivered=0,
        warmup_e2e=_hist(),
        warmup_e2e_intended=_hist(),
    )
    w0 = consumers(
        received=2,
        delivered=2,
        denied=5,
        first_ns=20,
        last_ns=30,
        lag={"a": 1},
        flows={"a.x": flow},
        decisions=DecisionCount.rows({("s", "deny", "r"): 5}),
    )
    w1 = consumers(received=3, delivered=3, first_ns=10, last_ns=25, lag={"b": 2}, flows={"b.x": flow, "a.x": flow}, reactions_produced={"x": 1})
    m2 = merge.consumers_final([w0, w1])
    assert (m2.received, m2.delivered, m2.denied, m2.first_ns, m2.last_ns) == (5, 5, 5, 10, 30)
    assert m2.lag == {"a": 1, "b": 2} and m2.reactions_produced == {"x": 1}
    assert m2.flows["a.x"].delivered == 4 and decode(m2.flows["a.x"].e2e).get_total_count() == 4 and m2.flows["b.x"] == flow
    assert m2.decisions == DecisionCount.rows({("s", "deny", "r"): 5})


# ---------------------------------------------------------------- end to end


def _outcomes(result: dict) -> dict:
    """What must not depend on how many workers ran: every count, per flow and per entry."""
    return {
        "counts": {k: v for k, v in result["counts"].items()},
        "flows": {name: (f["delivered"], f["denied"], f["denied_by_reason"]) for name, f in result["flows"].items()},
        "by_entry": result["counts_by_entry"],
        "workflows": {name: w["completed"] + w["incomplete"] for name, w in result["workflows"].items()},
    }


@pytest.mark.parametrize(("scenario", "consumer_workers"), [("demo", 2), pytest.param("hubei-business-startup", 3, marks=pytest.mark.slow)])
def test_a_run_with_several_producer_and_consumer_workers_counts_what_one_of_each_counts(tmp_path, scenario, consumer_workers):
    """Same scenario and seed: every count equal, conservation holds, no trace id of one
    producer worker met another's (a collision would be dropped as a duplicate and show as
    one delivery fewer). hubei-business-startup adds reactions and a workflow across the
    consumer workers."""
    one = small_run(tmp_path / "one", scenario)
    many = small_run(tmp_path / "many", scenario, "--producer-workers", "2", "--consumer-workers", str(consumer_workers))
    assert one["conservation"]["ok"] and many["conservation"]["ok"], many["conservation"]["message"]
    assert _outcomes(many) == _outcomes(one)
    assert many["counts"]["duplicates"] == 0 and many["counts"]["produced"] > 0
    assert (many["run"]["producer_workers"], many["run"]["consumer_workers"], many["producersPerTopic"]) == (2, consumer_workers, 2)
    run_dir = tmp_path / "many"
    for k in range(2):  # each worker says which one it is
        assert {m.sender.worker for m in read_messages(run_dir / f"producers-{k}.jsonl")} == {str(k)}
    finals = [next(m.body for m in read_messages(run_dir / f"consumers-{k}.jsonl") if m.kind == "final") for k in range(consumer_workers)]
    assert [sorted(f.lag) for f in finals] == assign_departments(load(scenario), consumer_workers)  # each its own departments
    assert [bool(f.decisions) for f in finals] == [True] + [False] * (consumer_workers - 1)  # the accountant on worker 0 only
    assert (run_dir / "samples.jsonl").is_file() and not list(run_dir.glob("samples-*.jsonl"))
    if scenario == "hubei-business-startup":
        assert sum(many["counts_by_entry"][e]["produced"] for e in ("seal-engraving", "invoice-issue", "social-insurance-registration")) > 0
