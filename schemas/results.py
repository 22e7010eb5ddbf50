"""The result of a run (``OUT/result.json``).

Top-level fields follow OpenMessaging Benchmark's ``TestResult``, with its names and
units (latencies in milliseconds, publish delay in microseconds, rates in records/s per
``sampleRateMillis`` interval), so tools written for OMB results read ours unchanged.
Our own breakdown (counts, per-entry and per-flow figures, the conservation check)
sits beside them in snake_case.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.clock import ClockOffset


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(_Model):
    """Outcomes are counted per record and subscription: a record of an entry with three
    subscriptions accounts for three outcomes (one when nobody subscribes)."""

    produced: int = Field(description="records acknowledged by the broker")
    expected: int = Field(description="outcomes the produced records must account for")
    delivered: int = Field(description="outcomes received by a subscriber (duplicates dropped)")
    denied: int = Field(description="outcomes denied by a sharing rule (from the audit trail)")
    dead_lettered: int = Field(description="outcomes of records sent to the dead-letter topic")
    unaccounted: int = Field(description="expected − delivered − denied − dead_lettered; must be 0")
    duplicates: int = Field(default=0, description="redelivered records dropped by trace id")
    undecodable: int = Field(
        default=0,
        description="records in ingress batches the router could not decode (dead-lettered as unsupported_codec or "
        "corrupt_batch); no run id can be read from them, so they are not among this run's outcomes",
    )
    foreign_dead_lettered: int = Field(
        default=0,
        description="records dead-lettered during the run that carry no run id or another run's (written to an "
        "ingress topic by another client, or left by an earlier run); not among this run's outcomes",
    )
    foreign_dead_letters_by_reason: dict[str, int] = Field(
        default_factory=dict, description="foreign_dead_lettered by dead-letter reason (missing_header, bad_json…)"
    )


class EntryCounts(_Model):
    produced: int
    subscriptions: int
    expected: int
    delivered: int
    denied: int
    dead_lettered: int
    unaccounted: int


class Quantiles(_Model):
    p50: float = Field(alias="50pct")
    p75: float = Field(alias="75pct")
    p95: float = Field(alias="95pct")
    p99: float = Field(alias="99pct")
    p999: float = Field(alias="999pct")
    p9999: float = Field(alias="9999pct")
    p99999: float = Field(alias="99999pct")
    max: float
    avg: float

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FlowResult(_Model):
    """One subscription: an entry flowing to a consumer department."""

    entry: str
    consumer: str
    delivered: int
    denied: int
    denied_by_reason: dict[str, int]
    duplicates: int
    records_per_s: float
    end_to_end_ms: Quantiles = Field(description="receive − send time (after the warm-up)")
    end_to_end_from_intended_ms: Quantiles = Field(description="receive − intended send time (after the warm-up)")
    warmup_delivered: int = Field(default=0, description="of delivered, records of the warm-up (not in the latency figures)")
    within_cycle_share: float | None = Field(default=None, description="batch entries: share delivered within their update cycle")
    interval_p50_ms: list[float | None] = Field(default_factory=list, description="per consumer interval; null: nothing arrived")
    interval_p99_ms: list[float | None] = Field(default_factory=list)


class HopResult(_Model):
    """One segment of the hub path: a link into a hub, the time inside one, or the last link."""

    count: int = Field(description="deliveries that crossed this segment, the warm-up's included")
    warmup_count: int = Field(default=0, description="of count, records of the warm-up (not in latency_ms)")
    latency_ms: Quantiles = Field(description="after the warm-up")


class PathResult(_Model):
    """The records that crossed the same hubs in the same order (一条链路)."""

    hubs: list[str]
    delivered: int = Field(description="deliveries over this path, the warm-up's included")
    warmup_delivered: int = Field(default=0, description="of delivered, records of the warm-up (not in end_to_end_ms)")
    end_to_end_ms: Quantiles = Field(description="receive − send time over the whole path (after the warm-up)")


class ItemVerification(_Model):
    """一数一源 for one data item: copies checked against its authoritative source."""

    verified: int = Field(description="copies that agreed with the source")
    conflicts: int = Field(description="copies that disagreed (each a quality event)")
    unverified: int = Field(description="copies with no authoritative value yet (not delivered)")
    invalid_key: int = Field(
        0,
        description=(
            "values of records whose master key fits no standard form (GB 11643 ID number, GB 32100 credit code, "
            "GA 36 plate), so nothing could be matched: copies not delivered, a source's values not stored"
        ),
    )
    verification_rate: float = Field(description="verified / (verified + conflicts)")
    quality_events: int = Field(description="quality events read back from the quality topic (duplicates dropped)")
    by_department: dict[str, int] = Field(description="'<copying department>:<outcome>' → count")


class WorkflowResult(_Model):
    """A joint process (e.g. 企业开办), per master key: start record's intended send time
    to the arrival of its last step."""

    completed: int
    incomplete: int = Field(description="started, but not every step had arrived when the run ended")
    time_ms: Quantiles


class SloVerdict(_Model):
    name: str
    metric: str
    target: str = Field(description="e.g. '≤ 200' or '≥ 0.99'")
    measured: float | None = Field(description="None when nothing was measured (no records on the flows named)")
    passed: bool
    entries: tuple[str, ...] | None = Field(None, description="the catalogue entries whose flows it judges (the SLO's entries); None: every flow")


class Conservation(_Model):
    ok: bool
    message: str


class FaultResult(_Model):
    """One fault injected with ``exchange run --chaos`` and how the exchange came back.

    Lag is router lag (ingress records not yet taken in) plus consumer lag (deliveries not
    yet read), in records, sampled by the controller five times a second; latency is the
    subscribers' end-to-end p99 over their last one-second interval (exchange/runner/chaos.py)."""

    spec: str = Field(description="the fault as given, normalised, e.g. 'pause-broker@5s+3s'")
    kind: str = Field(description="kill-router, pause-router, kill-consumers, pause-consumer, pause-broker or kill-broker")
    target: str | None = Field(description="router worker id, subscribing department or broker node id as given; null for the others")
    at_s: float = Field(description="scheduled time, seconds after publishing started")
    injected_at_s: float | None = Field(description="when it was injected (the controller polls every 0.2 s); null if the run ended first")
    duration_s: float = Field(
        description="0 for kills (the process is restarted at once); kill-broker: how long the node was down before its restart"
    )
    node: int | None = Field(default=None, description="the broker node a kill-broker or pause-broker hit on a Kafka cluster")
    node_chosen: str | None = Field(
        default=None, description="why that node, when the spec named none (the node leading the most ingress partitions)"
    )
    baseline_lag: float = Field(description="mean lag over the 3 s before the fault, records")
    peak_lag: int = Field(description="highest lag from the fault until recovery (or the end of the run), records")
    recovered_after_s: float | None = Field(
        description="seconds from the end of the fault (a kill: the kill) until lag and latency were both back to normal: "
        "lag ≤ max(baseline × 1.5, baseline + 100), p99 ≤ max(baseline × 1.5, baseline + 50 ms); null if not within the run"
    )
    lag_recovered_after_s: float | None = Field(default=None, description="the same, lag alone")
    latency_recovered_after_s: float | None = Field(default=None, description="the same, end-to-end p99 alone")
    baseline_p99_ms: float | None = Field(default=None, description="mean end-to-end p99 over the 3 s before the fault, ms")
    peak_p99_ms: float | None = Field(default=None, description="highest interval end-to-end p99 from the fault until recovery, ms")
    publish_delay_max_ms: float | None = Field(
        default=None, description="highest per-interval publish delay from the fault until recovery: a producer stall shows here"
    )


