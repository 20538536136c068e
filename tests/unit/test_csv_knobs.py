"""docs/contract.md §9 CSV knobs on plain bytes: csv_quoted_newlines (CsvSplitter) and csv_header
first-line."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cli.main import _config, build_parser
from runner.config import RunnerConfig
from runner.contract.spec import BatchStrategy, CompressionType, SplitType
from runner.errors import RecordFormatError, SpecError
from runner.records.batching import pack, pack_with_header
from runner.records.dataprocessing import ObjectProcessor, RecordProcessing
from runner.records.knobs import InputKnobs, input_knobs
from runner.records.payloads import Packing, payloads_of
from runner.records.plan import InputObject
from runner.records.splitters import csv as csv_splitter
from runner.records.splitters import greedy_end_by_records, splitter_for
from runner.records.splitters.csv import CsvSplitter

CSVS = splitter_for(SplitType.LINE, csv_quoted_newlines=True)
LINE = splitter_for(SplitType.LINE)
MULTI, SINGLE = BatchStrategy.MULTI_RECORD, BatchStrategy.SINGLE_RECORD


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def records(data: bytes, chunk: int = 5, splitter: Any = CSVS) -> list[bytes]:
    return [p.data for p in pack(chunked(data, chunk), splitter, SINGLE, 10_000, "b/k", 1)]


def greedy(recs: list[bytes], limit: int) -> list[bytes]:
    out: list[bytes] = []
    cur = b""
    for r in recs:
        if cur and len(cur) + len(r) > limit:
            out.append(cur)
            cur = b""
        cur += r
    if cur:
        out.append(cur)
    return out


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


# --- csv_quoted_newlines --------------------------------------------------------------------------


def test_the_registry_picks_the_csv_splitter_only_when_asked() -> None:
    assert isinstance(CSVS, CsvSplitter)
    assert not isinstance(LINE, CsvSplitter)
    assert not isinstance(splitter_for(SplitType.RECORDIO, csv_quoted_newlines=True), CsvSplitter)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'a,"x\ny",b\nc,d\n', [b'a,"x\ny",b\n', b"c,d\n"]),  # a quoted newline stays in its record
        (b'"x ""q""\n",1\r\n2\r\n', [b'"x ""q""\n",1\r\n', b"2\r\n"]),  # doubled quotes, \r kept
        (b'ab"c\nd\n', [b'ab"c\n', b"d\n"]),  # a quote inside an unquoted field is data
        (b'"a"b\n"\n"\n', [b'"a"b\n', b'"\n"\n']),  # text after a closing quote, then a quoted newline
        (b"a\n\nb", [b"a\n", b"\n", b"b"]),  # Line's rules otherwise: blank records, no newline at EOF
        (b'x,""\n"",\n', [b'x,""\n', b'"",\n']),  # empty quoted fields
        (b"", []),
    ],
)
def test_quoted_newline_records(data: bytes, expected: list[bytes]) -> None:
    for chunk in (1, 3, 100):
        assert records(data, chunk) == expected


def test_an_unclosed_quote_fails_the_object_where_it_starts() -> None:
    data = b'a,b\nc,"open\nd,e\n'
    for strategy, limit in ((SINGLE, 100), (MULTI, 100), (MULTI, None)):
        with pytest.raises(RecordFormatError) as err:
            list(pack(chunked(data, 3), CSVS, strategy, limit, "b/in/q.csv", 1))
        assert (
            "b/in/q.csv: record 1 at byte 4: a quoted CSV field opened 2 bytes into the record is never "
            in (str(err.value))
        )
        assert err.value.record_index == 1 and err.value.byte_offset == 4
    # Under a cap smaller than the rest of the object, the open record is first of all too big.
    with pytest.raises(RecordFormatError, match="record 1 at byte 4 is 12 bytes, larger than MaxPayload"):
        list(pack(chunked(data, 3), CSVS, MULTI, 8, "b/in/q.csv", 1))


def test_multirecord_packs_whole_csv_records_greedily() -> None:
    data = b'1,"a\nb"\n2,c\n3,"d\n\ne"\n4\n'
    recs = records(data)
    assert recs == [b'1,"a\nb"\n', b"2,c\n", b'3,"d\n\ne"\n', b"4\n"]
    got = [p.data for p in pack(chunked(data, 4), CSVS, MULTI, 14, "b/k", 1)]
    assert got == greedy(recs, 14) == [b'1,"a\nb"\n2,c\n', b'3,"d\n\ne"\n4\n']
    with pytest.raises(RecordFormatError, match="record 2 at byte 12 is 9 bytes"):
        list(pack(chunked(data, 4), CSVS, MULTI, 8, "b/k", 1))


cells = st.text(alphabet=st.sampled_from(list('ab ,"\n\ré1')), max_size=6)
rows_strategy = st.lists(st.lists(cells, min_size=1, max_size=4), max_size=12)


def write_csv(rows: list[list[str]], quote_all: list[bool], newline: str, last_newline: bool) -> bytes:
    """RFC 4180 text: a field holding , " CR or LF is quoted (others at random), quotes doubled."""
    lines = []
    for i, row in enumerate(rows):
        fields = []
        for j, cell in enumerate(row):
            special = any(c in cell for c in ',"\r\n') or (len(row) == 1 and cell == "")
            if special or quote_all[(i + j) % len(quote_all)]:
                fields.append('"' + cell.replace('"', '""') + '"')
            else:
                fields.append(cell)
        lines.append(",".join(fields))
    text = newline.join(lines) + (newline if last_newline and lines else "")
    return text.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(
    rows=rows_strategy,
    quote_all=st.lists(st.booleans(), min_size=1, max_size=5),
    crlf=st.booleans(),
    last_newline=st.booleans(),
    chunk=st.integers(min_value=1, max_value=30),
    limit=st.integers(min_value=1, max_value=60),
)
def test_random_tables_split_as_the_csv_module_reads_them(
    rows: list[list[str]], quote_all: list[bool], crlf: bool, last_newline: bool, chunk: int, limit: int
) -> None:
    data = write_csv(rows, quote_all, "\r\n" if crlf else "\n", last_newline)
    recs = records(data, chunk)
    # One record per row of Python's csv module, each parsing back to that row.
    assert [parse(r) for r in recs] == [[row] for row in parse(data)]
    assert b"".join(recs) == data  # split then concatenate gives the input back
    # MultiRecord: SageMaker's greedy rule over these records.
    if any(len(r) > limit for r in recs):
        with pytest.raises(RecordFormatError, match="larger than MaxPayloadInMB"):
            list(pack(chunked(data, chunk), CSVS, MULTI, limit, "b/k", 1))
        return
    got = list(pack(chunked(data, chunk), CSVS, MULTI, limit, "b/k", 1))
    assert [p.data for p in got] == greedy(recs, limit)
    assert sum(p.record_count for p in got) == len(recs)
    assert greedy_end_by_records(CSVS, data, 0, limit, True) == (len(got[0].data) if got else 0)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([b",", b'"', b"\n", b"a", b"\r", b'""', b',"']), max_size=60).map(b"".join),
    st.booleans(),
)
def test_the_vectorised_scan_agrees_with_the_exact_scan(data: bytes, tables: bool) -> None:
    if tables:  # mostly well-formed CSV (the fast path), else arbitrary quote soup (the fallback)
        data = write_csv([[data.decode()], ["x", data.decode()]], [False], "\n", True)
    with mock.patch.object(csv_splitter, "_VECTOR_MIN_BYTES", 0):
        starts = [0]
        if tables:  # record starts only, as a scan always begins at one
            for r in records(data)[:2]:
                starts.append(starts[-1] + len(r))
        for start in starts:
            assert csv_splitter._scan_all(data, start, len(data)) == csv_splitter._scan(
                data, start, len(data), first=False
            )

    # And whole packs agree whichever scan runs.
    def run() -> Any:
        try:
            return [p.data for p in pack(chunked(data, 7), CSVS, MULTI, 25, "b/k", 1)]
        except RecordFormatError as e:
            return str(e)

    slow = run()
    with mock.patch.object(csv_splitter, "_VECTOR_MIN_BYTES", 0):
        assert run() == slow


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=80).map(lambda b: b.replace(b'"', b"")), st.integers(min_value=1, max_value=20))
def test_without_quotes_the_csv_splitter_is_the_line_splitter(data: bytes, limit: int) -> None:
    def run(splitter: Any) -> Any:
        try:
            return [p.data for p in pack(chunked(data, 7), splitter, MULTI, limit, "b/k", 1)]
        except RecordFormatError as e:
            return str(e)

    assert run(CSVS) == run(LINE)
    assert records(data, 3) == records(data, 3, LINE)


