"""SplitType Line: a record is the bytes up to and including ``\\n``, or up to EOF.

docs/contract.md §4.2: an empty tail after the last ``\\n`` is not a record, blank interior lines are records,
``\\r`` stays in the record, and a record's bytes go into the payload verbatim.
"""

from __future__ import annotations

NEWLINE = b"\n"


class LineSplitter:
    def record_end(self, buf: bytes | bytearray, start: int, eof: bool) -> int | None:
        i = buf.find(NEWLINE, start)
        if i >= 0:
            return i + 1
        if eof and start < len(buf):
            return len(buf)
        return None

    def greedy_end(self, buf: bytes | bytearray, start: int, limit: int, eof: bool) -> int | None:
        # The greedy pack of lines ends at the last newline inside the window: one rfind, not a loop
        # over records, which keeps the scan at memory speed for small rows.
        if len(buf) - start <= limit:
            return len(buf) if eof else None
        i = buf.rfind(NEWLINE, start, start + limit)
        return start if i < 0 else i + 1

    def record_count(self, buf: bytes | bytearray, start: int, end: int) -> int:
        if end <= start:
            return 0
        n = buf.count(NEWLINE, start, end)
        return n if buf[end - 1] == NEWLINE[0] else n + 1

    def record_data(self, buf: bytes | bytearray, start: int, end: int) -> bytes:
        return bytes(buf[start:end])