class SlotWorker(_Model):
    """A process of the run that an ``exchange join`` worker ran (``exchange run --external``)."""

    slot: str = Field(description="the process's name in the run (router-1, consumers …)")
    role: str
    worker_id: str = Field(description="the worker's id (host, pid and a random part)")
    host: str
    pid: int = Field(description="the process's pid on that host (0: never started)")


class RunInfo(_Model):
    scenario: str
    run_id: str = Field(description="stamped on every record of the run (header run-id)")
    seed: int
    duration_s: float
    started_at: str
    bootstrap: str
    embedded_broker: bool
    router_workers: int = Field(description="router worker processes per hub")
    producer_workers: int = Field(default=1, description="producer processes, each publishing one record in P of every entry's schedule")
    consumer_workers: int = Field(default=1, description="consumer processes, the subscribing departments divided between them")
    hubs: list[str] = Field(default_factory=list, description="platforms that ran a router (several in a cascade)")
    fetch_wait_ms: int | None = Field(default=None, description="the routers' fetch wait (latency per idle hop against CPU per hub)")
    warmup_s: float = Field(default=0.0, description="seconds of warm-up at the start of publishing (0: none)")
    router_ready_s: list[float]
    router_cpu: dict[str, float] = Field(
        default_factory=dict,
        description="each router process's CPU from the start of publishing to the end of the drain, in cores "
        "(CPU seconds / wall seconds; 0.1 is 10 % of a core), by process name",
    )
    broker: str | None = Field(
        default=None,
        description="the broker the run started, kind and version, e.g. "
        "'Apache Kafka 4.1.1 (KRaft, 3 nodes, RF 3, min ISR 2)'; null: an existing one at bootstrap",
    )
    broker_start_s: float | None = Field(default=None, description="seconds from starting the broker until it answered")
    guarantee: str = Field(
        default="at-least-once",
        description="the run's delivery guarantee: at-least-once or exactly-once "
        "(idempotent producers, transactional routers, read_committed subscribers)",
    )
    topic_layout: str = Field(
        default="per-entry", description="the ingress topic layout: per-entry, per-department, per-mode or per-class (scenario `topics`)"
    )
    subscriber_clients: str = Field(
        default="per-department",
        description="how the consumer workers read the delivery topics: shared (one Kafka consumer per worker for the "
        "departments, those with a consume rate or gateway alone) or per-department (each its own consumer and group); "
        "results from before the setting were per-department",
    )
    quiet_fetch_wait_ms: int | None = Field(
        default=None,
        description="the quiet lanes' fetch wait (ms): the routers' second consumer and the shared client of departments that "
        "receive only daily, monthly and batch entries; 0: no quiet lane; null: not recorded (results from before the setting)",
    )
    ingress_topics: int | None = Field(default=None, description="ingress topics the run created, every hub's (null: not recorded)")
    ingress_partitions: int | None = Field(default=None, description="partitions of those topics: what the routers fetch")
    router_cpu_s: float | None = Field(
        default=None, description="CPU seconds (user + system) the router workers spent, every hub's, over cpu_window_s"
    )
    broker_cpu_s: float | None = Field(
        default=None,
        description="CPU seconds (user + system) the broker processes the run started spent, over cpu_window_s (null: an existing broker)",
    )
    cpu_window_s: float | None = Field(
        default=None, description="seconds router_cpu_s and broker_cpu_s were measured over: from publishing's start to the collection"
    )
    cpu_s: dict[str, float] = Field(
        default_factory=dict,
        description="CPU seconds (user + system) over cpu_window_s by role of this machine's processes of the run: router, broker "
        "(one the run started), producers, consumers, controller; and other: the rest of what kept the machine busy (other "
        "processes, the kernel). Workers on other machines are not in it",
    )
    machine_cores: int | None = Field(default=None, description="the controller's machine's cores (os.cpu_count())")
    machine_busy: float | None = Field(
        default=None,
        description="share of machine_cores busy over cpu_window_s, whoever kept them busy (/proc/stat); from 0.9 on the run "
        "is CPU-bound and says so in warnings: its latencies include waiting for a core",
    )
    drain_s: float
    dead_letters_by_reason: dict[str, int]
    clock_offsets: dict[str, ClockOffset] = Field(
        default_factory=dict,
        description="per process (router-0, consumers, producers…): its clock offset to the controller's, measured at its start "
        "(controller − process, ns, ± error_ns); a process measured nothing when it is missing",
    )
    clock_correction: bool = Field(
        default=True, description="the processes read their clocks corrected by their offsets (false: exchange run --no-clock-correction)"
    )
    clock_offset_limit_ms: float = Field(
        default=50.0, description="offsets larger than this, ms, are warned of (exchange run --clock-offset-limit-ms)"
    )
    workers: list[SlotWorker] = Field(
        default_factory=list, description="processes run by exchange join workers on other machines (--external); empty: every process was local"
    )


