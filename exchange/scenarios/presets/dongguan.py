"""The Dongguan city hub (东莞市政务数据共享交换平台), as its end-of-2016 figures describe it.

84 departments publishing 1,322 catalogue entries with 14,722 data items, generated
deterministically from the seed (names in Chinese, ids in English); the transport
bureau's live GPS stream at ~2,470 records/s (37,000 vehicles, one fix per 15 s), read by
urban management and emergency management, and by the 32 towns and streets (28 镇 and
4 街道, codes and names from the national division table, schemas/regions.py), each of
which receives only its own jurisdiction's rows (松山湖 and the other functional areas have
statistical codes only, no division codes, so they are not among them). Population data
has the public security bureau as its authoritative source, enterprise data the market regulation bureau; every other
department's copy is verified against them.
"""

from __future__ import annotations

import random

from schemas import regions
from schemas.scenario import Scenario

DEPARTMENTS = 84
ENTRIES = 1_322
ITEMS = 14_722
CITY = "441900"  # 东莞市: no counties, its towns and streets report to the city
GPS_RATE = 37_000 / 15  # ≈ 2,467 records/s

# (id, 中文名) of the departments the plans name, then the rest of a city's bureaus.
NAMED = [
    ("market", "市场监管局"),
    ("psb", "公安局"),
    ("tax", "税务局"),
    ("hrss", "人力资源和社会保障局"),
    ("civil", "民政局"),
    ("nature", "自然资源局"),
    ("housing", "住房和城乡建设局"),
    ("transport", "交通运输局"),
    ("health", "卫生健康局"),
    ("edu", "教育局"),
    ("eco", "生态环境局"),
    ("emergency", "应急管理局"),
    ("stats", "统计局"),
    ("urban", "城市管理和综合执法局"),
    ("weather", "气象局"),
    ("justice", "司法局"),
    ("credit", "信用中心"),
    ("fund", "住房公积金中心"),
    ("operator", "政务服务数据管理局"),
    ("realty", "不动产登记中心"),
    ("drc", "发展和改革局"),
    ("miit", "工业和信息化局"),
    ("sci", "科学技术局"),
    ("finance", "财政局"),
    ("agri", "农业农村局"),
    ("water", "水务局"),
    ("culture", "文化广电旅游体育局"),
    ("commerce", "商务局"),
    ("veterans", "退役军人事务局"),
    ("audit", "审计局"),
    ("sasac", "国有资产监督管理委员会"),
    ("forestry", "林业局"),
    ("customs", "海关"),
    ("ethnic", "民族宗教事务局"),
    ("medsec", "医疗保障局"),
    ("petition", "信访局"),
    ("archives", "档案馆"),
    ("fire", "消防救援支队"),
    ("traffic-police", "交警支队"),
    ("port", "港务局"),
    ("post", "邮政管理局"),
    ("tobacco", "烟草专卖局"),
    ("power", "供电局"),
    ("telecom", "通信管理办公室"),
    ("disabled", "残疾人联合会"),
    ("women", "妇女联合会"),
    ("youth", "共青团市委"),
    ("union", "总工会"),
    ("redcross", "红十字会"),
    ("library", "图书馆"),
    ("museum", "博物馆"),
    ("cdc", "疾病预防控制中心"),
    ("blood", "中心血站"),
    ("exam", "教育考试院"),
    ("talent", "人才发展局"),
    ("investment", "投资促进局"),
    ("bigdata", "大数据发展中心"),
    ("gov-service", "政务服务中心"),
    ("housing-sec", "住房保障中心"),
    ("land-reserve", "土地储备中心"),
    ("survey", "测绘院"),
    ("quality", "质量技术监督检测院"),
    ("drug", "药品检验所"),
    ("food", "食品检验所"),
    ("env-monitor", "环境监测站"),
    ("hydro", "水文局"),
    ("seismic", "地震局"),
    ("civil-air", "人民防空办公室"),
    ("grain", "粮食和物资储备局"),
    ("supply", "供销合作社"),
    ("notary", "公证处"),
    ("legal-aid", "法律援助处"),
    ("social-org", "社会组织管理局"),
    ("funeral", "殡葬管理所"),
    ("pension", "社会保险基金管理中心"),
    ("employment", "就业服务中心"),
    ("salary", "工资福利管理办公室"),
    ("harbor", "海事局"),
    ("rail", "轨道交通局"),
    ("bus", "公共交通集团"),
    ("gas", "燃气管理所"),
    ("heritage", "文物局"),
    ("sports", "体育中心"),
    ("tourism", "旅游咨询中心"),
]
VERTICAL = {"tax", "customs", "weather", "harbor", "tobacco", "post", "power", "seismic"}
INSTITUTIONS = {
    "credit",
    "fund",
    "realty",
    "archives",
    "library",
    "museum",
    "cdc",
    "blood",
    "exam",
    "bigdata",
    "gov-service",
    "housing-sec",
    "land-reserve",
    "survey",
    "quality",
    "drug",
    "food",
    "env-monitor",
    "notary",
    "legal-aid",
    "funeral",
    "pension",
    "employment",
    "bus",
    "sports",
    "tourism",
}
THEMES = ("人口", "法人", "空间地理", "社会信用", "电子证照", "宏观经济", "城市管理", "公共安全", "生态环境", "民生服务")
SUBJECTS = ("登记", "许可", "备案", "年检", "补贴", "证照", "处罚", "监测", "统计", "台账", "申报", "缴存", "核验")

