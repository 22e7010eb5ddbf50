"""Which ingress topics a router reads on its quiet lane: a second consumer with a long fetch wait.

A provincial catalogue is mostly daily, monthly or batch tables: Dongguan's preset has 1,319
such entries beside one GPS stream. Every fetch of a consumer names every partition it holds,
and aiokafka encodes and decodes each of them, so one consumer polling 1,325 partitions every
10 ms spends half a core while nothing arrives. The router therefore reads the *real-time*
topics on its main consumer (short fetch wait) and the *quiet* ones on a second consumer that
waits :data:`QUIET_FETCH_WAIT_MS` per fetch (:mod:`exchange.router.quiet`).

The rule (:func:`entry_is_quiet`), from the catalogue entry and the scenario's load:

- an entry is quiet when it declares an update cycle slower than real time (``hourly`` …
  ``yearly``: 更新周期) or a batch exchange mode (``table_sync``, ``file``: 库表同步, 批量文件),
- unless the scenario publishes it faster than :data:`QUIET_MAX_RATE` records/s (before
  ``--rate-multiplier``): an entry busy in this run stays on the real-time lane whatever it
  declares, since a quiet fetch may hold its records for the whole long wait.

A topic is quiet only when every entry it carries is (:func:`quiet_topics`): with a shared
topic (several entries, the entry in a header) one real-time entry keeps it on the real-time
lane. The transit topic of a cascade is never quiet. Pure: no Kafka, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from schemas.scenario import CatalogueEntry, ExchangeMode, Scenario, UpdateCycle

#: Records/s (the scenario's rate, before --rate-multiplier) above which an entry is real-time whatever it declares.
QUIET_MAX_RATE = 1.0
#: The quiet lane's fetch wait (ms): a quiet entry's record waits up to this long before it is
#: routed, on both brokers. Tansu holds an empty fetch for the whole wait; on Kafka the lane's
#: ``fetch_min_bytes`` (1 MiB, exchange/kafka/clients.py) makes the broker hold it too, so that
#: the lane's fetches of ~1,300 partitions stay at two a second however the quiet records trickle in.
QUIET_FETCH_WAIT_MS = 500
#: Update cycles slower than real time (更新周期).
QUIET_CYCLES = frozenset(UpdateCycle) - {UpdateCycle.realtime}
#: Batch exchange modes (库表同步, 批量文件).
QUIET_MODES = frozenset({ExchangeMode.table_sync, ExchangeMode.file})


def entry_is_quiet(entry: CatalogueEntry, rate: float) -> bool:
    """Whether ``entry``, published at ``rate`` records/s (0: only by reactions, or not at all),
    belongs on the quiet lane (see the module docstring for the rule)."""
    if rate > QUIET_MAX_RATE:
        return False
    return entry.update_cycle in QUIET_CYCLES or entry.exchange_mode in QUIET_MODES


def quiet_topics(entries: Iterable[CatalogueEntry], rates: Mapping[str, float], topic_of: Callable[[CatalogueEntry], str]) -> frozenset[str]:
    """The topics every entry of which is quiet: ``topic_of`` gives an entry's ingress topic
    (several entries may share one), ``rates`` records/s by entry id (missing: 0)."""
    quiet: dict[str, bool] = {}
    for entry in entries:
        topic = topic_of(entry)
        quiet[topic] = quiet.get(topic, True) and entry_is_quiet(entry, rates.get(entry.id, 0.0))
    return frozenset(t for t, q in quiet.items() if q)


def split_ingress(scenario: Scenario, entries: Iterable[str], topic_of: Callable[[CatalogueEntry], str]) -> tuple[list[str], list[str]]:
    """(real-time topics, quiet topics) of the ingress of ``entries`` (ids), each in first-seen order."""
    chosen = [scenario.entries[e] for e in entries]
    quiet = quiet_topics(chosen, scenario.entry_rates(), topic_of)
    topics = list(dict.fromkeys(topic_of(e) for e in chosen))
    return [t for t in topics if t not in quiet], [t for t in topics if t in quiet]
