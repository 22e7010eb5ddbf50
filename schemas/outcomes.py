"""The exchange's vocabulary of outcomes: decisions and their reasons, one source for all.

Every record produced ends as one of three outcomes per subscription (delivered, denied,
dead-lettered); these names travel in audit rows (``decision``, ``reason``), dead letters
(``reason``), the ``dx_router_decisions_total`` and ``dx_dead_letters_total`` labels,
status lines and ``result.json``. They are :class:`enum.StrEnum` members, so they *are*
strings: ``orjson`` and ``json`` write their value, ``==`` and hashing match the plain
string read back from the wire (``"denied" == Decision.denied``), and no value changes
byte for byte. One caveat: ``orjson`` refuses a non-``str`` dict *key*, so a dict keyed
by a member is keyed by ``str(member)`` before it is encoded.

The rules that produce them are in ``exchange/policy/sharing.py`` (deliveries and
denials), ``exchange/policy/routing.py`` (dead letters of single records) and
``exchange/router/lenient_records.py`` (dead letters of undecodable batches); the sharing
attributes themselves (无条件共享 / 有条件共享 / 不予共享) are from the catalogue
standard (GB/T 38664).
"""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """What the router did with a record for one subscription."""

    delivered = "delivered"  # to the consumer's delivery topic, by the consumer's own hub
    denied = "denied"  # a sharing rule refused it (see DenialReason)
    forwarded = "forwarded"  # handed to the next hub of a cascade (audit only: not an outcome yet)
    dead_lettered = "dead_lettered"  # not routable (see DeadLetterReason); metrics and results only, never an audit row


#: The decisions that end a record's way for a subscription (what the accountant counts).
OUTCOME_DECISIONS = frozenset({Decision.delivered, Decision.denied})
#: The decisions an audit row of the routing path carries (control-plane rows carry an approval state).
AUDITED_DECISIONS = (Decision.delivered, Decision.denied, Decision.forwarded)


class DeliveryReason(StrEnum):
    """Why a record was let through (decision ``delivered`` or ``forwarded``)."""

    unconditional = "unconditional"  # the entry is shared unconditionally (无条件共享)
    approved = "approved"  # conditional sharing (有条件共享), and the application is approved
    relayed = "relayed"  # a transit hub of a cascade handed the record on towards the consumer's hub


class DenialReason(StrEnum):
    """Which sharing rule refused a record (decision ``denied``), in the order they are checked."""

    no_subscriber = "no_subscriber"  # nobody subscribes to the entry (one denial, counted on the entry)
    negative_list = "negative_list"  # the entry is on the scenario's or its hub's negative list (负面清单)
    not_shared = "not_shared"  # the entry's sharing attribute is not shared (不予共享)
    not_provider = "not_provider"  # the record was published by a department that does not provide the entry
    not_approved = "not_approved"  # conditional sharing, and no approval is in force for the subscription
    out_of_jurisdiction = "out_of_jurisdiction"  # the row's region is outside the consumer's jurisdiction
    hub_negative_list = "hub_negative_list"  # a hub of a cascade refuses to let the entry through


Reason = DeliveryReason | DenialReason


class DeadLetterReason(StrEnum):
    """Why a record could not be routed and went to the dead-letter topic (nothing is lost)."""

    # the record's headers (exchange/policy/routing.py, RouterCore._admit)
    duplicate_header = "duplicate_header"
    bad_header = "bad_header"  # a null value, a key or value that is not UTF-8, a time that is not epoch ns
    missing_header = "missing_header"
    unsupported_schema = "unsupported_schema"
    unknown_entry = "unknown_entry"  # the topic is not the ingress topic of a catalogue entry
    entry_mismatch = "entry_mismatch"  # the entry-id header names another entry than the topic
    # the record's value (exchange/policy/routing.py and sharing.check_record)
    empty_value = "empty_value"  # a tombstone
    bad_json = "bad_json"
    not_an_object = "not_an_object"
    unknown_item = "unknown_item"  # a key that is not an item of the entry
    wrong_type = "wrong_type"
    value_too_large = "value_too_large"
    # a record in transit through a hub of a cascade (one subscription: one outcome)
    bad_transit = "bad_transit"
    # a fetched batch that cannot be decoded (exchange/router/lenient_records.py); one letter per batch
    unsupported_codec = "unsupported_codec"
    corrupt_batch = "corrupt_batch"


#: Dead-letter reasons of a whole fetched batch, not of one record: counted apart (their run is unknown).
BATCH_DEAD_LETTER_REASONS = (DeadLetterReason.unsupported_codec, DeadLetterReason.corrupt_batch)


class VerificationResult(StrEnum):
    """一数一源: what checking a copied item against its authoritative source department found."""

    verified = "verified"  # the copy agrees with the source
    conflict = "conflict"  # it does not (and a quality event is published)
    unverified = "unverified"  # the source has not published a value for the master key yet
    invalid_key = "invalid_key"  # the record's master key fits no standard form (schemas/keys.py)


class QualityReason(StrEnum):
    """Why a data-quality event (数据质量) was published on a hub's quality topic."""

    inconsistent = "inconsistent"  # a copy disagrees with its authoritative source (一数一源 conflict)
