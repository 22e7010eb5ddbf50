"""Fetched batches of every codec, and batches that cannot be decoded, read as the router reads them.

The bytes are built as a broker returns them (record batches v2, one after another) and
read through aiokafka's own fetcher classes with :mod:`exchange.router.lenient_records`
installed, so what is checked is what a router worker's fetcher does: every codec Kafka
has is decoded, and a batch that cannot be decoded for any reason becomes one
:class:`UndecodableBatch` with its offsets, between the good records around it, and the
position moves past it (no poison pill). The wire test in ``tests/test_fuzz.py`` sends
such batches through kafka-python into a real router.
"""

from __future__ import annotations

import base64
import struct
from collections import Counter

import aiokafka.codec
import orjson
import pytest
from aiokafka.consumer import fetcher
from aiokafka.consumer.fetcher import READ_UNCOMMITTED
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from exchange.router import lenient_records
from exchange.router.app import batch_dead_letter
from exchange.router.lenient_records import UndecodableBatch
from schemas.envelope import DeadLetter
from schemas.outcomes import DeadLetterReason

lenient_records.install()

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODEC_NAMES = {GZIP: "gzip", SNAPPY: "snappy", LZ4: "lz4", ZSTD: "zstd"}
TP = TopicPartition("dx.t1.in.open", 1)
_ATTRS = 21  # byte offset of a v2 batch's attributes; the CRC (at 17) covers everything from here
_COUNT = 57  # byte offset of the records count


def batch(base: int, n: int, codec: int = NONE, headers: list | None = None) -> bytes:
    """A v2 record batch of ``n`` records at offsets base…base+n-1, compressed with ``codec``."""
    builder = _DefaultRecordBatchBuilderPy(2, codec, 0, -1, -1, -1, 1 << 22)
    for i in range(n):  # compressible values, so that the builder keeps the compressed form
        builder.append(
            i,
            1_700_000_000_000 + i,
            b"k",
            orjson.dumps({"person.status": "在办 " * 20, "n": base + i}),
            headers or [("trace-id", b"8.%d" % (base + i))],
        )
    raw = builder.build()
    struct.pack_into(">q", raw, 0, base)  # the broker sets the base offset; it is outside the CRC
    if codec:
        assert raw[_ATTRS + 1] & 7 == codec, "the builder sent it uncompressed"
    return bytes(raw)


def with_crc(raw: bytes | bytearray) -> bytes:
    raw = bytearray(raw)
    struct.pack_into(">I", raw, 17, calc_crc32c(bytes(raw[_ATTRS:])))
    return bytes(raw)


def with_codec(raw: bytes, codec: int) -> bytes:
    raw = bytearray(raw)
    raw[_ATTRS + 1] = (raw[_ATTRS + 1] & ~7) | codec
    return with_crc(raw)


def garbled(raw: bytes, codec: int) -> bytes:
    """The batch with its compressed payload replaced by bytes of the same length, CRC fixed."""
    raw = bytearray(raw)
    start = 61  # the v2 batch header is 61 bytes
    payload = raw[start:]
    if codec == LZ4:  # keep the LZ4 frame magic, break what follows
        payload = payload[:4] + bytes(len(payload) - 4)
    elif codec == GZIP:  # keep the gzip magic, break the deflate stream
        payload = payload[:10] + b"\xff" * (len(payload) - 10)
    else:
        payload = bytes(b ^ 0x5A for b in payload)
    raw[start:] = payload
    return with_crc(raw)


def _broken_record(raw: bytes, index: int) -> bytes:
    """The batch with the header key length of its record ``index`` made negative (a zigzag varint -1), CRC fixed."""
    raw = bytearray(raw)
    at = -1
    for _ in range(index + 1):
        at = raw.index(b"trace-id", at + 1)
    raw[at - 1] = 0x01
    return with_crc(raw)


def read(raw: bytes, fetch_offset: int = 0, check_crcs: bool = True) -> tuple[list, int]:
    """Everything the fetcher hands out for one partition's fetched bytes, and its next offset."""
    records = fetcher.PartitionRecords(TP, fetcher.MemoryRecords(raw), None, fetch_offset, None, None, check_crcs, READ_UNCOMMITTED)
    return list(records), records.next_fetch_offset


