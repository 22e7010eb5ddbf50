"""The ingress topic layout (scenario ``topics``): per-entry, per-department, per-mode, per-class.

The plan and the name templates are checked as pure functions; the routing as the pure
core and then end to end, on a real broker with a real Faust worker: every layout must
route, mask, filter and account exactly like per-entry (same deliveries and payloads,
same audit rows, same dead letters), only the topics differ.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from exchange.kafka.topics import ingress_topics, topic_plan
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy
from exchange.results.compare import comparison, labels_of
from exchange.results.report import load_result
from exchange.runner.options import RunOptions, TopicLayoutError, resolve_topics
from exchange.scenarios.loader import ScenarioError, load, parse
from producers.records import EntityPool, RecordFactory, regions_of
from schemas.envelope import H_ENTRY, H_SUBSCRIPTION, H_TRACE, IngressLayout, Topics, audit_rows, record_headers
from schemas.outcomes import DeadLetterReason
from schemas.scenario import IngressTopics, Scenario

from .harness import SHARING_SCENARIO, RouterProcess, envelope, new_run, publish, read_all, running_broker, sharing_scenario

DEMO = Path(__file__).parent / "data" / "demo" / "result.json"
LAYOUTS = ("per-entry", "per-department", "per-mode", "per-class")


def layered(layout: str, **setting) -> Scenario:
    """The sharing scenario plus a second provider's table-sync entry, under ``layout``."""
    data = sharing_scenario().model_dump(mode="json")
    data["catalogue"].append(
        {
            "id": "table",
            "name": "库表资源",
            "provider": "a",
            "sharing": "unconditional",
            "exchange_mode": "table_sync",
            "update_cycle": "daily",
            "partitions": 3,
            "items": [
                {"key": "enterprise.code", "name": "信用代码", "type": "credit_code"},
                {"key": "enterprise.size", "name": "规模", "type": "integer"},
            ],
        }
    )
    data["subscriptions"].append({"consumer": "b", "entry": "table"})
    data["topics"] = {"layout": layout, **setting}
    return Scenario.model_validate(data)


# ---------------------------------------------------------------- the plan


def test_per_entry_keeps_todays_topic_names_byte_for_byte():
    for name in ("demo", "guizhou-cascade"):
        scenario = load(name)
        names = ingress_topics(scenario)
        assert names == sorted(f"dx.{scenario.platform_of(scenario.entries[e].provider)}.in.{e}" for e in scenario.live_entries)
        plan = topic_plan(scenario)
        assert all(
            plan[f"dx.{scenario.platform_of(scenario.entries[e].provider)}.in.{e}"] == scenario.entries[e].partitions for e in scenario.live_entries
        )


def test_shared_layouts_cut_topics_by_department_mode_and_class_with_the_largest_partition_count():
    plans = {layout: {t: p for t, p in topic_plan(layered(layout)).items() if ".in." in t} for layout in LAYOUTS}
    assert plans["per-entry"] == {"dx.t1.in.open": 2, "dx.t1.in.cond": 2, "dx.t1.in.secret": 2, "dx.t1.in.table": 3}
    assert plans["per-department"] == {"dx.t1.in.dept.prov": 2, "dx.t1.in.dept.a": 3}
    assert plans["per-mode"] == {"dx.t1.in.mode.event_stream": 2, "dx.t1.in.mode.table_sync": 3}
    assert plans["per-class"] == {"dx.t1.in.class.personal": 2, "dx.t1.in.class.internal": 3}  # a class: its items' highest grade
    # a given partition count applies to shared topics; a topic one entry has keeps the entry's own
    fixed = topic_plan(layered("per-department", partitions=6))
    assert (fixed["dx.t1.in.dept.prov"], fixed["dx.t1.in.dept.a"]) == (6, 3)
    layout = IngressLayout(layered("per-department"))
    assert layout.entries_on["dx.t1.in.dept.prov"] == ("open", "cond", "secret") and layout.shared("dx.t1.in.dept.prov")
    assert not layout.shared("dx.t1.in.dept.a")


def test_dongguan_per_department_fetches_a_few_dozen_topics_not_1325_partitions():
    scenario = load("dongguan")
    per_entry = IngressLayout(scenario)
    per_dept = IngressLayout(scenario.model_copy(update={"topics": IngressTopics(layout="per-department")}))
    assert sum(per_entry.partitions.values()) == 1325
    assert len(per_dept.partitions) == len({scenario.entries[e].provider for e in scenario.live_entries}) < 100
    assert sum(per_dept.partitions.values()) < 100