# --- csv_header first-line ------------------------------------------------------------------------


def with_header(data: bytes, limit: int | None, strategy: BatchStrategy = MULTI, **kw: Any) -> list[Any]:
    return list(pack_with_header(chunked(data, 3), LINE, strategy, limit, "b/in/h.csv", 1, **kw))


def test_every_payload_starts_with_the_header_and_the_cap_counts_it() -> None:
    header = b"a,b\n"
    body = b"1,2\n33,44\n5,6\n7,8\n"
    seen: list[bytes] = []
    got = with_header(header + body, 12, on_header=seen.append)
    assert seen == [header]
    assert [p.data for p in got] == [header + b"1,2\n", header + b"33,44\n", header + b"5,6\n7,8\n"]
    assert all(len(p.data) <= 12 for p in got)
    assert [p.record_count for p in got] == [1, 1, 2]  # the header is not a record
    assert [p.first_record for p in got] == [0, 1, 2]
    assert [p.byte_offset for p in got] == [4, 8, 14]  # offsets in the object
    assert [p.index for p in got] == [0, 1, 2]
    # The same boundaries as packing the records alone under cap - len(header).
    assert [p.data[len(header) :] for p in got] == greedy([b"1,2\n", b"33,44\n", b"5,6\n", b"7,8\n"], 8)
    single = with_header(header + body, 12, SINGLE)
    assert [p.data for p in single] == [header + r for r in (b"1,2\n", b"33,44\n", b"5,6\n", b"7,8\n")]
    # No cap: one payload, the header once.
    assert [p.data for p in with_header(header + body, None)] == [header + body]


