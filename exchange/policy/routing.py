"""Route a batch of raw ingress records: decode, validate, decide, and build what to send.

This is the router's whole per-record work, kept free of Kafka so it can be tested and
profiled on its own: it takes records as fetched (topic, partition, offset, key, value,
headers) and returns the deliveries, audit blocks and dead letters to publish. The Faust
adapter (:mod:`exchange.router.app`) fetches, sends and commits around it.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from exchange.policy.grouping import Grant, decide_grouped
from exchange.policy.sharing import EntryPolicy, InvalidRecord, TransitRoute, check_record, master_key_of, reconcile
from schemas.envelope import (
    H_ENTRY,
    H_HOPS,
    H_INTENDED,
    H_ROUTED,
    H_RUN,
    H_SCHEMA,
    H_SENT,
    H_SOURCE,
    H_SUBSCRIPTION,
    H_TRACE,
    REQUIRED_HEADERS,
    SCHEMA_VERSION,
    Topics,
)
from schemas.outcomes import DeadLetterReason, Decision, VerificationResult

_REQUIRED = frozenset(REQUIRED_HEADERS)


class FetchedRecord(Protocol):
    """A record as the router fetches it (aiokafka's ConsumerRecord has these fields);
    ``headers`` is a sequence of (str key, bytes value) pairs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


@dataclass
class Routed:
    """Everything one batch turns into, grouped by destination."""

    deliveries: dict[str, list[Message]] = field(default_factory=dict)  # by delivery topic
    audit: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)  # by audit partition: rows in AuditRow order
    dead_letters: list[Message] = field(default_factory=list)
    decisions: Counter = field(default_factory=Counter)  # (subscription or entry, Decision, reason)
    dead_reasons: Counter = field(default_factory=Counter)  # DeadLetterReason → records
    quality: list[Message] = field(default_factory=list)  # one-number-one-source conflicts
    authority_writes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (master key, values)
    verifications: Counter = field(default_factory=Counter)  # (item, copying department, result)
    shared_in: Counter = field(default_factory=Counter)  # entry → records taken in from topics several entries share
    records: int = 0


class AuthorityStore(Protocol):
    """The authoritative values per master key (a Faust table in the router, a dict in tests)."""

    def get(self, key: str) -> dict[str, Any] | None:
        """The values (item key → value) stored under master key ``key``, or None."""
        ...

    def __setitem__(self, key: str, value: dict[str, Any]) -> None: ...