# ---------------------------------------------------------------- name templates


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("{layout: per-mode, name: 'gov.{entry}'}", "{entry} cannot be used with topics: per-mode"),
        ("{layout: per-department, name: 'gov.{hub}'}", "lacks {department}"),
        ("{layout: per-department, name: 'gov/{department}'}", "Kafka topic names allow only letters, digits"),
        ("{layout: per-department, name: 'gov.{department!r}'}", "takes no format spec or conversion"),
        ("{layout: per-department, name: 'gov.{department'}", "is malformed"),
        ("{layout: per-department, name: 'gov.{dept}'}", "{dept} cannot be used"),
        ("{layout: per-department, name: 'dx.{hub}.out.{department}'}", "would be the delivery topic of department 'prov'"),
        ("{layout: per-department, name: '" + "x" * 250 + ".{department}'}", "Kafka allows 249"),
    ],
)
def test_a_bad_name_template_is_refused_naming_the_field_and_line(setting, says):
    with pytest.raises(ScenarioError) as err:
        parse(SHARING_SCENARIO + f"topics: {setting}\n", "layout.yaml")
    text = str(err.value)
    assert "layout.yaml:" in text and "topics.name" in text and says in text


def test_names_are_free_within_the_rules_and_the_layout_alone_is_enough():
    s = parse(SHARING_SCENARIO + "topics: {layout: per-department, name: 'gov-{hub}_ingress.{department}'}\n", "f.yaml")
    assert ingress_topics(s) == ["gov-t1_ingress.prov"]
    assert parse(SHARING_SCENARIO + "topics: 按部门\n", "f.yaml").topics.layout.value == "per-department"
    with pytest.raises(ScenarioError, match=r"topics\.layout"):
        parse(SHARING_SCENARIO + "topics: per-nothing\n", "f.yaml")


def test_the_json_schema_takes_the_layout_alone_or_in_full():
    import yaml
    from jsonschema import Draft202012Validator

    from schemas.scenario import json_schema

    validator = Draft202012Validator(json_schema())
    base = yaml.safe_load(SHARING_SCENARIO)
    for good in ("per-department", "按部门", {"layout": "per-mode", "name": "gov.{hub}.{mode}", "partitions": 4}):
        assert not list(validator.iter_errors({**base, "topics": good})), good
    for bad in ("per-topic", {"layout": "per-mode", "names": "x"}, 3):
        assert list(validator.iter_errors({**base, "topics": bad})), bad


def test_a_cascade_needs_hub_in_a_shared_name():
    scenario = load("guizhou-cascade")
    data = scenario.model_dump(mode="json")
    data["topics"] = {"layout": "per-mode", "name": "gov.{mode}"}
    with pytest.raises(ValueError, match=r"would share ingress topic 'gov.event_stream'; add \{hub\}"):
        Scenario.model_validate(data)


def test_run_topics_flips_the_layout_and_refuses_what_cannot_run():
    scenario = layered("per-entry", partitions=5)
    chosen = resolve_topics(RunOptions(scenario, topics="per-department"))
    assert (chosen.layout.value, chosen.name, chosen.partitions) == ("per-department", None, 5)
    named = layered("per-mode", name="gov.{hub}.{mode}")
    assert resolve_topics(RunOptions(named, topics="per_mode")).name == "gov.{hub}.{mode}"  # kept: it suits the layout
    assert resolve_topics(RunOptions(named, topics="per-class")).name is None  # {mode} does not: the default names
    with pytest.raises(TopicLayoutError, match="--topics 'per-topic': expected per-entry, per-department, per-mode, per-class"):
        resolve_topics(RunOptions(scenario, topics="per-topic"))


# ---------------------------------------------------------------- the pure core


