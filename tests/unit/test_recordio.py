"""SplitType RecordIO (docs/contract.md §4.2, example 5): frames, multi-part records, packing, corrupt input.

The reference writer below follows dmlc-core's ``RecordIOWriter::WriteRecord`` (the published
format), written independently of ``runner.records.splitters.recordio``; docs/contract.md §8
example 5 pins it.
"""

from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError
from runner.records.batching import MIB, pack
from runner.records.splitters import splitter_for

RIO = splitter_for(SplitType.RECORDIO)
MAGIC = bytes.fromhex("0a23d7ce")
SINGLE, MULTI = BatchStrategy.SINGLE_RECORD, BatchStrategy.MULTI_RECORD

# docs/contract.md §8, example 5: records b"abc", b"hello".
EXAMPLE_5 = bytes.fromhex("0a23d7ce 03000000 616263000a23d7ce 05000000 68656c6c 6f000000")


def frame(cflag: int, data: bytes, length: int | None = None, magic: bytes = MAGIC) -> bytes:
    """One raw frame: magic, lrecord (cflag << 29 | length), data, zero pad to 4 bytes."""
    n = len(data) if length is None else length
    return magic + struct.pack("<I", cflag << 29 | n) + data + b"\0" * (-len(data) % 4)


def write_record(data: bytes) -> bytes:
    """dmlc's writer: the record is cut wherever its data holds the magic at a 4-byte-aligned offset
    (those 4 bytes are dropped; the reader puts them back), and only the last frame is padded."""
    out = b""
    done = 0
    for i in range(0, len(data) - len(data) % 4, 4):
        if data[i : i + 4] == MAGIC:
            out += MAGIC + struct.pack("<I", (1 if done == 0 else 2) << 29 | (i - done)) + data[done:i]
            done = i + 4
    tail = data[done:]
    out += MAGIC + struct.pack("<I", (3 if done else 0) << 29 | len(tail)) + tail
    return out + b"\0" * (-len(data) % 4)


def write(records: list[bytes]) -> bytes:
    return b"".join(write_record(r) for r in records)


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def payloads(data: bytes, strategy: BatchStrategy, limit: int | None, chunk: int = 7) -> list[bytes]:
    return [p.data for p in pack(chunked(data, chunk), RIO, strategy, limit, "b/in/x.rec", 1)]


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


def test_contract_example_5_byte_exact() -> None:
    assert write([b"abc", b"hello"]) == EXAMPLE_5
    assert len(EXAMPLE_5) == 28
    assert payloads(EXAMPLE_5, SINGLE, 6 * MIB) == [b"abc", b"hello"]
    assert payloads(EXAMPLE_5, MULTI, 6 * MIB) == [EXAMPLE_5]
    assert payloads(EXAMPLE_5, MULTI, None) == [EXAMPLE_5]
    assert payloads(EXAMPLE_5, MULTI, 16) == [EXAMPLE_5[:12], EXAMPLE_5[12:]]  # framed bytes count
    assert RIO.record_count(EXAMPLE_5, 0, 28) == 2
    assert RIO.record_end(EXAMPLE_5, 0, False) == 12
    assert RIO.record_end(EXAMPLE_5, 12, False) == 28
    assert RIO.record_end(EXAMPLE_5, 12 + 9, False) is None  # more bytes needed
    assert RIO.record_end(EXAMPLE_5, 28, True) is None  # no record at EOF


def test_record_holding_the_magic_is_written_in_parts_and_joined() -> None:
    data = b"abcd" + MAGIC + b"efgh" + MAGIC + MAGIC + b"xy"
    framed = write_record(data)
    # Parts: cflag 1 "abcd", cflag 2 "efgh", cflag 2 "", cflag 3 "xy" + 2 bytes of padding.
    assert framed == frame(1, b"abcd") + frame(2, b"efgh") + frame(2, b"") + frame(3, b"xy")
    obj = write([b"a", data, b""])
    assert payloads(obj, SINGLE, 6 * MIB, chunk=3) == [b"a", data, b""]
    assert payloads(obj, MULTI, 6 * MIB) == [obj]
    assert RIO.record_count(obj, 0, len(obj)) == 3
    assert RIO.record_end(obj, 12, True) == 12 + len(framed)
    # A record that starts or ends with the magic.
    for data in (MAGIC, MAGIC + b"z", b"zzzz" + MAGIC, MAGIC * 3):
        assert payloads(write([data]), SINGLE, 100, chunk=5) == [data]
    # Unaligned magic bytes are data, not a cut.
    unaligned = b"z" + MAGIC + b"zzz"
    assert write_record(unaligned) == frame(0, unaligned)


