"""Ranged payloads: an object's payloads as byte ranges that the workers read themselves.

For an uncompressed object split by Line (or not split), SageMaker's greedy rule can be applied
without reading the object through one process: a MultiRecord payload that starts at ``start`` ends
after the last newline in ``[start, start + limit)``, or at the object's end once what is left fits.
So each boundary is found with one small ranged read of the bytes just before ``start + limit``
(widened backwards while it holds no newline). The object task only finds the boundaries; each
worker reads its own ``(offset, length)``, which takes the payload bytes off the object task and out
of Ray's object store.

Everything else (gzip, RecordIO, TFRecord, DataProcessing, the CSV knobs, quarantine bisection,
SingleRecord over lines) needs a sequential scan or the bytes in the object task, and keeps the
streamed path (``why_streamed`` says why). Pure: the reads are the caller's ``fetch``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError
from runner.records.batching import ByteRange
from runner.records.payloads import Packing
from runner.records.splitters.line import count_newlines

# The first window read before a boundary; doubled while it holds no newline. Lines are rarely
# longer, and a window costs one small GET whatever its size up to here.
PROBE_WINDOW_BYTES = 64 * 1024
NEWLINE = b"\n"

Fetch = Callable[[int, int], bytes]  # (start, end) -> the object's bytes [start, end)


@dataclass(frozen=True)
class Oversize:
    """A record at ``offset`` that no payload can hold: ``size`` bytes (newline included)."""

    offset: int
    size: int


def why_streamed(packing: Packing, quarantine: bool) -> str | None:
    """Why a job's objects cannot be read as ranges (None: they can): the feature that needs them
    read in order through one process."""
    knobs = packing.knobs
    if packing.compression is CompressionType.GZIP:
        return "CompressionType Gzip is decompressed in order"
    if packing.split_type not in (SplitType.LINE, SplitType.NONE):
        return f"SplitType {packing.split_type} frames are found in order"
    if packing.split_type is SplitType.LINE and packing.strategy is BatchStrategy.SINGLE_RECORD:
        return "BatchStrategy SingleRecord sends one line a payload"
    if packing.processing is not None:
        return "DataProcessing filters the records as they are read"
    if knobs.split_columnar:
        return "--split-parquet-row-groups reads the file's footer first"
    if knobs.csv_header:
        return "--csv-header first-line sends the header atop every payload"
    if knobs.csv_quoted_newlines:
        return "--csv-quoted-newlines finds records in order"
    if quarantine:
        return "--on-record-error quarantine splits a failing payload into its records"
    return None


def record_count(data: bytes, lines: bool) -> int:
    """How many records a ranged payload holds (as ``LineSplitter.record_count``)."""
    if not lines:
        return 1
    if not data:
        return 0
    n = count_newlines(data)
    return n if data.endswith(NEWLINE) else n + 1


def payload_ranges(
    uri: str,
    etag: str,
    size: int,
    lines: bool,
    limit: int | None,
    limit_mb: int,
    fetch: Fetch,
    name: str,
    window: int = PROBE_WINDOW_BYTES,
) -> Iterator[ByteRange | Oversize]:
    """The object's payloads in order, as ``pack`` / ``pack_whole`` would cut them; an ``Oversize``
    ends them where ``pack`` fails (the caller names the record, once it knows how many came before)."""
    if not lines:
        if limit is not None and size > limit:
            raise RecordFormatError(
                f"{name}: the object is larger than MaxPayloadInMB={limit_mb} ({limit} bytes) and "
                "SplitType is None, so it must fit one request; set SplitType to split it into records "
                "or raise MaxPayloadInMB",
                uri=name,
                record_index=0,
                byte_offset=0,
            )
        yield ByteRange(uri, etag, 0, size, False)
        return
    start = 0
    while start < size:
        if limit is None or size - start <= limit:
            yield ByteRange(uri, etag, start, size, True)
            return
        end = last_line_end(start, start + limit, fetch, window)
        if end is None:
            yield Oversize(start, next_line_end(start + limit, size, fetch, window) - start)
            return
        yield ByteRange(uri, etag, start, end, True)
        start = end


def last_line_end(start: int, stop: int, fetch: Fetch, window: int = PROBE_WINDOW_BYTES) -> int | None:
    """Just after the last newline in ``[start, stop)``; None when there is none."""
    hi = stop
    while hi > start:
        lo = max(start, hi - window)
        i = fetch(lo, hi).rfind(NEWLINE)
        if i >= 0:
            return lo + i + 1
        hi, window = lo, window * 2
    return None


def next_line_end(start: int, size: int, fetch: Fetch, window: int = PROBE_WINDOW_BYTES) -> int:
    """Just after the first newline at or after ``start``; the object's end when there is none."""
    lo = start
    while lo < size:
        hi = min(size, lo + window)
        i = fetch(lo, hi).find(NEWLINE)
        if i >= 0:
            return lo + i + 1
        lo, window = hi, window * 2
    return size
