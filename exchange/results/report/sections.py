"""The page's sections other than charts: verdicts, KPIs, SLOs, faults, warm-up, workflow, 一数一源, hops, flows, samples."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from exchange.policy.masking import apply_mask
from exchange.results.report.load import SAMPLES_FILE
from exchange.results.report.markup import esc, table
from exchange.results.report.series import Names, flow_label, fmt_int, fmt_ms, mean
from schemas.scenario import MaskRule

SAMPLES_SHOWN = 3  # deliveries shown per flow; samples.jsonl has them all
SAMPLE_FLOWS_SHOWN = 60  # flows shown, those with masked or replaced values first
SAMPLE_FLOWS_OPEN = 3  # flows shown unfolded


def verdict(result: dict[str, Any]) -> str:
    cons = result.get("conservation") or {}
    ok = cons.get("ok") is True
    icon, word = ("✓", "Conservation check passed") if ok else ("✕", "Conservation check FAILED")
    return (
        f'<div class="verdict {"ok" if ok else "bad"}" id="conservation"><span class="icon">{icon}</span>'
        f'<div>{word}<div class="sub">{esc(cons.get("message", "no conservation check in this result"))}</div></div></div>'
    )


def input_warnings(result: dict[str, Any]) -> str:
    """Banners for input the figures leave out: clock skew per source, records other clients wrote, batches that could not be decoded."""
    out = []
    skew = result.get("clock_skew") or {}
    if isinstance(skew, dict) and skew:
        total = sum(int(v.get("records", 0)) for v in skew.values() if isinstance(v, dict))
        per = "; ".join(
            f"{src}: {fmt_int(v.get('records'))} ({fmt_ms(v.get('min_ms'))} … {fmt_ms(v.get('max_ms'))} ms)"
            for src, v in sorted(skew.items())
            if isinstance(v, dict)
        )
        out.append(
            f'<div class="verdict bad" id="clock-skew"><span class="icon">⚠</span><div>Clock skew: {fmt_int(total)} '
            "deliveries with a latency that cannot be true (negative or over an hour), kept out of every latency figure"
            f'<div class="sub">by source: {esc(per)}</div></div></div>'
        )
    foreign = (result.get("counts") or {}).get("foreign_dead_lettered")
    if foreign:
        why = "; ".join(f"{r}: {fmt_int(n)}" for r, n in ((result.get("counts") or {}).get("foreign_dead_letters_by_reason") or {}).items())
        out.append(
            f'<div class="verdict bad" id="foreign-dead-letters"><span class="icon">⚠</span><div>{fmt_int(foreign)} records '
            "dead-lettered during the run carry no run id or another run's (written to an ingress topic by another client)"
            f'<div class="sub">not among this run\'s outcomes; by reason: {esc(why)}</div></div></div>'
        )
    for warning in result.get("warnings") or []:
        out.append(f'<div class="verdict bad" id="run-warning"><span class="icon">⚠</span><div>{esc(warning)}</div></div>')
    undecodable = (result.get("counts") or {}).get("undecodable")
    if undecodable:
        out.append(
            f'<div class="verdict bad" id="undecodable"><span class="icon">⚠</span><div>{fmt_int(undecodable)} records in '
            "ingress batches the router could not decode (dead-lettered as unsupported_codec / corrupt_batch)"
            '<div class="sub">their run cannot be read from them, so they are not among this run\'s outcomes</div></div></div>'
        )
    return "".join(out)


def slo_verdict(result: dict[str, Any]) -> str:
    slos = result.get("slos")
    if not isinstance(slos, list) or not slos:
        return '<div class="verdict none"><span class="icon">–</span><div>SLOs<div class="sub">no SLOs declared</div></div></div>'
    failed = [s.get("name", "?") for s in slos if not s.get("passed")]
    if not failed:
        return (
            f'<div class="verdict ok"><span class="icon">✓</span><div>All {len(slos)} SLOs met'
            f'<div class="sub">{esc(", ".join(s.get("name", "?") for s in slos))}</div></div></div>'
        )
    return (
        f'<div class="verdict bad"><span class="icon">✕</span><div>{len(failed)} of {len(slos)} SLOs missed'
        f'<div class="sub">{esc(", ".join(failed))}</div></div></div>'
    )


def _router_cpu(cpu: dict[str, float]) -> str | None:
    """The routers' CPU while publishing: the one figure, or the total and the busiest of several."""
    if not cpu:
        return None
    if len(cpu) == 1:
        return f"{next(iter(cpu.values())):.1%} of a core"
    busiest = max(cpu, key=cpu.__getitem__)
    return f"{sum(cpu.values()):.1%} of a core in {len(cpu)} processes (busiest {busiest}: {cpu[busiest]:.1%})"