PERSON = [
    {"key": "person.id", "name": "公民身份号码", "type": "resident_id", "sensitivity": "personal"},
    {"key": "person.name", "name": "姓名", "type": "person_name", "sensitivity": "personal"},
    {"key": "person.phone", "name": "联系电话", "type": "phone", "sensitivity": "personal"},
    {"key": "person.address", "name": "住址", "type": "address", "sensitivity": "personal"},
]
ENTERPRISE = [
    {"key": "enterprise.credit_code", "name": "统一社会信用代码", "type": "credit_code"},
    {"key": "enterprise.name", "name": "企业名称", "type": "enterprise_name"},
    {"key": "enterprise.address", "name": "住所", "type": "address"},
]
FIELD_TYPES = ("text", "date", "integer", "decimal", "status", "datetime")


def _split(total: int, parts: int, rng: random.Random, low: int, high: int) -> list[int]:
    """``parts`` integers in [low, high] summing to ``total`` (deterministic)."""
    out = [low] * parts
    left = total - low * parts
    while left > 0:
        i = rng.randrange(parts)
        if out[i] < high:
            out[i] += 1
            left -= 1
    return out


def build(seed: int = 1) -> Scenario:
    rng = random.Random(seed)
    departments = [
        {"id": d, "name": n, "kind": "vertical" if d in VERTICAL else "public_institution" if d in INSTITUTIONS else "local_bureau"}
        for d, n in NAMED[:DEPARTMENTS]
    ]
    departments[NAMED.index(("operator", "政务服务数据管理局"))]["kind"] = "platform_operator"
    towns = [
        {"id": f"town-{code[-3:]}", "name": regions.get(code).name, "region": code, "kind": "local_government"} for code in regions.children(CITY)
    ]
    dept_ids = [d["id"] for d in departments]

    # The anchor entries: population (公安局, authoritative for person.*), enterprise
    # registration (市场监管局, authoritative for enterprise.*) and the live GPS stream.
    catalogue = [
        _entry("population", "人口基础信息", "psb", "有条件共享", "人口", [{**i, "authoritative": True} for i in PERSON] + [_region()]),
        _entry(
            "enterprise-registration",
            "企业登记信息",
            "market",
            "无条件共享",
            "法人",
            [{**i, "authoritative": True} for i in ENTERPRISE] + [_region()],
        ),
        _entry(
            "gps-fix",
            "营运车辆GPS定位",
            "transport",
            "无条件共享",
            "城市管理",
            [
                {"key": "vehicle.plate", "name": "车牌号码", "type": "plate"},
                {"key": "vehicle.lat", "name": "纬度", "type": "latitude"},
                {"key": "vehicle.lon", "name": "经度", "type": "longitude"},
                {"key": "vehicle.speed", "name": "速度", "type": "decimal"},
                _region("vehicle.region", "所在镇街"),
                {"key": "vehicle.fix_time", "name": "定位时间", "type": "datetime"},
            ],
            partitions=4,
        ),
    ]
    per_dept = _split(ENTRIES - len(catalogue), DEPARTMENTS, rng, 8, 30)
    item_counts = _split(ITEMS - sum(len(e["items"]) for e in catalogue), ENTRIES - len(catalogue), rng, 4, 24)
    sharing_pool = ["无条件共享"] * 14 + ["有条件共享"] * 5 + ["不予共享"]
    k = 0
    for d, count in zip(dept_ids, per_dept, strict=True):
        for j in range(count):
            n_items = item_counts[k]
            k += 1
            subject = rng.choice(("person", "enterprise", "none"))
            base = PERSON[:2] if subject == "person" else ENTERPRISE[:2] if subject == "enterprise" else []
            base = base[: max(0, n_items - 2)]
            own = [
                {"key": f"{d.replace('-', '_')}.e{j:02d}_f{f:02d}", "name": f"{rng.choice(SUBJECTS)}字段{f + 1}", "type": rng.choice(FIELD_TYPES)}
                for f in range(n_items - len(base) - 1)
            ]
            catalogue.append(
                _entry(
                    f"{d}-{j:02d}",
                    f"{rng.choice(THEMES)}{rng.choice(SUBJECTS)}信息{j + 1}",
                    d,
                    rng.choice(sharing_pool),
                    rng.choice(THEMES),
                    [*base, *own, _region(f"{d.replace('-', '_')}.e{j:02d}_region")],
                )
            )

    subscriptions: list[dict[str, object]] = [{"consumer": c, "entry": "gps-fix"} for c in ("urban", "emergency")]
    subscriptions += [{"consumer": t["id"], "entry": "gps-fix"} for t in towns]
    subscriptions += [
        {"consumer": c, "entry": "population", "purpose": "核验居民身份", "items": ["person.id", "person.name"], "status": "approved"}
        for c in ("civil", "hrss", "medsec", "housing-sec")
    ]
    subscriptions += [{"consumer": c, "entry": "enterprise-registration"} for c in ("tax", "hrss", "credit", "commerce")]
    by_provider: dict[str, list[dict]] = {}
    for e in catalogue[3:]:
        by_provider.setdefault(e["provider"], []).append(e)
    taken = {(s["consumer"], s["entry"]) for s in subscriptions}
    for consumer in dept_ids:
        for _ in range(4):  # 需求清单: four needs per department, matched to others' entries
            entry = rng.choice(catalogue[3:])
            if entry["provider"] == consumer or (consumer, entry["id"]) in taken:
                continue
            taken.add((consumer, entry["id"]))
            sub = {"consumer": consumer, "entry": entry["id"]}
            if entry["sharing"] != "无条件共享":
                sub |= {"purpose": "按需共享", "status": "approved" if rng.random() < 0.8 else "pending"}
            subscriptions.append(sub)

    return Scenario.model_validate(
        {
            "name": "dongguan",
            "description": "东莞市政务数据共享交换平台: 84 departments, 1,322 entries, 14,722 items, GPS at ~2,470/s, 32 towns and streets",
            "platform": {"id": "dg", "name": "东莞市政务数据共享交换平台", "level": "municipal", "region": CITY},
            "departments": departments + towns,
            "catalogue": catalogue,
            "subscriptions": subscriptions,
            "responsibilities": [
                {"department": "psb", "items": ["person.id", "person.name"]},
                {"department": "market", "items": ["enterprise.credit_code", "enterprise.name"]},
            ],
            "load": {
                "duration": 30,
                "record_size": 512,
                "mismatch_rate": 0.01,
                "producers": [
                    {"department": "transport", "rate": GPS_RATE, "entries": ["gps-fix"]},
                    {"department": "psb", "rate": 20, "entries": ["population"]},
                    {"department": "market", "rate": 20, "entries": ["enterprise-registration"]},
                ],
                "default_rate": 0.05,  # every other entry: one record per 20 s
            },
        }
    )


def _region(key: str = "record.region", name: str = "所属镇街") -> dict:
    return {"key": key, "name": name, "type": "region_code"}


def _entry(id: str, name: str, provider: str, sharing: str, theme: str, items: list[dict], partitions: int = 1) -> dict:
    cycle = "实时" if sharing != "不予共享" and id == "gps-fix" else "每日"
    return {
        "id": id,
        "name": name,
        "provider": provider,
        "sharing": sharing,
        "theme": theme,
        "update_cycle": cycle,
        "partitions": partitions,
        "items": items,
    }
