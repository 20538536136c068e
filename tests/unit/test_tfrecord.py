"""SplitType TFRecord (docs/contract.md §4.2, example 6): frames, both CRCs, packing, corrupt input.

The reference writer below computes CRC-32C from the published definition (Castagnoli,
reflected polynomial 0x82F63B78), independently of the CRC32C package the splitter uses; the
standard check value and docs/contract.md §8 example 6 pin it.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError
from runner.records.batching import MIB, pack
from runner.records.splitters import splitter_for

TFR = splitter_for(SplitType.TFRECORD)
SINGLE, MULTI = BatchStrategy.SINGLE_RECORD, BatchStrategy.MULTI_RECORD

# docs/contract.md §8, example 6: records b"abc", b"hello".
EXAMPLE_6 = bytes.fromhex(
    "0300000000000000 b099490e 616263 6e57f1210500000000000000 eab2043e 68656c6c6f bb1f1c19"
)


def _table_entry(byte: int) -> int:
    crc = byte
    for _ in range(8):
        crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc


CRC_TABLE = [_table_entry(b) for b in range(256)]


def crc32c_reference(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = (crc >> 8) ^ CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> bytes:
    crc = crc32c_reference(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def write_record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + masked(length) + data + masked(data)


def write(records: list[bytes]) -> bytes:
    return b"".join(write_record(r) for r in records)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def payloads(data: bytes, strategy: BatchStrategy, limit: int | None, chunk: int = 7) -> list[bytes]:
    return [p.data for p in pack(chunked(data, chunk), TFR, strategy, limit, "b/in/x.tfr", 1)]


def reference_greedy(frames: list[bytes], limit: int) -> list[bytes]:
    batches: list[bytes] = []
    cur = b""
    for f in frames:
        if cur and len(cur) + len(f) > limit:
            batches.append(cur)
            cur = b""
        cur += f
    return [*batches, cur] if cur else batches


# --- the published format ------------------------------------------------------------------------


def test_reference_crc_matches_the_published_check_value() -> None:
    assert crc32c_reference(b"123456789") == 0xE3069283  # CRC-32C check value (RFC 3720 family)
    assert crc32c_reference(b"") == 0


def test_contract_example_6_byte_exact() -> None:
    assert write([b"abc", b"hello"]) == EXAMPLE_6
    assert len(EXAMPLE_6) == 40
    assert payloads(EXAMPLE_6, SINGLE, 6 * MIB) == [b"abc", b"hello"]
    assert payloads(EXAMPLE_6, MULTI, 6 * MIB) == [EXAMPLE_6]
    assert payloads(EXAMPLE_6, MULTI, None) == [EXAMPLE_6]
    assert payloads(EXAMPLE_6, MULTI, 21) == [EXAMPLE_6[:19], EXAMPLE_6[19:]]  # framed bytes count
    assert TFR.record_count(EXAMPLE_6, 0, 40) == 2
    assert TFR.record_end(EXAMPLE_6, 0, False) == 19
    assert TFR.record_end(EXAMPLE_6, 19, False) == 40
    assert TFR.record_end(EXAMPLE_6, 19, True) == 40
    assert TFR.record_end(EXAMPLE_6[:39], 19, False) is None  # more bytes needed
    assert TFR.record_end(EXAMPLE_6, 40, True) is None  # no record at EOF


def test_empty_record() -> None:
    data = write([b"", b"x", b""])
    assert payloads(data, SINGLE, 100, chunk=3) == [b"", b"x", b""]
    assert payloads(data, MULTI, 100) == [data]
    assert TFR.record_count(data, 0, len(data)) == 3


# --- properties ---------------------------------------------------------------------------------------

records = st.lists(st.binary(max_size=30), max_size=25)


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=60), st.integers(min_value=1, max_value=120))
def test_multirecord_is_greedy_over_frames_and_gives_the_input_back(
    recs: list[bytes], chunk: int, limit: int
) -> None:
    frames = [write_record(r) for r in recs]
    data = b"".join(frames)
    assert TFR.record_count(data, 0, len(data)) == len(recs)
    if any(len(f) > limit for f in frames):
        with pytest.raises(RecordFormatError, match="larger than MaxPayloadInMB"):
            payloads(data, MULTI, limit, chunk)
        return
    got = list(pack(chunked(data, chunk), TFR, MULTI, limit, "b/k", 1))
    assert [p.data for p in got] == reference_greedy(frames, limit)
    assert b"".join(p.data for p in got) == data
    assert all(len(p.data) <= limit for p in got)
    assert sum(p.record_count for p in got) == len(recs)
    assert [p.record_count for p in got] == [TFR.record_count(p.data, 0, len(p.data)) for p in got]
    assert [p.first_record for p in got] == [sum(q.record_count for q in got[:i]) for i in range(len(got))]
    assert [p.byte_offset for p in got] == [sum(len(q.data) for q in got[:i]) for i in range(len(got))]
    assert payloads(data, MULTI, None, chunk) == ([data] if data else [])


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=60))
def test_single_record_gives_each_record_data_once_in_order(recs: list[bytes], chunk: int) -> None:
    data = write(recs)
    got = list(pack(chunked(data, chunk), TFR, SINGLE, 1000, "b/k", 1))
    assert [p.data for p in got] == recs
    assert [p.first_record for p in got] == list(range(len(recs)))
    assert all(p.record_count == 1 for p in got)
    assert [p.data for p in pack(chunked(data, chunk), TFR, SINGLE, None, "b/k", 1)] == recs


# --- corrupt input: which CRC, record index and byte offset, whatever the strategy --------------------

A, B = write_record(b"abc"), write_record(b"hello")  # 19 and 21 bytes


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


CORRUPT: list[tuple[str, bytes, int, int, str]] = [
    # (id, object, record index, byte offset, message)
    (
        "bad-length-crc",
        A + flip(B, 9),
        1,
        19,
        "TFRecord length CRC mismatch: stored 0x3e04b3ea, computed 0x3e04b2ea over the length field "
        "(which reads 5); the object is corrupt or not TFRecord",
    ),
    ("bad-length", A + flip(B, 0), 1, 19, "TFRecord length CRC mismatch"),
    ("huge-length", A + b"\xff" * 8 + B[8:], 1, 19, "length field (which reads 18446744073709551615)"),
    ("text-not-tfrecord", b"1,2,3\n4,5,6\n7,8,9\n", 0, 0, "TFRecord length CRC mismatch"),
    (
        "bad-data-crc",
        A + flip(B, 20),
        1,
        19,
        "TFRecord data CRC mismatch: stored 0x181c1fbb, computed 0x191c1fbb over its 5 data bytes",
    ),
    ("bad-data", flip(A, 12) + B, 0, 0, "TFRecord data CRC mismatch: stored 0x21f1576e"),
    (
        "truncated-header",
        A + B[:7],
        1,
        19,
        "truncated TFRecord header: 7 bytes at the end of the object, a header is 12",
    ),
    (
        "truncated-data",
        A + B[:14],
        1,
        19,
        "truncated TFRecord: its header says 5 data bytes (21 bytes framed) but the object ends 14 bytes "
        "after the record's start",
    ),
    ("truncated-footer", A + B[:-1], 1, 19, "but the object ends 20 bytes after the record's start"),
]


@pytest.mark.parametrize(
    ("data", "index", "offset", "message"), [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT]
)
@pytest.mark.parametrize(
    ("strategy", "limit"), [(SINGLE, 6 * MIB), (MULTI, 6 * MIB), (MULTI, 45), (MULTI, None), (SINGLE, None)]
)
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_corrupt_object_fails_with_record_and_offset(
    data: bytes,
    index: int,
    offset: int,
    message: str,
    strategy: BatchStrategy,
    limit: int | None,
    chunk: int,
) -> None:
    with pytest.raises(RecordFormatError) as err:
        list(pack(chunked(data, chunk), TFR, strategy, limit, "b/in/x.tfr", 1))
    text = str(err.value)
    assert text.startswith(f"b/in/x.tfr: record {index} at byte {offset}: ") and message in text, text
    assert (err.value.uri, err.value.record_index, err.value.byte_offset) == ("b/in/x.tfr", index, offset)


def test_a_corrupt_length_is_caught_before_waiting_for_its_bytes() -> None:
    """A garbage length (up to 2**64) fails at once; the reader does not read on to find its end."""
    read: list[int] = []

    def endless() -> Iterator[bytes]:
        yield A + b"\xff" * 8 + B[8:]
        while True:
            read.append(1)
            yield b"\0" * 65536

    for strategy, limit in ((SINGLE, None), (SINGLE, 6 * MIB), (MULTI, 64)):
        read.clear()
        with pytest.raises(RecordFormatError, match="record 1 at byte 19: TFRecord length CRC mismatch"):
            list(pack(endless(), TFR, strategy, limit, "b/k", 1))
        assert len(read) <= 1


def test_corrupt_record_deep_in_a_large_object_has_its_absolute_offset() -> None:
    # 700 kB records through 64 KiB chunks and a 1 MiB cap: the buffer drops consumed bytes on the way.
    data = bytearray(write_record(b"r" * 700_000) * 6)
    size = len(data) // 6
    data[4 * size + 12] ^= 0xFF
    for strategy, limit in ((MULTI, MIB), (SINGLE, MIB), (MULTI, None)):
        with pytest.raises(RecordFormatError) as err:
            list(pack(chunked(bytes(data), 65536), TFR, strategy, limit, "b/in/big.tfr", 1))
        assert str(err.value).startswith(
            f"b/in/big.tfr: record 4 at byte {4 * size}: TFRecord data CRC mismatch"
        )
        assert (err.value.record_index, err.value.byte_offset) == (4, 4 * size)


# --- gzip, through the feeder's own pipeline ----------------------------------------------------------


def feed(data: bytes, strategy: BatchStrategy, limit_mb: int, chunk: int = 10) -> list[bytes]:
    from runner.records.payloads import Packing, payloads_of
    from runner.records.plan import InputObject

    obj = InputObject("s3://b/in/x.tfr.gz", len(data), "", "x.tfr.gz", "s3://b/out/x.tfr.gz.out")
    feed_settings = Packing(
        split_type=SplitType.TFRECORD,
        compression=CompressionType.GZIP,
        strategy=strategy,
        limit_bytes=limit_mb * MIB or None,
        limit_mb=limit_mb,
    )
    return [p.data for p in payloads_of(obj, iter(chunked(data, chunk)), feed_settings)]


def test_gzip_tfrecord_goes_through_the_feeder() -> None:
    recs = [b"abc", b"hello", b"", b"x" * 100]
    data = write(recs)
    packed = gzip.compress(data[:25]) + gzip.compress(data[25:])  # two gzip members
    assert feed(packed, SINGLE, 6) == recs
    assert feed(packed, MULTI, 6) == [data]
    assert feed(packed, MULTI, 0) == [data]
    with pytest.raises(RecordFormatError) as err:
        feed(gzip.compress(A + flip(B, 20)), SINGLE, 6)
    assert str(err.value).startswith("b/in/x.tfr.gz: record 1 at byte 19: TFRecord data CRC mismatch")
    assert (err.value.record_index, err.value.byte_offset) == (1, 19)


# --- fuzz: nothing but RecordFormatError ------------------------------------------------------------


def check_all(data: bytes, chunk: int, limit: int) -> None:
    """Every strategy either splits ``data`` (MultiRecord giving it back whole) or raises a located
    RecordFormatError; nothing else."""
    for strategy, cap in ((SINGLE, limit), (MULTI, limit), (MULTI, None)):
        try:
            got = list(pack(chunked(data, chunk), TFR, strategy, cap, "b/k", 1))
        except RecordFormatError as e:
            assert e.uri == "b/k" and 0 <= e.byte_offset <= len(data) and e.record_index >= 0
        else:
            if strategy is MULTI:
                assert b"".join(p.data for p in got) == data


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200), st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=64)
)
def test_random_bytes_raise_only_record_format_errors(data: bytes, chunk: int, limit: int) -> None:
    check_all(data, chunk, limit)


@settings(max_examples=300, deadline=None)
@given(
    records,
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=1, max_value=30),
)
def test_damaged_tfrecord_raises_only_record_format_errors(
    recs: list[bytes], where: int, value: int, cut: int, chunk: int
) -> None:
    data = bytearray(write(recs))
    if data:
        data[where % len(data)] = value
    check_all(bytes(data[: len(data) - cut]), chunk, 64)


def test_single_record_cap_counts_the_data_sent_not_the_frame() -> None:
    """SingleRecord sends data only, so a record whose data fits the cap passes although its frame
    (16 bytes longer) does not; one byte more of data fails it."""
    fits = write([b"a" * 100])
    assert payloads(fits, BatchStrategy.SINGLE_RECORD, 100) == [b"a" * 100]
    with pytest.raises(RecordFormatError, match="record 0 at byte 0 is 101 bytes"):
        payloads(write([b"a" * 101]), BatchStrategy.SINGLE_RECORD, 100)
