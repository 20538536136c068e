"""Pack one object's records into payloads (mini-batches), exactly as SageMaker does.

docs/contract.md §4.3: the limit is MaxPayloadInMB x 1,048,576 bytes; MultiRecord is greedy in input order
(append while size + next <= limit); SingleRecord sends one record per payload; a payload never
spans objects; a record larger than the limit fails the object. Input arrives as a stream of byte
chunks, so memory is bounded by the limit plus one chunk, never by the object's size.

``read_header`` / ``pack_with_header`` (opt-in ``csv_header first-line``): record 0 of the object is a
header that is prepended to every payload (and counted against the cap) and is not itself a record.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from runner.contract.spec import BatchStrategy
from runner.errors import RecordFormatError
from runner.records.splitters.base import Splitter

MIB = 1024 * 1024
# A framed record (RecordIO parts, TFRecord) is under 3x its data; see pack's SingleRecord check.
FRAME_SLACK = 3


@dataclass(frozen=True)
class ByteRange:
    """A payload's bytes in its object, for the worker to read (runner/records/ranges.py):
    ``[start, end)`` of the version whose ETag is ``etag``."""

    uri: str
    etag: str
    start: int
    end: int
    lines: bool  # split by Line (its records are counted by newline); else the object is one record

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Payload:
    """One request body. ``first_record`` and ``byte_offset`` locate it in the (decompressed) object.
    A ranged payload has no ``data`` here but ``where``: the worker reads it, and counts its records
    (``record_count`` is 0 until then)."""

    index: int
    data: bytes
    first_record: int
    record_count: int
    byte_offset: int
    where: ByteRange | None = None


@dataclass(frozen=True)
class PayloadRecords:
    """A payload's records found again in its bytes, so that a payload the model fails on can be sent
    again in parts (``on_record_error=quarantine``). They are found with the splitter that packed the
    payload, on demand, so packing itself never does per-record work. A payload of one record
    (SingleRecord, SplitType None, Parquet) is its own only part."""

    payload: Payload
    prefix: int  # bytes sent atop every part: the csv_header first-line header, else 0
    ends: tuple[int, ...]  # where each record ends in ``payload.data``

    @classmethod
    def of(cls, payload: Payload, splitter: Splitter | None, header: bool, name: str) -> PayloadRecords:
        if payload.record_count <= 1 or splitter is None:
            return cls(payload, 0, (len(payload.data),))
        ends: list[int] = []
        pos = 0
        while pos < len(payload.data):
            end = splitter.record_end(payload.data, pos, True)
            assert end is not None  # at eof a splitter ends a record or raises
            ends.append(end)
            pos = end
        prefix = ends.pop(0) if header and ends else 0
        if len(ends) != payload.record_count:
            raise RecordFormatError(
                f"{name}: payload {payload.index}: {len(ends)} records found in it again, but it was packed "
                f"with {payload.record_count}; it cannot be split into its records",
                uri=name,
                record_index=payload.first_record,
                byte_offset=payload.byte_offset,
            )
        return cls(payload, prefix, tuple(ends))

    def __len__(self) -> int:
        return len(self.ends)

    def part(self, first: int, stop: int) -> Payload:
        """Records ``first`` to ``stop - 1`` (counted in this payload) as a payload of their own, with
        the header atop and their own first record and byte offset in the object."""
        if first == 0 and stop == len(self.ends):
            return self.payload
        data = self.payload.data
        start = self.prefix if first == 0 else self.ends[first - 1]
        return Payload(
            self.payload.index,
            data[: self.prefix] + data[start : self.ends[stop - 1]],
            self.payload.first_record + first,
            stop - first,
            self.payload.byte_offset + start - self.prefix,
        )


def oversize_message(name: str, record: int, offset: int, size: int | str, limit_mb: int) -> str:
    return (
        f"{name}: record {record} at byte {offset} is {size} bytes, larger than "
        f"MaxPayloadInMB={limit_mb} ({limit_mb * MIB} bytes); raise MaxPayloadInMB (at most 100) "
        "or split the record"
    )


class _Buffer:
    """The unconsumed stream: ``data[pos:]`` starts at absolute byte ``offset`` of the object."""

    # Consumed bytes are dropped only when they are the bigger part, so dropping stays amortised O(1).
    COMPACT_MIN_BYTES = 1 << 20

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.data = bytearray()
        self.pos = 0
        self.offset = 0
        self.eof = False

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def fill(self) -> bool:
        """Read one more chunk; False at end of stream."""
        if self.pos >= self.COMPACT_MIN_BYTES and self.pos * 2 >= len(self.data):
            del self.data[: self.pos]
            self.pos = 0
        for chunk in self._chunks:
            if chunk:
                self.data += chunk
                return True
        self.eof = True
        return False

    def copy(self, start: int, end: int) -> bytes:
        """One copy of ``data[start:end]`` (slicing the bytearray first would make two)."""
        with memoryview(self.data) as view:
            return bytes(view[start:end])

    def consume(self, end: int) -> None:
        self.offset += end - self.pos
        self.pos = end


def pack_whole(chunks: Iterable[bytes], limit: int | None, name: str, limit_mb: int) -> Iterator[Payload]:
    """SplitType None: the whole object is one payload (an empty object is one empty request)."""
    buf = _Buffer(chunks)
    while buf.fill():
        if limit is not None and buf.remaining > limit:
            raise RecordFormatError(
                f"{name}: the object is larger than MaxPayloadInMB={limit_mb} ({limit} bytes) and "
                "SplitType is None, so it must fit one request; set SplitType to split it into records "
                "or raise MaxPayloadInMB",
                uri=name,
                record_index=0,
                byte_offset=0,
            )
    yield Payload(0, bytes(buf.data), 0, 1, 0)


def pack(
    chunks: Iterable[bytes],
    splitter: Splitter,
    strategy: BatchStrategy,
    limit: int | None,
    name: str,
    limit_mb: int,
) -> Iterator[Payload]:
    """Payloads of one object, in order. ``limit`` None means no cap (MaxPayloadInMB 0)."""
    buf = _Buffer(chunks)
    index = 0
    record = 0
    single = strategy is BatchStrategy.SINGLE_RECORD
    while True:
        if buf.remaining == 0 and (buf.eof or not buf.fill()):
            return
        start = buf.pos
        end: int | None
        try:
            if single:
                # The cap applies to the bytes sent (a framed record's data); only a record whose frame
                # is far past the cap is refused before it is complete, so memory stays bounded.
                end = splitter.record_end(buf.data, start, buf.eof)
                too_big = limit is not None and end is None and buf.remaining > FRAME_SLACK * limit + 1024
            elif limit is None:
                end = len(buf.data) if buf.eof else None
                too_big = False
            else:
                end = splitter.greedy_end(buf.data, start, limit, buf.eof)
                too_big = end == start
            if too_big:
                _raise_oversize(buf, splitter, name, record, limit_mb)
            if end is None:
                buf.fill()
                continue
            count = splitter.record_count(buf.data, start, end)
        except RecordFormatError as e:
            if e.uri:
                raise
            raise _located(e, buf, name, record) from None
        offset = buf.offset
        data = splitter.record_data(buf.data, start, end) if single else buf.copy(start, end)
        if single and limit is not None and len(data) > limit:
            _raise_oversize(buf, splitter, name, record, limit_mb, size=len(data))
        buf.consume(end)
        yield Payload(index, data, record, count, offset)
        index += 1
        record += count


def _located(e: RecordFormatError, buf: _Buffer, name: str, record: int) -> RecordFormatError:
    """A splitter's error (buffer index, record count from the payload's start) made absolute, with
    the object's name: ``<name>: record <n> at byte <offset>: <what is wrong>``."""
    index = record + max(e.record_index, 0)
    offset = buf.offset + e.byte_offset - buf.pos if e.byte_offset >= 0 else buf.offset
    return RecordFormatError(
        f"{name}: record {index} at byte {offset}: {e}", uri=name, record_index=index, byte_offset=offset
    )