class RouterCore:
    """The router's per-record logic for one platform, compiled from its scenario."""

    def __init__(
        self,
        policies: dict[str, EntryPolicy],
        topics: Topics,
        worker: str,
        audit_partitions: int = 1,
        transit: dict[bytes, TransitRoute] | None = None,
    ) -> None:
        self.policies = policies
        self.topics = topics
        self.worker = worker
        self.audit_partitions = audit_partitions
        self.transit = transit or {}
        self._hub = topics.platform.encode()
        self._entry_of_topic: dict[str, str | None] = {}
        # ingress topics several entries share (schemas/envelope.py IngressLayout): entry-id header → policy
        self._shared: dict[str, dict[bytes, EntryPolicy]] = {}
        if topics.layout is not None:
            for topic in topics.layout.entries_on:
                on = topics.shared_entries(topic)
                if on:
                    self._shared[topic] = {e.encode(): policies[e] for e in on if e in policies}

    def entry_of(self, topic: str) -> str | None:
        """The catalogue entry whose ingress topic ``topic`` is on this hub; None for any other topic."""
        entry = self._entry_of_topic.get(topic, "")
        if entry == "":
            entry = self._entry_of_topic[topic] = self.topics.entry_of(topic)
        return entry

    def route(
        self,
        records: Iterable[FetchedRecord],
        approvals: Container[str] | Mapping[str, frozenset[str] | None] | None = None,
        authority: AuthorityStore | None = None,
        *,
        now: int,
        clock: Callable[[], int] | None = None,
    ) -> Routed:
        """Decode, check and decide every record of one fetched batch; nothing is sent here.

        ``records`` are the fetched records of any ingress or transit topic of this hub;
        ``approvals`` the approved applications at ``now`` (ids, or id → approved items);
        ``authority`` the authoritative values for one-number-one-source reconciliation.
        ``now`` is the batch's time in epoch ns, given by the caller (the policy core reads no
        clock): it stamps the audit rows, dead letters, the ``routed`` header and the hop's
        in-time. ``clock`` (epoch ns, e.g. ``time.time_ns``) stamps each record's hop
        out-time; without it the out-time is ``now``. A record that fails a check is
        dead-lettered with its reason, never raised: the result accounts for every record.
        """
        out = Routed()
        clock = clock or (lambda: now)
        routed_header = (H_ROUTED, b"%d" % now)
        stamp = b"%s:%d:" % (self._hub, now)
        transit_topic = self.topics.transit
        deliveries = out.deliveries
        decisions: Counter = Counter()
        denials: Counter = Counter()  # DeniedGroup → records, expanded per subscription once per batch
        grants: dict[str, Grant] = {}  # per entry: what this batch's approvals allow
        for r in records:
            out.records += 1
            if r.topic == transit_topic:
                self._relay(out, r, now, stamp, routed_header, decisions, clock)
                continue
            policy: EntryPolicy | None = None
            try:
                policy, headers, source = self._admit(r)
                if r.topic in self._shared:
                    out.shared_in[policy.entry_id] += 1
                value = _decode(r.value)
                record = check_record(policy, value)
                if policy.authority is not None and authority is not None:
                    record = self._reconcile(out, policy, source, record, authority, headers, now)
                grant = grants.get(policy.entry_id)
                if grant is None:
                    grant = grants[policy.entry_id] = Grant(policy, approvals)
                delivered, denied, _ = decide_grouped(policy, source, record, approvals, grant)
            except InvalidRecord as exc:
                entry = self._dead_letter(out, r, exc.reason, exc.detail, now)
                if policy is None and entry is not None and r.topic in self._shared:  # refused before it was counted
                    out.shared_in[entry] += 1
                continue
            trace = headers[H_TRACE].decode()
            run = headers.get(H_RUN, b"").decode(errors="replace")
            audit = out.audit.setdefault(r.partition % self.audit_partitions, [])
            # audit rows are plain tuples in AuditRow order: orjson does not encode a NamedTuple
            if delivered:
                header_list = [*r.headers, (H_HOPS, stamp + b"%d" % clock())]
                for route, value in delivered:
                    h = [*header_list, (H_SUBSCRIPTION, route.subscription_bytes), routed_header]
                    deliveries.setdefault(route.topic, []).append((r.key, orjson.dumps(value), h))
                    items = route.items if len(value) == len(route.items) else tuple(value)
                    audit.append((trace, run, source, now, *route.delivered_audit, items, route.masked))  # type: ignore[misc]  # set on every compiled route
                    decisions[route.decision_key] += 1
            for group in denied:
                audit.append((trace, run, source, now, *group.audit, (), ()))
                denials[group] += 1
        for group, n in denials.items():
            for scope in group.scopes:
                decisions[(scope, Decision.denied, group.reason)] += n
        out.decisions.update(decisions)
        return out

    def _relay(
        self, out: Routed, r: FetchedRecord, now: int, stamp: bytes, routed_header: tuple[str, bytes], decisions: Counter, clock: Callable[[], int]
    ) -> None:
        """A record another hub of the cascade handed on: pass it unopened, or refuse it here."""
        raw = r.headers or ()
        headers = dict(raw)
        route = self.transit.get(headers.get(H_SUBSCRIPTION, b""))
        if (
            route is None
            or len(headers) != len(raw)
            or None in headers.values()
            or not _REQUIRED.issubset(headers)
            or headers[H_ENTRY] != route.entry.encode()
        ):
            detail = (
                "duplicate or missing headers"
                if route is not None
                else f"subscription {headers.get(H_SUBSCRIPTION, b'')[:80]!r} does not cross hub {self.topics.platform!r}"
            )
            self._dead_letter(out, r, DeadLetterReason.bad_transit, detail, now, route.entry if route else None)
            return
        trace = headers[H_TRACE].decode(errors="replace")
        run = headers.get(H_RUN, b"").decode(errors="replace")
        source = headers[H_SOURCE].decode(errors="replace")
        audit = out.audit.setdefault(r.partition % self.audit_partitions, [])
        audit.append((trace, run, source, now, *route.audit, (), ()))
        decisions[(route.subscription, route.audit.decision, route.audit.reason)] += 1
        if route.denied:
            return
        hops = headers.get(H_HOPS, b"")
        hop = stamp + b"%d" % clock()
        h = [(k, v) for k, v in raw if k != H_HOPS and k != H_ROUTED]
        h.append((H_HOPS, hops + b";" + hop if hops else hop))
        h.append(routed_header)
        out.deliveries.setdefault(route.topic, []).append((r.key, r.value, h))

    def _reconcile(
        self, out: Routed, policy: EntryPolicy, source: str, record: dict[str, Any], store: AuthorityStore, headers: dict[str, bytes], now: int
    ) -> dict[str, Any]:
        assert policy.authority is not None  # the caller routes only entries with an authority here
        raw = record.get(policy.authority.master_key)
        if not isinstance(raw, str) or source != policy.provider:
            return record  # a record its provider did not send is denied anyway
        master = master_key_of(policy, record)  # the standard form: 11010519491231002x matches …02X
        known = store.get(master) if master is not None else None
        result = reconcile(policy, record, known)
        if result.updates and master is not None:
            merged = {**(known or {}), **result.updates}
            store[master] = merged
            out.authority_writes.append((master, merged))
        count = out.verifications
        for item in result.verified:
            count[(item, source, VerificationResult.verified)] += 1
        for item in result.unverified:
            count[(item, source, VerificationResult.unverified)] += 1
        for item in result.invalid_key:
            count[(item, source, VerificationResult.invalid_key)] += 1
        for item, authority, truth, copy in result.conflicts:
            assert master is not None  # a conflict is with the values stored under a master key
            count[(item, source, VerificationResult.conflict)] += 1
            event = {
                "item": item,
                "master_key": master,
                "entry": policy.entry_id,
                "authority": authority,
                "authoritative_value": truth,
                "department": source,
                "copy_value": copy,
                "trace": headers[H_TRACE].decode(),
                "run": headers.get(H_RUN, b"").decode(errors="replace"),
                "at_ns": now,
            }
            out.quality.append((master.encode(), orjson.dumps(event), [(H_TRACE, headers[H_TRACE]), (H_RUN, headers.get(H_RUN, b""))]))
        return result.record

    def _admit(self, r: FetchedRecord) -> tuple[EntryPolicy, dict[str, bytes], str]:
        """Headers and entry checked before the value is even decoded."""
        raw = r.headers or ()
        headers = dict(raw)
        if len(headers) != len(raw):
            dupes = sorted({k for k, _ in raw if sum(1 for k2, _ in raw if k2 == k) > 1})
            raise InvalidRecord(DeadLetterReason.duplicate_header, f"headers given more than once: {dupes}")
        if None in headers.values():  # Kafka allows a null header value; none of ours is ever null
            raise InvalidRecord(DeadLetterReason.bad_header, f"headers with a null value: {[k for k, v in raw if v is None]}")
        if not "".join(headers).isascii() and not all(_utf8(k) for k in headers):
            raise InvalidRecord(DeadLetterReason.bad_header, f"header key is not UTF-8: {[_printable(k) for k in headers if not _utf8(k)]}")
        if not _REQUIRED.issubset(headers):
            raise InvalidRecord(DeadLetterReason.missing_header, f"missing headers: {[h for h in REQUIRED_HEADERS if h not in headers]}")
        if headers[H_SCHEMA] != SCHEMA_VERSION:
            raise InvalidRecord(DeadLetterReason.unsupported_schema, f"schema-version {headers[H_SCHEMA]!r}, expected {SCHEMA_VERSION!r}")
        if not (_is_ns(headers[H_INTENDED]) and _is_ns(headers[H_SENT])):
            name = H_INTENDED if not _is_ns(headers[H_INTENDED]) else H_SENT
            raise InvalidRecord(DeadLetterReason.bad_header, f"{name} is not an epoch time in ns: {headers[name][:40]!r}")
        entry_id = self.entry_of(r.topic)
        if entry_id is None and r.topic in self._shared:  # the entry travels in its header
            policy = self._shared[r.topic].get(headers[H_ENTRY])
            if policy is None:
                named = headers[H_ENTRY][:80].decode(errors="replace")
                reason = DeadLetterReason.entry_mismatch if named in self.policies else DeadLetterReason.unknown_entry
                raise InvalidRecord(reason, f"entry-id header {named!r} names no entry of shared ingress topic {r.topic!r}")
            return policy, headers, self._source(headers)
        policy = self.policies.get(entry_id) if entry_id else None
        if policy is None or entry_id is None:
            raise InvalidRecord(DeadLetterReason.unknown_entry, f"topic {r.topic!r} is not the ingress of a catalogue entry")
        if headers[H_ENTRY] != entry_id.encode():
            raise InvalidRecord(DeadLetterReason.entry_mismatch, f"entry-id header {headers[H_ENTRY][:80]!r} on the ingress topic of {entry_id!r}")
        return policy, headers, self._source(headers)

    @staticmethod
    def _source(headers: dict[str, bytes]) -> str:
        """The source department's header, with the trace id checked to be UTF-8 too."""
        try:
            source = headers[H_SOURCE].decode()
            headers[H_TRACE].decode()
        except UnicodeDecodeError as exc:
            raise InvalidRecord(DeadLetterReason.bad_header, f"header is not UTF-8: {exc}") from None
        return source

    def _dead_letter(self, out: Routed, r: FetchedRecord, reason: DeadLetterReason, detail: str, now: int, entry: str | None = None) -> str | None:
        """Dead-letter ``r`` whole, with its reason; the entry it is accounted to (None: none known)."""
        raw = list(r.headers or ())
        entry = entry or self.entry_of(r.topic) or self._header_entry(r, raw)
        trace = next((v for k, v in raw if k == H_TRACE), None)
        subscription = next((v for k, v in raw if k == H_SUBSCRIPTION), None) if r.topic == self.topics.transit else None
        letter = {
            "reason": reason,
            "detail": detail[:1000],
            "topic": r.topic,
            "partition": r.partition,
            "offset": r.offset,
            "trace": trace.decode(errors="replace") if trace else None,
            "entry": entry,
            # a record in transit carries one subscription: it accounts for one outcome
            "subscription": subscription.decode(errors="replace") if subscription else None,
            "value_b64": base64.b64encode(r.value or b"").decode(),
            "headers": [(_printable(k), base64.b64encode(v or b"").decode()) for k, v in raw],
            "at_ns": now,
        }
        headers = [("reason", reason.encode()), ("entry-topic", r.topic.encode())]
        if trace is not None:
            headers.append((H_TRACE, trace))
        out.dead_letters.append((r.key, orjson.dumps(letter), headers))
        out.dead_reasons[reason] += 1
        return entry

    def _header_entry(self, r: FetchedRecord, raw: list) -> str | None:
        """On a shared ingress topic, the entry the record's ``entry-id`` header names, when that
        entry is on the topic (so its dead letter accounts for the entry's subscriptions); else None."""
        policies = self._shared.get(r.topic)
        if not policies:
            return None
        named = next((v for k, v in raw if k == H_ENTRY), None)
        policy = policies.get(named) if isinstance(named, bytes) else None
        return policy.entry_id if policy is not None else None


def _is_ns(value: bytes) -> bool:
    """An epoch time in nanoseconds: digits, and few enough of them for any consumer to parse."""
    return len(value) <= 20 and value.isdigit()


def _decode(value: bytes | None) -> Any:
    if value is None:
        raise InvalidRecord(DeadLetterReason.empty_value, "the record has no value (tombstone)")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(DeadLetterReason.bad_json, str(exc)) from None


def _utf8(key: str) -> bool:
    """False for a header key that was not UTF-8 on the wire (see :mod:`exchange.router.lenient_records`)."""
    try:
        key.encode()
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    return key if _utf8(key) else key.encode(errors="surrogateescape").decode(errors="backslashreplace")
