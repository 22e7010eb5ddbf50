"""Guizhou's cascade (上连国家、下通市州、横接部门), and the same workload on one flat hub.

The cascade: the national hub (国家数据共享交换平台), the provincial hub, and nine city
sub-platforms (市州) plus 贵安新区, each running its own router. Every city's market
regulation bureau publishes business licences (营业执照) read by its own human-resources
bureau (one hop), by the provincial market and tax bureaus (two hops) and, for a few
cities, by Guangdong's market regulator and the national regulator (跨省通办, through the
national hub). Every city's public security bureau sits on the police network and
publishes population changes through a boundary gateway (公安网边界接入平台); the national
hub's negative list keeps population records from crossing it. The provincial credit
centre sends its credit list back down to every city (回流), each city receiving only its
own rows. The catalogue registers resources toward the province's target of 9,000; most
are dormant (no load, no subscriber), as on a real platform, and cost no topics.

The flat variant attaches every Guizhou department to the provincial hub directly, with
the same entries, subscriptions and load, so that ``exchange compare`` shows what the
cascade costs per hop.
"""

from __future__ import annotations

import random

from schemas.scenario import Scenario

#: (platform id, 中文名, region code) of the nine cities and prefectures, and 贵安新区, which has
#: no division code of its own (it spans Guiyang and Anshun): its sub-platform serves 花溪区
#: 520111, where its directly administered core (湖潮乡, 党武街道) lies in the division table.
CITIES = (
    ("gy", "贵阳市", "520100"),
    ("lps", "六盘水市", "520200"),
    ("zy", "遵义市", "520300"),
    ("as", "安顺市", "520400"),
    ("bj", "毕节市", "520500"),
    ("tr", "铜仁市", "520600"),
    ("qxn", "黔西南州", "522300"),
    ("qdn", "黔东南州", "522600"),
    ("qn", "黔南州", "522700"),
    ("ga", "贵安新区", "520111"),
)
RESOURCES = 9_000  # the province's target of shared data resources (共享数据资源)
CROSS_PROVINCE = ("gy", "zy")  # cities whose licences Guangdong and the national regulator look up
LICENCE_RATE = 20.0  # records/s per city
POPULATION_RATE = 20.0
CREDIT_RATE = 50.0
THEMES = ("人口", "法人", "空间地理", "社会信用", "电子证照", "宏观经济", "公共安全", "生态环境", "民生服务", "文化旅游")
SUBJECTS = ("登记", "许可", "备案", "补贴", "证照", "处罚", "监测", "统计", "台账", "申报", "核验")

LICENCE_ITEMS = [
    {"key": "enterprise.credit_code", "name": "统一社会信用代码", "type": "credit_code"},
    {"key": "enterprise.name", "name": "企业名称", "type": "enterprise_name"},
    {"key": "enterprise.legal_rep", "name": "法定代表人", "type": "person_name", "sensitivity": "personal"},
    {"key": "enterprise.phone", "name": "联系电话", "type": "phone", "sensitivity": "personal"},
    {"key": "enterprise.region", "name": "登记机关所在地", "type": "region_code"},
]
POPULATION_ITEMS = [
    {"key": "person.id", "name": "公民身份号码", "type": "resident_id", "sensitivity": "personal"},
    {"key": "person.name", "name": "姓名", "type": "person_name", "sensitivity": "personal"},
    {"key": "person.phone", "name": "联系电话", "type": "phone", "sensitivity": "personal"},
    {"key": "person.address", "name": "住址", "type": "address", "sensitivity": "personal"},
    {"key": "person.region", "name": "户籍所在地", "type": "region_code"},
]
CREDIT_ITEMS = [
    {"key": "enterprise.credit_code", "name": "统一社会信用代码", "type": "credit_code"},
    {"key": "enterprise.name", "name": "企业名称", "type": "enterprise_name"},
    {"key": "credit.level", "name": "信用等级", "type": "status"},
    {"key": "credit.region", "name": "所在市州", "type": "region_code"},
]


def build_cascade(seed: int = 1) -> Scenario:
    return Scenario.model_validate(_design(seed, cascade=True))


def build_flat(seed: int = 1) -> Scenario:
    return Scenario.model_validate(_design(seed, cascade=False))


