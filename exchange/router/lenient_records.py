"""Fetched batches that aiokafka cannot decode: read them leniently instead of crashing.

aiokafka raises inside its fetcher when a fetched batch cannot be decoded: a header key
that is not UTF-8 (the wire format only says "bytes"), a codec whose library is missing
or that does not exist (``UnsupportedCodecError``), a compressed payload that does not
decompress, a CRC that does not match, records whose structure is broken. The router
worker then crashes, and a restarted worker fetches the same batch and crashes again:
one batch stops the exchange (a poison pill).

:func:`install` makes the fetcher keep each fetch's raw bytes and, only when aiokafka's
(C) decoder fails, read that fetch again in pure Python, resuming after the last record
already handed out:

- header keys are decoded with ``surrogateescape``, so the record reaches the router,
  which dead-letters it (``bad_header``) like any other bad input;
- a batch that still cannot be decoded is read up to the first record that fails, and
  the rest of it is handed out as one :class:`UndecodableBatch` standing in for those
  records (first and last offset, record count from the batch header, codec, reason, the
  raw batch bytes). The router dead-letters it (``unsupported_codec`` or
  ``corrupt_batch``) and the consumer's position moves past it, so routing goes on.

The fast path is untouched: one small wrapper object per fetched partition, none per
record. A fetch whose bytes cannot even be split into batches (a length field that lies)
is not something a Kafka broker returns; aiokafka's error is raised for it.
"""

from __future__ import annotations

import logging

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import _MemoryRecordsPy

from schemas.outcomes import DeadLetterReason

log = logging.getLogger(__name__)

_installed = False

#: Kafka's compression codecs by their id in a batch's attributes (bits 0-2)
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
#: raw bytes of an undecodable batch kept in its dead letter, at most (a fetch may hold 8 MB).
#: Kept as base64 (4/3 the size) in a JSON value, so 512 KiB stays under Kafka's default
#: ``message.max.bytes`` (1,048,588 bytes) with room for the letter's other fields.
MAX_KEPT_BYTES = 512 * 1024


class UndecodableBatch:
    """Stands, among a partition's fetched records, for the records of a batch that cannot be decoded.

    ``first_offset`` … ``offset`` (the batch's last offset, so the consumer's position and
    commit move past it) are the offsets it stands for; ``records`` their number, from the
    batch header; ``codec`` the codec named in the batch; ``reason`` ``DeadLetterReason.unsupported_codec``
    (a codec this process cannot decode) or ``corrupt_batch`` (CRC mismatch, a payload that does not
    decompress, broken records); ``detail`` the decoder's error; ``raw`` the batch as fetched
    (``None`` above :data:`MAX_KEPT_BYTES`); ``size`` its length in bytes. ``key``, ``value``
    and ``headers`` are empty, as on a record without them.
    """

    __slots__ = (
        "topic",
        "partition",
        "first_offset",
        "offset",
        "records",
        "codec",
        "reason",
        "detail",
        "raw",
        "size",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "headers",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
    )

    def __init__(
        self,
        first_offset: int,
        last_offset: int,
        records: int,
        codec: str,
        reason: str,
        detail: str,
        raw: bytes | None,
        size: int,
        timestamp: int = -1,
    ) -> None:
        self.topic, self.partition = "", -1  # set by the partition's reader
        self.first_offset, self.offset, self.records = first_offset, last_offset, records
        self.codec, self.reason, self.detail, self.raw, self.size = codec, reason, detail, raw, size
        self.timestamp, self.timestamp_type = timestamp, 0
        self.key = self.value = self.checksum = None
        self.headers: tuple = ()
        self.serialized_key_size = self.serialized_value_size = -1

    def __repr__(self) -> str:
        return (
            f"UndecodableBatch({self.topic}[{self.partition}] offsets {self.first_offset}..{self.offset}, "
            f"{self.records} records, {self.codec}: {self.reason}: {self.detail})"
        )


class _LenientBytes(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    def __getitem__(self, index):
        part = bytearray.__getitem__(self, index)
        return _LenientBytes(part) if isinstance(index, slice) else part


class _LenientBatch(_DefaultRecordBatchPy):
    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _LenientBuffer):  # type: ignore[has-type]  # aiokafka's, unannotated
            self._buffer = _LenientBuffer(self._buffer)  # type: ignore[has-type]


