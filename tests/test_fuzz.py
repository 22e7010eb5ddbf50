"""Fuzzing the router's decoding and policy: nothing lost, nothing raised, whatever arrives.

Two layers. Hypothesis drives the pure core (:meth:`RouterCore.route`) with fetched records
built from mutations of good ones (random bytes, wrong types, huge values, missing,
duplicated and null headers, unknown entries and topics, invalid UTF-8, deep nesting); every
record must end as exactly one dead letter with a reason, or as one outcome per
subscription of its entry. Then the real thing: kafka-python (an independent client, not
our producer) writes each bad class as raw bytes, interleaved with good records, to a real
router worker on the embedded broker.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import cache

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.policy.routing import RouterCore
from exchange.policy.sharing import MAX_ITEM_CHARS, compile_policy
from exchange.scenarios.loader import load
from producers.records import EntityPool, RecordFactory, regions_of
from schemas.envelope import (
    H_ENTRY,
    H_INTENDED,
    H_RUN,
    H_SCHEMA,
    H_SENT,
    H_SOURCE,
    H_SUBSCRIPTION,
    H_TRACE,
    DeadLetter,
    Topics,
    audit_records,
    record_headers,
)

from .harness import envelope, new_run, router_on_embedded_broker, sharing_scenario

# --- the pure core ------------------------------------------------------------------


@dataclass
class Fetched:
    """A record as aiokafka hands it over: header keys are str, header values bytes or None."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list


@cache
def _world(name: str):
    """(scenario, topics, core, good-record factories per entry) for a scenario."""
    scenario = sharing_scenario() if name == "sharing" else load(name)
    topics = Topics(scenario.platform.id)
    policies = compile_policy(scenario, topics)
    core = RouterCore(policies, topics, "0", audit_partitions=4)
    pool = EntityPool(5, regions_of(scenario.platform.region), people=50, enterprises=20, vehicles=10)
    factories = {e.id: RecordFactory(e, pool, random.Random(e.id)) for e in scenario.catalogue}
    return scenario, topics, core, factories


SCENARIOS = ["sharing", "demo", "shenzhen-credit", "hubei-business-startup"]

JUNK_BYTES = st.one_of(
    st.binary(max_size=64),
    st.just(b"\xff\xfe\xfd"),  # invalid UTF-8
    st.just(b"\xed\xa0\x80"),  # an encoded surrogate: invalid UTF-8 too
    st.just(b"9" * 5000),  # digits, absurdly many
    st.just(b"-1"),
    st.just(b""),
)
HEADER_VALUE = st.one_of(st.none(), JUNK_BYTES)


def _deep(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def _item_value():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=2**64),
        st.floats(allow_nan=False),
        st.text(max_size=20),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.just("x" * (MAX_ITEM_CHARS + 1)),
        st.just("一" * (MAX_ITEM_CHARS + 1)),
    )


