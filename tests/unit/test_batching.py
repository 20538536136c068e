"""Line splitting and SageMaker's mini-batch packing (docs/contract.md §4.2, 4.3), on plain bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.contract.spec import BatchStrategy, SplitType
from runner.errors import RecordFormatError
from runner.records.batching import MIB, pack, pack_whole
from runner.records.ranges import record_count
from runner.records.splitters import greedy_end_by_records, splitter_for

LINE = splitter_for(SplitType.LINE)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def payloads(data: bytes, strategy: BatchStrategy, limit: int | None, chunk: int = 7) -> list[bytes]:
    return [p.data for p in pack(chunked(data, chunk), LINE, strategy, limit, "b/k", 1)]


def reference_lines(data: bytes) -> list[bytes]:
    """Records as docs/contract.md §4.2 defines them, written independently of the splitter."""
    out = data.split(b"\n")
    recs = [line + b"\n" for line in out[:-1]]
    if out[-1]:
        recs.append(out[-1])
    return recs


def reference_greedy(records: list[bytes], limit: int) -> list[bytes]:
    batches: list[bytes] = []
    cur = b""
    for r in records:
        if cur and len(cur) + len(r) > limit:
            batches.append(cur)
            cur = b""
        cur += r
    if cur:
        batches.append(cur)
    return batches


@pytest.mark.parametrize(
    ("data", "records"),
    [
        (b"1,2,3\n4,5,6\n7,8,9\n", [b"1,2,3\n", b"4,5,6\n", b"7,8,9\n"]),
        (b"a\nb", [b"a\n", b"b"]),  # last line without newline is a record
        (b"a\r\nb\r\n", [b"a\r\n", b"b\r\n"]),  # \r stays in the record
        (b"a\n\nb\n", [b"a\n", b"\n", b"b\n"]),  # blank interior line is a record
        (b"", []),  # empty object: no record, no request
        (b"\n", [b"\n"]),
    ],
)
def test_single_record_payloads_are_the_lines(data: bytes, records: list[bytes]) -> None:
    assert payloads(data, BatchStrategy.SINGLE_RECORD, 6 * MIB) == records


def test_contract_example_1_multirecord_is_one_payload() -> None:
    data = b"1,2,3\n4,5,6\n7,8,9\n"
    assert payloads(data, BatchStrategy.MULTI_RECORD, 6 * MIB) == [data]


def test_contract_example_7_packing_and_oversize() -> None:
    line = b"x" * 399_999 + b"\n"
    out = list(pack(chunked(line * 5, 65536), LINE, BatchStrategy.MULTI_RECORD, MIB, "b/in/a.csv", 1))
    assert [p.record_count for p in out] == [2, 2, 1]
    assert [p.first_record for p in out] == [0, 2, 4]
    assert [p.byte_offset for p in out] == [0, 800_000, 1_600_000]

    big = b"ok\n" + b"y" * 1_099_999 + b"\n"
    with pytest.raises(RecordFormatError) as err:
        list(pack(chunked(big, 65536), LINE, BatchStrategy.MULTI_RECORD, MIB, "b/in/big.csv", 1))
    msg = str(err.value)
    assert "b/in/big.csv: record 1 at byte 3 is 1100000 bytes, larger than MaxPayloadInMB=1" in msg
    assert err.value.record_index == 1 and err.value.byte_offset == 3


def test_record_exactly_at_the_limit_fits() -> None:
    data = b"a" * 9 + b"\n" + b"b" * 9 + b"\n"
    assert payloads(data, BatchStrategy.MULTI_RECORD, 10) == [b"a" * 9 + b"\n", b"b" * 9 + b"\n"]
    assert payloads(data, BatchStrategy.MULTI_RECORD, 20) == [data]
    with pytest.raises(RecordFormatError, match="record 0 at byte 0 is 10 bytes"):
        payloads(data, BatchStrategy.MULTI_RECORD, 9)
    with pytest.raises(RecordFormatError, match="record 4 at byte 8 is 10 bytes"):
        payloads(b"a\n" * 4 + data[10:], BatchStrategy.SINGLE_RECORD, 9)


@given(st.lists(st.sampled_from([b"", b"x", b"1.5,2.5", b"\r", b"q" * 300]), min_size=1, max_size=60))
@settings(max_examples=30, deadline=None)
def test_large_payloads_count_their_records(kinds: list[bytes]) -> None:
    """Payloads of hundreds of KiB (counted by the vectorised path) hold exactly their lines, blank
    lines and a final line without a newline included."""
    records = [k * 997 + b"\n" for k in kinds]
    records[-1] = records[-1].rstrip(b"\n") or b"tail"
    data = b"".join(records)
    got = list(
        pack(chunked(data, 70_001), splitter_for(SplitType.LINE), BatchStrategy.MULTI_RECORD, 1 * MIB, "x", 1)
    )
    assert b"".join(p.data for p in got) == data
    assert [p.record_count for p in got] == [p.data.count(b"\n") + (not p.data.endswith(b"\n")) for p in got]
    assert [record_count(p.data, True) for p in got] == [p.record_count for p in got]  # a ranged worker's
    assert sum(p.record_count for p in got) == len(records)


def test_no_cap_sends_the_whole_object() -> None:
    data = b"a\n" * 1000
    assert payloads(data, BatchStrategy.MULTI_RECORD, None) == [data]
    assert len(payloads(data, BatchStrategy.SINGLE_RECORD, None)) == 1000


def test_split_type_none_is_one_payload_and_empty_is_one_empty_request() -> None:
    assert [p.data for p in pack_whole([b"ab", b"cd"], 10, "b/k", 1)] == [b"abcd"]
    assert [p.data for p in pack_whole([], 10, "b/k", 1)] == [b""]
    with pytest.raises(RecordFormatError, match="larger than MaxPayloadInMB=1"):
        list(pack_whole([b"abc", b"def"], 5, "b/k", 1))


lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(lines, st.booleans(), st.integers(min_value=1, max_value=40), st.integers(min_value=1, max_value=50))
def test_multirecord_matches_the_greedy_reference(
    parts: list[bytes], trailing_newline: bool, chunk: int, limit: int
) -> None:
    data = b"\n".join(parts) + (b"\n" if trailing_newline and parts else b"")
    records = reference_lines(data)
    if any(len(r) > limit for r in records):
        with pytest.raises(RecordFormatError):
            payloads(data, BatchStrategy.MULTI_RECORD, limit, chunk)
        return
    got = list(pack(chunked(data, chunk), LINE, BatchStrategy.MULTI_RECORD, limit, "b/k", 1))
    assert [p.data for p in got] == reference_greedy(records, limit)
    assert b"".join(p.data for p in got) == data  # split then concatenate gives the input back
    assert all(len(p.data) <= limit for p in got)
    assert sum(p.record_count for p in got) == len(records)
    assert [p.index for p in got] == list(range(len(got)))
    # The generic record-by-record rule agrees with the line splitter's rfind fast path.
    assert greedy_end_by_records(LINE, data, 0, limit, True) == (len(got[0].data) if got else 0)


@settings(max_examples=200, deadline=None)
@given(lines, st.integers(min_value=1, max_value=40))
def test_single_record_gives_every_record_once_in_order(parts: list[bytes], chunk: int) -> None:
    data = b"\n".join(parts)
    got = list(pack(chunked(data, chunk), LINE, BatchStrategy.SINGLE_RECORD, 1000, "b/k", 1))
    assert [p.data for p in got] == reference_lines(data)
    assert [p.first_record for p in got] == list(range(len(got)))
