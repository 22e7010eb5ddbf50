"""The accountant's counts from audit blocks: exact per (subscription, decision, reason), once per trace."""

from __future__ import annotations

import random
from collections import Counter

from consumers.accountant import Accountant
from exchange.policy.audit import AuditWriter, verify
from schemas.envelope import Topics

TOWNS = [f"town-{i}.gps-fix" for i in range(12)]


def _rows(rng: random.Random, traces: range, run: str) -> list[tuple]:
    """Rows shaped like the router's: one delivered row per record, one grouped denied row for the other towns."""
    rows = []
    for seq in traces:
        mine = rng.randrange(len(TOWNS))
        others = [t for t in TOWNS if t != TOWNS[mine]]
        trace = f"7.{seq}"
        rows.append((trace, run, "gps", 1, "gps-fix", f"c{mine}", TOWNS[mine], "delivered", "unconditional", ["plate"], []))
        rows.append((trace, run, "gps", 1, "gps-fix", [f"c-{t}" for t in others], others, "denied", "out_of_jurisdiction", [], []))
    return rows


def _expected(blocks_rows: list[list[tuple]], run: str) -> tuple[Counter, int]:
    """The counts the slow way: a set of (scope, trace) and one increment per new outcome."""
    seen: set = set()
    counts: Counter = Counter()
    duplicates = 0
    for rows in blocks_rows:
        for trace, row_run, _, _, entry, _, subs, decision, reason, _, _ in rows:
            if row_run != run or decision not in ("delivered", "denied"):
                continue
            for scope in subs if isinstance(subs, list) else (subs or entry,):
                if (scope, trace) in seen:
                    duplicates += 1
                    continue
                seen.add((scope, trace))
                counts[(scope, decision, reason)] += 1
    return counts, duplicates


async def test_counts_from_blocks_equal_counts_from_rows_with_resends_regroupings_and_foreign_rows():
    rng = random.Random(5)
    writer, restarted = AuditWriter("w0"), AuditWriter("w0")  # a restarted worker writes a new chain
    block_rows = [_rows(rng, range(1 + 100 * k, 101 + 100 * k), "r1") for k in range(5)]
    # a restarted router routes records 150-250 again, into different groups, and a control row and
    # another run's rows sit in the same trail
    rerouted = _rows(random.Random(9), range(150, 251), "r1")
    rerouted.append(("app-1", "r1", "dept", 1, "gps-fix", "c1", TOWNS[1], "approved", "approved by the owner", [], []))
    block_rows += [rerouted, _rows(rng, range(1, 50), "other-run")]
    messages = [writer.block(0, rows) for rows in block_rows[:5]] + [restarted.block(0, block_rows[5]), writer.block(0, block_rows[6])]
    messages.insert(3, messages[2])  # at-least-once: a block sent twice

    accountant = Accountant(Topics("t1"), "127.0.0.1:9", {"gps-fix": len(TOWNS)}, run_id="r1")  # counts without connecting
    for value in messages:
        accountant._audit_block(value)

    counts, duplicates = _expected([*block_rows, block_rows[2]], "r1")
    assert accountant.decisions == counts
    assert accountant.duplicates == duplicates > 0
    assert accountant.denied == sum(n for (_, d, _), n in counts.items() if d == "denied") == 500 * (len(TOWNS) - 1)
    assert accountant.audited_deliveries == sum(n for (_, d, _), n in counts.items() if d == "delivered") == 500
    assert accountant.foreign == 2 * 49
    assert verify((0, i, m) for i, m in enumerate(messages)).ok