def run_meta(r: dict[str, Any]) -> str:
    run = r.get("run") or {}
    ready = ", ".join(f"{s:.1f} s" for s in run.get("router_ready_s") or [])
    items = [
        ("driver", r.get("driver")),
        ("run", run.get("run_id")),
        ("started", run.get("started_at")),
        ("duration", f"{run.get('duration_s')} s" if run.get("duration_s") is not None else None),
        ("seed", run.get("seed")),
        ("guarantee", run.get("guarantee")),
        ("router workers", run.get("router_workers")),
        ("producer / consumer workers", f"{run.get('producer_workers', 1)} / {run.get('consumer_workers', 1)}"),
        ("router ready", ready or None),
        # --external: which slot ran where (docs/distributed.md)
        ("on workers", ", ".join(f"{w.get('slot')} on {w.get('host')}" for w in run.get("workers") or []) or None),
        ("router CPU", _router_cpu(run.get("router_cpu") or {})),
        ("drain", f"{run.get('drain_s')} s" if run.get("drain_s") is not None else None),
        ("clock offsets", clock_offsets(run)),
        ("record size", f"{r.get('messageSize')} B" if r.get("messageSize") else None),
        ("topics / partitions", f"{r.get('topics')} / {r.get('partitions')}" if r.get("topics") else None),
        (
            "broker",
            (f"{run['broker']} at " if run.get("broker") else "embedded " if run.get("embedded_broker") else "") + str(run.get("bootstrap", ""))
            if run
            else None,
        ),
    ]
    return '<div class="meta">' + "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in items if v not in (None, "")) + "</div>"


def clock_offsets(run: dict[str, Any]) -> str | None:
    """``consumers −500.2 ± 1.3 ms, router-0 +0.1 ± 1.1 ms (corrected)``: each process's clock to the controller's."""
    offsets = run.get("clock_offsets") or {}
    if not isinstance(offsets, dict) or not offsets:
        return None
    each = ", ".join(
        f"{name} {o.get('offset_ns', 0) / 1e6:+.1f} ± {o.get('error_ns', 0) / 1e6:.1f} ms"
        for name, o in sorted(offsets.items())
        if isinstance(o, dict)
    )
    return f"{each} ({'corrected' if run.get('clock_correction', True) else 'not corrected'})"


def kpis(r: dict[str, Any]) -> str:
    c = r.get("counts") or {}
    cards = [
        ("produced", fmt_int(c.get("produced")), False),
        ("delivered", fmt_int(c.get("delivered")), False),
        ("denied", fmt_int(c.get("denied")), False),
        ("dead-lettered", fmt_int(c.get("dead_lettered")), bool(c.get("dead_lettered"))),
        ("unaccounted", fmt_int(c.get("unaccounted")), bool(c.get("unaccounted"))),
        ("mean publish rate, rec/s", fmt_int(round(mean(r.get("publishRate") or []) or 0)), False),
        ("mean consume rate, rec/s", fmt_int(round(mean(r.get("consumeRate") or []) or 0)), False),
        ("end-to-end p50, ms", fmt_ms(r.get("aggregatedEndToEndLatency50pct")), False),
        ("end-to-end p99, ms", fmt_ms(r.get("aggregatedEndToEndLatency99pct")), False),
        ("end-to-end max, ms", fmt_ms(r.get("aggregatedEndToEndLatencyMax")), False),
    ]
    if isinstance(r.get("warmup"), dict) and r["warmup"].get("seconds"):  # the latency cards leave the warm-up out
        cards[-3:] = [(label.replace(", ms", " after warm-up, ms"), v, warn) for label, v, warn in cards[-3:]]
    if isinstance(c.get("masked"), int):
        cards.insert(2, ("masked", fmt_int(c["masked"]), False))
    return (
        '<div class="kpis">'
        + "".join(
            f'<div class="kpi{" warn" if warn else ""}"><div class="v">{esc(v)}</div><div class="l">{esc(label)}</div></div>'
            for label, v, warn in cards
        )
        + "</div>"
    )