@st.composite
def values(draw, record: dict):
    """A good record's value, or something derived from it that may be anything but good."""
    kind = draw(st.sampled_from(["good", "good", "item", "unknown", "drop", "bytes", "json", "deep", "utf8", "none", "big", "dup"]))
    if kind == "good":
        return orjson.dumps(record)
    if kind == "item":  # one item replaced by a value of any type and size
        key = draw(st.sampled_from(sorted(record)))
        return _dumps({**record, key: draw(_item_value())})
    if kind == "unknown":
        return orjson.dumps({**record, draw(st.text(max_size=12)): "x"})
    if kind == "drop":  # a subset of the items: still valid, items are optional
        keep = draw(st.sets(st.sampled_from(sorted(record))))
        return orjson.dumps({k: v for k, v in record.items() if k in keep})
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":  # any JSON document
        doc = draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                max_leaves=10,
            )
        )
        return _dumps(doc)
    if kind == "deep":
        return _deep(draw(st.sampled_from([1000, 1025, 5000, 10_000])), draw(st.sampled_from(["list", "object"])))
    if kind == "utf8":  # invalid UTF-8 inside a string of an otherwise good record
        good = orjson.dumps(record)
        cut = good.index(b'":"') + 3 if b'":"' in good else 1
        return good[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + good[cut:]
    if kind == "none":
        return None
    if kind == "big":  # near the broker and router maximum (8 MB fetches)
        return orjson.dumps({**record, "_pad": "x" * 4_000_000}) if draw(st.booleans()) else b'{"a": "' + b"x" * 4_000_000 + b'"}'
    # dup: the same key twice in one object (JSON allows it; the last one wins)
    good = orjson.dumps(record)
    return good[:-1] + b"," + good[1:] if len(record) else good


def _dumps(doc) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # a big int orjson will not write: write it by hand
        return repr(doc).encode(errors="surrogateescape")


@st.composite
def headers_for(draw, entry: str, source: str, trace: bytes):
    headers = record_headers(trace, entry, source, 1, 2, "fuzz")
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["drop", "dup", "null", "junk", "extra", "badkey", "none"]))
        if op == "drop" and headers:
            del headers[draw(st.integers(0, len(headers) - 1))]
        elif op == "dup" and headers:
            headers.append(headers[draw(st.integers(0, len(headers) - 1))])
        elif op in ("null", "junk") and headers:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i] = (headers[i][0], None if op == "null" else draw(JUNK_BYTES))
        elif op == "extra":
            headers.append((draw(st.text(max_size=10)), draw(HEADER_VALUE)))
        elif op == "badkey":  # a header key that was not UTF-8 on the wire (decoded with surrogateescape)
            headers.append(("trace\udcff-id", b"x"))
        elif op == "none":
            headers = draw(st.sampled_from([[], None]))
            break
    return headers


@st.composite
def fetched(draw, name: str, offset: int):
    scenario, topics, _, factories = _world(name)
    entry = draw(st.sampled_from([e.id for e in scenario.catalogue]))
    key, record = factories[entry].make()
    topic = draw(st.sampled_from([topics.ingress(entry)] * 6 + [topics.ingress("no-such-entry"), "elsewhere", topics.ingress("")]))
    provider = scenario.entries[entry].provider
    source = draw(st.sampled_from([provider, provider, provider, "nobody", scenario.departments[0].id]))
    header_entry = draw(st.sampled_from([entry] * 8 + [scenario.catalogue[0].id]))
    trace = b"7.%d" % offset
    return Fetched(
        topic, offset % 4, offset, draw(st.sampled_from([key, None, b"\xff"])), draw(values(record)), draw(headers_for(header_entry, source, trace))
    )


def check_every_record_is_accounted_for(core: RouterCore, scenario, records: list[Fetched], routed) -> None:
    """Dead letter with a reason, or one outcome per subscription of its entry; nothing else."""
    assert routed.records == len(records)
    letters = [orjson.loads(v) for _, v, _ in routed.dead_letters]
    for letter in letters:
        DeadLetter.model_validate(letter)
        assert letter["reason"] and letter["detail"], letter
    dead_offsets = [letter["offset"] for letter in letters]
    assert len(dead_offsets) == len(set(dead_offsets)), "a record dead-lettered twice"
    assert sum(routed.dead_reasons.values()) == len(letters)
    by_offset = {r.offset: r for r in records}
    rows = [row for block in routed.audit.values() for row in block]
    decided: dict[str, list[tuple]] = {}
    for row in rows:
        decided.setdefault(row[0], []).append(row)
    routed_records = [r for r in records if r.offset not in dead_offsets]
    assert set(decided) == {dict(r.headers)[H_TRACE].decode() for r in routed_records}
    expected_decisions = 0
    expected: dict[str, list] = {}  # by trace id (junk headers can give two records the same one)
    for r in routed_records:
        policy = core.policies[core.entry_of(r.topic)]
        subs = [route.subscription for route in policy.routes]
        expected.setdefault(dict(r.headers)[H_TRACE].decode(), []).extend(subs or [None])
        expected_decisions += max(1, len(subs))
    for trace, subs in expected.items():
        covered = []
        for row in decided[trace]:
            sub = row[6]
            covered.extend(sub if isinstance(sub, list) else [sub])
            assert row[7] in ("delivered", "denied") and row[8], row
        assert sorted(covered, key=str) == sorted(subs, key=str), (trace[:40], covered)
    assert sum(routed.decisions.values()) == expected_decisions
    delivered = sum(n for (_, decision, _), n in routed.decisions.items() if decision == "delivered")
    assert sum(len(m) for m in routed.deliveries.values()) == delivered
    for topic, messages in routed.deliveries.items():
        consumer = core.topics.department_of(topic)
        for _, value, headers in messages:
            h = dict(headers)
            sub = h[H_SUBSCRIPTION].decode()
            assert sub.startswith(consumer + ".")
            entry = sub[len(consumer) + 1 :]
            assert scenario.entries[entry].sharing.value != "not_shared"
            assert set(orjson.loads(value)) <= scenario.entries[entry].item_keys  # never the padding, never a stranger
    for offset in dead_offsets:
        assert offset in by_offset