def _raise_oversize(
    buf: _Buffer, splitter: Splitter, name: str, record: int, limit_mb: int, size: int | str | None = None
) -> None:
    """Fail with the oversize record's size (found by reading on, unless given)."""
    while size is None:
        end = splitter.record_end(buf.data, buf.pos, buf.eof)
        if end is not None:
            size = end - buf.pos
            break
        if not buf.fill():
            size = buf.remaining
            break
    raise RecordFormatError(
        oversize_message(name, record, buf.offset, size, limit_mb),
        uri=name,
        record_index=record,
        byte_offset=buf.offset,
    )


# --- csv_header first-line: record 0 is a header atop every payload, not a record -----------------


def read_header(
    chunks: Iterable[bytes], splitter: Splitter, limit: int | None, name: str, limit_mb: int
) -> tuple[bytes | None, Iterator[bytes]]:
    """(header, the rest of the stream): the header is record 0 as ``splitter`` finds it, terminator
    included; None for an empty object. A header longer than ``limit`` fails before it is complete."""
    it = iter(chunks)
    buf = bytearray()
    eof = False
    while True:
        end = splitter.record_end(buf, 0, eof) if buf or eof else None
        if end is not None:
            break
        if eof:
            return None, iter(())
        if limit is not None and len(buf) > limit:
            raise header_too_big(name, len(buf), limit_mb, complete=False)
        nxt = next(it, None)
        if nxt is None:
            eof = True
        else:
            buf += nxt
    header = bytes(buf[:end])
    rest = bytes(buf[end:])
    return header, itertools.chain([rest] if rest else [], it)


