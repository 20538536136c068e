"""SplitType RecordIO: MXNet/dmlc RecordIO frames (docs/contract.md §4.2, source RIO).

A frame is ``uint32 magic 0xCED7230A`` (little-endian bytes ``0a 23 d7 ce``), ``uint32 lrecord`` (data
length in the low 29 bits, ``cflag`` in the high 3), the data, and zero padding to a 4-byte boundary.
A logical record is one cflag-0 frame, or a cflag 1, 2*, 3 sequence: dmlc's writer cuts a record
wherever its data holds the magic at a 4-byte-aligned offset, drops those 4 bytes, and its reader
joins the parts re-inserting the magic between them.

MultiRecord payloads hold whole logical records verbatim (headers and padding included, so the
payload cap counts framed bytes); a SingleRecord payload is one record's data only (headers and
padding removed, parts joined with the magic).

Errors are ``RecordFormatError`` whose ``byte_offset`` is an index into the buffer passed in and
whose ``record_index`` counts records from the ``start`` passed in; ``runner.records.batching`` turns
both into object-absolute values and prefixes the object name. ``record_count`` validates every frame of its
region, so a malformed object fails whichever strategy and payload cap is in force.
"""

from __future__ import annotations

import struct

from runner.errors import RecordFormatError
from runner.records.splitters.base import greedy_end_by_records

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
# An older RecordIO framing with a different magic; named in the error so the cause is clear.
OLD_MAGIC = 0x3ED7230A
HEADER_BYTES = 8
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
WHOLE, START, MIDDLE, END = 0, 1, 2, 3
CFLAG_NAMES = {
    WHOLE: "0 (whole record)",
    START: "1 (first part)",
    MIDDLE: "2 (middle part)",
    END: "3 (last part)",
}

_HEADER = struct.Struct("<II")


def _padded(length: int) -> int:
    return (length + 3) & ~3


def _error(message: str, offset: int) -> RecordFormatError:
    return RecordFormatError(message, record_index=0, byte_offset=offset)


def _bad_magic(magic: int, offset: int) -> RecordFormatError:
    text = f"bad RecordIO magic 0x{magic:08x}, expected 0x{MAGIC:08x}"
    if magic == OLD_MAGIC:
        text += (
            f" (0x{OLD_MAGIC:08x} is the magic of an older recordio framing, which this runner does not "
            "read; write the object with MXNet's recordio)"
        )
    return _error(text, offset)


def _record_end(buf: bytes | bytearray, start: int, stop: int, eof: bool) -> int | None:
    """End of the logical record at ``start`` within ``buf[:stop]``; None when more bytes are needed
    (never when ``eof``: then a record cut short by ``stop`` is an error)."""
    pos = start
    first = True
    while True:
        left = stop - pos
        if left < HEADER_BYTES:
            if not eof:
                return None
            if left == 0:
                if first:
                    return None
                raise _error(
                    "RecordIO record split into parts ends with the object, without its last part (cflag 3)",
                    pos,
                )
            raise _error(
                f"truncated RecordIO frame: {left} bytes at the end of the object, a frame header is "
                f"{HEADER_BYTES}",
                pos,
            )
        magic, lrecord = _HEADER.unpack_from(buf, pos)
        if magic != MAGIC:
            raise _bad_magic(magic, pos)
        cflag = lrecord >> LENGTH_BITS
        length = lrecord & LENGTH_MASK
        if cflag > END:
            raise _error(
                f"RecordIO frame with invalid cflag {cflag} (lrecord 0x{lrecord:08x}); cflag is 0-3", pos
            )
        if first and cflag not in (WHOLE, START):
            raise _error(
                f"RecordIO frame with cflag {CFLAG_NAMES[cflag]} where a record must start "
                "(cflag 0 or 1): its first part is missing",
                pos,
            )
        if not first and cflag not in (MIDDLE, END):
            raise _error(
                f"RecordIO frame with cflag {CFLAG_NAMES[cflag]} inside a record split into parts, "
                "which must go on with cflag 2 (middle part) or 3 (last part)",
                pos,
            )
        frame_end = pos + HEADER_BYTES + _padded(length)
        if frame_end > stop:
            if not eof:
                return None
            raise _error(
                f"truncated RecordIO frame: its header says {length} data bytes ({frame_end - pos} bytes "
                f"framed) but the object ends {stop - pos} bytes after the frame's start",
                pos,
            )
        if cflag in (WHOLE, END):
            return frame_end
        pos = frame_end
        first = False


class RecordIOSplitter:
    def record_end(self, buf: bytes | bytearray, start: int, eof: bool) -> int | None:
        return _record_end(buf, start, len(buf), eof)

    def greedy_end(self, buf: bytes | bytearray, start: int, limit: int, eof: bool) -> int | None:
        return greedy_end_by_records(self, buf, start, limit, eof)

    def record_count(self, buf: bytes | bytearray, start: int, end: int) -> int:
        pos = start
        count = 0
        while pos < end:
            try:
                nxt = _record_end(buf, pos, end, True)
            except RecordFormatError as e:
                e.record_index = count
                raise
            assert nxt is not None  # pos < end, and at eof a short region raises instead
            pos = nxt
            count += 1
        return count

    def record_data(self, buf: bytes | bytearray, start: int, end: int) -> bytes:
        with memoryview(buf) as view:
            lrecord = _HEADER.unpack_from(buf, start)[1]
            if lrecord >> LENGTH_BITS == WHOLE:
                data_start = start + HEADER_BYTES
                return bytes(view[data_start : data_start + (lrecord & LENGTH_MASK)])
            parts = []
            pos = start
            while pos < end:
                length = _HEADER.unpack_from(buf, pos)[1] & LENGTH_MASK
                parts.append(view[pos + HEADER_BYTES : pos + HEADER_BYTES + length])
                pos += HEADER_BYTES + _padded(length)
            try:
                return MAGIC_BYTES.join(parts)
            finally:
                for part in parts:
                    part.release()
