"""Opt-in (docs/contract.md §9, ``split_parquet_row_groups``): Parquet and Arrow IPC objects split into
payloads of whole row groups / record batches instead of being sent whole.

For ``application/x-parquet`` the unit is a row group; for ``application/vnd.apache.arrow.file`` and
``application/vnd.apache.arrow.stream`` a record batch. Each payload is a complete file of the same
format (Parquet: the source's schema, its key-value metadata and its first column's codec; Arrow IPC:
the source's schema, uncompressed bodies) holding consecutive whole units, in order, so a user's
``input_fn`` reads a payload as it would read the object: ``pyarrow.parquet.read_table(io.BytesIO(body))``
or ``pyarrow.ipc.open_file(body).read_all()``. The hooks get the bytes; no default decoder is added
(SageMaker's toolkits have none for these types, and a default must not change).

Packing follows docs/contract.md §4.3 with units for records and the bytes of the written payload file for
the size: MultiRecord is greedy (a payload takes the next unit while the file still fits the cap),
SingleRecord sends one unit per payload, and a unit whose file alone is over the cap fails the
object. ``MaxPayloadInMB`` 0 (no cap) with MultiRecord sends the object verbatim as one payload.

Sizes: every unit is written once on its own (its size ``u``; it is the payload when it travels
alone) and an empty file of the schema gives the fixed overhead ``f``, so a payload of units
``i..j`` is estimated at ``f + sum(u - f)``. The estimate is off by a few bytes per unit (a Parquet
footer's offsets grow with the file, an Arrow footer's padding differs), so the payload it picks is
written and checked: shrunk while its file is over the cap, and grown one unit at a time while the
written size plus the next unit's share (within ``SLACK``) may still fit. The cap is always checked
on the bytes sent. Payloads' ``record_count`` and ``first_record`` count rows.

The object is spooled to a temporary file first: both file formats keep their index at the end, and
units are then read one at a time from a memory map, so memory is bounded by a payload's units, not
the object.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from runner.contract.spec import BatchStrategy
from runner.errors import RecordFormatError
from runner.records.batching import MIB, Payload

PARQUET = "application/x-parquet"
ARROW_FILE = "application/vnd.apache.arrow.file"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
COLUMNAR_TYPES = frozenset({PARQUET, ARROW_FILE, ARROW_STREAM})
# How much more one unit may add to a written payload than its own file's share (see the docstring).
SLACK = 256
SPOOL_CHUNK = 8 * MIB
# Parquet codec names in file metadata -> the writer's names.
_CODECS = {"UNCOMPRESSED": "none", "LZ4_RAW": "lz4", "LZ4": "lz4"}
_WRITABLE_CODECS = {"none", "snappy", "gzip", "brotli", "lz4", "zstd"}


def media_type(content_type: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_columnar(content_type: str | None) -> bool:
    return media_type(content_type) in COLUMNAR_TYPES


@dataclass
class _Unit:
    index: int
    data: Any  # a pyarrow Table (one row group) or RecordBatch
    rows: int
    byte_offset: int
    alone: bytes  # the unit written as a file of its own


class _Format:
    """Reads an object's units from a local file and writes units as a file of the same format."""

    unit_name = "record batch"
    units_name = "record batches (pyarrow: max_chunksize)"
    format_name = "Arrow IPC"

    def __init__(self, path: str) -> None:
        self.path = path
        self.schema: Any = None

    def units(self) -> Iterator[tuple[Any, int, int]]:
        """(unit, rows, byte offset in the object) in order."""
        raise NotImplementedError

    def rows(self) -> int:
        return sum(rows for _, rows, _ in self.units())

    def write(self, units: Iterable[Any]) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        for name in ("file", "source"):
            handle = getattr(self, name, None)
            if handle is not None:
                handle.close()


class _Parquet(_Format):
    unit_name = "row group"
    units_name = "row groups (pyarrow: row_group_size)"
    format_name = "Parquet"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.file = pq.ParquetFile(path, memory_map=True)
        self.schema = self.file.schema_arrow
        meta = self.file.metadata
        codec = "snappy"
        if meta.num_row_groups and meta.num_columns:
            name = str(meta.row_group(0).column(0).compression).upper()
            codec = _CODECS.get(name, name.lower())
        self.codec = codec if codec in _WRITABLE_CODECS else "snappy"

    def units(self) -> Iterator[tuple[Any, int, int]]:
        meta = self.file.metadata
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            offset = 0
            if group.num_columns:
                col = group.column(0)
                offset = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            yield self.file.read_row_group(i), group.num_rows, int(offset or 0)

    def rows(self) -> int:
        return int(self.file.metadata.num_rows)

    def write(self, units: Iterable[Any]) -> bytes:
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, self.schema, compression=self.codec) as writer:
            for table in units:
                # One row group per unit, whatever its row count (the writer's default splits at 1 Mi rows).
                writer.write_table(table, row_group_size=max(table.num_rows, 1))
        return bytes(sink.getvalue().to_pybytes())


class _ArrowFile(_Format):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.source = pa.memory_map(path)
        self.reader = ipc.open_file(self.source)
        self.schema = self.reader.schema

    def units(self) -> Iterator[tuple[Any, int, int]]:
        for i in range(self.reader.num_record_batches):
            batch = self.reader.get_batch(i)
            yield batch, batch.num_rows, 0

    def write(self, units: Iterable[Any]) -> bytes:
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, self.schema) as writer:
            for batch in units:
                writer.write_batch(batch)
        return bytes(sink.getvalue().to_pybytes())