_SUFFIXES = ("Avg", "50pct", "75pct", "95pct", "99pct", "999pct", "9999pct", "99999pct", "Max")


class WarmupResult(_Model):
    """The warm-up (``exchange run --warmup``): records whose intended send time fell in the first
    ``seconds`` of the schedule. They are routed, delivered and counted like any other (``counts``
    and the conservation check include them) but kept out of the aggregated latency figures, the
    per-flow, per-hop and per-path percentiles and the SLO verdicts; their own figures are here.
    Per-interval series keep every second, the warm-up's included."""

    seconds: float = Field(description="length of the warm-up, seconds from the start of the producers' schedule")
    published: int = Field(
        description="records the producers had acknowledged whose intended send time fell in the warm-up "
        "(reactions, published by the consumer process, not included)"
    )
    delivered: int = Field(description="outcomes of warm-up records received by a subscriber (in counts.delivered too)")
    publish_latency_ms: Quantiles = Field(description="the warm-up's publish latency (send → broker ack)")
    publish_delay_ms: Quantiles = Field(description="the warm-up's publish delay (intended → actual send time)")
    end_to_end_ms: Quantiles = Field(description="the warm-up's end-to-end latency (receive − send time)")
    end_to_end_from_intended_ms: Quantiles = Field(description="the warm-up's receive − intended send time")


