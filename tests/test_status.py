"""Status messages between the run's processes and its controller (schemas/status.py, issue 15 item 3):
one codec, typed bodies, and a clear error naming the file and line of a message that cannot be read."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest
from jsonschema import Draft202012Validator

from exchange.runner.controller import RunFailed, _Child
from exchange.runner.status import StatusReader, StatusWriter, read_messages, sender
from schemas.status import (
    VERSION,
    ConsumersReady,
    ControlActionCount,
    Crashed,
    DecisionCount,
    Error,
    MessageError,
    PassthroughFinal,
    ProducersFinal,
    ProducersStats,
    Role,
    RouterFinal,
    RouterReady,
    RouterStats,
    Sender,
    StatusMessage,
    VerificationCount,
    decode,
    encode,
    json_schema,
    message,
)

from .harness import ROOT

ROUTER = Sender(run_id="a1b2c3d4", role=Role.router, worker="1", hub="gz", pid=4242)


def router_final() -> RouterFinal:
    return RouterFinal(
        records=10,
        batches=2,
        decisions=DecisionCount.rows(Counter({("urban.gps", "delivered", "unconditional"): 7, ("gps", "denied", "no_subscription"): 3})),
        verifications=VerificationCount.rows(Counter({("person.name", "civil", "conflict"): 1})),
        control_actions=ControlActionCount.rows(Counter({("approve", "accepted"): 2})),
        dead_letters={"bad_json": 1},
    )


BODIES = {
    "router ready": (ROUTER, RouterReady(seconds=1.25)),
    "router final": (ROUTER, router_final()),
    "router stats": (
        ROUTER,
        RouterStats(
            records=5,
            lag=3,
            acked=5,
            batches=1,
            first_ns=1,
            last_ack_ns=2,
            peak_rss_bytes=10,
            dead_lettered=0,
            handling_s=0.1,
            committing_s=0.0,
            verifications=[],
            control_actions=[],
        ),
    ),
    "producers stats": (
        ROUTER.model_copy(update={"role": Role.producers, "hub": None}),
        ProducersStats(t=1.0, produced=100, sent=101, retried=0, publish_latency={"50pct": 1.5, "max": 3.0}, publish_delay_us={}),
    ),
    "producers final": (
        ROUTER.model_copy(update={"role": Role.producers, "hub": None}),
        ProducersFinal(
            elapsed_s=4.0,
            produced={"gps": 100},
            sent=100,
            retried=0,
            publish_delay="HISTFAAAA",
            publish_latency="HISTFAAAB",
            warmup_published=0,
            warmup_publish_delay="HISTFAAAC",
            warmup_publish_latency="HISTFAAAD",
        ),
    ),
    "consumers ready": (ROUTER.model_copy(update={"role": Role.consumers, "hub": None}), ConsumersReady(subscribers=3, restored=True)),
    "passthrough final": (ROUTER.model_copy(update={"role": Role.passthrough}), PassthroughFinal(records=5, first_ns=1, last_ns=9)),
    "error": (ROUTER, Error(message="KafkaConnectionError: no broker")),
    "crashed": (ROUTER, Crashed(message="thread writer crashed: OSError: disk full")),
}


@pytest.mark.parametrize("name", BODIES)
def test_every_kind_of_message_comes_back_as_it_was_sent(name):
    who, body = BODIES[name]
    sent = message(who, body, sent_ns=1_700_000_000_000_000_000)
    data = encode(sent)
    assert b"\n" not in data  # a file line and a Kafka value alike
    doc = json.loads(data)
    assert doc["v"] == VERSION and doc["body"]["kind"] == body.kind and doc["sender"]["role"] == who.role
    back = decode(data)
    assert back == sent and type(back.body) is type(body)
    assert (back.kind, back.pid) == (body.kind, 4242)


def test_counters_travel_as_named_rows_and_come_back_as_the_same_counts():
    decisions = Counter({("urban.gps", "delivered", "unconditional"): 7, ("gps", "denied", "no_subscription"): 3})
    back = decode(encode(message(ROUTER, router_final()))).body
    assert Counter({(d.scope, d.decision, d.reason): d.n for d in back.decisions}) == decisions
    assert back.decisions[0].model_dump() == {"n": 7, "scope": "urban.gps", "decision": "delivered", "reason": "unconditional"}
    with pytest.raises(ValueError):  # a key with a part too many is a bug, not a row
        DecisionCount.rows(Counter({("a", "b", "c", "d"): 1}))


def test_the_writer_stamps_each_message_and_the_reader_waits_for_whole_lines(tmp_path):
    path = tmp_path / "router-1.jsonl"
    writer = StatusWriter(path, sender(Role.router, "a1b2c3d4", "1", "gz"))
    writer.write(RouterReady(seconds=0.5))
    reader = StatusReader(path)
    (ready,) = reader.read()
    assert ready.sender.role == Role.router and ready.sender.hub == "gz" and ready.sender.run_id == "a1b2c3d4"
    assert isinstance(ready.body, RouterReady) and ready.sent_ns > 0
    # half a line (a writer caught mid-write) is held back until the rest arrives
    line = encode(message(ROUTER, router_final())) + b"\n"
    with open(path, "ab") as f:
        f.write(line[:20])
        f.flush()
        assert reader.read() == []
        f.write(line[20:])
    (final,) = reader.read()
    assert final.body == router_final()
    writer.close()
    assert [m.kind for m in read_messages(path)] == ["ready", "final"]
    StatusWriter(None).write(RouterReady(seconds=1.0))  # no file: nothing, and no error
    with pytest.raises(ValueError, match="needs its sender"):
        StatusWriter(tmp_path / "x.jsonl")


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            b'{"v": 1, "sent_ns": 1, "sender": {"run_id": "r", "role": "router", "pid": 1}, '
            b'"body": {"kind": "final", "role": "router", "records": -1}}',
            "body.final.router.records: Input should be greater than or equal to 0",
        ),
        (b'{"v": 2, "sent_ns": 1}', "a status message of version 2; this reader knows version 1"),
        (b'{"event": "ready", "pid": 12}', "no format version (v)"),
        (b'{"v": 1, "sent_ns": 1', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (
            b'{"v": 1, "sent_ns": 1, "sender": {"run_id": "r", "role": "consumers", "pid": 1}, "body": {"kind": "ready", "role": "router", '
            b'"seconds": 1.0}}',
            "a router ready body in a message from a consumers process",
        ),
        (b'{"v": 1, "sent_ns": 1, "sender": {"run_id": "r", "role": "router", "pid": 1}, "body": {"kind": "finished"}}', "body"),
    ],
)
def test_a_line_that_is_no_message_is_refused_naming_the_file_the_line_and_what_is_wrong(tmp_path, line, says):
    path = tmp_path / "router-0.jsonl"
    path.write_bytes(encode(message(ROUTER, RouterReady(seconds=1.0))) + b"\n\n" + line + b"\n")
    with pytest.raises(MessageError) as caught:
        StatusReader(path).read()
    assert str(caught.value).startswith(f"{path}:3: ") and says in str(caught.value)


def test_the_controller_fails_the_run_in_one_line_on_a_message_it_cannot_read(tmp_path):
    path = tmp_path / "consumers.jsonl"
    path.write_bytes(b'{"event": "stats", "pid": 7, "received": 3}\n')  # what an older version wrote

    class Proc:
        pid = 7

    child = _Child("consumers", Proc(), StatusReader(path), tmp_path / "consumers.log")  # type: ignore[arg-type]
    with pytest.raises(RunFailed, match=rf"^consumers sent a message that cannot be read: {path}:1: no format version"):
        child.read()


def test_exchange_schema_status_prints_a_schema_every_message_satisfies():
    done = subprocess.run([sys.executable, "-m", "exchange", "schema", "status"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema == json.loads(json.dumps(json_schema()))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for who, body in BODIES.values():
        validator.validate(json.loads(encode(message(who, body))))
    bad = json.loads(encode(message(ROUTER, RouterReady(seconds=1.0))))
    bad["body"]["seconds"] = -1
    assert list(validator.iter_errors(bad))
    assert StatusMessage.model_json_schema()["properties"]["v"]["const"] == VERSION
    wrong = subprocess.run([sys.executable, "-m", "exchange", "schema", "statuses"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "SCHEMA: 'statuses' is not one of scenario, status or runs" in wrong.stderr
