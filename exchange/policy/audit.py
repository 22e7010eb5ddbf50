"""The audit trail (全程留痕): hash-chained audit blocks, and checking the chains.

Every audit message (a block of decision rows) carries the hash of the previous message
of its chain and its own hash over its content, so rewriting, removing or reordering any
audit message breaks a link that :func:`verify` finds. A chain belongs to one writer on
one partition: a router worker process writes its own chains (``<worker>.<epoch>`` per
audit partition), so several workers never interleave in one chain, and a restarted
worker starts a new chain instead of guessing where its last one ended.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.envelope import AUDIT_FIELDS, AuditRow

GENESIS = "0" * 64


def block_hash(block: dict[str, Any]) -> str:
    """sha256 over the block without its own hash, in canonical JSON (sorted keys)."""
    body = {k: v for k, v in block.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


#: rows per audit block at most: a block is one Kafka record, and Kafka refuses records over
#: ``message.max.bytes`` (1,048,588 bytes by default). An audit row encodes to ~100-300
#: bytes, so 2,000 rows stay near 600 KB at worst; a larger routed batch takes several blocks.
MAX_BLOCK_ROWS = 2000


def _row(value: Any) -> Any:
    """orjson's fallback: an :class:`~schemas.envelope.AuditRow` (a NamedTuple orjson refuses) as a plain tuple."""
    if isinstance(value, AuditRow):
        return tuple(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class AuditWriter:
    """Builds the next block of each of one worker's chains."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.epoch = secrets.token_hex(4)
        self._last: dict[int, tuple[int, str]] = {}  # partition → (seq, hash)

    def chain(self, partition: int) -> str:
        """This writer's chain id on ``partition``: ``<worker>.<epoch>.<partition>``."""
        return f"{self.worker}.{self.epoch}.{partition}"

    def blocks(self, partition: int, rows: list, max_rows: int = MAX_BLOCK_ROWS) -> list[bytes]:
        """The next blocks of ``partition``'s chain for ``rows``, each of at most ``max_rows`` rows, in order."""
        return [self.block(partition, rows[i : i + max_rows]) for i in range(0, len(rows), max_rows)]

    def block(self, partition: int, rows: list) -> bytes:
        """The next block of ``partition``'s chain, encoded.

        ``rows`` are tuples (or lists) in :data:`~schemas.envelope.AUDIT_FIELDS` order, or
        :class:`~schemas.envelope.AuditRow`; an ``AuditRow`` encodes as the plain tuple it is.

        One JSON encoding, not four: the body is encoded with sorted keys, which is
        byte for byte what :func:`block_hash` encodes after a reader decodes it (rows hold
        strings, integers, lists and nulls, which decode and re-encode unchanged), so
        it is hashed as it is and the hash is appended as the last key.
        """
        seq, prev = self._last.get(partition, (0, GENESIS))
        body = orjson.dumps(
            {"v": 2, "worker": self.worker, "chain": self.chain(partition), "seq": seq + 1, "prev": prev, "fields": AUDIT_FIELDS, "rows": rows},
            option=orjson.OPT_SORT_KEYS,
            default=_row,
        )
        digest = hashlib.sha256(body).hexdigest()
        self._last[partition] = (seq + 1, digest)
        return b'%s,"hash":"%s"}' % (body[:-1], digest.encode())


@dataclass
class BrokenLink:
    """One place where a chain does not hold: the audit message at (``partition``, ``offset``)
    of ``chain``, what is wrong (``problem``) and the expected and found (seq, prev)."""

    partition: int
    offset: int
    chain: str
    problem: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"partition {self.partition}, offset {self.offset} (chain {self.chain}): {self.problem}; expected {self.expected}, found {self.found}"


@dataclass
class Verification:
    """What :func:`verify` found: blocks and audit rows read, chain ids seen, broken links."""

    blocks: int = 0
    rows: int = 0
    chains: set[str] = field(default_factory=set)
    broken: list[BrokenLink] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no link is broken."""
        return not self.broken


def verify(messages: Iterable[tuple[int, int, bytes]]) -> Verification:
    """Check every chain in (partition, offset, value) audit messages, in offset order.

    A block must hash to its ``hash``, and its ``prev`` must be the hash of the block
    before it in its chain (sequence numbers one apart); an identical re-send of a block
    (at-least-once) is accepted.
    """
    result = Verification()
    last: dict[str, tuple[int, str]] = {}
    for partition, offset, value in messages:
        try:
            block = orjson.loads(value)
            chain, seq, prev, digest = block["chain"], block["seq"], block["prev"], block["hash"]
            rows = block["rows"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            result.broken.append(BrokenLink(partition, offset, "?", "not an audit block", "a hash-chained block", repr(exc)[:80]))
            continue
        result.blocks += 1
        result.rows += len(rows)
        result.chains.add(chain)
        actual = block_hash(block)
        if actual != digest:
            result.broken.append(BrokenLink(partition, offset, chain, "content does not match its hash", actual, digest))
            continue
        seen = last.get(chain)
        if seen is not None and seen == (seq, digest):
            continue  # the same block sent twice
        expected_seq, expected_prev = (seen[0] + 1, seen[1]) if seen else (1, GENESIS)
        if seq != expected_seq or prev != expected_prev:
            problem = "a block is missing before this one" if seq > expected_seq else "sequence goes backwards"
            if seq == expected_seq:
                problem = "previous-hash link broken"
            result.broken.append(
                BrokenLink(partition, offset, chain, problem, f"seq {expected_seq}, prev {expected_prev}", f"seq {seq}, prev {prev}")
            )
        last[chain] = (seq, digest)
    return result
