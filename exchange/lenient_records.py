"""Fetched batches that aiokafka cannot decode: read them leniently instead of crashing.

aiokafka decodes every header key as UTF-8 while it unpacks a fetched batch. Any client
can write a header key that is not UTF-8 (the wire format only says "bytes"); aiokafka
then raises ``UnicodeDecodeError`` inside the fetcher, the router worker crashes, and a
restarted worker fetches the same batch and crashes again: one record stops the exchange.

:func:`install` makes the fetcher keep each fetch's raw bytes and, only when aiokafka's
(C) decoder fails on a batch, read that batch again in pure Python with header keys
decoded with ``surrogateescape``, resuming after the last record already handed out.
The router then dead-letters the record (``bad_header``) like any other bad input. The
fast path is untouched: one small wrapper object per fetched partition, none per record.
"""

from __future__ import annotations

import logging

from aiokafka.consumer import fetcher
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import _MemoryRecordsPy

log = logging.getLogger(__name__)

_installed = False


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
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


class _LenientRecords(_MemoryRecordsPy):
    """aiokafka's pure-Python reader, with v2 batches read by :class:`_LenientBatch`."""

    def next_batch(self, *args):
        next_slice = self._next_slice
        batch = super().next_batch(*args)
        if batch is not None and next_slice[self.MAGIC_OFFSET] >= 2:
            return _LenientBatch(next_slice)
        return batch


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
        except UnicodeDecodeError as exc:
            raw = getattr(self._records, "raw", None)
            if raw is None:
                raise
            log.warning("%s: a fetched batch has a header that is not UTF-8 (%s); reading it leniently", self._tp, exc)
            # Offsets before next_fetch_offset were handed out already and are skipped.
            self._records = _LenientRecords(raw)
            yield from super()._unpack_records()


_MEMORY_RECORDS = fetcher.MemoryRecords


def install() -> None:
    """Make this process's aiokafka consumers read undecodable header keys leniently."""
    global _installed
    if not _installed:
        fetcher.MemoryRecords = _RawRecords
        fetcher.PartitionRecords = _LenientPartitionRecords
        _installed = True