def slo_unit(slo: dict[str, Any]) -> str:
    if slo.get("unit"):
        return str(slo["unit"])
    metric = str(slo.get("metric", ""))
    return "ms" if metric.endswith("_ms") else "records/s" if metric.endswith("_per_s") else "ratio" if metric.endswith("rate") else ""


def fmt_value(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "—" if v is None else str(v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"


def slo_section(r: dict[str, Any]) -> str:
    slos = r.get("slos")
    if not isinstance(slos, list) or not slos:
        return '<div class="card" id="slos"><div class="note">no SLOs declared</div></div>'
    rows = [
        [
            esc(s.get("name", "")),
            esc(s.get("metric", "")),
            esc(fmt_value(s.get("target"))),
            esc(fmt_value(s.get("measured"))),
            esc(slo_unit(s)),
            '<span class="pass">✓ pass</span>' if s.get("passed") else '<span class="fail">✕ fail</span>',
        ]
        for s in slos
    ]
    return '<div class="card" id="slos">' + table(["SLO", "metric", "target", "measured", "unit", "verdict"], rows, left=2) + "</div>"


def fault_section(r: dict[str, Any]) -> str:
    faults = r.get("faults") or []
    if not faults:
        return ""
    rows = []
    for f in faults:
        recovered = f.get("recovered_after_s")
        target = f.get("target") or (f"node {f['node']} ({f.get('node_chosen') or 'chosen by the run'})" if f.get("node") else "—")
        p99 = " → ".join("—" if f.get(k) is None else f"{f[k]:,.0f}" for k in ("baseline_p99_ms", "peak_p99_ms"))
        rows.append(
            [
                esc(f.get("spec", "")),
                esc(f.get("kind", "")),
                esc(target),
                esc(f"{f['injected_at_s']:.1f} s" if f.get("injected_at_s") is not None else "not injected"),
                esc(f"{f.get('duration_s', 0):g} s"),
                fmt_int(round(f.get("baseline_lag", 0))),
                fmt_int(f.get("peak_lag")),
                esc(p99),
                '<span class="fail">not within the run</span>' if recovered is None else esc(f"{recovered:.1f} s"),
                fmt_ms(f.get("publish_delay_max_ms")),
            ]
        )
    duplicates = (r.get("counts") or {}).get("duplicates", 0)
    return (
        '<h2>Faults injected (--chaos) and recovery</h2><div class="card" id="faults">'
        + table(
            [
                "fault",
                "kind",
                "target",
                "injected at",
                "duration",
                "baseline lag",
                "peak lag",
                "p99 before → peak ms",
                "recovered after",
                "publish delay max ms",
            ],
            rows,
            left=3,
        )
        + f'<div class="note">lag: router + subscriber lag, records; p99: subscribers\' end-to-end p99 per second; '
        f"recovered: lag back to ≤ max(baseline × 1.5, baseline + 100) and p99 to ≤ max(baseline × 1.5, baseline + 50 ms) "
        f"after the fault ended (a kill: from the kill, so the restart or failover counts). "
        f"{duplicates:,} redeliveries were dropped as duplicates by trace id, not counted as deliveries.</div></div>"
    )


def warmup_section(r: dict[str, Any]) -> str:
    """The warm-up's own figures: counted in every total, kept out of the aggregated latency and SLOs."""
    w = r.get("warmup")
    seconds = w.get("seconds") if isinstance(w, dict) else None
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return ""
    rows = []
    for label, key in (
        ("end to end", "end_to_end_ms"),
        ("end to end, from intended send time", "end_to_end_from_intended_ms"),
        ("publish latency", "publish_latency_ms"),
        ("publish delay", "publish_delay_ms"),
    ):
        q = w.get(key) or {}
        rows.append([esc(label), *(fmt_ms(q.get(k)) for k in ("50pct", "99pct", "999pct", "max"))])
    return (
        f'<h2>Warm-up: the first {seconds:g} s, reported apart</h2><div class="card" id="warmup">'
        + table(["warm-up latency, ms", "p50", "p99", "p99.9", "max"], rows)
        + f'<div class="note">{fmt_int(w.get("published"))} records published and {fmt_int(w.get("delivered"))} deliveries '
        "with an intended send time in the warm-up: routed and counted in every total and the conservation check, "
        "kept out of the aggregated and per-flow percentiles, the hops and the SLO verdicts above; "
        "the per-interval charts show every second, the warm-up shaded.</div></div>"
    )


def workflow_section(r: dict[str, Any]) -> str:
    workflows = r.get("workflows") or {}
    if not workflows:
        return ""
    rows = []
    for name, w in workflows.items():
        q = w.get("time_ms") or {}
        rows.append(
            [esc(name), fmt_int(w.get("completed")), fmt_int(w.get("incomplete")), *(fmt_ms(q.get(k)) for k in ("50pct", "95pct", "99pct", "max"))]
        )
    return (
        '<h2>Workflows (joint processes, per master key: start → last step)</h2><div class="card" id="workflows">'
        + table(["workflow", "completed", "incomplete", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
        + "</div>"
    )


def onss_section(r: dict[str, Any]) -> str:
    items = r.get("one_number_one_source") or {}
    if not items:
        return ""
    rows = [
        [
            esc(k),
            fmt_int(v.get("verified")),
            fmt_int(v.get("conflicts")),
            fmt_int(v.get("unverified")),
            fmt_int(v.get("invalid_key", 0)),
            f"{v.get('verification_rate', 0) * 100:.1f} %",
            fmt_int(v.get("quality_events")),
            esc(", ".join(f"{d} {n:,}" for d, n in sorted((v.get("by_department") or {}).items()))),
        ]
        for k, v in sorted(items.items())
    ]
    return (
        "<h2>One number, one source (一数一源): copies verified against the authoritative source</h2>"
        '<div class="card" id="one-source">'
        + table(
            ["item", "verified", "conflicts", "unverified", "invalid key", "verification rate", "quality events", "by department"],
            rows,
            last_left=True,
        )
        + "</div>"
    )


def hops_section(r: dict[str, Any]) -> str:
    """Per hub path and per hop (X-Road style in/out stamps): where the time goes in a cascade."""
    paths, hops = r.get("paths") or {}, r.get("hops") or {}
    if not paths:
        return ""
    path_rows = [
        [
            esc(name),
            fmt_int(len(p.get("hubs", ()))),
            fmt_int(p.get("delivered")),
            *(fmt_ms((p.get("end_to_end_ms") or {}).get(k)) for k in ("50pct", "99pct", "max")),
        ]
        for name, p in sorted(paths.items(), key=lambda kv: (len(kv[1].get("hubs", ())), kv[0]))
    ]
    hop_rows = [
        [esc(name), fmt_int(h.get("count")), *(fmt_ms((h.get("latency_ms") or {}).get(k)) for k in ("50pct", "99pct", "max"))]
        for name, h in sorted(hops.items())
    ]
    return (
        '<h2>Hub paths and hops (级联: each hub stamps a record in and out)</h2><div class="grid" style="align-items:start">'
        '<div class="card" id="paths">'
        + table(["path (hubs in order)", "hubs", "delivered", "p50 ms", "p99 ms", "max ms"], path_rows)
        + '</div><div class="card" id="hops">'
        + table(["segment (a → b: into b; b: inside b)", "records", "p50 ms", "p99 ms", "max ms"], hop_rows)
        + "</div></div>"
    )


def flow_table(r: dict[str, Any], names: Names) -> str:
    by_entry = r.get("counts_by_entry") or {}
    rows = []
    for name, f in sorted((r.get("flows") or {}).items(), key=lambda kv: flow_label(kv[1], kv[0])):
        entry, consumer = f.get("entry", ""), f.get("consumer", "")
        provider = names.provider(entry)
        q = f.get("end_to_end_ms") or {}
        lat = [fmt_ms(q.get(k)) if f.get("delivered") else "—" for k in ("50pct", "99pct", "999pct", "max")]
        ec = by_entry.get(entry) or {}  # an entry's dead letters count once per subscription
        denied = ", ".join(f"{k} {v:,}" for k, v in sorted((f.get("denied_by_reason") or {}).items()))
        rows.append(
            [
                esc(flow_label(f, name)),
                esc(names.entry(entry)),
                esc(f"{names.dept(provider)} → {names.dept(consumer)}" if provider else names.dept(consumer)),
                fmt_int(ec.get("produced")),
                fmt_int(f.get("delivered")),
                fmt_int(f.get("denied")),
                esc(denied),
                fmt_int(ec.get("dead_lettered", 0) // max(1, ec.get("subscriptions", 1)) if ec else None),
                fmt_int(round(f.get("records_per_s", 0))),
                *lat,
            ]
        )
    return (
        '<div class="card">'
        + table(
            [
                "flow (entry → consumer)",
                "entry",
                "departments",
                "produced",
                "delivered",
                "denied",
                "denied by reason",
                "dead",
                "rec/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
            ],
            rows,
            left=3,
            scroll=True,
        )
        + "</div>"
    )


def sample_item_rows(sample: dict[str, Any], names: Names) -> tuple[list[list[str]], Counter]:
    """One row per item of a sampled delivery: item, source value, delivered value, what happened.

    What happened is read off the two values and the sample's ``masks`` and ``items``:
    masked as its rule says (脱敏; the report applies the rule to the source value and
    compares), not in the subscription's items, replaced by the authoritative value or
    left out (一数一源), or as published. Also returns the tally of those outcomes."""
    source, delivered = sample.get("source"), sample.get("delivered") or {}
    masks, items, copies = sample.get("masks") or {}, set(sample.get("items") or ()), sample.get("copies") or {}
    item_names = {i.get("key"): i.get("name") for i in (names.entries.get(sample.get("entry")) or {}).get("items") or []}
    keys = list(source or {}) + [k for k in delivered if k not in (source or {})]
    rows, tally = [], Counter()
    for key in keys:
        has_src, has_out = source is not None and key in source, key in delivered
        src, out = (source or {}).get(key), delivered.get(key)
        if source is None:
            how, kind = "source record not read back", "unknown"
        elif key in masks and has_out:
            rule = masks[key]
            expected = apply_mask(MaskRule(rule), src) if rule in MaskRule._value2member_map_ else None
            if out == expected:
                how, kind = f'<span class="pass">脱敏 masked</span> ({esc(rule)})', "masked"
            elif key in copies and expected is not None and out != src and (rule == MaskRule.address.value or apply_mask(MaskRule(rule), out) == out):
                # the copy differed: the authoritative value, masked (the rule leaves a masked value as it is)
                how, kind = (
                    (
                        f'<span class="pass">脱敏 masked</span> ({esc(rule)}), of the authoritative value '
                        f"(一数一源: {esc(copies[key])}'s; the copy differed)"
                    ),
                    "masked",
                )
            else:
                how, kind = f'<span class="fail">✕ not masked as its rule ({esc(rule)}) says</span>', "mask_wrong"
        elif has_src and not has_out:
            if key not in items:
                how, kind = "not shared: not in the subscription's items", "not_shared"
            else:
                how, kind = "left out (一数一源: no authoritative value yet, or not granted)", "left_out"
        elif has_out and (not has_src or out != src):
            whose = f" ({esc(copies[key])})" if key in copies else ""
            how, kind = f"一数一源: the authoritative source's value{whose}; the copy differed", "replaced"
        else:
            how, kind = '<span class="muted">as published</span>', "same"
        tally[kind] += 1
        label = esc(key) + (f' <span class="muted">{esc(item_names[key])}</span>' if item_names.get(key) else "")
        shown = esc(_value(out) if has_out else "—")
        if kind in ("masked", "mask_wrong", "replaced"):  # what changed on the way stands out
            shown = f'<span class="chg">{shown}</span>'
        rows.append([label, esc(_value(src) if has_src else "—"), shown, how])
    return rows, tally


def _value(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _sample_cards(samples: list[dict[str, Any]], names: Names) -> tuple[list, Counter]:
    """Per flow: (flow, its samples in order, the table rows shown, what they show), most telling first; and the totals."""
    by_flow: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_flow.setdefault(s["flow"], []).append(s)
    cards, totals = [], Counter()
    for flow, kept in by_flow.items():
        kept.sort(key=lambda s: s.get("n", 0))
        blocks, tally = [], Counter()
        for s in kept[:SAMPLES_SHOWN]:
            rows, t = sample_item_rows(s, names)
            tally += t
            head = (
                f"delivery #{s.get('n')} · trace {s.get('trace')}"
                + (f" · key {s['key']}" if s.get("key") else "")
                + (
                    f" · from {s['source_at']['topic']}[{s['source_at']['partition']}]@{s['source_at']['offset']}"
                    if isinstance(s.get("source_at"), dict)
                    else ""
                )
            )
            blocks.append(
                [f'<tr class="sec"><td colspan="4">{esc(head)}</td></tr>']
                + ["<tr>" + "".join(f'<td class="l">{c}</td>' for c in row) + "</tr>" for row in rows]
            )
        for s in kept[SAMPLES_SHOWN:]:
            tally += sample_item_rows(s, names)[1]
        totals += tally
        cards.append((flow, kept, blocks, tally))
    # flows whose deliveries differ from the source first: those show masking and 一数一源
    cards.sort(key=lambda c: (-(c[3]["masked"] + c[3]["replaced"] + c[3]["mask_wrong"]), c[0]))
    return cards, totals


def _sample_card(i: int, flow: str, kept: list[dict[str, Any]], blocks: list, tally: Counter, names: Names) -> str:
    """One flow's <details> card: its sampled deliveries beside their source records."""
    s = kept[0]
    provider = s.get("provider") or names.provider(s.get("entry", ""))
    who = f"{names.dept(provider)} → {names.dept(s.get('consumer', ''))}" if provider else names.dept(s.get("consumer", ""))
    said = [
        f"{tally[k]:,} {label}"
        for k, label in (
            ("masked", "masked"),
            ("replaced", "from the authoritative source"),
            ("not_shared", "not shared"),
            ("left_out", "left out"),
            ("mask_wrong", "NOT masked as the rule says"),
        )
        if tally[k]
    ]
    summary = (
        f"<b>{esc(s.get('entry'))} → {esc(s.get('consumer'))}</b> · {esc(names.entry(s.get('entry', '')))}: "
        f"{esc(who)} · {len(kept)} deliveries sampled" + (f" · {esc(', '.join(said))}" if said else "")
    )
    body = (
        '<table><thead><tr><th class="l">item</th><th class="l">source record (as published)</th>'
        '<th class="l">as the subscriber received it</th><th class="l">what happened</th></tr></thead><tbody>'
        + "".join(line for block in blocks for line in block)
        + "</tbody></table>"
    )
    more = f'<div class="note">{len(kept) - SAMPLES_SHOWN} more in {SAMPLES_FILE}</div>' if len(kept) > SAMPLES_SHOWN else ""
    return (
        f'<details class="sample" data-flow="{esc(flow)}"{" open" if i < SAMPLE_FLOWS_OPEN else ""}>'
        f"<summary>{summary}</summary>{body}{more}</details>"
    )


def samples_section(samples: list[dict[str, Any]] | None, names: Names) -> str:
    """What each subscriber actually received: sampled deliveries beside their source records."""
    if not samples:
        return ""
    cards, totals = _sample_cards(samples, names)
    html_cards = [_sample_card(i, flow, kept, blocks, tally, names) for i, (flow, kept, blocks, tally) in enumerate(cards[:SAMPLE_FLOWS_SHOWN])]
    bad = totals["mask_wrong"]
    verdict_line = (
        f'<span class="fail">✕ {bad:,} masked values do not match their rule</span>'
        if bad
        else '<span class="pass">✓</span> every masked value is its masking rule applied to the source value'
        if totals["masked"]
        else "no masked items in these flows"
    )
    left = len(cards) - SAMPLE_FLOWS_SHOWN
    return (
        "<h2>What each subscriber received (脱敏 and 一数一源): sampled deliveries beside their source records</h2>"
        '<div class="card" id="samples"><div class="note">'
        f"The first deliveries of each flow as its subscriber received them, next to the record the provider published "
        f"(same trace id). {len(samples):,} deliveries of {len(cards):,} flows: {totals['masked']:,} masked values, "
        f"{totals['replaced']:,} from the authoritative source, {totals['not_shared']:,} items not shared. {verdict_line}."
        + (
            f" {unread:,} deliveries without their source record (not read back within the time budget)."
            if (unread := sum(1 for x in samples if x.get("source") is None))
            else ""
        )
        + (f" {left:,} more flows are in {SAMPLES_FILE}." if left > 0 else "")
        + "</div>"
        + "".join(html_cards)
        + "</div>"
    )