def test_multirecord_keeps_parts_and_padding_verbatim_and_counts_them() -> None:
    data = b"abcd" + MAGIC + b"e"
    framed = write_record(data)  # 8 + 4 + 8 + 1 + 3 = 24 bytes, one record
    assert len(framed) == 24
    assert payloads(write([data, data]), MULTI, 24) == [framed, framed]
    assert payloads(write([data, data]), MULTI, 48) == [framed * 2]
    with pytest.raises(RecordFormatError, match="record 0 at byte 0 is 24 bytes, larger than"):
        payloads(framed, MULTI, 23)


# --- properties ---------------------------------------------------------------------------------------

# Records made of 4-byte words, some of them the magic (so the writer cuts them), plus a short tail.
words = st.lists(
    st.sampled_from([MAGIC, b"abcd", b"\0\0\0\0"]) | st.binary(min_size=4, max_size=4), max_size=6
)
record = st.one_of(
    st.binary(max_size=24),
    st.tuples(words, st.binary(max_size=3)).map(lambda t: b"".join(t[0]) + t[1]),
)
records = st.lists(record, max_size=25)


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=60), st.integers(min_value=1, max_value=120))
def test_multirecord_is_greedy_over_frames_and_gives_the_input_back(
    recs: list[bytes], chunk: int, limit: int
) -> None:
    frames = [write_record(r) for r in recs]
    data = b"".join(frames)
    assert RIO.record_count(data, 0, len(data)) == len(recs)
    if any(len(f) > limit for f in frames):
        with pytest.raises(RecordFormatError, match="larger than MaxPayloadInMB"):
            payloads(data, MULTI, limit, chunk)
        return
    got = list(pack(chunked(data, chunk), RIO, MULTI, limit, "b/k", 1))
    assert [p.data for p in got] == reference_greedy(frames, limit)
    assert b"".join(p.data for p in got) == data
    assert all(len(p.data) <= limit for p in got)
    assert sum(p.record_count for p in got) == len(recs)
    assert [p.record_count for p in got] == [RIO.record_count(p.data, 0, len(p.data)) for p in got]
    assert [p.first_record for p in got] == [sum(q.record_count for q in got[:i]) for i in range(len(got))]
    assert [p.byte_offset for p in got] == [sum(len(q.data) for q in got[:i]) for i in range(len(got))]
    assert payloads(data, MULTI, None, chunk) == ([data] if data else [])


@settings(max_examples=300, deadline=None)
@given(records, st.integers(min_value=1, max_value=60))
def test_single_record_gives_each_record_data_once_in_order(recs: list[bytes], chunk: int) -> None:
    data = write(recs)
    got = list(pack(chunked(data, chunk), RIO, SINGLE, 1000, "b/k", 1))
    assert [p.data for p in got] == recs
    assert [p.first_record for p in got] == list(range(len(recs)))
    assert all(p.record_count == 1 for p in got)
    assert [p.data for p in pack(chunked(data, chunk), RIO, SINGLE, None, "b/k", 1)] == recs


# --- corrupt input: message, record index and byte offset, whatever the strategy ----------------------

A, B = write_record(b"abc"), write_record(b"hello")  # 12 and 16 bytes
CORRUPT: list[tuple[str, bytes, int, int, str]] = [
    # (id, object, record index, byte offset, message)
    ("bad-magic", A + b"\0\0\0\0" + B[4:], 1, 12, "bad RecordIO magic 0x00000000, expected 0xced7230a"),
    ("text-not-recordio", b"1,2,3\n4,5,6\n", 0, 0, "bad RecordIO magic 0x2c322c31, expected 0xced7230a"),
    (
        "old-magic",
        struct.pack("<I", 0x3ED7230A) + A[4:],
        0,
        0,
        "bad RecordIO magic 0x3ed7230a, expected 0xced7230a (0x3ed7230a is the magic of an older recordio",
    ),
    (
        "truncated-header",
        A + B[:5],
        1,
        12,
        "truncated RecordIO frame: 5 bytes at the end of the object, a frame header is 8",
    ),
    (
        "truncated-data",
        A + B[:13],
        1,
        12,
        "truncated RecordIO frame: its header says 5 data bytes (16 bytes framed) but the object ends 13 "
        "bytes after the frame's start",
    ),
    (
        "missing-padding",
        A[:11],
        0,
        0,
        "truncated RecordIO frame: its header says 3 data bytes (12 bytes framed) but the object ends 11",
    ),
    (
        "middle-part-first",
        A + frame(2, b"abcd") + frame(3, b"x"),
        1,
        12,
        "RecordIO frame with cflag 2 (middle part) where a record must start (cflag 0 or 1)",
    ),
    ("last-part-first", frame(3, b"x"), 0, 0, "cflag 3 (last part) where a record must start"),
    (
        "whole-inside-parts",
        A + frame(1, b"abcd") + frame(0, b"x"),
        1,
        24,
        "RecordIO frame with cflag 0 (whole record) inside a record split into parts, which must go on "
        "with cflag 2 (middle part) or 3 (last part)",
    ),
    ("first-inside-parts", frame(1, b"abcd") + frame(1, b"x"), 0, 12, "cflag 1 (first part) inside a record"),
    (
        "no-last-part",
        A + B + frame(1, b"abcd") + frame(2, b"efgh"),
        2,
        52,
        "RecordIO record split into parts ends with the object, without its last part (cflag 3)",
    ),
    ("bad-magic-in-a-part", A + frame(1, b"abcd") + b"\0" * 12, 1, 24, "bad RecordIO magic 0x00000000"),
    ("invalid-cflag", A + frame(5, b"x"), 1, 12, "RecordIO frame with invalid cflag 5 (lrecord 0xa0000001)"),
]


