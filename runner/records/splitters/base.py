"""What every record framing implements, and MultiRecord's generic greedy rule."""

from __future__ import annotations

from typing import Protocol

from runner.errors import RecordFormatError


class Splitter(Protocol):
    """Finds records in a growing buffer that holds the object's bytes from some offset on."""

    def record_end(self, buf: bytes | bytearray, start: int, eof: bool) -> int | None:
        """End (exclusive) of the record that starts at ``start``; None when more bytes are needed.

        Raises RecordFormatError (without uri; the caller adds it) for a malformed frame.
        """
        ...

    def greedy_end(self, buf: bytes | bytearray, start: int, limit: int, eof: bool) -> int | None:
        """End of the longest run of whole records from ``start`` that fits in ``limit`` bytes.

        ``start`` means the first record alone is larger than ``limit``; None means more bytes are
        needed to decide. A fast path for MultiRecord packing; ``greedy_end_by_records`` is generic.
        """
        ...

    def record_count(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """How many records lie in ``buf[start:end]``, which holds whole records only."""
        ...

    def record_data(self, buf: bytes | bytearray, start: int, end: int) -> bytes:
        """The bytes one record contributes to a SingleRecord payload."""
        ...


def greedy_end_by_records(
    splitter: Splitter, buf: bytes | bytearray, start: int, limit: int, eof: bool
) -> int | None:
    """MultiRecord's greedy rule, one record at a time: append while size + next <= limit.

    A framing error carries the index of the bad record counted from ``start``."""
    if not eof and len(buf) - start <= limit:
        return None  # everything buffered fits; more bytes are needed to decide
    end = start
    count = 0
    while True:
        try:
            nxt = splitter.record_end(buf, end, eof)
        except RecordFormatError as e:
            e.record_index = count
            raise
        count += 1
        if nxt is None:
            # Exhausted at EOF (done), or the window is full, or more bytes are needed to decide.
            return end if eof or len(buf) - start > limit else None
        if nxt - start > limit:
            return end
        end = nxt
