"""Cascaded hubs: county → city → province, each hub its own router, rules and audit trail.

The run across the hubs runs on both brokers (the embedded Tansu one and Apache Kafka),
one broker per module each; the rest is the policy core, with no broker."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
import pytest_asyncio

from exchange.kafka import brokers
from exchange.kafka.topics import create_router_internal_topics
from exchange.policy.routing import RouterCore
from exchange.policy.sharing import compile_policy, compile_transit
from exchange.runner.controller import RunOptions, run
from exchange.scenarios.loader import ScenarioError, parse
from schemas.envelope import H_HOPS, H_SUBSCRIPTION, Topics, record_headers
from schemas.outcomes import DenialReason

from .harness import broker_kinds, read_all, running_broker

CASCADE = """
name: cascade-test
platform: {id: gz, name: 省平台, level: provincial, region: "520000", parent: nation}
platforms:
  - {id: nation, name: 国家平台, level: national, region: "000000"}
  - {id: gy, name: 市平台, level: municipal, region: "520100", parent: gz,
     negative_list: {entries: [county-secret]}}
  - {id: nm, name: 县平台, level: county, region: "520102", parent: gy}
  - {id: gd, name: 外省平台, level: provincial, region: "440000", parent: nation}
departments:
  - {id: county-market, name: 县市场监管局, platform: nm}
  - {id: prov-tax, name: 省税务局, platform: gz}
  - {id: city-hr, name: 市人社局, platform: gy}
  - {id: county-civil, name: 县民政局, platform: nm}
  - {id: gd-market, name: 外省市场监管局, platform: gd}
catalogue:
  - id: county-licence
    name: 县级营业执照
    provider: county-market
    sharing: 无条件共享
    items:
      - {key: enterprise.code, name: 统一社会信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name}
  - id: county-secret
    name: 县级内部台账
    provider: county-market
    sharing: 无条件共享
    items:
      - {key: enterprise.code, name: 统一社会信用代码, type: credit_code}
subscriptions:
  - {consumer: prov-tax, entry: county-licence}
  - {consumer: county-civil, entry: county-licence}
  - {consumer: gd-market, entry: county-licence}
  - {consumer: prov-tax, entry: county-secret}
load:
  default_rate: 100
  duration: 3