def header_too_big(name: str, size: int, limit_mb: int, complete: bool = True) -> RecordFormatError:
    what = f"is {size} bytes" if complete else f"is over {size} bytes"
    return RecordFormatError(
        f"{name}: the CSV header (line 1, csv_header=first-line) {what}, larger than "
        f"MaxPayloadInMB={limit_mb} ({limit_mb * 1024 * 1024} bytes); every payload starts with the "
        "header, so it must fit with room for records: raise MaxPayloadInMB (at most 100)",
        uri=name,
        record_index=0,
        byte_offset=0,
    )


_OVERSIZE = re.compile(r" is (\d+) bytes, larger than MaxPayloadInMB=")


def _shifted(e: RecordFormatError, name: str, shift: int, header: int, limit_mb: int) -> RecordFormatError:
    """``pack``'s error on the stream after the header, with an object-absolute byte offset; an
    oversize record's message counts the header it is sent with."""
    text = str(e)
    if e.byte_offset < 0:
        return e
    offset = e.byte_offset + shift
    located = f"{name}: record {e.record_index} at byte {e.byte_offset}"
    match = _OVERSIZE.search(text)
    if text.startswith(located) and match and header:
        size = int(match.group(1))
        text = (
            f"{name}: record {e.record_index} at byte {offset} is {size} bytes, {size + header} with the "
            f"{header}-byte CSV header (csv_header=first-line) every payload starts with, larger than "
            f"MaxPayloadInMB={limit_mb} ({limit_mb * 1024 * 1024} bytes); raise MaxPayloadInMB (at most "
            "100) or split the record"
        )
    elif f" at byte {e.byte_offset}" in text:
        text = text.replace(f" at byte {e.byte_offset}", f" at byte {offset}", 1)
    return RecordFormatError(text, uri=e.uri or name, record_index=e.record_index, byte_offset=offset)


def pack_with_header(
    chunks: Iterable[bytes],
    splitter: Splitter,
    strategy: BatchStrategy,
    limit: int | None,
    name: str,
    limit_mb: int,
    *,
    on_header: Callable[[bytes], None] | None = None,
    records: Callable[[Iterator[bytes]], Iterable[bytes]] | None = None,
    header_sent: Callable[[bytes], bytes] | None = None,
) -> Iterator[Payload]:
    """``pack`` for an object whose record 0 is a header: payloads are ``header + records``, packed
    by the same greedy rule with the header's bytes taken off the cap. ``on_header`` gets the header
    as read; ``records`` wraps the stream after it (DataProcessing's InputFilter); ``header_sent``
    makes the header that is sent (the InputFilter applied to it). Record indexes and payloads'
    ``first_record`` count records after the header; byte offsets are the object's."""
    header, rest = read_header(chunks, splitter, limit, name, limit_mb)
    if header is None:
        return
    if limit is not None and len(header) > limit:
        raise header_too_big(name, len(header), limit_mb)
    if on_header is not None:
        on_header(header)
    first = next(rest, None)
    while first == b"":
        first = next(rest, None)
    if first is None:
        return  # a header-only object has no records: nothing is sent
    after: Iterator[bytes] = itertools.chain([first], rest)
    stream = records(after) if records is not None else after
    prefix = header_sent(header) if header_sent is not None else header
    budget = limit
    if limit is not None:
        if len(prefix) > limit:
            raise header_too_big(name, len(prefix), limit_mb)
        budget = limit - len(prefix)
    try:
        for p in pack(stream, splitter, strategy, budget, name, limit_mb):
            yield Payload(
                p.index, prefix + p.data, p.first_record, p.record_count, p.byte_offset + len(header)
            )
    except RecordFormatError as e:
        raise _shifted(e, name, len(header), len(prefix), limit_mb) from None