def _records(scenario: Scenario, per_entry: int = 30, seed: int = 5) -> list[tuple[str, bytes, bytes, list]]:
    """(entry, key, value, headers) for every entry, interleaved (each entry's in its own order),
    with one bad JSON value per entry; few people and enterprises, so keys repeat."""
    pool = EntityPool(seed, regions_of(scenario.platform.region), people=12, enterprises=8, vehicles=5)
    out = []
    for n, entry in enumerate(scenario.catalogue):
        factory = RecordFactory(entry, pool, random.Random(seed + n))
        for i in range(per_entry):
            key, value = factory.make()
            body = b"{not json" if i == per_entry // 2 else orjson.dumps(value)
            out.append((i, n, (entry.id, key, body, record_headers(b"%d.%d" % (n + 1, i + 1), entry.id, entry.provider, 1, 2, "r"))))
    return [r for _, _, r in sorted(out, key=lambda x: (x[0], x[1]))]


def _route(scenario: Scenario, records) -> tuple:
    topics = Topics.of(scenario)
    core = RouterCore(compile_policy(scenario, topics), topics, "0")
    fetched = [
        SimpleNamespace(topic=topics.ingress(entry), partition=0, offset=i, key=key, value=value, headers=headers)
        for i, (entry, key, value, headers) in enumerate(records)
    ]
    approvals = {s.id: None for s in scenario.subscriptions if s.status.value == "approved"}
    return core.route(fetched, approvals, now=7, clock=lambda: 8), topics


def test_the_core_routes_every_layout_as_per_entry():
    records = _records(layered("per-entry"))
    want, _ = _route(layered("per-entry"), records)
    for layout in LAYOUTS[1:]:
        got, topics = _route(layered(layout), records)
        assert got.deliveries == want.deliveries and got.audit == want.audit
        assert got.decisions == want.decisions and got.dead_reasons == want.dead_reasons == {DeadLetterReason.bad_json: 4}
        letters = [(orjson.loads(v)["trace"], orjson.loads(v)["entry"]) for _, v, _ in got.dead_letters]
        assert letters == [(orjson.loads(v)["trace"], orjson.loads(v)["entry"]) for _, v, _ in want.dead_letters]
        assert sum(got.shared_in.values()) == sum(1 for e, *_ in records if topics.shared_entries(topics.ingress(e)))


def test_on_a_shared_topic_a_missing_unknown_or_foreign_entry_header_is_dead_lettered_with_its_reason():
    scenario = layered("per-department")
    topics = Topics.of(scenario)
    core = RouterCore(compile_policy(scenario, topics), topics, "0")
    shared = topics.ingress("open")
    good = record_headers(b"1.1", "open", "prov", 1, 2, "r")

    def with_entry(value: bytes | None) -> list:
        return [(k, v) for k, v in good if k != H_ENTRY] + ([(H_ENTRY, value)] if value is not None else [])

    fetched = [
        SimpleNamespace(topic=shared, partition=0, offset=i, key=None, value=b"{}", headers=h)
        for i, h in enumerate([with_entry(None), with_entry(b"nosuch"), with_entry(b"table")])
    ]
    routed = core.route(fetched, {}, now=1)
    letters = [orjson.loads(v) for _, v, _ in routed.dead_letters]
    assert [(x["reason"], x["entry"]) for x in letters] == [("missing_header", None), ("unknown_entry", None), ("entry_mismatch", None)]
    assert "names no entry of shared ingress topic 'dx.t1.in.dept.prov'" in letters[1]["detail"]
    assert routed.records == 3 and not routed.deliveries


# ---------------------------------------------------------------- end to end: a real broker, a real Faust worker


def _outcomes(deliveries, audit, dead) -> dict:
    delivered = sorted((r.topic, dict(r.headers)[H_SUBSCRIPTION], dict(r.headers)[H_TRACE], r.value) for r in deliveries)
    rows = sorted(
        (row.trace, row.entry, str(row.subscription), row.decision, row.reason, tuple(row.items), tuple(row.masked))
        for r in audit
        for row in audit_rows(orjson.loads(r.value))
    )
    letters = sorted((orjson.loads(r.value)["trace"], orjson.loads(r.value)["reason"], orjson.loads(r.value)["entry"]) for r in dead)
    return {"delivered": delivered, "audit": rows, "dead": letters}


def _in_key_order(deliveries) -> bool:
    """Each key's deliveries on each delivery topic arrive in the order the records were sent (trace seq)."""
    seen: dict = defaultdict(list)
    for r in deliveries:
        producer, seq = dict(r.headers)[H_TRACE].split(b".")
        seen[(r.topic, r.key, producer)].append(int(seq))
    return all(seqs == sorted(seqs) for seqs in seen.values())