def test_header_only_and_empty_objects_send_nothing() -> None:
    seen: list[bytes] = []
    assert with_header(b"a,b\n", 100, on_header=seen.append) == []
    assert with_header(b"a,b", 100, on_header=seen.append) == []
    assert seen == [b"a,b\n", b"a,b"]
    assert with_header(b"", 100, on_header=seen.append) == []
    assert seen == [b"a,b\n", b"a,b"]  # an empty object has no header


def test_a_header_over_the_cap_fails_the_object() -> None:
    with pytest.raises(RecordFormatError, match=r"b/in/h.csv: the CSV header .* is 9 bytes, larger than"):
        with_header(b"aaaa,bbb\n1\n", 8)
    with pytest.raises(RecordFormatError, match=r"the CSV header .* is over \d+ bytes, larger than"):
        list(pack_with_header([b"x" * 5] * 10, LINE, MULTI, 8, "b/in/h.csv", 1))
    # A record that fits the cap alone but not with the header names both sizes.
    with pytest.raises(RecordFormatError) as err:
        with_header(b"a,b\n1\n22222\n", 8)
    assert str(err.value).startswith(
        "b/in/h.csv: record 1 at byte 6 is 6 bytes, 10 with the 4-byte CSV header (csv_header=first-line)"
    )
    assert err.value.record_index == 1 and err.value.byte_offset == 6


def test_header_with_quoted_newlines() -> None:
    data = b'id,"long\nname"\n1,"x\ny"\n2,z\n'
    got = list(pack_with_header(chunked(data, 2), CSVS, SINGLE, 100, "b/k", 1))
    assert [p.data for p in got] == [b'id,"long\nname"\n1,"x\ny"\n', b'id,"long\nname"\n2,z\n']