def _design(seed: int, cascade: bool) -> dict:
    rng = random.Random(seed)
    province = {"id": "gz", "name": "贵州省数据共享交换平台", "level": "provincial", "region": "520000", "parent": "nation"}
    platforms = [
        {
            "id": "nation",
            "name": "国家数据共享交换平台",
            "level": "national",
            "region": "000000",
            "negative_list": {"entries": [f"{c}-population" for c, _, _ in CITIES]},
        },  # personal data stays in the province
        {"id": "gd", "name": "广东省数据共享交换平台", "level": "provincial", "region": "440000", "parent": "nation"},
    ]
    if cascade:
        platforms += [{"id": c, "name": f"{name}数据共享交换平台", "level": "municipal", "region": code, "parent": "gz"} for c, name, code in CITIES]

    def on(city: str) -> str:
        return city if cascade else "gz"

    departments = [
        {"id": "gz-market", "name": "省市场监管局", "platform": "gz"},
        {"id": "gz-tax", "name": "国家税务总局贵州省税务局", "platform": "gz", "kind": "vertical"},
        {"id": "gz-hrss", "name": "省人力资源和社会保障厅", "platform": "gz"},
        {"id": "gz-credit", "name": "省信用中心", "platform": "gz", "kind": "public_institution"},
        {"id": "gz-bigdata", "name": "省大数据发展管理局", "platform": "gz", "kind": "platform_operator"},
        {"id": "samr", "name": "国家市场监督管理总局", "platform": "nation"},
        {"id": "gd-market", "name": "广东省市场监管局", "platform": "gd"},
        {"id": "gd-hrss", "name": "广东省人力资源和社会保障厅", "platform": "gd"},
    ]
    catalogue = [_entry("gz-credit-list", "企业信用等级名单", "gz-credit", "无条件共享", "社会信用", CREDIT_ITEMS, partitions=2)]
    subscriptions = []
    producers = [{"department": "gz-credit", "rate": CREDIT_RATE, "entries": ["gz-credit-list"]}]
    for c, name, code in CITIES:
        departments += [
            {"id": f"{c}-market", "name": f"{name}市场监管局", "platform": on(c), "region": code},
            {"id": f"{c}-psb", "name": f"{name}公安局", "platform": on(c), "region": code, "gateway": "police-net"},
            {"id": f"{c}-hrss", "name": f"{name}人力资源和社会保障局", "platform": on(c), "region": code},
        ]
        catalogue += [
            _entry(f"{c}-licence", f"{name}营业执照信息", f"{c}-market", "无条件共享", "电子证照", LICENCE_ITEMS),
            _entry(f"{c}-population", f"{name}人口变动信息", f"{c}-psb", "有条件共享", "人口", POPULATION_ITEMS),
        ]
        subscriptions += [
            {"consumer": f"{c}-hrss", "entry": f"{c}-licence"},
            {"consumer": "gz-market", "entry": f"{c}-licence"},
            {"consumer": "gz-tax", "entry": f"{c}-licence"},
            {
                "consumer": "gz-hrss",
                "entry": f"{c}-population",
                "purpose": "社保参保资格核验",
                "items": ["person.id", "person.name", "person.region"],
                "status": "approved",
            },
            {"consumer": f"{c}-market", "entry": "gz-credit-list"},  # 回流: each city its own rows
        ]
        producers += [
            {"department": f"{c}-market", "rate": LICENCE_RATE, "entries": [f"{c}-licence"]},
            {"department": f"{c}-psb", "rate": POPULATION_RATE, "entries": [f"{c}-population"]},
        ]
    for c in CROSS_PROVINCE:  # 跨省通办: through the national hub
        subscriptions += [{"consumer": "gd-market", "entry": f"{c}-licence"}, {"consumer": "samr", "entry": f"{c}-licence"}]
    # asked for, approved by the provider, and still refused at the national hub by its negative list
    subscriptions.append(
        {"consumer": "gd-hrss", "entry": "gy-population", "purpose": "异地社保转移", "items": ["person.id", "person.name"], "status": "approved"}
    )
    catalogue += _dormant(rng, departments, RESOURCES - len(catalogue))
    return {
        "name": "guizhou-cascade" if cascade else "guizhou-flat",
        "description": (
            "贵州: national hub, provincial hub, nine cities and 贵安新区 as sub-platforms (级联), cross-province licence lookups"
            if cascade
            else "贵州, flat: the cascade's workload with every Guizhou department on the provincial hub"
        ),
        "platform": province,
        "platforms": platforms,
        "gateways": [{"id": "police-net", "name": "公安网边界接入平台", "latency_ms": 15, "max_records_per_s": 500}],
        "departments": departments,
        "catalogue": catalogue,
        "subscriptions": subscriptions,
        "load": {"default_rate": 0, "duration": 30, "record_size": 512, "producers": producers, "regions": [code for _, _, code in CITIES]},
        "slos": [
            {"name": "nothing lost", "metric": "unaccounted", "max": 0},
            {"name": "licences within a second", "metric": "e2e_p99_ms", "entries": [f"{c}-licence" for c, _, _ in CITIES], "max": 1000},
        ],
    }


def _dormant(rng: random.Random, departments: list[dict], n: int) -> list[dict]:
    """Registered resources without load or subscriber: the bulk of a provincial catalogue."""
    providers = [d["id"] for d in departments if d["platform"] not in ("nation", "gd")]
    out = []
    for k in range(n):
        provider = providers[k % len(providers)]
        items = [
            {"key": f"r{k:04d}.f{f}", "name": f"{rng.choice(SUBJECTS)}字段{f + 1}", "type": rng.choice(("text", "date", "integer", "status"))}
            for f in range(rng.randint(3, 8))
        ]
        out.append(
            _entry(
                f"{provider}-r{k:04d}",
                f"{rng.choice(THEMES)}{rng.choice(SUBJECTS)}信息",
                provider,
                rng.choice(("无条件共享", "无条件共享", "有条件共享")),
                rng.choice(THEMES),
                items,
            )
        )
    return out


def _entry(id: str, name: str, provider: str, sharing: str, theme: str, items: list[dict], partitions: int = 1) -> dict:
    return {
        "id": id,
        "name": name,
        "provider": provider,
        "sharing": sharing,
        "theme": theme,
        "update_cycle": "实时",
        "partitions": partitions,
        "items": items,
    }