"""


def scenario():
    return parse(CASCADE, "cascade-test.yaml")


def test_the_path_goes_up_to_the_nearest_common_hub_then_down():
    s = scenario()
    assert s.path("nm", "gz") == ("nm", "gy", "gz")
    assert s.path("nm", "nm") == ("nm",)
    assert s.path("nm", "gd") == ("nm", "gy", "gz", "nation", "gd")  # 跨省: through the national hub
    assert s.path("gz", "nm") == ("gz", "gy", "nm")  # back down (回流)
    assert set(s.hubs_in_use) == {"nm", "gy", "gz", "nation", "gd"}


def test_each_hub_routes_its_own_entries_and_relays_the_rest():
    s = scenario()
    county = compile_policy(s, Topics("nm"), "nm")
    assert set(county) == {"county-licence", "county-secret"}
    routes = {r.subscription: r for r in county["county-licence"].routes}
    assert routes["county-civil.county-licence"].topic == "dx.nm.out.county-civil"  # its own consumer
    assert routes["prov-tax.county-licence"].topic == "dx.gy.transit"  # up to the city hub
    assert routes["prov-tax.county-licence"].delivered_audit[3] == "forwarded"
    assert compile_policy(s, Topics("gz"), "gz") == {}  # nothing is published on the province
    city = compile_transit(s, "gy")
    assert city[b"prov-tax.county-licence"].topic == "dx.gz.transit"
    assert city[b"prov-tax.county-secret"].denied == DenialReason.hub_negative_list  # the city's own rule
    province = compile_transit(s, "gz")
    assert province[b"prov-tax.county-licence"].final and province[b"prov-tax.county-licence"].topic == "dx.gz.out.prov-tax"
    assert province[b"gd-market.county-licence"].topic == "dx.nation.transit"


def fetched(topic, headers, value=b"{}", partition=0, offset=0):
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, key=b"k", value=value, headers=headers)


def test_a_relaying_hub_passes_the_value_unopened_and_adds_its_stamp():
    s = scenario()
    county = RouterCore(compile_policy(s, Topics("nm"), "nm"), Topics("nm"), "0", transit=compile_transit(s, "nm"))
    value = orjson.dumps({"enterprise.code": "91520102MA6DLTUX2E", "enterprise.name": "贵阳某某有限公司"})
    headers = record_headers(b"1.1", "county-licence", "county-market", 1, 2, "r")
    out = county.route([fetched("dx.nm.in.county-licence", headers, value)], now=1_700_000_000_000_000_000)
    up = {dict(h)[H_SUBSCRIPTION]: (v, h) for _, v, h in out.deliveries["dx.gy.transit"]}
    assert set(up) == {b"prov-tax.county-licence", b"gd-market.county-licence"}  # one record per subscription
    up_value, up_headers = up[b"prov-tax.county-licence"]
    city = RouterCore({}, Topics("gy"), "0", transit=compile_transit(s, "gy"))
    relayed = city.route([fetched("dx.gy.transit", up_headers, up_value)], now=1_700_000_000_001_000_000)
    ((_, forwarded_value, forwarded),) = relayed.deliveries["dx.gz.transit"]
    assert forwarded_value is up_value  # not decoded, not re-encoded
    stamps = [s.split(b":") for s in dict(forwarded)[H_HOPS].split(b";")]
    assert [hub for hub, _, _ in stamps] == [b"nm", b"gy"]
    assert all(int(i) <= int(o) for _, i, o in stamps)
    assert sum(1 for k, _ in forwarded if k == H_HOPS) == 1
    (row,) = [r for rows in relayed.audit.values() for r in rows]
    assert row[4:9] == ("county-licence", "prov-tax", "prov-tax.county-licence", "forwarded", "relayed")


def test_a_record_in_transit_for_a_subscription_not_crossing_the_hub_is_dead_lettered():
    s = scenario()
    city = RouterCore({}, Topics("gy"), "0", transit=compile_transit(s, "gy"))
    headers = [*record_headers(b"1.1", "county-licence", "county-market", 1, 2, "r"), (H_SUBSCRIPTION, b"county-civil.county-licence")]
    out = city.route([fetched("dx.gy.transit", headers)], now=1_700_000_000_000_000_000)
    assert not out.deliveries and out.dead_reasons == {"bad_transit": 1}
    assert orjson.loads(out.dead_letters[0][1])["subscription"] == "county-civil.county-licence"


def test_a_hub_negative_list_naming_an_unknown_entry_is_an_error():
    bad = CASCADE.replace("negative_list: {entries: [county-secret]}", "negative_list: {entries: [nope]}")
    with pytest.raises(ScenarioError) as exc:
        parse(bad, "cascade-test.yaml")
    assert "platforms.1.negative_list.entries.0" in str(exc.value) and "nope" in str(exc.value)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=broker_kinds())
async def broker(request, tmp_path_factory):
    """One broker for the module's runs, per broker kind."""
    async with running_broker(request.param, log_path=tmp_path_factory.mktemp(f"cascade-{request.param}") / "broker.log") as broker:
        yield broker


async def run_on(broker, options: RunOptions):
    """``run(options)`` on the module's broker, set up as a run sets up a broker it starts
    itself (a run given ``bootstrap`` does not know the broker's kind): on Kafka, Faust's
    own topics of every hub's router up front, long polls and the longer ready timeout."""
    if broker.kind == "kafka":
        await create_router_internal_topics(broker.bootstrap, options.scenario)
    options.bootstrap = broker.bootstrap
    options.fetch_wait_ms = brokers.fetch_wait_ms(broker.kind)
    options.ready_timeout = brokers.ready_timeout(broker.kind, options.ready_timeout)
    return await run(options)


