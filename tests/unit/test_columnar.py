"""docs/contract.md §9 split_parquet_row_groups: Parquet / Arrow IPC objects into payloads of whole units."""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.config import RunnerConfig
from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError, SpecError
from runner.records.batching import Payload
from runner.records.columnar import ARROW_FILE, ARROW_STREAM, PARQUET, is_columnar, media_type, pack_columnar
from runner.records.knobs import InputKnobs, input_knobs
from runner.records.payloads import Packing, payloads_of
from runner.records.plan import InputObject

MULTI, SINGLE = BatchStrategy.MULTI_RECORD, BatchStrategy.SINGLE_RECORD


def table(rows: int, seed: int = 0, width: int = 40) -> pa.Table:
    rng = random.Random(seed)
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "text": [rng.randbytes(rng.randint(0, width)).hex() for _ in range(rows)],
            "x": [rng.random() for _ in range(rows)],
        }
    ).replace_schema_metadata({"origin": "test"})


def parquet_bytes(t: pa.Table, group_rows: int, compression: str = "zstd") -> bytes:
    sink = io.BytesIO()
    pq.write_table(t, sink, row_group_size=group_rows, compression=compression)
    return sink.getvalue()


def arrow_bytes(t: pa.Table, batch_rows: int, stream: bool) -> bytes:
    sink = pa.BufferOutputStream()
    new = ipc.new_stream if stream else ipc.new_file
    with new(sink, t.schema) as w:
        for b in t.to_batches(max_chunksize=batch_rows):
            w.write_batch(b)
    return bytes(sink.getvalue().to_pybytes())


def one_batch(t: pa.Table) -> pa.RecordBatch:
    """A table as one record batch (an empty one too, which ``to_batches`` would drop)."""
    return (
        t.combine_chunks().to_batches()[0] if t.num_rows else pa.RecordBatch.from_pylist([], schema=t.schema)
    )


def read_units(content_type: str, data: bytes) -> list[pa.Table]:
    """The object's units (row groups / record batches) as tables."""
    if content_type == PARQUET:
        f = pq.ParquetFile(io.BytesIO(data))
        return [f.read_row_group(i) for i in range(f.num_row_groups)]
    reader = ipc.open_stream(data) if content_type == ARROW_STREAM else ipc.open_file(data)
    batches = (
        list(reader)
        if content_type == ARROW_STREAM
        else [reader.get_batch(i) for i in range(reader.num_record_batches)]
    )
    return [pa.Table.from_batches([b]) for b in batches]


def split(
    data: bytes, content_type: str, limit: int | None, strategy: BatchStrategy = MULTI
) -> list[Payload]:
    chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    return list(pack_columnar(chunks, content_type, strategy, limit, "b/in/t", 1))


def check(
    data: bytes, content_type: str, limit: int | None, strategy: BatchStrategy = MULTI
) -> list[Payload]:
    """Payloads are valid files of whole consecutive units, under the cap, rows in order, greedy."""
    source = read_units(content_type, data)
    got = split(data, content_type, limit, strategy)
    units = [read_units(content_type, p.data) for p in got]
    # Whole units, in order, each exactly once.
    flat = [u for us in units for u in us]
    assert [u.num_rows for u in flat] == [u.num_rows for u in source]
    assert all(a.equals(b) for a, b in zip(flat, source, strict=True))
    everything = pa.concat_tables(flat) if flat else None
    whole = pa.concat_tables(source) if source else None
    assert (everything is None and whole is None) or everything.equals(whole)
    assert [p.index for p in got] == list(range(len(got)))
    rows = [sum(u.num_rows for u in us) for us in units]
    assert [p.record_count for p in got] == rows
    assert [p.first_record for p in got] == [sum(rows[:i]) for i in range(len(rows))]
    if limit is not None:
        assert all(len(p.data) <= limit for p in got)
    if strategy is SINGLE:
        assert all(len(us) == 1 for us in units)
    elif limit is not None:
        # Greedy: the next unit would not have fitted in any payload but the last.
        writer = _writer(content_type, data)
        start = 0
        for us in units[:-1]:
            start += len(us)
            assert len(writer([*us, source[start]])) > limit
    return got


def _writer(content_type: str, data: bytes) -> Callable[[list[pa.Table]], bytes]:
    """A payload file written the way pack_columnar writes it (the source's schema and codec)."""
    if content_type == PARQUET:
        f = pq.ParquetFile(io.BytesIO(data))
        codec = str(f.metadata.row_group(0).column(0).compression).lower()

        def write_parquet(ts: list[pa.Table]) -> bytes:
            sink = io.BytesIO()
            with pq.ParquetWriter(sink, f.schema_arrow, compression=codec) as w:
                for t in ts:
                    w.write_table(t, row_group_size=max(t.num_rows, 1))
            return sink.getvalue()

        return write_parquet
    schema = read_units(content_type, data)[0].schema

    def write_arrow(ts: list[pa.Table]) -> bytes:
        sink = pa.BufferOutputStream()
        with (ipc.new_stream if content_type == ARROW_STREAM else ipc.new_file)(sink, schema) as w:
            for t in ts:
                w.write_batch(one_batch(t))
        return bytes(sink.getvalue().to_pybytes())

    return write_arrow


FORMATS: list[tuple[str, Callable[[pa.Table, int], bytes]]] = [
    (PARQUET, parquet_bytes),
    (ARROW_FILE, lambda t, n: arrow_bytes(t, n, stream=False)),
    (ARROW_STREAM, lambda t, n: arrow_bytes(t, n, stream=True)),
]