@pytest.mark.parametrize("name", SCENARIOS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_route_never_raises_and_accounts_for_every_record(name, data):
    scenario, _, core, _ = _world(name)
    records = [data.draw(fetched(name, i)) for i in range(data.draw(st.integers(1, 6)))]
    approvals = data.draw(st.sampled_from([None, set(), {s.id for s in scenario.subscriptions}]))
    authority: dict = {}
    routed = core.route(records, approvals, authority, now=time.time_ns())
    check_every_record_is_accounted_for(core, scenario, records, routed)
    # whatever was stored as authoritative can be written to the changelog
    for key, value in routed.authority_writes:
        key.encode()
        orjson.dumps(value)
    # every audit row of the batch fits the audit block format
    for rows in routed.audit.values():
        orjson.dumps({"fields": list(range(11)), "rows": rows})
        audit_records({"fields": [str(i) for i in range(11)], "rows": [list(r) for r in rows]})


def _good(name: str, entry: str, trace: bytes, offset: int) -> Fetched:
    scenario, topics, _, factories = _world(name)
    key, record = factories[entry].make()
    return Fetched(
        topics.ingress(entry), 0, offset, key, orjson.dumps(record), record_headers(trace, entry, scenario.entries[entry].provider, 1, 2, "fuzz")
    )


def _set_header(headers: list, key: str, value: bytes | None) -> list:
    """``headers`` (key, value) pairs with the value of each ``key`` header replaced by ``value``."""
    return [(k, value if k == key else v) for k, v in headers]


# Each bad class, as a change to a good record of the sharing scenario's "open" entry.
BAD = {
    "random_bytes": (lambda r: {"value": random.Random(1).randbytes(300)}, "bad_json"),
    "wrong_type": (lambda r: {"value": b'{"person.status": 42}'}, "wrong_type"),
    "huge_int": (lambda r: {"value": b'{"person.status": 123456789012345678901234567890}'}, "wrong_type"),  # read as a float
    "huge_value": (lambda r: {"value": orjson.dumps({"person.status": "x" * 100_000})}, "value_too_large"),
    "missing_header": (lambda r: {"headers": [h for h in r.headers if h[0] != H_SOURCE]}, "missing_header"),
    "duplicated_header": (lambda r: {"headers": [*r.headers, (H_ENTRY, b"open")]}, "duplicate_header"),
    "unknown_entry_header": (lambda r: {"headers": _set_header(r.headers, H_ENTRY, b"nosuch")}, "entry_mismatch"),
    "unknown_topic": (lambda r: {"topic": "dx.t1.in.nosuch"}, "unknown_entry"),
    "invalid_utf8_value": (lambda r: {"value": b'{"person.status": "\xff"}'}, "bad_json"),
    "invalid_utf8_header": (lambda r: {"headers": _set_header(r.headers, H_SOURCE, b"\xff\xfe")}, "bad_header"),
    "invalid_utf8_header_key": (lambda r: {"headers": [*r.headers, ("x-\udcff", b"1")]}, "bad_header"),
    "null_header_value": (lambda r: {"headers": _set_header(r.headers, H_INTENDED, None)}, "bad_header"),
    "null_run_header": (lambda r: {"headers": _set_header(r.headers, H_RUN, None)}, "bad_header"),
    "null_trace_header": (lambda r: {"headers": _set_header(r.headers, H_TRACE, None)}, "bad_header"),
    "no_headers": (lambda r: {"headers": None}, "missing_header"),
    "bad_schema": (lambda r: {"headers": _set_header(r.headers, H_SCHEMA, b"2")}, "unsupported_schema"),
    "bad_timestamp": (lambda r: {"headers": _set_header(r.headers, H_SENT, b"soon")}, "bad_header"),
    # more digits than any consumer's int() accepts (Python refuses over 4,300)
    "huge_timestamp": (lambda r: {"headers": _set_header(r.headers, H_INTENDED, b"9" * 5000)}, "bad_header"),
    "deeply_nested": (lambda r: {"value": _deep(10_000, "list")}, "bad_json"),
    "not_an_object": (lambda r: {"value": b'"just a string"'}, "not_an_object"),
    "tombstone": (lambda r: {"value": None}, "empty_value"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_each_bad_class_is_dead_lettered_with_its_reason_among_good_records(kind):
    scenario, _, core, _ = _world("sharing")
    change, reason = BAD[kind]
    batch = [_good("sharing", "open", b"1.%d" % i, i) for i in range(5)]
    bad = batch[2]
    for field, value in change(bad).items():
        setattr(bad, field, value)
    routed = core.route(batch, now=time.time_ns())
    check_every_record_is_accounted_for(core, scenario, batch, routed)
    [letter] = [orjson.loads(v) for _, v, _ in routed.dead_letters]
    assert (letter["reason"], letter["offset"]) == (reason, 2), letter["detail"]
    assert len(routed.deliveries[core.topics.delivery("a")]) == 4  # the good ones around it


# --- the real router, fed raw bytes by an independent client ---------------------------


class _NonUtf8Key(str):
    """A header key kafka-python writes as bytes that are not UTF-8 (its send() only checks for str)."""

    def encode(self, *args, **kwargs) -> bytes:
        return b"x-\xff\xfe-key"


OVERSIZE = 7 * 1024 * 1024  # near the router's 8 MB fetch and request size


def _wire(kind: str, env: list[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None, list, str]:
    """(key, value, headers, expected dead-letter reason) for one bad class."""
    good = b'{"person.status": "ok"}'
    if kind == "random_bytes":
        return b"k", random.Random(7).randbytes(500), env, "bad_json"
    if kind == "wrong_type":
        return b"k", b'{"person.status": ["not", "a", "string"]}', env, "wrong_type"
    if kind == "huge_value":
        return b"k", orjson.dumps({"person.status": "大" * 300_000}), env, "value_too_large"
    if kind == "missing_header":
        return b"k", good, [h for h in env if h[0] != H_SENT], "missing_header"
    if kind == "duplicated_header":
        return b"k", good, [*env, (H_SOURCE, b"prov")], "duplicate_header"
    if kind == "unknown_entry_header":
        return b"k", good, _set_header(env, H_ENTRY, b"no-such-entry"), "entry_mismatch"
    if kind == "invalid_utf8_value":
        return b"k", b'{"person.status": "\xc3\x28\xff"}', env, "bad_json"
    if kind == "invalid_utf8_header_value":
        return b"k", good, _set_header(env, H_SOURCE, b"\xff\xfe\xfd"), "bad_header"
    if kind == "invalid_utf8_header_key":
        return b"k", good, [*env, (_NonUtf8Key("x"), b"1")], "bad_header"
    if kind == "deeply_nested":
        return b"k", _deep(10_000, "list"), env, "bad_json"
    if kind == "deeply_nested_object":
        return b"k", _deep(10_000, "object"), env, "bad_json"
    if kind == "oversize":
        return b"k", b'{"person.status": "' + b"x" * OVERSIZE + b'"}', env, "value_too_large"
    if kind == "tombstone":
        return b"k", None, env, "empty_value"
    raise AssertionError(kind)


WIRE_KINDS = [
    "random_bytes",
    "wrong_type",
    "huge_value",
    "missing_header",
    "duplicated_header",
    "unknown_entry_header",
    "invalid_utf8_value",
    "invalid_utf8_header_value",
    "invalid_utf8_header_key",
    "deeply_nested",
    "deeply_nested_object",
    "oversize",
    "tombstone",
]


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    """A real embedded broker and a real router worker process, started as a run starts them."""
    with router_on_embedded_broker(tmp_path_factory.mktemp("fuzz-router")) as process:
        yield process


def test_bad_records_from_kafka_python_are_dead_lettered_and_good_ones_around_them_delivered(router):
    import asyncio

    kafka = pytest.importorskip("kafka")
    from .harness import envelope, new_run, publish, read_all

    run = new_run()
    topic = router.topics.ingress("open")
    _, _, _, factories = _world("sharing")
    expected: dict[str, str] = {}  # trace → dead-letter reason
    good: set[str] = set()
    producer = kafka.KafkaProducer(bootstrap_servers=router.bootstrap, acks="all", max_request_size=16 * 1024 * 1024, linger_ms=5)
    try:
        seq = 0
        for _round in range(2):
            for kind in WIRE_KINDS:
                for _ in range(2):  # good records before and after each bad one
                    seq += 1
                    key, record = factories["open"].make()
                    producer.send(topic, key=key, value=orjson.dumps(record), headers=envelope("open", "prov", f"8.{seq}", run))
                    good.add(f"8.{seq}")
                seq += 1
                key, value, headers, reason = _wire(kind, envelope("open", "prov", f"8.{seq}", run))
                producer.send(topic, key=key, value=value, headers=headers)
                expected[f"8.{seq}"] = reason
        producer.flush(30)
    finally:
        producer.close()
    # kafka-python refuses to send a null header value; aiokafka writes one (as a Java client may)
    seq += 1
    null_headers = _set_header(envelope("open", "prov", f"8.{seq}", run), H_INTENDED, None)
    expected[f"8.{seq}"] = "bad_header"
    seq += 1
    good.add(f"8.{seq}")
    key, record = factories["open"].make()
    asyncio.run(
        publish(
            router.bootstrap,
            topic,
            [(b"k", b'{"person.status": "ok"}', null_headers), (key, orjson.dumps(record), envelope("open", "prov", f"8.{seq}", run))],
        )
    )

    letters = asyncio.run(read_all(router.bootstrap, router.topics.dead_letter, run=run, until=len(expected), timeout=60))
    got = {}
    for r in letters:
        letter = DeadLetter.model_validate_json(r.value)
        assert letter.detail and letter.topic == topic
        got[letter.trace] = letter.reason
    assert got == expected
    delivered = asyncio.run(read_all(router.bootstrap, router.topics.delivery("a"), run=run, until=len(good), timeout=60))
    assert {dict(r.headers)[H_TRACE].decode() for r in delivered} == good
    # At least once: kafka-python may write a record twice when it retries (seen here with the
    # 7 MB requests), and the router delivers what it reads; consumers drop duplicates by trace.
    assert len(delivered) >= len(good)
    assert router.proc.poll() is None, "the router must survive every bad record"


# --- compressed batches, batches that cannot be decoded, out-of-range headers -----------

CODECS = ["gzip", "snappy", "lz4", "zstd"]
# what each codec's encoder is made to write instead: the codec's own magic, then garbage
GARBLE = {
    "gzip": b"\x1f\x8b\x08\x00" + b"\xff" * 28,
    "snappy": b"\xff" * 32,
    "lz4": b"\x04\x22\x4d\x18" + bytes(28),
    "zstd": b"\x28\xb5\x2f\xfd" + b"\xfe" * 28,
}


def _producer(kafka, bootstrap: str, codec: str | None = None):
    return kafka.KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=50, max_request_size=16 * 1024 * 1024)


def _send(producer, topic: str, messages: list, partition: int = 0) -> list[int]:
    """Send in one go (one batch per partition at linger 50 ms); the offsets the broker gave them."""
    futures = [producer.send(topic, key=k, value=v, headers=h, partition=partition) for k, v, h in messages]
    producer.flush(30)
    return [f.get(30).offset for f in futures]


def _good_messages(run: str, traces: list[str]) -> list:
    _, _, _, factories = _world("sharing")
    out = []
    for trace in traces:
        key, record = factories["open"].make()
        out.append((key, orjson.dumps({**record, "person.status": "在办" * 30}), _envelope(trace, run)))
    return out


def _envelope(trace: str, run: str) -> list:
    return envelope("open", "prov", trace, run)


def _batch_letters(bootstrap: str, dlq: str, topic: str) -> list[DeadLetter]:
    """The letters of undecodable batches on ``topic`` (they carry no run id: read them all)."""
    import asyncio

    from .harness import read_all

    records = asyncio.run(read_all(bootstrap, dlq, timeout=60, idle=3.0))
    letters = [DeadLetter.model_validate_json(r.value) for r in records]
    return [x for x in letters if x.last_offset is not None and x.topic == topic]


@pytest.mark.parametrize("codec", CODECS)
def test_batches_of_every_codec_from_kafka_python_are_routed_bad_records_in_them_dead_lettered(router, codec):
    import asyncio

    kafka = pytest.importorskip("kafka")
    from .harness import read_all

    run = new_run()
    topic = router.topics.ingress("open")
    expected: dict[str, str] = {}
    good: set[str] = set()
    messages = []
    for i, kind in enumerate(k for k in WIRE_KINDS if k != "oversize"):
        for trace in (f"9{i}.1", f"9{i}.2"):
            messages.extend(_good_messages(run, [trace]))
            good.add(trace)
        key, value, headers, reason = _wire(kind, _envelope(f"9{i}.3", run))
        messages.append((key, value, headers))
        expected[f"9{i}.3"] = reason
    producer = _producer(kafka, router.bootstrap, codec)
    try:
        _send(producer, topic, messages, partition=1)
    finally:
        producer.close()
    letters = asyncio.run(read_all(router.bootstrap, router.topics.dead_letter, run=run, until=len(expected), timeout=60))
    assert {DeadLetter.model_validate_json(r.value).trace: DeadLetter.model_validate_json(r.value).reason for r in letters} == expected
    delivered = asyncio.run(read_all(router.bootstrap, router.topics.delivery("a"), run=run, until=len(good), timeout=60))
    assert {dict(r.headers)[H_TRACE].decode() for r in delivered} == good
    assert router.proc.poll() is None


@pytest.mark.parametrize("codec", CODECS)
def test_a_garbled_compressed_batch_is_dead_lettered_with_its_offsets_and_routing_goes_on(router, codec, monkeypatch):
    """kafka-python's encoder is made to write garbage: the broker stores the batch, the router cannot decode it."""
    import asyncio

    kafka = pytest.importorskip("kafka")
    import kafka.record.default_records as kafka_records

    from .harness import read_all

    run = new_run()
    topic = router.topics.ingress("open")
    producer = _producer(kafka, router.bootstrap, codec)
    try:
        before = _send(producer, topic, _good_messages(run, ["31.1", "31.2"]))
        monkeypatch.setattr(kafka_records, f"{codec}_encode", lambda data, *a, **k: GARBLE[codec])
        bad = _send(producer, topic, _good_messages(run, ["32.1", "32.2", "32.3"]))
        monkeypatch.undo()
        after = _send(producer, topic, _good_messages(run, ["33.1", "33.2"]))
    finally:
        producer.close()
    assert bad == list(range(bad[0], bad[0] + 3)) and before[-1] < bad[0] < after[0]
    delivered = asyncio.run(read_all(router.bootstrap, router.topics.delivery("a"), run=run, until=4, timeout=60))
    assert {dict(r.headers)[H_TRACE].decode() for r in delivered} == {"31.1", "31.2", "33.1", "33.2"}
    [letter] = [x for x in _batch_letters(router.bootstrap, router.topics.dead_letter, topic) if x.offset == bad[0]]
    assert (letter.reason, letter.partition, letter.offset, letter.last_offset, letter.records) == ("corrupt_batch", 0, bad[0], bad[-1], 3)
    assert codec in letter.detail and letter.entry == "open" and letter.value_b64
    assert router.proc.poll() is None, "the router must survive a batch it cannot decode"


# Headers whose values are in range for the router but not for naive consumers: trace ids in
# other systems' shapes (department id, then epoch ms; numbers beyond int64), and send times
# from clocks ahead or behind. Each is delivered; the consumer survives it and says what it saw.
def _out_of_range(run: str) -> list[tuple[str, list, str]]:
    now = time.time_ns()
    ahead, behind = now + 10 * 60 * 10**9, now - 2 * 3600 * 10**9

    def env(trace: str, sent: int, intended: int) -> list:
        return _set_header(_set_header(_envelope(trace, run), H_SENT, b"%d" % sent), H_INTENDED, b"%d" % intended)

    return [
        ("7.1795976000000", env("7.1795976000000", now, now), "ok"),
        ("7.1795976000000000000", env("7.1795976000000000000", now, now), "ok"),
        ("7." + "9" * 30, env("7." + "9" * 30, now, now), "ok"),
        ("41.1", env("41.1", ahead, ahead), "skew"),  # the record: both stamps ten minutes ahead
        ("41.2", env("41.2", now, ahead), "skew"),
        ("41.3", env("41.3", behind, behind), "skew"),
        ("41.4", env("41.4", 0, 0), "skew"),
        ("41.5", env("41.5", 10**20 - 1, 10**20 - 1), "skew"),  # 20 digits: the router's limit, far past int64
    ]


def test_out_of_range_headers_are_delivered_and_a_real_subscriber_survives_them(router):
    import asyncio

    kafka = pytest.importorskip("kafka")
    from consumers.dedupe import SeenSet
    from consumers.process import _clock_skew
    from consumers.subscriber import Subscriber

    run = new_run()
    topic = router.topics.ingress("open")
    cases = _out_of_range(run)
    producer = _producer(kafka, router.bootstrap, "lz4")
    try:
        _send(producer, topic, [(b"k", orjson.dumps({"person.status": "ok"}), h) for _, h, _ in cases] * 2)  # each twice
    finally:
        producer.close()

    async def read() -> Subscriber:
        sub = Subscriber("a", router.topics.delivery("a"), router.bootstrap, f"fuzz-{run}", SeenSet(), run_id=run)
        await sub.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                flow = sub.flows.get("a.open")
                if flow is not None and flow.delivered + flow.duplicates >= 2 * len(cases):
                    break
                await sub.poll(200)
        finally:
            await sub.stop()
        return sub

    sub = asyncio.run(read())
    flow = sub.flows["a.open"]
    assert (flow.delivered, flow.duplicates) == (len(cases), len(cases)), "each once, the copy a duplicate"
    plausible = sum(1 for *_, kind in cases if kind == "ok")
    assert flow.e2e.get_total_count() == plausible
    skew = _clock_skew([sub])
    assert list(skew) == ["prov"] and skew["prov"]["records"] == len(cases) - plausible
    assert skew["prov"]["min_ms"] < -590_000 and skew["prov"]["max_ms"] > 50 * 365 * 86_400_000
    assert router.proc.poll() is None


@pytest.fixture(scope="module")
def router_without_codecs(tmp_path_factory):
    """A router whose aiokafka finds no codec library (as installed without aiokafka's extras): the issue's crash."""
    import os

    site = tmp_path_factory.mktemp("no-cramjam")
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['cramjam'] = None  # import cramjam raises ImportError\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    with router_on_embedded_broker(tmp_path_factory.mktemp("router-no-codecs"), env={"PYTHONPATH": path}) as process:
        yield process


def test_a_router_without_a_codecs_library_dead_letters_those_batches_and_routes_the_rest(router_without_codecs):
    import asyncio

    kafka = pytest.importorskip("kafka")
    from .harness import read_all

    router = router_without_codecs
    run = new_run()
    topic = router.topics.ingress("open")
    sent: dict[str, list[int]] = {}
    for i, codec in enumerate(["lz4", "gzip", "snappy", "zstd", None]):
        producer = _producer(kafka, router.bootstrap, codec)
        try:
            sent[str(codec)] = _send(producer, topic, _good_messages(run, [f"5{i}.{n}" for n in range(1, 4)]))
        finally:
            producer.close()
    delivered = asyncio.run(read_all(router.bootstrap, router.topics.delivery("a"), run=run, until=6, timeout=60))
    assert {dict(r.headers)[H_TRACE].decode() for r in delivered} == {f"5{i}.{n}" for i in (1, 4) for n in range(1, 4)}
    letters = {x.offset: x for x in _batch_letters(router.bootstrap, router.topics.dead_letter, topic)}
    for codec in ("lz4", "snappy", "zstd"):
        offsets = sent[codec]
        letter = letters[offsets[0]]
        assert (letter.reason, letter.last_offset, letter.records) == ("unsupported_codec", offsets[-1], 3)
        assert f"Libraries for {codec} compression codec not found" in letter.detail
    assert len(letters) == 3
    assert router.proc.poll() is None, "the issue's poison pill: the router must survive it"