def offsets(out: list) -> list:
    return [(r.first_offset, r.offset, r.records, r.reason) if type(r) is UndecodableBatch else r.offset for r in out]


@pytest.mark.parametrize("codec", [NONE, GZIP, SNAPPY, LZ4, ZSTD])
def test_every_codec_kafka_has_is_decoded(codec):
    out, nxt = read(batch(0, 3, codec) + batch(3, 4, codec) + batch(7, 1, NONE))
    assert offsets(out) == list(range(8))
    assert nxt == 8
    assert orjson.loads(out[5].value)["n"] == 5 and out[5].headers == (("trace-id", b"8.5"),)


def _cases():
    good_lz4 = batch(3, 4, LZ4)
    cases = {
        # (bytes of the middle batch, the reason, what the detail names)
        **{f"unknown_codec_{c}": (with_codec(batch(3, 4), c), DeadLetterReason.unsupported_codec, f"0x0{c}") for c in (5, 6, 7)},
        **{f"garbled_{name}": (garbled(batch(3, 4, c), c), DeadLetterReason.corrupt_batch, "Error") for c, name in CODEC_NAMES.items()},
        "crc_mismatch": (good_lz4[:-12] + bytes(b ^ 1 for b in good_lz4[-12:-8]) + good_lz4[-8:], DeadLetterReason.corrupt_batch, "CRC"),
        "crc_mismatch_uncompressed": (bytes(bytearray(batch(3, 4))[:-1]) + b"\x01", DeadLetterReason.corrupt_batch, "CRC"),
        # the batch reads, but its third record does not parse: 3 and 4 are handed out, 5 and 6 dead-lettered
        "broken_third_record": (_broken_record(batch(3, 4), 2), DeadLetterReason.corrupt_batch, "header key size"),
    }
    return cases


CASES = _cases()


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_batch_that_cannot_be_decoded_stands_as_one_record_and_reading_goes_on(kind):
    bad, reason, detail = CASES[kind]
    out, nxt = read(batch(0, 3, LZ4) + bad + batch(7, 2, GZIP))
    got = offsets(out)
    assert got[:3] == [0, 1, 2] and got[-2:] == [7, 8], got
    [u] = [r for r in out if type(r) is UndecodableBatch]
    assert u.reason == reason and detail in u.detail, u
    assert (u.topic, u.partition, u.offset) == (TP.topic, TP.partition, 6)
    if kind == "broken_third_record":  # the records that parse are handed out, the rest is one undecodable batch
        assert got[3:-2] == [3, 4, (5, 6, 2, reason)]
    else:
        assert got[3] == (3, 6, 4, reason)
        assert u.raw == bad and u.size == len(bad)
    assert nxt == 9, "the position moves past the batch"


def test_a_codec_library_that_is_missing_is_dead_lettered_not_raised(monkeypatch):
    """The issue's case: aiokafka without its codec extras raises UnsupportedCodecError in the fetcher."""
    raw = batch(0, 2) + batch(2, 3, LZ4) + batch(5, 2, SNAPPY) + batch(7, 2, ZSTD) + batch(9, 1, GZIP)
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    out, nxt = read(raw)
    codec = DeadLetterReason.unsupported_codec
    assert offsets(out) == [0, 1, (2, 4, 3, codec), (5, 6, 2, codec), (7, 8, 2, codec), 9]
    assert [r.codec for r in out if type(r) is UndecodableBatch] == ["lz4", "snappy", "zstd"]
    assert "Libraries for lz4 compression codec not found" in out[2].detail
    assert nxt == 10


def test_several_bad_batches_in_one_fetch_and_a_fetch_that_starts_inside_a_batch():
    raw = batch(0, 2) + garbled(batch(2, 2, LZ4), LZ4) + batch(4, 2) + with_codec(batch(6, 3), 7) + batch(9, 1)
    out, nxt = read(raw)
    assert offsets(out) == [0, 1, (2, 3, 2, DeadLetterReason.corrupt_batch), 4, 5, (6, 8, 3, DeadLetterReason.unsupported_codec), 9]
    assert nxt == 10
    # a fetch from offset 7 (the broker returns the whole batch holding it): offsets 7 and 8 only
    out, nxt = read(with_codec(batch(6, 3), 7) + batch(9, 1), fetch_offset=7)
    assert offsets(out) == [(7, 8, 2, DeadLetterReason.unsupported_codec), 9]


