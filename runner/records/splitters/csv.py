"""Opt-in CSV extensions of SplitType Line (docs/contract.md §9): quoted newlines and a header line.

``CsvSplitter`` (``csv_quoted_newlines``): a record ends at a ``\\n`` outside an RFC 4180 quoted field,
so a newline inside quotes stays in its record. Otherwise records are exactly Line's (docs/contract.md §4.2):
the bytes up to and including the ending ``\\n`` (``\\r`` kept), or to EOF; an empty tail is no
record. Quote rules are those of Python's ``csv`` module with its defaults: a ``"`` opens a quoted
field only at the start of a field (after ``,``, at a record's start); inside one, ``""`` is a quote
and a lone ``"`` closes it; any other ``"`` is data. An object that ends inside a quoted field fails
(``RecordFormatError``) rather than sending the rest of the object as one record.

Why a scanner and not pyarrow: pyarrow's CSV reader (``newlines_in_values=True``) parses quoted
newlines correctly, but it only returns decoded columns; it never reports where a row starts or
ends in the input, so it cannot give the byte ranges that payloads must be cut from (records go to
the model verbatim, and rebuilding them from parsed cells would change quoting, ``\\r\\n`` and
spacing). The scan below jumps between quotes with ``bytes.find``, so unquoted stretches go at memory
speed.
"""

from __future__ import annotations

import numpy as np

from runner.errors import RecordFormatError

NEWLINE = b"\n"
QUOTE = b'"'
_NL = NEWLINE[0]
_QUOTE = QUOTE[0]
_COMMA = ord(",")
_FIELD_START = (_COMMA, _NL)
# Below this many bytes the plain scan is as fast as setting up the vectorised one.
_VECTOR_MIN_BYTES = 4096


def _scan(buf: bytes | bytearray, start: int, stop: int, first: bool) -> tuple[int, int, int]:
    """Scan ``buf[start:stop]``, which begins at a record start, outside quotes.

    Returns ``(end, count, open_quote)``: ``end`` is the position after the last ``\\n`` outside quotes
    (the first one when ``first``; ``start`` if none), ``count`` how many such newlines were passed,
    and ``open_quote`` the position of the quote of a field still open at ``stop`` (-1 if none).
    """
    pos = start
    end = start
    count = 0
    while pos < stop:
        q = buf.find(QUOTE, pos, stop)
        seg = stop if q < 0 else q
        # Every newline of an unquoted stretch ends a record.
        if first:
            nl = buf.find(NEWLINE, pos, seg)
            if nl >= 0:
                return nl + 1, 1, -1
        else:
            n = buf.count(NEWLINE, pos, seg)
            if n:
                count += n
                end = buf.rfind(NEWLINE, pos, seg) + 1
        if q < 0:
            break
        if q != start and buf[q - 1] not in _FIELD_START:
            pos = q + 1  # a quote inside an unquoted field is data
            continue
        # A quoted field: find its closing quote, skipping doubled ones.
        j = q + 1
        while True:
            c = buf.find(QUOTE, j, stop)
            if c < 0:
                return end, count, q
            if c + 1 < stop and buf[c + 1] == _QUOTE:
                j = c + 2
                continue
            break
        pos = c + 1
    return end, count, -1


def _scan_all(buf: bytes | bytearray, start: int, stop: int) -> tuple[int, int, int]:
    """``_scan(buf, start, stop, first=False)``, vectorised: with RFC 4180 quoting, a byte is inside a
    quoted field exactly when an odd number of quotes precede it in the record run, so quote parity
    finds the record ends. That holds unless a quote that would open a field is not at a field's start
    (after ``,``, a newline, the run's start, or, for a doubled quote, another quote): such a quote is
    data to the csv module, so those runs go to the exact scanner."""
    if stop - start < _VECTOR_MIN_BYTES or buf.find(QUOTE, start, stop) < 0:
        return _scan(buf, start, stop, first=False)
    # A copy, not a view: a numpy view would pin the caller's growing bytearray.
    with memoryview(buf) as view:
        a = np.array(view[start:stop], dtype=np.uint8)
    quotes = np.flatnonzero(a == _QUOTE)
    opening = quotes[0::2]
    before = a[np.maximum(opening - 1, 0)]
    before[opening == 0] = _NL  # the run's start is a field's start
    if not np.all((before == _COMMA) | (before == _NL) | (before == _QUOTE)):
        return _scan(buf, start, stop, first=False)
    newlines = np.flatnonzero(a == _NL)
    ends = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    end = start + int(ends[-1]) + 1 if ends.size else start
    open_quote = -1
    if quotes.size % 2:
        # The field left open began at its last opening quote that is not the second of a "" pair.
        open_quote = start + int(opening[before != _QUOTE][-1])
    return end, int(ends.size), open_quote


def _unterminated(record_start: int, quote: int) -> RecordFormatError:
    return RecordFormatError(
        f"a quoted CSV field opened {quote - record_start} bytes into the record is never closed before "
        "the end of the object (csv_quoted_newlines reads RFC 4180 quotes; a stray '\"' at the start of "
        "a field opens one)",
        record_index=0,
        byte_offset=record_start,
    )


class CsvSplitter:
    """SplitType Line for ``text/csv`` with RFC 4180 quotes honoured (``csv_quoted_newlines``).

    ``greedy_end`` remembers the records it found, so the ``record_count`` the packer asks next for
    the same run of the same buffer does not scan it again.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int, int, int, int] | None = None  # id(buf), len(buf), start, end, count

    def record_end(self, buf: bytes | bytearray, start: int, eof: bool) -> int | None:
        n = len(buf)
        end, count, open_quote = _scan(buf, start, n, first=True)
        if count:
            return end
        if not eof or start >= n:
            return None
        if open_quote >= 0:
            raise _unterminated(start, open_quote)
        return n

    def greedy_end(self, buf: bytes | bytearray, start: int, limit: int, eof: bool) -> int | None:
        n = len(buf)
        if n - start <= limit:
            # Everything buffered fits: at EOF it is the payload (record_count checks its quotes).
            return n if eof else None
        # The last record end inside the window; a record cut by the window's edge starts the next one.
        end, count, _ = _scan_all(buf, start, start + limit)
        self._last = (id(buf), n, start, end, count)
        return end

    def record_count(self, buf: bytes | bytearray, start: int, end: int) -> int:
        """Counts the records of ``buf[start:end]``; fails on a quoted field left open at its end
        (which only the object's last record can have)."""
        if end <= start:
            return 0
        known = self._last
        if known is not None and known[:4] == (id(buf), len(buf), start, end):
            return known[4]
        last, count, open_quote = _scan_all(buf, start, end)
        if open_quote >= 0:
            err = _unterminated(last, open_quote)
            err.record_index = count
            raise err
        return count if last == end else count + 1

    def record_data(self, buf: bytes | bytearray, start: int, end: int) -> bytes:
        return bytes(buf[start:end])