class ClockSkewResult(_Model):
    """Deliveries from one source whose latency cannot be true: the source's clock disagrees
    with the receiver's (or its headers lie). They are delivered and counted, but kept out of
    every latency percentile, average and per-interval figure."""

    records: int = Field(description="deliveries measured as negative or longer than an hour (end to end, from sent or intended time)")
    min_ms: float = Field(description="the lowest impossible latency seen, ms (negative: the source's clock is ahead)")
    max_ms: float = Field(description="the highest impossible latency seen, ms")


class Result(_Model):
    """``OUT/result.json``. The camelCase fields are OpenMessaging Benchmark's TestResult,
    named, shaped and in units as it has them (per-interval lists; aggregated values;
    ``aggregated…Quantiles`` maps of percentile → value; milliseconds, except publish delay
    in microseconds); our breakdown follows in snake_case."""

    # OpenMessaging Benchmark TestResult fields
    workload: str
    driver: str
    messageSize: int
    topics: int
    partitions: int
    producersPerTopic: int
    consumersPerTopic: int
    sampleRateMillis: int = 1000
    publishRate: list[float]
    publishErrorRate: list[float] = Field(default_factory=list)
    consumeRate: list[float]
    backlog: list[int] = Field(default_factory=list, description="ingress records not yet taken in by the router (end offsets minus positions)")
    consumer_lag: dict[str, list[int]] = Field(default_factory=dict, description="per delivery topic (department), per interval")
    publishLatencyAvg: list[float] = Field(default_factory=list)
    publishLatency50pct: list[float] = Field(default_factory=list)
    publishLatency75pct: list[float] = Field(default_factory=list)
    publishLatency95pct: list[float] = Field(default_factory=list)
    publishLatency99pct: list[float] = Field(default_factory=list)
    publishLatency999pct: list[float] = Field(default_factory=list)
    publishLatency9999pct: list[float] = Field(default_factory=list)
    publishLatency99999pct: list[float] = Field(default_factory=list)
    publishLatencyMax: list[float] = Field(default_factory=list)
    publishDelayLatencyAvg: list[float] = Field(default_factory=list)
    publishDelayLatency50pct: list[float] = Field(default_factory=list)
    publishDelayLatency75pct: list[float] = Field(default_factory=list)
    publishDelayLatency95pct: list[float] = Field(default_factory=list)
    publishDelayLatency99pct: list[float] = Field(default_factory=list)
    publishDelayLatency999pct: list[float] = Field(default_factory=list)
    publishDelayLatency9999pct: list[float] = Field(default_factory=list)
    publishDelayLatency99999pct: list[float] = Field(default_factory=list)
    publishDelayLatencyMax: list[float] = Field(default_factory=list)
    endToEndLatencyAvg: list[float] = Field(default_factory=list)
    endToEndLatency50pct: list[float] = Field(default_factory=list)
    endToEndLatency75pct: list[float] = Field(default_factory=list)
    endToEndLatency95pct: list[float] = Field(default_factory=list)
    endToEndLatency99pct: list[float] = Field(default_factory=list)
    endToEndLatency999pct: list[float] = Field(default_factory=list)
    endToEndLatency9999pct: list[float] = Field(default_factory=list)
    endToEndLatency99999pct: list[float] = Field(default_factory=list)
    endToEndLatencyMax: list[float] = Field(default_factory=list)
    aggregatedPublishLatencyAvg: float = 0.0
    aggregatedPublishLatency50pct: float = 0.0
    aggregatedPublishLatency75pct: float = 0.0
    aggregatedPublishLatency95pct: float = 0.0
    aggregatedPublishLatency99pct: float = 0.0
    aggregatedPublishLatency999pct: float = 0.0
    aggregatedPublishLatency9999pct: float = 0.0
    aggregatedPublishLatency99999pct: float = 0.0
    aggregatedPublishLatencyMax: float = 0.0
    aggregatedPublishLatencyQuantiles: dict[str, float] = Field(default_factory=dict)
    aggregatedPublishDelayLatencyAvg: float = 0.0
    aggregatedPublishDelayLatency50pct: float = 0.0
    aggregatedPublishDelayLatency75pct: float = 0.0
    aggregatedPublishDelayLatency95pct: float = 0.0
    aggregatedPublishDelayLatency99pct: float = 0.0
    aggregatedPublishDelayLatency999pct: float = 0.0
    aggregatedPublishDelayLatency9999pct: float = 0.0
    aggregatedPublishDelayLatency99999pct: float = 0.0
    aggregatedPublishDelayLatencyMax: float = 0.0
    aggregatedPublishDelayLatencyQuantiles: dict[str, float] = Field(default_factory=dict)
    aggregatedEndToEndLatencyAvg: float = 0.0
    aggregatedEndToEndLatency50pct: float = 0.0
    aggregatedEndToEndLatency75pct: float = 0.0
    aggregatedEndToEndLatency95pct: float = 0.0
    aggregatedEndToEndLatency99pct: float = 0.0
    aggregatedEndToEndLatency999pct: float = 0.0
    aggregatedEndToEndLatency9999pct: float = 0.0
    aggregatedEndToEndLatency99999pct: float = 0.0
    aggregatedEndToEndLatencyMax: float = 0.0
    aggregatedEndToEndLatencyQuantiles: dict[str, float] = Field(default_factory=dict)
    # our breakdown
    counts: Counts
    counts_by_entry: dict[str, EntryCounts]
    flows: dict[str, FlowResult]
    hops: dict[str, HopResult] = Field(
        default_factory=dict,
        description="per segment, from the hubs' in/out stamps: 'producer → gz' (into a hub), 'gz' (inside it), 'gz → gy', 'gy → consumer'",
    )
    paths: dict[str, PathResult] = Field(default_factory=dict, description="per hub path ('gy > gz > nation'), end to end")
    conservation: Conservation
    one_number_one_source: dict[str, ItemVerification] = Field(default_factory=dict, description="per item")
    workflows: dict[str, WorkflowResult] = Field(default_factory=dict)
    control_actions: dict[str, int] = Field(default_factory=dict, description="'<action>:accepted|refused' → count")
    clock_skew: dict[str, ClockSkewResult] = Field(
        default_factory=dict,
        description="per source department: deliveries whose latency cannot be true (clock skew), "
        "kept out of the latency figures; empty when every clock agreed",
    )
    warmup: WarmupResult | None = Field(default=None, description="the warm-up's counts and latencies; null when there was none")
    slos: list[SloVerdict] = Field(default_factory=list)
    faults: list[FaultResult] = Field(default_factory=list, description="faults injected with --chaos, each with its recovery")
    warnings: list[str] = Field(
        default_factory=list, description="what a reader of the figures must know, one line each (e.g. clock offsets over the limit)"
    )
    run: RunInfo