def test_a_fetch_read_on_after_the_fast_path_failed_hands_nothing_out_twice():
    # the C decoder hands out 0-4, then fails on the broken batch; the pure-Python pass must not repeat 0-4
    raw = batch(0, 2, GZIP) + batch(2, 3, ZSTD) + garbled(batch(5, 3, SNAPPY), SNAPPY) + batch(8, 2, LZ4)
    out, _ = read(raw)
    assert offsets(out) == [0, 1, 2, 3, 4, (5, 7, 3, DeadLetterReason.corrupt_batch), 8, 9]
    assert Counter(offsets(out)).most_common(1)[0][1] == 1


def test_a_header_key_that_is_not_utf8_is_still_read_leniently():
    # the builder encodes str keys as UTF-8; the key that is not UTF-8 is written by hand
    raw = batch(0, 2) + _with_raw_header_key(batch(2, 2), b"x-\xff\xfe")
    out, _ = read(raw)
    assert offsets(out) == [0, 1, 2, 3]
    assert out[2].headers[0][0] == "x-\udcff\udcfe____"


def _with_raw_header_key(raw: bytes, key: bytes) -> bytes:
    marker = b"trace-id"
    raw = bytearray(raw)
    i = raw.index(marker)
    assert len(key) <= len(marker)
    raw[i : i + len(marker)] = key + b"_" * (len(marker) - len(key))
    return with_crc(raw)


def test_the_dead_letter_of_an_undecodable_batch_names_topic_partition_offsets_and_reason_and_keeps_the_bytes():
    bad = garbled(batch(3, 4, LZ4), LZ4)
    out, _ = read(batch(0, 3) + bad)
    [u] = [r for r in out if type(r) is UndecodableBatch]
    key, value, headers = batch_dead_letter(u, "open", 123)
    letter = DeadLetter.model_validate_json(value)
    assert (letter.reason, letter.topic, letter.partition, letter.offset, letter.last_offset, letter.records) == (
        DeadLetterReason.corrupt_batch,
        TP.topic,
        1,
        3,
        6,
        4,
    )
    assert letter.entry == "open" and letter.trace is None and letter.headers == []
    assert "lz4 batch of 4 records at offsets 3..6" in letter.detail
    assert base64.b64decode(letter.value_b64) == bad
    assert dict(headers)["reason"] == DeadLetterReason.corrupt_batch.encode() and key is None


def test_a_batch_too_big_to_copy_is_named_but_not_copied(monkeypatch):
    monkeypatch.setattr(lenient_records, "MAX_KEPT_BYTES", 100)
    out, _ = read(with_codec(batch(0, 3), 5))
    letter = DeadLetter.model_validate_json(batch_dead_letter(out[0], "open", 1)[1])
    assert letter.value_b64 == "" and "not copied" in letter.detail


async def test_the_accountant_counts_an_undecodable_batch_apart_from_the_runs_outcomes():
    from consumers.accountant import Accountant
    from schemas.envelope import Topics

    class Fetched:
        def __init__(self, value: bytes) -> None:
            self.value, self.headers = value, [("reason", b"corrupt_batch")]

    out, _ = read(batch(0, 1) + garbled(batch(1, 4, ZSTD), ZSTD))
    letter = batch_dead_letter(out[1], "open", 1)[1]
    accountant = Accountant(Topics("t1"), "127.0.0.1:9", {"open": 2}, run_id="r1")  # counts without connecting
    accountant._dead_letter(Fetched(letter))
    accountant._dead_letter(Fetched(letter))  # read again after a restart: one batch, counted once
    assert accountant.undecodable == Counter({("open", DeadLetterReason.corrupt_batch): 4})
    assert accountant.dead_letters == Counter() and accountant.dead_outcomes == 0
    assert (accountant.duplicates, accountant.foreign) == (1, 0)
    restored = Accountant(Topics("t1"), "127.0.0.1:9", {"open": 2}, run_id="r1")
    restored.restore(accountant.snapshot())
    assert restored.undecodable == accountant.undecodable