async def _run_layout(layout: str, tmp_path) -> dict:
    scenario = layered(layout)
    run = new_run()
    async with (
        running_broker("tansu", log_path=tmp_path / f"{layout}.broker.log") as broker,
        RouterProcess(scenario, broker.bootstrap, tmp_path / layout) as router,
    ):
        topics = router.topics
        by_topic: dict[str, list] = defaultdict(list)
        for entry, key, value, headers in _records(scenario, per_entry=40):
            trace = dict(headers)[H_TRACE].decode()
            by_topic[topics.ingress(entry)].append((key, value, envelope(entry, scenario.entries[entry].provider, trace, run)))
        await asyncio.gather(*(publish(broker.bootstrap, t, m) for t, m in by_topic.items()))
        wanted = {"a": 39 + 39, "b": 39}  # open and cond (approved) to a; table to b; one bad record each
        got = {d: await read_all(broker.bootstrap, topics.delivery(d), run=run, until=n) for d, n in wanted.items()}
        dead = await read_all(broker.bootstrap, topics.dead_letter, run=run, until=4)
        audit = await read_all(broker.bootstrap, topics.audit)  # written with the deliveries: read to an idle spell
    deliveries = [r for rs in got.values() for r in rs]
    assert _in_key_order(deliveries), f"{layout}: a key's records overtook each other"
    mine = [r for r in audit if any(row.run == run for row in audit_rows(orjson.loads(r.value)))]
    return _outcomes(deliveries, mine, dead)


def test_every_layout_routes_masks_filters_and_accounts_exactly_like_per_entry(tmp_path):
    """Same records (same seed) through a real Tansu broker and a real router worker under each
    layout: the same masked payloads to the same subscriptions, the same audit rows (delivered,
    denied and why, items, masked items), the same dead letters with the same entries."""
    results = {layout: asyncio.run(_run_layout(layout, tmp_path)) for layout in LAYOUTS}
    want = results["per-entry"]
    assert len(want["delivered"]) == 117 and len(want["dead"]) == 4
    assert {r[4] for r in want["audit"]} >= {"not_approved", "not_shared"}
    masked = [r for r in want["delivered"] if r[1] == b"a.open"]
    assert masked and all(b"*" in r[3] for r in masked)  # person.name masked: 张**
    for layout in LAYOUTS[1:]:
        got = results[layout]
        assert got["delivered"] == want["delivered"], f"{layout}: deliveries or payloads differ"
        assert got["audit"] == want["audit"], f"{layout}: audit rows differ"
        assert got["dead"] == want["dead"], f"{layout}: dead letters differ"


# ---------------------------------------------------------------- compare


def test_compare_shows_two_layouts_side_by_side():
    a, b = load_result(DEMO), load_result(DEMO)
    a["run"].update(topic_layout="per-entry", ingress_topics=9, ingress_partitions=12, router_cpu_s=20.0, broker_cpu_s=30.0, cpu_window_s=40.0)
    b["run"].update(topic_layout="per-department", ingress_topics=5, ingress_partitions=6, router_cpu_s=10.0, broker_cpu_s=31.0, cpu_window_s=40.0)
    section = next(s for s in comparison(a, b) if s.title == "ingress topics and CPU")
    rows = {r.label: r for r in section.rows}
    assert (rows["topic layout"].a, rows["topic layout"].b) == ("per-entry", "per-department")
    assert rows["ingress partitions"].delta() == ("-50.0 %", "")
    assert rows["router CPU, s"].delta() == ("-50.0 %", "better") and rows["broker CPU, s"].delta() == ("+3.3 %", "worse")
    assert (rows["router CPU, % of a core"].a, rows["router CPU, % of a core"].b) == (50.0, 25.0)
    a["run"]["machine_busy"], b["run"]["machine_busy"] = 0.97, 0.6
    busy = {r.label: r for r in next(s for s in comparison(a, b) if s.title == "ingress topics and CPU").rows}["machine busy, % of its cores"]
    assert (busy.a, busy.b) == (97.0, 60.0) and busy.delta()[1] == "better"
    assert "end to end p99, ms" in rows
    assert labels_of(a, b) == ("A · demo, per-entry", "B · demo, per-department")
    del a["run"]["topic_layout"]  # a result from before the setting: per-entry, and nothing measured
    assert next(s for s in comparison(a, b) if s.title == "ingress topics and CPU").rows[0].a == "per-entry"