class _SafeBatch:
    """A batch read eagerly: its records up to the first that fails, then one UndecodableBatch.

    The CRC is checked here, not in ``validate_crc``, so that a mismatch is dead-lettered
    rather than raised. A batch wholly before ``resume`` (handed out before the fast path
    failed) is not read again.
    """

    __slots__ = ("_batch", "_raw", "_check_crc", "_resume", "_it")

    def __init__(self, batch, raw: memoryview, check_crc: bool, resume: int) -> None:
        self._batch, self._raw, self._check_crc, self._resume = batch, raw, check_crc, resume
        self._it = None

    def __getattr__(self, name: str):
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True

    def __iter__(self):
        if self._it is None:
            self._it = iter(self._read())
        return self._it

    def __next__(self):
        return next(iter(self))

    def _read(self) -> list:
        batch = self._batch
        if batch.next_offset <= self._resume:
            return []
        out: list = []
        try:
            if self._check_crc and not batch.validate_crc():
                raise CorruptRecordException("the batch's CRC does not match its bytes")
            out.extend(batch)
        except Exception as exc:  # noqa: BLE001 - anything the decoder raises: the rest of the batch cannot be read
            out.append(self._undecodable(out, exc))
        return out

    def _undecodable(self, decoded: list, exc: Exception) -> UndecodableBatch:
        batch = self._batch
        last = batch.next_offset - 1
        codec_id = getattr(batch, "compression_type", None)
        if codec_id is None:  # a legacy (v0/v1) message set
            codec_id = getattr(batch, "_compression_type", 0)
        codec = CODECS.get(codec_id, f"unknown codec {codec_id}")
        if decoded:
            first = decoded[-1].offset + 1
        else:
            first = getattr(batch, "base_offset", last)  # a legacy wrapper: set from the reader's position
        count = last - first + 1
        header_count = getattr(batch, "_num_records", None)
        if header_count is not None:
            count = min(count, header_count - len(decoded))
        unsupported = isinstance(exc, (UnsupportedCodecError, NotImplementedError))
        raw = bytes(self._raw) if len(self._raw) <= MAX_KEPT_BYTES else None
        return UndecodableBatch(
            first,
            last,
            max(0, count),
            codec,
            DeadLetterReason.unsupported_codec if unsupported else DeadLetterReason.corrupt_batch,
            f"{type(exc).__name__}: {exc}"[:500],
            raw,
            len(self._raw),
            getattr(batch, "first_timestamp", -1),
        )


class _LenientRecords(_MemoryRecordsPy):
    """aiokafka's pure-Python reader, every batch read by :class:`_SafeBatch`, v2 batches by :class:`_LenientBatch`."""

    def __init__(self, raw: bytes, check_crcs: bool, resume: int) -> None:
        super().__init__(raw)
        self._check_crcs, self._resume = check_crcs, resume

    def next_batch(self, *args):
        next_slice = self._next_slice
        batch = super().next_batch(*args)
        if batch is None:
            return None
        if next_slice[self.MAGIC_OFFSET] >= 2:
            batch = _LenientBatch(next_slice)
        return _SafeBatch(batch, next_slice, self._check_crcs, self._resume)


class _RawRecords:
    """aiokafka's MemoryRecords, plus the bytes it was made from."""

    __slots__ = ("records", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.records = _MEMORY_RECORDS(raw)

    def has_next(self) -> bool:
        return self.records.has_next()

    def next_batch(self):
        return self.records.next_batch()

    def size_in_bytes(self) -> int:
        return self.records.size_in_bytes()


class _LenientPartitionRecords(fetcher.PartitionRecords):
    def _unpack_records(self):
        try:
            yield from super()._unpack_records()
            return
        except Exception as exc:  # read again below; re-raised when that cannot be done
            raw = getattr(self._records, "raw", None)
            if raw is None:
                raise
            log.warning(
                "%s: a fetched batch at offset %d cannot be decoded (%s: %s); reading the fetch leniently",
                self._tp,
                self.next_fetch_offset,
                type(exc).__name__,
                exc,
            )
        # Offsets before ``resume`` were handed out already: the lenient pass skips them.
        resume = self._resume = self.next_fetch_offset
        self._records = _LenientRecords(raw, self._check_crcs, resume)
        for record in super()._unpack_records():
            if record.offset >= resume:
                yield record

    def _consumer_record(self, tp, record):
        if type(record) is UndecodableBatch:
            record.topic, record.partition = tp.topic, tp.partition
            # the records of this batch not handed out start where the reader stands
            record.first_offset = max(record.first_offset, self.next_fetch_offset, getattr(self, "_resume", 0))
            record.records = min(record.records, record.offset - record.first_offset + 1)
            return record
        return super()._consumer_record(tp, record)


_MEMORY_RECORDS = fetcher.MemoryRecords


def install() -> None:
    """Make this process's aiokafka consumers survive every batch they cannot decode (see the module doc)."""
    global _installed
    if not _installed:
        fetcher.MemoryRecords = _RawRecords
        fetcher.PartitionRecords = _LenientPartitionRecords
        _installed = True