class _ArrowStream(_Format):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.source = pa.memory_map(path)
        self.reader = ipc.open_stream(self.source)
        self.schema = self.reader.schema

    def units(self) -> Iterator[tuple[Any, int, int]]:
        for batch in self.reader:
            yield batch, batch.num_rows, 0

    def write(self, units: Iterable[Any]) -> bytes:
        sink = pa.BufferOutputStream()
        with ipc.new_stream(sink, self.schema) as writer:
            for batch in units:
                writer.write_batch(batch)
        return bytes(sink.getvalue().to_pybytes())


_FORMATS: dict[str, type[_Format]] = {PARQUET: _Parquet, ARROW_FILE: _ArrowFile, ARROW_STREAM: _ArrowStream}


def _invalid(name: str, fmt: type[_Format], e: BaseException) -> RecordFormatError:
    return RecordFormatError(
        f"{name}: not a valid {fmt.format_name} object, which split_parquet_row_groups needs for its "
        f"ContentType: {e}",
        uri=name,
    )


def pack_columnar(
    chunks: Iterable[bytes],
    content_type: str | None,
    strategy: BatchStrategy,
    limit: int | None,
    name: str,
    limit_mb: int,
) -> Iterator[Payload]:
    """Payloads of one Parquet / Arrow IPC object, in order (see the module docstring)."""
    fmt = _FORMATS[media_type(content_type)]
    spool = tempfile.TemporaryDirectory(prefix="runner-columnar-")
    try:
        path = f"{spool.name}/object"
        with open(path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            size = f.tell()
        if size == 0:
            return  # an empty object: no records, no request, an empty output (docs/contract.md §4.3)
        try:
            source = fmt(path)
        except (pa.ArrowException, OSError) as e:
            raise _invalid(name, fmt, e) from None
        try:
            if limit is None and strategy is BatchStrategy.MULTI_RECORD:
                # No cap: the whole object is one payload, exactly as without this knob.
                rows = source.rows()
                with open(path, "rb") as f:
                    yield Payload(0, f.read(), 0, rows, 0)
            else:
                yield from _pack_units(source, strategy, limit, name, limit_mb)
        finally:
            source.close()
    finally:
        spool.cleanup()


def _pack_units(
    source: _Format, strategy: BatchStrategy, limit: int | None, name: str, limit_mb: int
) -> Iterator[Payload]:
    units = source.units()
    overhead = len(source.write([]))
    pending: deque[_Unit] = deque()
    read_units = 0
    read_rows = 0

    def fill() -> bool:
        """Read and measure one more unit; False when there is none."""
        nonlocal read_units, read_rows
        try:
            item = next(units, None)
        except (pa.ArrowException, OSError) as e:
            raise _invalid(name, type(source), e) from None
        if item is None:
            return False
        data, rows, offset = item
        alone = source.write([data])
        if limit is not None and len(alone) > limit:
            raise RecordFormatError(
                f"{name}: {source.unit_name} {read_units} (rows {read_rows} to "
                f"{read_rows + rows - 1}) is {len(alone)} bytes as a {source.format_name} payload of "
                f"its own, larger than MaxPayloadInMB={limit_mb} ({limit} bytes); write the object with "
                f"smaller {source.units_name} or raise MaxPayloadInMB (at most 100)",
                uri=name,
                record_index=read_rows,
                byte_offset=offset,
            )
        pending.append(_Unit(read_units, data, rows, offset, alone))
        read_units += 1
        read_rows += rows
        return True

    index = 0
    first_row = 0
    while pending or fill():
        if strategy is BatchStrategy.SINGLE_RECORD or limit is None:
            count, data = 1, pending[0].alone
        else:
            count, data = _greedy(source, pending, fill, overhead, limit)
        taken = [pending.popleft() for _ in range(count)]
        rows = sum(u.rows for u in taken)
        yield Payload(index, data, first_row, rows, taken[0].byte_offset)
        index += 1
        first_row += rows


def _greedy(
    source: _Format, pending: deque[_Unit], fill: Callable[[], bool], overhead: int, limit: int
) -> tuple[int, bytes]:
    """(units, payload bytes) of the next MultiRecord payload: as many whole units as fit."""
    estimate = len(pending[0].alone)
    count = 1
    # Grow by the estimate; the unit after the payload is read (and measured) to decide, as the
    # greedy rule needs to see the next record.
    while count < len(pending) or fill():
        nxt = estimate + len(pending[count].alone) - overhead
        if nxt > limit:
            break
        estimate = nxt
        count += 1
    data = _write(source, pending, count)
    while len(data) > limit:
        # The estimate fell short: drop units worth the excess (one unit alone always fits).
        excess, dropped = len(data) - limit, 0
        while count > 1 and dropped < excess:
            count -= 1
            dropped += len(pending[count].alone) - overhead
        data = _write(source, pending, count)
    # One more unit is tried only when the written size leaves it a chance of fitting.
    while count < len(pending):
        nxt = len(data) + len(pending[count].alone) - overhead
        if nxt > limit + SLACK:
            break
        bigger = _write(source, pending, count + 1)
        if len(bigger) > limit:
            break
        count, data = count + 1, bigger
        if count == len(pending) and not fill():
            break
    return count, data


def _write(source: _Format, pending: deque[_Unit], count: int) -> bytes:
    if count == 1:
        return pending[0].alone
    return source.write(pending[i].data for i in range(count))
