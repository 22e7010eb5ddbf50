"""Property-based tests of the rules that must hold whatever happens: no conditional item
outside a valid approval, whatever the sequence of control events; the audit chain
catches any single rewritten record."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.policy.audit import AuditWriter, verify
from exchange.policy.sharing import compile_policy, decide
from exchange.router.tables import ApprovalBook
from schemas.applications import ControlEvent, IllegalTransition, State
from schemas.envelope import Topics

from .harness import sharing_scenario

SCENARIO = sharing_scenario()
POLICY = compile_policy(SCENARIO, Topics("t1"))["cond"]
RECORD = {"enterprise.code": "91441900MA4W1X2Y3Z", "enterprise.name": "东莞市某某公司", "enterprise.phone": "13800138000", "enterprise.count": 3}

actions = st.sampled_from(["apply", "review", "approve", "reject", "revoke", "expire"])
actors = st.sampled_from(["prov", "a", "b", "c", "platform"])
steps = st.lists(
    st.tuples(
        actions,
        actors,
        st.sampled_from(["a", "b"]),
        st.one_of(st.none(), st.floats(0.5, 5)),
        st.one_of(st.none(), st.lists(st.sampled_from(sorted(SCENARIO.entries["cond"].item_keys)), min_size=1, max_size=3, unique=True)),
        st.integers(0, 3_000_000_000),
    ),
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_no_sequence_of_control_events_delivers_outside_a_valid_approval(sequence):
    table: dict[bytes, bytes] = {}
    book = ApprovalBook(SCENARIO, table, started_ns=0)
    now = 1_000_000_000
    for action, actor, consumer, valid_for, items, dt in sequence:
        now += dt
        event = ControlEvent(
            action=action, actor=actor, consumer=consumer, entry="cond", items=items, purpose="测试", valid_for_s=valid_for, at_ns=now
        )
        try:
            book.apply(event)
        except IllegalTransition:
            pass
        approvals = book.approvals_at(now)
        for outcome in decide(POLICY, "prov", RECORD, approvals):
            sub = outcome.route.subscription
            app = book.current(sub)
            valid = app is not None and app.state is State.approved and (app.valid_until_ns is None or now < app.valid_until_ns)
            if outcome.delivered:
                assert valid, f"{sub} delivered without a valid approval"
                # only the subscription's items, and only those the approval names
                assert set(outcome.value) <= set(outcome.route.items)
                if app.items:
                    assert set(outcome.value) <= set(app.items)
                # approvals are only ever given by the provider
                assert any(a == "approve" and who == "prov" for a, who, _ in app.history) or app.history[0][0] == "preapproved"
            else:
                assert not valid or not outcome.route.items


def _chain(n_blocks: int) -> list[tuple[int, int, bytes]]:
    writer = AuditWriter("0")
    messages = []
    for i in range(n_blocks):
        rows = [[f"1.{i}.{j}", "r", "prov", i, "cond", "a", "a.cond", "delivered", "approved", ["x"], []] for j in range(3)]
        messages.append((0, i, writer.block(0, rows)))
    return messages


@settings(max_examples=200, deadline=None)
@given(st.integers(3, 8), st.data())
def test_verify_catches_any_single_rewritten_record(n_blocks, data):
    messages = _chain(n_blocks)
    assert verify(messages).ok
    i = data.draw(st.integers(0, n_blocks - 1))
    block = orjson.loads(messages[i][2])
    field = data.draw(st.sampled_from(["rows", "seq", "prev", "chain", "worker"]))
    if field == "rows":
        r, c = data.draw(st.integers(0, 2)), data.draw(st.integers(0, 8))
        original = block["rows"][r][c]
        replacement = data.draw(st.text(min_size=1, max_size=8).filter(lambda t: t != original))
        block["rows"][r][c] = replacement
    elif field == "seq":
        block["seq"] += data.draw(st.integers(1, 5))
    else:
        block[field] = data.draw(st.text(min_size=1, max_size=12).filter(lambda t: t != block[field]))
    reseal = data.draw(st.booleans())  # an insider may also recompute the block's own hash
    if reseal:
        from exchange.policy.audit import block_hash

        block["hash"] = block_hash(block)
    tampered = [*messages[:i], (0, i, orjson.dumps(block)), *messages[i + 1 :]]
    result = verify(tampered)
    if reseal and i == n_blocks - 1 and field in ("rows", "worker"):
        return  # rewriting the newest block and resealing it leaves no later link to break (as in any hash chain)
    assert not result.ok


row_values = st.one_of(st.text(max_size=12), st.integers(-(2**63), 2**63 - 1), st.none(), st.lists(st.text(max_size=6), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(row_values, min_size=11, max_size=11), min_size=1, max_size=5), st.integers(1, 4))
def test_blocks_hash_what_a_reader_decodes(rows, n_blocks):
    """The writer hashes its own encoding; any row a router writes must verify after decoding."""
    writer = AuditWriter("0")
    messages = [(0, i, writer.block(0, [tuple(r) for r in rows])) for i in range(n_blocks)]
    assert verify(messages).ok
    assert orjson.loads(messages[-1][2])["rows"] == rows


def test_an_event_delivered_twice_is_applied_once():
    """At-least-once control topic: the second delivery of an event (same request id) gets the same answer."""
    book = ApprovalBook(SCENARIO, {}, started_ns=0)
    for action, actor in (("apply", "b"), ("review", "prov"), ("approve", "prov")):
        event = ControlEvent(action=action, actor=actor, consumer="b", entry="cond", purpose="测试", at_ns=1, request_id=f"r-{action}")
        first = book.apply(event)
        assert book.apply(event) == first  # no "cannot approve in state approved"
    assert book.current("b.cond").state is State.approved
    again = ControlEvent(action="approve", actor="prov", consumer="b", entry="cond", at_ns=2, request_id="r-other")
    try:
        book.apply(again)
    except IllegalTransition as exc:
        assert "in state approved" in str(exc)
    else:
        raise AssertionError("a new approve of an approved application was accepted")


def test_a_large_routed_batch_is_split_into_blocks_that_fit_one_kafka_record():
    """A backlog drained in one fetch must not make an audit block over Kafka's 1 MB record limit."""
    from exchange.policy.audit import MAX_BLOCK_ROWS

    writer = AuditWriter("0")
    rows = [[f"1.{j}.{j}", "r" * 40, "prov", j, "cond", "a", "a.cond", "delivered", "approved", ["x"] * 5, []] for j in range(MAX_BLOCK_ROWS * 2 + 7)]
    blocks = writer.blocks(0, rows)
    assert len(blocks) == 3
    assert max(len(b) for b in blocks) < 1_000_000
    assert verify([(0, i, b) for i, b in enumerate(blocks)]).ok
    assert [r for b in blocks for r in orjson.loads(b)["rows"]] == rows
