"""Delivery samples: what each subscriber received, beside the source record (脱敏, 一数一源).

One real demo run (embedded broker, router, consumers, producers) feeds the end-to-end
tests: the samples file exists, every sample's source was read back by trace id, masked
items are their masking rule applied to the source value, and the report shows them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from exchange.policy.masking import apply_mask
from exchange.results.report import Names, ReportError, load_samples_beside, sample_item_rows, write_report
from schemas.results import Result
from schemas.scenario import MaskRule, Scenario

from .harness import ROOT

SAMPLES = "samples.jsonl"
PER_FLOW = 5  # consumers/samples.py DEFAULT_PER_FLOW


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples") / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "exchange", "run", "demo", "--duration", "3", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return out


def lines(run_dir: Path) -> list[dict]:
    return [orjson.loads(line) for line in (run_dir / SAMPLES).read_bytes().splitlines()]


def test_each_flow_that_delivered_has_its_first_deliveries_with_their_source(demo_run):
    result = Result.model_validate_json((demo_run / "result.json").read_text())
    scenario = Scenario.model_validate_json((demo_run / "scenario.json").read_text())
    samples = lines(demo_run)
    by_flow: dict[str, list[dict]] = {}
    for s in samples:
        by_flow.setdefault(s["flow"], []).append(s)
    delivered = {name for name, f in result.flows.items() if f.delivered}
    assert set(by_flow) == delivered  # and none for a flow that delivered nothing (pending, not shared)
    for name, kept in by_flow.items():
        flow = result.flows[name]
        assert [s["n"] for s in kept] == list(range(1, min(PER_FLOW, flow.delivered) + 1))
        assert len({s["trace"] for s in kept}) == len(kept)
        for s in kept:
            assert (s["entry"], s["consumer"]) == (flow.entry, flow.consumer)
            assert s["provider"] == scenario.entries[flow.entry].provider
            assert s["source"] is not None, f"{name} #{s['n']}: source not read back"
            assert s["source_at"]["topic"] == f"dx.{scenario.platform.id}.in.{flow.entry}"
            assert "_pad" not in s["source"]
            assert set(s["delivered"]) == set(s["items"]) & set(s["source"])  # the subscription's items, no more


def test_masked_items_are_their_rule_applied_to_the_source_and_the_rest_as_published(demo_run):
    masked = 0
    for s in lines(demo_run):
        for item, value in s["delivered"].items():
            rule = s["masks"].get(item)
            if rule is not None:
                assert value == apply_mask(MaskRule(rule), s["source"][item]), (s["flow"], item)
                assert value != s["source"][item]  # personal data in the demo: masking changes it
                masked += 1
            else:
                assert value == s["source"][item], (s["flow"], item)
    # enterprise-registration → hrss: legal representative, ID number, phone; social-insurance → tax: ID, name
    by_flow = {s["flow"]: s for s in lines(demo_run)}
    assert set(by_flow["hrss.enterprise-registration"]["masks"]) == {"enterprise.legal_rep", "enterprise.legal_rep_id", "enterprise.phone"}
    assert by_flow["tax.enterprise-registration"]["masks"] == {}  # approved with masking lifted
    assert masked >= 5 * 5


def test_the_report_shows_the_samples_side_by_side(demo_run):
    page = write_report(demo_run / "result.json").read_text(encoding="utf-8")
    assert 'id="samples"' in page
    assert "every masked value is its masking rule applied to the source value" in page
    hrss = next(s for s in lines(demo_run) if s["flow"] == "hrss.enterprise-registration" and s["n"] == 1)
    section = page[page.index('id="samples"') :]
    flow_block = section[section.index('data-flow="hrss.enterprise-registration"') :]
    flow_block = flow_block[: flow_block.index("</details>")]
    for item in hrss["masks"]:
        assert hrss["source"][item] in flow_block and hrss["delivered"][item] in flow_block
    assert f"trace {hrss['trace']}" in flow_block
    assert "脱敏 masked" in flow_block


def test_a_samples_file_that_is_not_one_is_refused_naming_the_line(tmp_path):
    (tmp_path / "result.json").write_text("{}")
    (tmp_path / SAMPLES).write_bytes(b'{"flow": "a.b"}\nnot json\n')
    with pytest.raises(ReportError, match=r"samples.jsonl, line 1: not a delivery sample \(missing consumer, delivered"):
        load_samples_beside(tmp_path / "result.json")
    (tmp_path / SAMPLES).write_bytes(b"\nnot json\n")
    with pytest.raises(ReportError, match=r"samples.jsonl:2:1: not JSON \("):
        load_samples_beside(tmp_path / "result.json")
    (tmp_path / SAMPLES).unlink()
    assert load_samples_beside(tmp_path / "result.json") is None


def test_what_happened_to_each_item_is_read_off_the_values():
    sample = {
        "flow": "b.e",
        "entry": "e",
        "consumer": "b",
        "n": 1,
        "trace": "1.1",
        "items": ["id", "name", "phone", "addr"],
        "masks": {"id": "id_number", "phone": "phone"},
        "source": {"id": "441900199001011234", "name": "张三", "phone": "13800138000", "addr": "甲", "secret": "x"},
        "delivered": {"id": "441900********1234", "name": "张三", "phone": "13800138000", "addr": "乙"},
    }
    rows, tally = sample_item_rows(sample, Names(None))
    how = {row[0]: row[3] for row in rows}
    assert "脱敏 masked" in how["id"]
    assert "not masked as its rule (phone) says" in how["phone"]  # delivered in clear: the report says so
    assert "as published" in how["name"]
    assert "authoritative source" in how["addr"]
    assert "not in the subscription's items" in how["secret"]
    assert tally == {"masked": 1, "mask_wrong": 1, "same": 1, "replaced": 1, "not_shared": 1}
    copy = sample | {
        "copies": {"name": "psb", "addr": "market"},
        "masks": {"name": "name"},
        "delivered": {"name": "李**", "addr": "乙"},
    }  # the copies differed from their sources
    how = {row[0]: row[3] for row in sample_item_rows(copy, Names(None))[0]}
    assert "of the authoritative value (一数一源: psb's" in how["name"] and "authoritative source's value (market)" in how["addr"]
    wrong = copy | {"delivered": {"name": "李四"}}  # a copy's value in clear is still not masked
    assert "not masked as its rule (name) says" in sample_item_rows(wrong, Names(None))[0][1][3]
    rows, tally = sample_item_rows(sample | {"source": None}, Names(None))  # not read back: nothing is claimed
    assert {row[3] for row in rows} == {"source record not read back"} and tally == {"unknown": 4}


async def test_sources_are_found_by_trace_id_far_into_the_topic_and_only_of_this_run(tmp_path):
    """A flow whose first deliveries come late (a mid-run approval, a narrow row filter) still gets
    its sources; a record of another run with the same trace id is not taken; what is not there
    is reported missing, within the time budget."""
    from consumers.samples import DeliverySampler, Sample, find_sources, write_samples
    from exchange.kafka import clients
    from exchange.kafka.tansu import EmbeddedBroker
    from exchange.kafka.topics import create_topics, topic_plan
    from exchange.scenarios.loader import load
    from schemas.envelope import record_headers

    scenario = load("demo")
    topic = f"dx.{scenario.platform.id}.in.gps-fix"
    async with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        await create_topics(broker.bootstrap, topic_plan(scenario))
        producer = clients.producer("control", broker.bootstrap)
        await producer.start()
        try:
            for run, count in (("old", 100), ("this", 3000)):  # an earlier run used the same trace ids
                futures = [
                    await producer.send(
                        topic,
                        key=b"k%d" % i,
                        value=orjson.dumps({"vehicle.plate": f"{run}-{i}"}),
                        headers=record_headers(b"1.%d" % i, "gps-fix", "transport", 0, 0, run),
                    )
                    for i in range(count)
                ]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()
        sampler = DeliverySampler(per_flow=3)
        for n, trace in enumerate(("1.7", "1.2999", "1.99999"), 1):
            sampler.samples.setdefault("urban.gps-fix", []).append(
                Sample("urban.gps-fix", "urban", "gps-fix", n, trace, b"k", b'{"vehicle.plate": "x"}', 0, n, 0, 0)
            )
        missing = await find_sources(sampler, scenario, broker.bootstrap, "this", budget_s=5.0)
    found = {s.trace: s for s in sampler.samples["urban.gps-fix"]}
    assert missing == 1 and found["1.99999"].source is None
    assert found["1.7"].source == {"vehicle.plate": "this-7"}  # not the old run's record
    assert found["1.2999"].source == {"vehicle.plate": "this-2999"}
    assert found["1.2999"].source_at["topic"] == topic
    assert sampler.lookup["records_read"] >= 3000 and sampler.lookup["ended"] == "read to the end"
    write_samples(sampler, scenario, tmp_path / SAMPLES)
    written = lines(tmp_path)
    assert [s["source"] for s in written] == [{"vehicle.plate": "this-7"}, {"vehicle.plate": "this-2999"}, None]
    assert written[0]["items"] and written[0]["masks"] == {}