def test_the_conservation_message_names_undecodable_records_only_where_they_can_explain_the_gap():
    from exchange.results.build import _conservation
    from schemas.results import Counts, EntryCounts

    def check(unaccounted: int, undecodable: int):
        entry = EntryCounts(produced=10, subscriptions=1, expected=10, delivered=10 - unaccounted, denied=0, dead_lettered=0, unaccounted=unaccounted)
        counts = Counts(
            produced=10, expected=10, delivered=entry.delivered, denied=0, dead_lettered=0, unaccounted=unaccounted, undecodable=undecodable
        )
        return _conservation(counts, {"open": entry})

    ok = check(0, 4)
    assert ok.ok and "4 records in ingress batches that could not be decoded were dead-lettered and are not this run's" in ok.message
    short = check(3, 4)
    assert not short.ok and "4 records sit in ingress batches the router could not decode" in short.message
    assert short.message.startswith("3 of 10 outcomes unaccounted for (by entry: open 3); ")  # not a Python dict
    over = check(-2, 4)
    assert not over.ok and "could not decode" not in over.message and "written by another client" in over.message
    assert "decode" not in check(0, 0).message


async def test_dead_letters_of_records_other_clients_wrote_are_reported_apart_not_dropped():
    """A record another client wrote to an ingress topic without this run's id (here without any
    header, as kafka-python sends by default) is dead-lettered by the router; the run counts it
    apart from its own outcomes, by reason, and the summary and the report say so."""
    import base64

    import orjson
    from rich.console import Console

    from consumers.accountant import Accountant
    from exchange.results import report
    from exchange.results.build import _by_reason
    from exchange.runner.display import input_warnings
    from schemas.envelope import H_RUN, Topics
    from schemas.results import Counts
    from schemas.status import DeadLetterCount

    class Fetched:
        def __init__(self, value: bytes, headers=()) -> None:
            self.value, self.headers = value, list(headers)

    def letter(reason: str, offset: int, run: bytes | None) -> bytes:
        headers = [(H_RUN, base64.b64encode(run).decode())] if run is not None else []
        return orjson.dumps(
            {
                "reason": reason,
                "detail": "",
                "topic": "dx.t1.in.open",
                "partition": 0,
                "offset": offset,
                "trace": None,
                "entry": "open",
                "subscription": None,
                "value_b64": "",
                "headers": headers,
            }
        )

    accountant = Accountant(Topics("t1"), "127.0.0.1:9", {"open": 2}, run_id="r1")  # counts without connecting
    accountant._dead_letter(Fetched(letter("missing_header", 0, None)))
    accountant._dead_letter(Fetched(letter("missing_header", 1, None)))
    accountant._dead_letter(Fetched(letter("bad_json", 2, b"an-earlier-run")))
    assert accountant.foreign_dead_letters == Counter({("open", "missing_header"): 2, ("open", "bad_json"): 1})
    assert accountant.dead_letters == Counter() and accountant.dead_outcomes == 0  # not this run's outcomes
    restored = Accountant(Topics("t1"), "127.0.0.1:9", {"open": 2}, run_id="r1")
    restored.restore(accountant.snapshot())
    assert restored.foreign_dead_letters == accountant.foreign_dead_letters

    rows = DeadLetterCount.rows(accountant.foreign_dead_letters)
    counts = Counts(
        produced=0,
        expected=0,
        delivered=0,
        denied=0,
        dead_lettered=0,
        unaccounted=0,
        foreign_dead_lettered=3,
        foreign_dead_letters_by_reason=_by_reason(rows),
    )
    assert counts.foreign_dead_letters_by_reason == {"bad_json": 1, "missing_header": 2}

    class _Result:  # the two fields input_warnings reads
        clock_skew: dict = {}  # noqa: RUF012 - read only

    shown = _Result()
    shown.counts = counts
    console = Console(width=200, record=True)
    console.print(input_warnings(shown).strip())
    text = console.export_text()
    assert "3 dead-lettered records carry no run id or another run's (bad_json 1, missing_header 2)" in text
    banner = report.input_warnings({"counts": counts.model_dump()})
    assert 'id="foreign-dead-letters"' in banner and "missing_header: 2" in banner
    assert report.input_warnings({"counts": Counts(produced=0, expected=0, delivered=0, denied=0, dead_lettered=0, unaccounted=0).model_dump()}) == ""