def processing(**kw: Any) -> RecordProcessing:
    base: dict[str, Any] = {
        "input_filter": "$",
        "output_filter": "$",
        "join": False,
        "content_type": "text/csv",
        "accept": "text/csv",
        "whole_object": False,
    }
    return RecordProcessing(**{**base, **kw})


def feed(knobs: InputKnobs, **kw: Any) -> Packing:
    base: dict[str, Any] = {
        "split_type": SplitType.LINE,
        "compression": CompressionType.NONE,
        "strategy": MULTI,
        "limit_bytes": 100,
        "limit_mb": 1,
        "knobs": knobs,
    }
    return Packing(**{**base, **kw})


OBJ = InputObject("s3://b/in/h.csv", 0, "", "h.csv", "s3://b/out/h.csv.out")


def test_payloads_of_header_gzip_and_input_filter_compose() -> None:
    data = b"id,a,b\n1,2,3\n4,5,6\n"
    knobs = InputKnobs(content_type="text/csv", csv_header=True)
    seen: list[bytes] = []
    settings_ = feed(knobs, compression=CompressionType.GZIP)
    got = list(payloads_of(OBJ, [gzip.compress(data)], settings_, on_header=seen.append))
    assert [p.data for p in got] == [data] and seen == [b"id,a,b\n"] and got[0].record_count == 2
    # InputFilter: the header is filtered as the records are; JoinSource keeps only records as originals.
    proc = processing(input_filter="$[1:]", join=True)
    processor = ObjectProcessor(proc, OBJ.name)
    got = list(payloads_of(OBJ, [data], feed(knobs, processing=proc), processor, seen.append))
    assert [p.data for p in got] == [b"a,b\n2,3\n5,6\n"]
    assert processor.take(2) == [b"1,2,3\n", b"4,5,6\n"]


def test_all_knobs_off_is_the_line_splitter() -> None:
    data = b'h,"x\ny"\n1,2\n'
    got = [p.data for p in payloads_of(OBJ, [data], feed(InputKnobs(), strategy=SINGLE))]
    assert got == [b'h,"x\n', b'y"\n', b"1,2\n"]
    assert Packing.__dataclass_fields__["knobs"].default == InputKnobs()


def test_input_knobs_apply_to_csv_lines_only_and_refuse_what_cannot_work() -> None:
    on = RunnerConfig(csv_header="first-line", csv_header_in_output=True, csv_quoted_newlines=True)
    knobs, notes = input_knobs(on, "text/csv; charset=utf-8", SplitType.LINE, None)
    assert knobs == InputKnobs("text/csv", True, True, True, False) and notes == []
    knobs, notes = input_knobs(on, "application/json", SplitType.LINE, None)
    assert knobs == InputKnobs(content_type="application/json")
    assert len(notes) == 2 and "csv_header first-line applies to text/csv" in notes[0]
    assert input_knobs(RunnerConfig(), "text/csv", SplitType.LINE, None) == (InputKnobs("text/csv"), [])
    with pytest.raises(SpecError, match=r"RunnerConfig\.csv_quoted_newlines"):
        input_knobs(on, "text/csv", SplitType.LINE, processing(input_filter="$[1:]"))
    with pytest.raises(SpecError, match=r"RunnerConfig\.csv_header_in_output"):
        input_knobs(RunnerConfig(csv_header_in_output=True), "text/csv", SplitType.LINE, None)
    with pytest.raises(ValueError, match="csv_header must be one of"):
        RunnerConfig(csv_header="yes")


def test_cli_flags_reach_the_config() -> None:
    for command in (["run", "job.json"], ["serve"]):
        args = build_parser().parse_args(
            [
                *command,
                "--csv-header",
                "first-line",
                "--csv-header-in-output",
                "--csv-quoted-newlines",
                "--split-parquet-row-groups",
            ]
        )
        config = _config(args)
        assert config.csv_header == "first-line" and config.csv_header_in_output
        assert config.csv_quoted_newlines and config.split_parquet_row_groups
        plain = _config(build_parser().parse_args(command))
        assert (plain.csv_header, plain.csv_header_in_output) == ("none", False)
        assert not plain.csv_quoted_newlines and not plain.split_parquet_row_groups
