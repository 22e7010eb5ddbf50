"""One number, one source (一数一源) on a real broker and router: copies verified against the
authoritative source, mismatches reported, subscribers only ever given the source's values."""

from __future__ import annotations

import orjson
import pytest

from exchange.broker import EmbeddedBroker
from exchange.scenario_file import parse

from .harness import RouterProcess, envelope, new_run, publish, read_all

pytestmark = pytest.mark.asyncio

SCENARIO = """
name: one-source
platform: {id: t2, name: 测试平台, region: "420000", level: provincial}
departments:
  - {id: market, name: 市场监管局}
  - {id: tax, name: 税务局}
  - {id: hrss, name: 人社局}
catalogue:
  - id: registration
    name: 企业登记
    provider: market
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 统一社会信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name, authoritative: true}
      - {key: enterprise.address, name: 住所, type: address, authoritative: true}
  - id: tax-record
    name: 税务登记
    provider: tax
    sharing: 无条件共享
    items:
      - {key: enterprise.credit_code, name: 统一社会信用代码, type: credit_code}
      - {key: enterprise.name, name: 企业名称, type: enterprise_name}
      - {key: enterprise.address, name: 住所, type: address}
      - {key: tax.status, name: 状态, type: status}
subscriptions:
  - {consumer: hrss, entry: tax-record}
"""

CODE_A, CODE_B = "91420100MA4K0C1G5R", "91420100MA4K0C2E1D"
TRUE_NAME, TRUE_ADDRESS = "武汉市华盛科技有限公司", "湖北省武汉市武昌区中山路8号"


async def test_copies_are_verified_and_only_authoritative_values_are_delivered(tmp_path):
    scenario = parse(SCENARIO, "one-source.yaml")
    run = new_run()
    async with EmbeddedBroker() as broker:
        router = RouterProcess(scenario, broker.bootstrap, tmp_path)
        await router.start()
        try:
            t = router.topics
            await publish(broker.bootstrap, t.ingress("registration"), [
                (CODE_A.encode(), orjson.dumps({"enterprise.credit_code": CODE_A, "enterprise.name": TRUE_NAME,
                                                "enterprise.address": TRUE_ADDRESS}), envelope("registration", "market", "1.1", run)),
            ])
            await read_all(broker.bootstrap, t.audit, run=None, until=1, timeout=30)  # the source's record routed first, however loaded the machine
            copies = [
                (CODE_A, TRUE_NAME, TRUE_ADDRESS),  # agrees
                (CODE_A, "武汉市华盛科技有限公司（分公司）", TRUE_ADDRESS),  # a stale name
                (CODE_B, "某某公司", "某地"),  # the source has not published this enterprise
            ]
            await publish(broker.bootstrap, t.ingress("tax-record"), [
                (code.encode(), orjson.dumps({"enterprise.credit_code": code, "enterprise.name": name,
                                              "enterprise.address": address, "tax.status": "正常"}),
                 envelope("tax-record", "tax", f"2.{i + 1}", run))
                for i, (code, name, address) in enumerate(copies)
            ])
            delivered = await read_all(broker.bootstrap, t.delivery("hrss"), run=run, until=3)
            quality = [orjson.loads(r.value) for r in await read_all(broker.bootstrap, t.quality, idle=1.5)]
        finally:
            router.stop()
    values = {dict(r.headers)["trace-id"]: orjson.loads(r.value) for r in delivered}
    assert values[b"2.1"]["enterprise.name"] == TRUE_NAME
    assert values[b"2.2"]["enterprise.name"] == TRUE_NAME, "a copy that disagrees is never delivered as the truth"
    assert "enterprise.name" not in values[b"2.3"] and "enterprise.address" not in values[b"2.3"]  # unverifiable: withheld
    assert values[b"2.3"]["tax.status"] == "正常"
    conflicts = [q for q in quality if q["run"] == run]
    assert len(conflicts) == 1
    c = conflicts[0]
    assert (c["item"], c["master_key"], c["authority"], c["department"]) == ("enterprise.name", CODE_A, "market", "tax")
    assert (c["authoritative_value"], c["copy_value"]) == (TRUE_NAME, "武汉市华盛科技有限公司（分公司）")
