"""Ranged payloads (runner/records/ranges.py): the boundaries found with small reads before each
``start + limit`` are exactly those of the sequential scan (``pack``), on random records and limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError
from runner.records import ranges
from runner.records.batching import pack, pack_whole
from runner.records.knobs import InputKnobs
from runner.records.payloads import Packing
from runner.records.ranges import ByteRange, Oversize, payload_ranges, record_count, why_streamed
from runner.records.splitters import splitter_for

LINE = splitter_for(SplitType.LINE)


class Reads:
    """An object's bytes behind ``fetch``, counting the bytes each read asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        assert 0 <= start < end <= len(self.data), (start, end)
        self.calls.append((start, end))
        return self.data[start:end]


def ranged(
    data: bytes, limit: int | None, lines: bool = True, window: int = ranges.PROBE_WINDOW_BYTES
) -> list[ByteRange | Oversize]:
    return list(payload_ranges("s3://b/k", "e", len(data), lines, limit, 1, Reads(data), "b/k", window))


def scanned(data: bytes, limit: int | None) -> tuple[list[tuple[int, int, int]], str | None]:
    """(start, end, records) of each payload ``pack`` makes, and its error if it fails."""
    out: list[tuple[int, int, int]] = []
    chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
    try:
        for p in pack(chunks, LINE, BatchStrategy.MULTI_RECORD, limit, "b/k", 1):
            out.append((p.byte_offset, p.byte_offset + len(p.data), p.record_count))
    except RecordFormatError as e:
        return out, str(e)
    return out, None


# Records of lengths around the limit, blank lines and \r\n included, with or without a final newline.
record = st.one_of(
    st.binary(min_size=0, max_size=12).map(lambda b: b.replace(b"\n", b"x") + b"\n"),
    st.just(b"\n"),
    st.just(b"\r\n"),
    st.binary(min_size=0, max_size=30).map(lambda b: b.replace(b"\n", b"y") + b"\r\n"),
)


@settings(max_examples=400, deadline=None)
@given(
    records=st.lists(record, max_size=40),
    tail=st.binary(max_size=8).map(lambda b: b.replace(b"\n", b"z")),
    limit=st.integers(min_value=1, max_value=48),
    window=st.sampled_from([1, 2, 3, 16, 64 * 1024]),
)
def test_boundaries_match_the_sequential_scan(
    records: list[bytes], tail: bytes, limit: int, window: int
) -> None:
    data = b"".join(records) + tail
    expected, error = scanned(data, limit)
    got = ranged(data, limit, window=window)
    found = [r for r in got if isinstance(r, ByteRange)]
    assert [(r.start, r.end, record_count(data[r.start : r.end], True)) for r in found] == expected
    if error is None:
        assert not any(isinstance(r, Oversize) for r in got)
        assert sum(r.length for r in found) == len(data)
    else:
        # The streamed path's message names the record's size, found here by reading on.
        oversize = got[-1]
        assert isinstance(oversize, Oversize)
        assert oversize.offset == (found[-1].end if found else 0)
        assert f" at byte {oversize.offset} is {oversize.size} bytes, larger than" in error


def test_records_exactly_at_the_limit_fill_a_payload() -> None:
    data = b"abc\n" * 6  # 4-byte records, limit 8: two records a payload, each payload full
    found = [(r.start, r.end) for r in ranged(data, 8) if isinstance(r, ByteRange)]
    assert found == [(0, 8), (8, 16), (16, 24)]


def test_no_cap_and_no_split_are_one_range() -> None:
    data = b"1\n2\n3"
    assert [(r.start, r.end) for r in ranged(data, None) if isinstance(r, ByteRange)] == [(0, 5)]
    whole = ranged(data, 10, lines=False)
    assert whole == [ByteRange("s3://b/k", "e", 0, 5, False)]
    assert record_count(data, False) == 1 == next(iter(pack_whole([data], 10, "b/k", 1))).record_count
    assert ranged(b"", 10) == []  # an empty object split by Line has no payloads, as pack's
    with pytest.raises(RecordFormatError, match=r"larger than MaxPayloadInMB=1 .* SplitType is None"):
        ranged(b"x" * 11, 10, lines=False)


def test_a_boundary_costs_one_small_read() -> None:
    data = b"0123456789abcde\n" * 10_000  # 160,000 bytes
    reads = Reads(data)
    found = list(payload_ranges("s3://b/k", "e", len(data), True, 50_000, 1, reads, "b/k"))
    assert len(found) == 4
    assert len(reads.calls) == 3  # the last payload needs none
    assert all(end - start <= ranges.PROBE_WINDOW_BYTES for start, end in reads.calls)


def packing(**changes: object) -> Packing:
    base: dict[str, object] = {
        "split_type": SplitType.LINE,
        "compression": CompressionType.NONE,
        "strategy": BatchStrategy.MULTI_RECORD,
        "limit_bytes": 6 * 1024 * 1024,
        "limit_mb": 6,
    }
    return Packing(**{**base, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "quarantine", "why"),
    [
        ({}, False, None),
        ({"split_type": SplitType.NONE, "strategy": BatchStrategy.SINGLE_RECORD}, False, None),
        ({"compression": CompressionType.GZIP}, False, "Gzip"),
        ({"split_type": SplitType.RECORDIO}, False, "SplitType RecordIO"),
        ({"split_type": SplitType.TFRECORD}, False, "SplitType TFRecord"),
        ({"strategy": BatchStrategy.SINGLE_RECORD}, False, "SingleRecord"),
        ({"knobs": InputKnobs(csv_quoted_newlines=True)}, False, "--csv-quoted-newlines"),
        ({}, True, "quarantine"),
    ],
)
def test_which_jobs_read_ranges(changes: dict[str, object], quarantine: bool, why: str | None) -> None:
    reason = why_streamed(packing(**changes), quarantine)
    assert (reason is None) if why is None else (reason is not None and why in reason)