@pytest.mark.asyncio(loop_scope="module")
async def test_records_cross_county_city_province_with_a_stamp_per_hop(broker, tmp_path):
    result, _run_dir = await run_on(broker, RunOptions(scenario(), duration=3, out=tmp_path / "run"))
    run_id = result.run.run_id
    audits = {hub: await read_all(broker.bootstrap, Topics(hub).audit, run=None) for hub in ("nm", "gy", "gz", "nation", "gd")}
    assert result.conservation.ok and result.counts.unaccounted == 0, result.conservation
    produced = result.counts_by_entry
    licences, secrets = produced["county-licence"].produced, produced["county-secret"].produced
    flows = result.flows
    for sub in ("prov-tax.county-licence", "county-civil.county-licence", "gd-market.county-licence"):
        assert flows[sub].delivered == licences and flows[sub].duplicates == 0
    # the city hub's rule: denied there, once, and nowhere delivered
    secret = flows["prov-tax.county-secret"]
    assert secret.delivered == 0 and secret.denied_by_reason == {DenialReason.hub_negative_list: secrets}
    # one path per destination, with its hubs in order
    assert result.paths["nm > gy > gz"].delivered == licences
    assert result.paths["nm"].delivered == licences
    assert result.paths["nm > gy > gz > nation > gd"].delivered == licences
    for segment in ("producer → nm", "nm", "nm → gy", "gy", "gy → gz", "gz", "gz → consumer", "gz → nation", "nation → gd"):
        assert result.hops[segment].count > 0, segment
    assert result.hops["gy → gz"].count == 2 * licences  # to the province's consumer, and on towards the nation
    assert result.hops["producer → nm"].count == 3 * licences

    rows = {hub: _rows(records, run_id) for hub, records in audits.items()}
    secret_rows = {hub: [r for r in rs if r["entry"] == "county-secret"] for hub, rs in rows.items()}
    assert {r["decision"] for r in secret_rows["nm"]} == {"forwarded"}
    assert {(r["decision"], r["reason"]) for r in secret_rows["gy"]} == {("denied", DenialReason.hub_negative_list)}
    assert len(secret_rows["gy"]) == secrets and not secret_rows["gz"]  # the province never saw it
    to_province = [r for r in rows["gz"] if r["subscription"] == "prov-tax.county-licence"]
    assert {r["decision"] for r in to_province} == {"delivered"} and len(to_province) == licences
    assert {r["decision"] for r in rows["nation"]} == {"forwarded"}
    assert len(rows["gd"]) == licences and {r["decision"] for r in rows["gd"]} == {"delivered"}


def _rows(records, run_id):
    out = []
    for r in records:
        block = orjson.loads(r.value)
        for row in block["rows"]:
            row = dict(zip(block["fields"], row, strict=True))
            if row["run"] == run_id:
                out.append(row)
    return out


def test_a_department_behind_an_unknown_gateway_is_an_error():
    bad = CASCADE.replace("{id: prov-tax, name: 省税务局, platform: gz}", "{id: prov-tax, name: 省税务局, platform: gz, gateway: police-net}")
    with pytest.raises(ScenarioError) as exc:
        parse(bad, "cascade-test.yaml")
    assert "departments.1.gateway" in str(exc.value) and "police-net" in str(exc.value)


def test_a_gateway_caps_what_crosses_it():
    from exchange.kafka.gateway import GatewayGate
    from schemas.scenario import Gateway

    gate = GatewayGate(Gateway(id="g", latency_ms=5, max_records_per_s=1000))
    first = gate.allowance(10_000)
    assert first == 100  # a tenth of a second's burst
    assert gate.allowance(10_000) < 10  # then only what the rate refills
    assert GatewayGate(Gateway(id="open")).allowance(10_000) == 10_000


def test_the_routers_fetch_wait_grows_with_the_number_of_routers():
    from exchange.runner.controller import _router_names, default_fetch_wait

    assert [default_fetch_wait(n) for n in (1, 3, 4, 13, 40)] == [10, 10, 20, 50, 50]
    names = _router_names(scenario(), 1)
    assert len(names) == 5 and ("gy", 0, "router-gy-0") in names  # one router per hub in use


def test_rows_are_filtered_against_the_providers_jurisdiction_on_a_cascade_or_a_flat_hub():
    from exchange.scenarios.loader import load

    for name in ("guizhou-cascade", "guizhou-flat"):
        s = load(name)
        hub = s.platform_of("gy-market")
        licence = {r.subscription: r for r in compile_policy(s, Topics(hub), hub)["gy-licence"].routes}
        assert licence["gy-hrss.gy-licence"].region is None, name  # Guiyang's own entry: all of it
        credit = {r.subscription: r for r in compile_policy(s, Topics("gz"), "gz")["gz-credit-list"].routes}
        assert credit["gy-market.gz-credit-list"].region == "520100", name  # the province's list: Guiyang's rows