@pytest.mark.parametrize(("content_type", "make"), FORMATS, ids=["parquet", "arrow-file", "arrow-stream"])
def test_payloads_are_valid_files_of_whole_units_under_the_cap(content_type: str, make: Any) -> None:
    data = make(table(3000), 100)  # 30 units of a few KB each
    one = max(len(p.data) for p in split(data, content_type, None, SINGLE))
    for limit in (one + 10, 3 * one, 10 * one, 10**7):
        got = check(data, content_type, limit)
        assert len(got) >= 1
    assert len(check(data, content_type, 3 * one)) > 5
    assert len(check(data, content_type, None, SINGLE)) == 30
    assert len(check(data, content_type, 10**7, SINGLE)) == 30
    # The payload keeps the source's schema, metadata included.
    payload = split(data, content_type, 3 * one)[0].data
    assert read_units(content_type, payload)[0].schema.metadata == {b"origin": b"test"}


@pytest.mark.parametrize(("content_type", "make"), FORMATS, ids=["parquet", "arrow-file", "arrow-stream"])
def test_a_unit_over_the_cap_fails_the_object(content_type: str, make: Any) -> None:
    data = make(table(300, width=400), 100)
    with pytest.raises(RecordFormatError) as err:
        split(data, content_type, 5000)
    unit = "row group" if content_type == PARQUET else "record batch"
    assert str(err.value).startswith(f"b/in/t: {unit} 0 (rows 0 to 99) is ")
    assert "larger than MaxPayloadInMB=1" in str(err.value) and err.value.record_index == 0


def test_no_cap_multirecord_sends_the_object_verbatim() -> None:
    data = parquet_bytes(table(500), 100)
    got = split(data, PARQUET, None)
    assert len(got) == 1 and got[0].data == data and got[0].record_count == 500


def test_empty_and_invalid_objects() -> None:
    assert split(b"", PARQUET, 1000) == []
    empty = parquet_bytes(table(0), 100)
    assert [p.record_count for p in split(empty, PARQUET, 10**6)] in ([], [0])
    with pytest.raises(RecordFormatError, match="b/in/t: not a valid Parquet object"):
        split(b"not parquet at all", PARQUET, 1000)
    with pytest.raises(RecordFormatError, match="b/in/t: not a valid Arrow IPC object"):
        split(b"not arrow at all", ARROW_FILE, 1000)


def test_parquet_codec_is_kept() -> None:
    data = parquet_bytes(table(1000), 100, compression="gzip")
    payload = split(data, PARQUET, 10**6)[0].data
    assert pq.ParquetFile(io.BytesIO(payload)).metadata.row_group(0).column(0).compression == "GZIP"


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=12),
    limit=st.integers(min_value=2000, max_value=20000),
    fmt=st.sampled_from(range(len(FORMATS))),
)
def test_random_unit_sizes(sizes: list[int], limit: int, fmt: int) -> None:
    content_type, _ = FORMATS[fmt]
    t = table(sum(sizes), seed=len(sizes))
    parts = []
    offset = 0
    for n in sizes:
        parts.append(t.slice(offset, n))
        offset += n
    if content_type == PARQUET:
        sink = io.BytesIO()
        with pq.ParquetWriter(sink, t.schema, compression="snappy") as w:
            for part in parts:
                w.write_table(part, row_group_size=max(part.num_rows, 1))
        data = sink.getvalue()
    else:
        out = pa.BufferOutputStream()
        with (ipc.new_stream if content_type == ARROW_STREAM else ipc.new_file)(out, t.schema) as w:
            for part in parts:
                w.write_batch(one_batch(part))
        data = bytes(out.getvalue().to_pybytes())
    try:
        check(data, content_type, limit)
    except RecordFormatError as e:
        assert "larger than MaxPayloadInMB" in str(e)


OBJ = InputObject("s3://b/in/t.parquet.gz", 0, "", "t.parquet.gz", "s3://b/out/t.parquet.gz.out")


def test_payloads_of_routes_columnar_objects_and_gunzips_first() -> None:
    data = parquet_bytes(table(1000), 100)
    settings_ = Packing(
        split_type=SplitType.NONE,
        compression=CompressionType.GZIP,
        strategy=MULTI,
        limit_bytes=len(data) // 3,
        limit_mb=1,
        knobs=InputKnobs(content_type=PARQUET, split_columnar=True),
    )
    got = list(payloads_of(OBJ, [gzip.compress(data)], settings_))
    assert len(got) > 2 and sum(p.record_count for p in got) == 1000
    assert pa.concat_tables(pq.read_table(io.BytesIO(p.data)) for p in got).equals(
        pq.read_table(io.BytesIO(data))
    )
    # Knob off: the object is sent whole, as SageMaker does.
    plain = Packing(**{**settings_.__dict__, "knobs": InputKnobs(content_type=PARQUET), "limit_bytes": None})
    assert [p.data for p in payloads_of(OBJ, [gzip.compress(data)], plain)] == [data]


def test_knob_resolution() -> None:
    on = RunnerConfig(split_parquet_row_groups=True)
    for ct in (PARQUET, ARROW_FILE, ARROW_STREAM, "Application/X-Parquet; x=1"):
        assert is_columnar(ct)
        knobs, notes = input_knobs(on, ct, SplitType.NONE, None)
        assert knobs.split_columnar and knobs.content_type == media_type(ct) and notes == []
    knobs, notes = input_knobs(on, "text/csv", SplitType.LINE, None)
    assert not knobs.split_columnar and "split_parquet_row_groups applies to" in notes[0]
    with pytest.raises(SpecError, match="SplitType must be None"):
        input_knobs(on, PARQUET, SplitType.LINE, None)
    assert not input_knobs(RunnerConfig(), PARQUET, SplitType.NONE, None)[0].split_columnar