@pytest.mark.parametrize(
    ("data", "index", "offset", "message"), [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT]
)
@pytest.mark.parametrize(
    ("strategy", "limit"), [(SINGLE, 6 * MIB), (MULTI, 6 * MIB), (MULTI, 40), (MULTI, None), (SINGLE, None)]
)
@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_corrupt_object_fails_with_record_and_offset(
    data: bytes, index: int, offset: int, message: str, strategy: BatchStrategy, limit: int | None, chunk: int
) -> None:
    with pytest.raises(RecordFormatError) as err:
        list(pack(chunked(data, chunk), RIO, strategy, limit, "b/in/x.rec", 1))
    text = str(err.value)
    assert text.startswith(f"b/in/x.rec: record {index} at byte {offset}: ") and message in text, text
    assert (err.value.uri, err.value.record_index, err.value.byte_offset) == ("b/in/x.rec", index, offset)


def test_corrupt_record_deep_in_a_large_object_has_its_absolute_offset() -> None:
    # 700 kB records through 64 KiB chunks and a 1 MiB cap: the buffer drops consumed bytes on the way.
    recs = [bytes([i]) * 700_000 for i in range(6)]
    data = bytearray(write(recs))
    bad = 4 * len(write_record(recs[0]))
    data[bad : bad + 4] = b"\xff\xff\xff\xff"
    for strategy, limit in ((MULTI, MIB), (SINGLE, MIB), (MULTI, None)):
        with pytest.raises(RecordFormatError) as err:
            list(pack(chunked(bytes(data), 65536), RIO, strategy, limit, "b/in/big.rec", 1))
        assert str(err.value).startswith(
            f"b/in/big.rec: record 4 at byte {bad}: bad RecordIO magic 0xffffffff"
        )
        assert (err.value.record_index, err.value.byte_offset) == (4, bad)


# --- gzip, through the feeder's own pipeline ----------------------------------------------------------


def feed(data: bytes, strategy: BatchStrategy, limit_mb: int, chunk: int = 10) -> list[bytes]:
    from runner.records.payloads import Packing, payloads_of
    from runner.records.plan import InputObject

    obj = InputObject("s3://b/in/x.rec.gz", len(data), "", "x.rec.gz", "s3://b/out/x.rec.gz.out")
    feed_settings = Packing(
        split_type=SplitType.RECORDIO,
        compression=CompressionType.GZIP,
        strategy=strategy,
        limit_bytes=limit_mb * MIB or None,
        limit_mb=limit_mb,
    )
    return [p.data for p in payloads_of(obj, iter(chunked(data, chunk)), feed_settings)]


def test_gzip_recordio_goes_through_the_feeder() -> None:
    recs = [b"abc", b"hello", b"abcd" + MAGIC + b"e", b""]
    data = write(recs)
    packed = gzip.compress(data[:20]) + gzip.compress(data[20:])  # two gzip members
    assert feed(packed, SINGLE, 6) == recs
    assert feed(packed, MULTI, 6) == [data]
    assert feed(packed, MULTI, 0) == [data]
    with pytest.raises(RecordFormatError) as err:
        feed(gzip.compress(A + b"\0" * 16), MULTI, 6)
    assert str(err.value).startswith("b/in/x.rec.gz: record 1 at byte 12: bad RecordIO magic 0x00000000")
    assert (err.value.record_index, err.value.byte_offset) == (1, 12)


# --- fuzz: nothing but RecordFormatError ------------------------------------------------------------


def check_all(data: bytes, chunk: int, limit: int) -> None:
    """Every strategy either splits ``data`` (MultiRecord giving it back whole) or raises a located
    RecordFormatError; nothing else."""
    for strategy, cap in ((SINGLE, limit), (MULTI, limit), (MULTI, None)):
        try:
            got = list(pack(chunked(data, chunk), RIO, strategy, cap, "b/k", 1))
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
def test_damaged_recordio_raises_only_record_format_errors(
    recs: list[bytes], where: int, value: int, cut: int, chunk: int
) -> None:
    data = bytearray(write(recs))
    if data:
        data[where % len(data)] = value
    check_all(bytes(data[: len(data) - cut]), chunk, 64)
