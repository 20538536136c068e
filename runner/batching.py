"""Pack one object's records into payloads (mini-batches), exactly as SageMaker does.

CONTRACT 4.3: the limit is MaxPayloadInMB x 1,048,576 bytes; MultiRecord is greedy in input order
(append while size + next <= limit); SingleRecord sends one record per payload; a payload never
spans objects; a record larger than the limit fails the object. Input arrives as a stream of byte
chunks, so memory is bounded by the limit plus one chunk, never by the object's size.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from runner.errors import RecordFormatError
from runner.spec import BatchStrategy
from runner.splitters import Splitter

MIB = 1024 * 1024
# A framed record (RecordIO parts, TFRecord) is under 3x its data; see pack's SingleRecord check.
FRAME_SLACK = 3


@dataclass(frozen=True)
class Payload:
    """One request body. ``first_record`` and ``byte_offset`` locate it in the (decompressed) object."""

    index: int
    data: bytes
    first_record: int
    record_count: int
    byte_offset: int


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
