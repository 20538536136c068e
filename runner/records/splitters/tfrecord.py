"""SplitType TFRecord (docs/contract.md §4.2, source TFR).

A record is ``uint64 length`` (little-endian), ``uint32 masked_crc32c(length bytes)``, ``data[length]``,
``uint32 masked_crc32c(data)``; CRC-32C is Castagnoli's, and ``mask(c)`` rotates ``c`` right by 15 bits
and adds ``0xa282ead8`` (mod 2**32).

MultiRecord payloads hold whole records verbatim (as the TFRecord containers of SageMaker's examples
expect); a SingleRecord payload is one record's data only.

Both CRCs are checked. The length CRC is checked as soon as a header is read, before its length is
trusted (so a corrupt length never makes the reader wait for bytes that will not come). The data CRC
is checked in ``record_count``, which ``runner.records.batching`` calls once on every payload's bytes
before the payload is sent, whatever the strategy and payload cap: each byte is checked exactly once.

Errors are ``RecordFormatError`` whose ``byte_offset`` is an index into the buffer passed in (the
start of the bad record) and whose ``record_index`` counts records from the ``start`` passed in;
``runner.records.batching`` turns both into object-absolute values and prefixes the object name.
"""

from __future__ import annotations

import struct

import crc32c

from runner.errors import RecordFormatError
from runner.records.splitters.base import greedy_end_by_records

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the data
MASK_DELTA = 0xA282EAD8

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_HEADER = struct.Struct("<QI")


def masked_crc(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC-32C of ``data``."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


def _error(message: str, offset: int) -> RecordFormatError:
    return RecordFormatError(message, record_index=0, byte_offset=offset)


def _record_end(buf: bytes | bytearray, start: int, stop: int, eof: bool) -> int | None:
    """End of the record at ``start`` within ``buf[:stop]``, its length CRC checked; None when more
    bytes are needed (never when ``eof``: then a record cut short by ``stop`` is an error)."""
    left = stop - start
    if left < HEADER_BYTES:
        if not eof or left == 0:
            return None
        raise _error(
            f"truncated TFRecord header: {left} bytes at the end of the object, a header is {HEADER_BYTES}",
            start,
        )
    length, stored = _HEADER.unpack_from(buf, start)
    computed = masked_crc(_LENGTH.pack(length))
    if computed != stored:
        raise _error(
            f"TFRecord length CRC mismatch: stored 0x{stored:08x}, computed 0x{computed:08x} over the "
            f"length field (which reads {length}); the object is corrupt or not TFRecord",
            start,
        )
    end = start + HEADER_BYTES + length + FOOTER_BYTES
    if end > stop:
        if not eof:
            return None
        raise _error(
            f"truncated TFRecord: its header says {length} data bytes ({end - start} bytes framed) but the "
            f"object ends {left} bytes after the record's start",
            start,
        )
    return end


class TFRecordSplitter:
    def record_end(self, buf: bytes | bytearray, start: int, eof: bool) -> int | None:
        return _record_end(buf, start, len(buf), eof)

    def greedy_end(self, buf: bytes | bytearray, start: int, limit: int, eof: bool) -> int | None:
        return greedy_end_by_records(self, buf, start, limit, eof)

    def record_count(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Counts the records of ``buf[start:end]`` and checks both CRCs of each."""
        pos = start
        count = 0
        with memoryview(buf) as view:
            while pos < end:
                try:
                    nxt = _record_end(buf, pos, end, True)
                    assert nxt is not None  # pos < end, and at eof a short region raises instead
                    stored = _CRC.unpack_from(buf, nxt - FOOTER_BYTES)[0]
                    computed = masked_crc(view[pos + HEADER_BYTES : nxt - FOOTER_BYTES])
                    if computed != stored:
                        raise _error(
                            f"TFRecord data CRC mismatch: stored 0x{stored:08x}, computed 0x{computed:08x} "
                            f"over its {nxt - pos - HEADER_BYTES - FOOTER_BYTES} data bytes",
                            pos,
                        )
                except RecordFormatError as e:
                    e.record_index = count
                    raise
                pos = nxt
                count += 1
        return count

    def record_data(self, buf: bytes | bytearray, start: int, end: int) -> bytes:
        with memoryview(buf) as view:
            return bytes(view[start + HEADER_BYTES : end - FOOTER_BYTES])
