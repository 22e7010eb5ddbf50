"""The control plane of one platform: approvals and the authoritative-value store.

Both live in Faust global tables backed by changelog topics, so every router worker sees
every approval (whichever worker took the control message) and a restarted worker gets
them back from the changelog. These classes adapt the tables to what the routing core
asks for; the decisions themselves stay in :mod:`schemas.applications` and
:mod:`exchange.policy.sharing`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

from schemas.applications import Application, ControlEvent, IllegalTransition, State, preapproved, transition
from schemas.scenario import Scenario, Sharing, SubscriptionStatus


class ApprovalBook:
    """Applications by id (``consumer.entry``): the table's, else the scenario's."""

    def __init__(self, scenario: Scenario, table: MutableMapping[bytes, bytes], started_ns: int, platform: str | None = None) -> None:
        self.table = table
        # reads go to the table's store, as AuthorityTable's: a Faust table's own get() also
        # feeds its sensors, ~3 us a key, and approvals_at reads every conditional
        # subscription for every batch; writes go through the table (its changelog)
        self._store: MutableMapping[bytes, bytes] = getattr(table, "data", table)
        self.providers = {e.id: e.provider for e in scenario.catalogue}
        # applications are made to the hub the entry is published on
        platform = platform or scenario.platform.id
        self.conditional = [
            s
            for s in scenario.subscriptions
            if scenario.entries[s.entry].sharing is Sharing.conditional and scenario.platform_of(scenario.entries[s.entry].provider) == platform
        ]
        self._keys = [(s.id, s.id.encode()) for s in self.conditional]
        self.known = {s.id for s in scenario.subscriptions}
        self.scenario_default: dict[str, Application] = {
            s.id: preapproved(
                s.consumer, s.entry, list(s.items) if s.items else None, s.purpose, started_ns + int(s.valid_for * 1e9) if s.valid_for else None
            )
            for s in self.conditional
            if s.status is SubscriptionStatus.approved
        }
        self._parsed: dict[str, tuple[bytes, Application]] = {}

    def current(self, app_id: str, key: bytes | None = None) -> Application | None:
        """The application ``app_id`` as it stands: the table's last state, else the
        scenario's, else None (never applied for). ``key``: ``app_id`` encoded, if at hand."""
        raw = self._store.get(key or app_id.encode())
        if raw is None:
            return self.scenario_default.get(app_id)
        cached = self._parsed.get(app_id)
        if cached is not None and cached[0] is raw:
            return cached[1]
        app = Application.model_validate_json(raw)
        self._parsed[app_id] = (raw, app)
        return app

    def approvals_at(self, now_ns: int) -> dict[str, frozenset[str] | None]:
        """Conditional subscriptions approved right now, with the items each approval covers."""
        out: dict[str, frozenset[str] | None] = {}
        for app_id, key in self._keys:
            app = self.current(app_id, key)
            if app is not None and app.approved_at(now_ns):
                out[app_id] = frozenset(app.items) if app.items else None
        return out

    def apply(self, event: ControlEvent) -> Application:
        """Apply a control event, store the result; :class:`IllegalTransition` if refused.

        The control topic is read at least once: an event delivered again after a worker
        restart (its request id is the last one applied) returns the application as it is,
        so its sender gets the same verdict twice, not a refusal of the second delivery.
        """
        if event.request_id:
            current = self.current(event.application)
            if current is not None and current.last_request_id == event.request_id:
                return current
        if event.entry not in self.providers:
            raise IllegalTransition(f"entry {event.entry!r} is not in the catalogue")
        if event.application not in self.known:
            raise IllegalTransition(
                f"{event.consumer!r} has no subscription to {event.entry!r} in the scenario (需求清单): add it with status pending"
            )
        app = transition(self.current(event.application), event, self.providers[event.entry])
        self.table[event.application.encode()] = app.model_dump_json().encode()
        return app

    def expired(self, now_ns: int) -> list[Application]:
        """Approvals whose validity has ended but that are not yet marked expired."""
        out = []
        for app_id, key in self._keys:
            app = self.current(app_id, key)
            if app is not None and app.state is State.approved and app.valid_until_ns is not None and now_ns >= app.valid_until_ns:
                out.append(app)
        return out


class AuthorityTable:
    """Authoritative values per master key, as JSON in a table; parsed values cached."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self._parsed: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The authoritative values (item key → value) stored for master key ``key``, or None."""
        raw = self.table.get(key.encode())
        if raw is None:
            return None
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is raw:
            return cached[1]
        value = orjson.loads(raw)
        self._parsed[key] = (raw, value)
        return value

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        raw = orjson.dumps(value)
        self.table[key.encode()] = raw
        self._parsed[key] = (raw, value)
