"""Every built-in preset runs end to end on the embedded broker and accounts for every record."""

from __future__ import annotations

import subprocess
import sys

import pytest

from exchange.scenarios.loader import load, preset_names
from schemas.results import Result

from .harness import ROOT


def test_presets_are_listed_and_valid():
    assert {"demo", "dongguan", "hubei-business-startup", "shenzhen-credit"} <= set(preset_names())
    dg = load("dongguan")
    assert len([d for d in dg.departments if d.kind.value != "local_government"]) == 84
    assert len(dg.catalogue) == 1_322 and sum(len(e.items) for e in dg.catalogue) == 14_722
    assert load("dongguan", seed=2).catalogue != dg.catalogue  # generated from the seed
    assert load("dongguan", seed=1).catalogue == dg.catalogue  # deterministically


def run_preset(name: str, tmp_path, seconds: int) -> Result:
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, "-m", "exchange", "run", name, "--duration", str(seconds), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    result = Result.model_validate_json((out / "result.json").read_text())
    assert result.conservation.ok and result.counts.unaccounted == 0
    return result


@pytest.mark.slow
def test_hubei_business_startup(tmp_path):
    r = run_preset("hubei-business-startup", tmp_path, 5)
    flow = r.workflows["企业开办"]
    assert flow.completed > 0 and flow.time_ms.p50 > 0
    name = r.one_number_one_source["enterprise.name"]
    assert name.verified > 0 and name.conflicts > 0  # 2 % of copies are made to disagree
    assert name.quality_events == name.conflicts


@pytest.mark.slow
def test_shenzhen_credit(tmp_path):
    r = run_preset("shenzhen-credit", tmp_path, 5)
    assert r.flows["credit.criminal-records"].delivered == 0
    assert set(r.flows["credit.criminal-records"].denied_by_reason) == {"negative_list"}
    assert r.flows["bank-regulator.social-security-payment"].denied_by_reason == {
        "not_approved": r.counts_by_entry["social-security-payment"].produced
    }
    assert r.flows["nanshan.enterprise-credit"].denied_by_reason.get("out_of_jurisdiction", 0) > 0


@pytest.mark.slow
def test_dongguan(tmp_path):
    r = run_preset("dongguan", tmp_path, 5)
    towns = [f for name, f in r.flows.items() if name.startswith("town-") and f.entry == "gps-fix"]
    assert len(towns) == 32  # 28 镇 + 4 街道, as the division table lists them
    gps = r.counts_by_entry["gps-fix"].produced
    assert sum(f.delivered for f in towns) == gps  # every fix reaches exactly its own town


def test_guizhou_cascade_and_flat_share_one_workload():
    cascade, flat = load("guizhou-cascade"), load("guizhou-flat")
    assert len(cascade.catalogue) == 9_000  # registered resources, the province's target
    assert len(cascade.hubs_in_use) == 13 and set(flat.hubs_in_use) == {"gz", "nation", "gd"}
    assert cascade.catalogue == flat.catalogue and cascade.subscriptions == flat.subscriptions and cascade.load == flat.load
    assert cascade.subscription_path(next(s for s in cascade.subscriptions if s.id == "gd-market.gy-licence")) == (
        "gy",
        "gz",
        "nation",
        "gd",
    )  # 跨省通办 through the national hub
    assert flat.subscription_path(next(s for s in flat.subscriptions if s.id == "gd-market.gy-licence")) == ("gz", "nation", "gd")
    assert cascade.gateway_of("gy-psb").max_records_per_s == 500
