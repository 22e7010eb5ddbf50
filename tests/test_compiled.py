"""The compiled policy core (``make compile``, mypyc) says exactly what its Python source says.

The equality tests load the ``.py`` sources beside the compiled modules in one process
(:func:`exchange.compiled.pure_policy`) and compare both on the property tests' generated
inputs: decisions, grouped decisions, masks, record checks, whole routed batches (good
and bad records) and audit blocks. Without a build they are skipped, saying so; the rest
of the suite then runs the pure source, and after ``make compile`` it runs the compiled
core (``make compile-check`` runs the policy tests both ways).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import compiled
from schemas.envelope import PAD_FIELD, Topics, record_headers
from schemas.scenario import MaskRule
from tests.test_grouping import REGIONS, SUBS
from tests.test_policy import cases, row_scenario

BUILT = compiled.built()
PREFER_SOURCE = os.environ.get(compiled.PURE_ENV) == "1"
needs_build = pytest.mark.skipif(
    not BUILT or PREFER_SOURCE,
    reason=f"{compiled.PURE_ENV}=1: this run tests the source"
    if BUILT
    else "no compiled policy core: `make compile` builds it (mypyc, a C compiler)",
)


@pytest.fixture(scope="module")
def both() -> tuple[dict, dict]:
    native = compiled.policy_modules()
    assert all(compiled.is_compiled(m) for m in native.values()), "a build is present, so the default import is the compiled core"
    pure = compiled.pure_policy()
    assert not any(compiled.is_compiled(m) for m in pure.values())
    return native, pure


def _outcomes(outcomes) -> list:
    return [(o.route.subscription if o.route else None, o.delivered, o.reason, o.value) for o in outcomes]


def _grouped(g) -> tuple:
    return ([(r.subscription, v) for r, v in g.delivered], [(d.reason, d.scopes, d.audit) for d in g.denied], g.reason)


def _fields(obj) -> dict:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def test_the_source_is_imported_when_asked_even_with_a_build() -> None:
    code = "import exchange.policy.routing as r, exchange.compiled as c; print(c.is_compiled(r))"
    env = {**os.environ, compiled.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
    env.pop(compiled.PURE_ENV)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(bool(BUILT) and "routing" in BUILT)


@needs_build
def test_every_policy_module_is_built() -> None:
    assert list(compiled.POLICY_MODULES) == BUILT, "a partial build would mix compiled and pure classes"


@needs_build
@settings(max_examples=300, deadline=None)
@given(cases())
def test_compiled_decides_as_the_source(both, case) -> None:
    (native, pure), (s, approvals, record, source) = both, case
    topics = Topics(s.platform.id)
    a = native["sharing"].compile_policy(s, topics)["e"]
    b = pure["sharing"].compile_policy(s, topics)["e"]
    assert _outcomes(native["sharing"].decide(a, source, record, approvals)) == _outcomes(pure["sharing"].decide(b, source, record, approvals))
    assert _grouped(native["grouping"].decide_grouped(a, source, record, approvals)) == _grouped(
        pure["grouping"].decide_grouped(b, source, record, approvals)
    )


@needs_build
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["unconditional", "conditional", "not_shared"]),
    st.sampled_from(REGIONS),
    st.none() | st.sets(st.sampled_from(SUBS)) | st.dictionaries(st.sampled_from(SUBS), st.none() | st.just(frozenset({"vehicle.plate"}))),
    st.sampled_from(["prov", "prov", "city"]),
)
def test_compiled_row_filters_as_the_source(both, sharing, region, approvals, source) -> None:
    native, pure = both
    s = row_scenario(sharing)
    record = {"vehicle.plate": "粤S12345", "vehicle.region": region}
    a = native["sharing"].compile_policy(s, Topics(s.platform.id))["gps"]
    b = pure["sharing"].compile_policy(s, Topics(s.platform.id))["gps"]
    assert _grouped(native["grouping"].decide_grouped(a, source, record, approvals)) == _grouped(
        pure["grouping"].decide_grouped(b, source, record, approvals)
    )


@needs_build
@settings(max_examples=500, deadline=None)
@given(st.sampled_from(list(MaskRule)), st.none() | st.text(max_size=40) | st.integers() | st.floats(allow_nan=False))
def test_compiled_masks_as_the_source(both, rule, value) -> None:
    native, pure = both
    assert native["masking"].apply_mask(rule, value) == pure["masking"].apply_mask(rule, value)


json_values = (
    st.none() | st.text(max_size=20) | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.booleans() | st.lists(st.integers(), max_size=2)
)


@needs_build
@settings(max_examples=300, deadline=None)
@given(
    cases(),
    st.lists(
        st.tuples(
            st.sampled_from(["good", "good", "not json", "not an object", "tombstone", "wrong entry", "no trace", "typed"]),
            st.dictionaries(st.sampled_from(["d.i0", "d.i1", "d.i2", "d.x", PAD_FIELD]), json_values, max_size=4),
        ),
        max_size=8,
    ),
)
def test_compiled_routes_a_batch_as_the_source(both, case, batch) -> None:
    """Whole batches, good and bad records: deliveries, audit rows, dead letters and counts alike."""
    (native, pure), (s, approvals, record, source) = both, case
    topics = Topics(s.platform.id)
    records = []
    for i, (kind, typed) in enumerate(batch):
        value: bytes | None = orjson.dumps(typed if kind == "typed" else record)
        headers = record_headers(b"1.%d" % i, "wrong" if kind == "wrong entry" else "e", source, 1, 2, "r")
        if kind == "not json":
            value = b"{nope"
        elif kind == "not an object":
            value = b"[1, 2]"
        elif kind == "tombstone":
            value = None
        elif kind == "no trace":
            headers = headers[1:]
        records.append(SimpleNamespace(topic=topics.ingress("e"), partition=i % 3, offset=i, key=b"k", value=value, headers=headers))
    routed = []
    for modules in (native, pure):
        core = modules["routing"].RouterCore(modules["sharing"].compile_policy(s, topics), topics, "0", audit_partitions=2)
        routed.append(_fields(core.route(records, approvals, now=1_700_000_000_000_000_000)))
    assert routed[0] == routed[1]


@needs_build
@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.none() | st.text(max_size=8) | st.integers(0, 10**12), min_size=11, max_size=11), min_size=1, max_size=6))
def test_compiled_audit_blocks_are_the_sources_bytes(both, rows) -> None:
    native, pure = both
    a, b = native["audit"].AuditWriter("0"), pure["audit"].AuditWriter("0")
    b.epoch = a.epoch
    blocks = [a.blocks(1, [tuple(r) for r in rows], max_rows=4), b.blocks(1, [tuple(r) for r in rows], max_rows=4)]
    assert blocks[0] == blocks[1]
    assert native["audit"].verify([(1, i, v) for i, v in enumerate(blocks[0])]).ok
