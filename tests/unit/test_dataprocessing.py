"""DataProcessing (docs/contract.md §6.4): the JSONPath subset, CSV and JSON filters, joins, output filters,
splitting a response into one result per record, and the errors a user sees."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.contract.jsonpath import (
    JsonPathError,
    PathError,
    csv_fields,
    csv_line,
    json_dumps,
    json_loads,
    jsonpath_problem,
    parse_jsonpath,
)
from runner.contract.spec import BatchStrategy, parse_transform_job, setup_problem
from runner.errors import RecordFormatError
from runner.records.batching import pack
from runner.records.dataprocessing import (
    ObjectProcessor,
    RecordProcessing,
    processing_for,
)
from runner.records.splitters.line import LineSplitter

# --- JSONPath: parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "definite"),
    [
        ("$", True),
        ("", True),  # length 0 is allowed by the request shape: the whole record
        ("$.features", True),
        ("$.a.b-c.d1", True),
        ("$['id']", True),
        ("$['id','SageMakerOutput']", True),  # merged into one object
        ("$[ 'id' , 'x' ]", True),
        ("$[0]", True),
        ("$[-1]", True),
        ("$[0,-1]", False),
        ("$[1:]", False),
        ("$[:2]", False),
        ("$[-2:]", False),
        ("$[0,5:]", False),  # BM example: indexes and one range together
        ("$[1:3,0]", False),
        ("$[*]", False),
        ("$.*", False),
        ("$.a[*].b", False),
        ("$['a','b'].c", False),  # a multi-select that is not the last step selects several values
    ],
)
def test_supported_expressions_parse(expr: str, definite: bool) -> None:
    path = parse_jsonpath(expr)
    assert path.definite is definite
    assert jsonpath_problem("InputFilter", expr, "application/json") is None


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("a", "starts with $"),
        ("$..a", "deep scan"),
        ("$.", "a name must follow '.'"),
        ("$[1:2:3]", "no step"),
        ("$[0", "not closed"),
        ("$[]", "expected an index or a range"),
        ("$['a'", "not closed"),
        ("$['a", "quoted name is not closed"),
        ("$['a','b.c']", "nested paths inside a multi-select are not supported"),
        ("$['a[0]']", "nested paths"),
        ("$x", "unexpected 'x' at position 1"),
        ("$[0]]", "unexpected ']'"),
    ],
)
def test_unsupported_expressions_are_named(expr: str, reason: str) -> None:
    with pytest.raises(JsonPathError, match=None) as info:
        parse_jsonpath(expr)
    assert reason in info.value.reason
    message = jsonpath_problem("OutputFilter", expr, "application/json")
    assert message is not None and message.startswith(f'Invalid OutputFilter: "{expr}". ')
    assert reason in message


def test_two_ranges_in_one_bracket_use_sagemakers_text() -> None:
    """The runtime error seen in aws/sagemaker-python-sdk#1112, now at create time."""
    assert jsonpath_problem("InputFilter", "$[0:2,246:]", "text/csv") == (
        "Invalid JsonPath: $[0:2,246:]: only single range filters of format (eg: [1:5]) are supported. "
        "Format [0:2,246:] is not supported"
    )


@pytest.mark.parametrize("expr", ["$.a", "$['a']", "$[0].x", "$[0][1]"])
def test_csv_paths_use_indexes_only(expr: str) -> None:
    message = jsonpath_problem("InputFilter", expr, "text/csv")
    assert message is not None and "A text/csv record is an array of fields" in message
    assert jsonpath_problem("InputFilter", expr, "application/jsonlines") is None


@pytest.mark.parametrize("expr", ["$", "$[1:]", "$[0,-1]", "$[*]", "$.*", "$[0,5:]"])
def test_csv_index_paths_are_fine(expr: str) -> None:
    assert jsonpath_problem("InputFilter", expr, "text/csv") is None


# --- JSONPath: evaluation ---------------------------------------------------------------------------

ROW = ["id1", "1", "2", "3", "6.0"]


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("$", ROW),
        ("$[*]", ROW),
        ("$[0]", ["id1"]),
        ("$[-1]", ["6.0"]),
        ("$[0,-1]", ["id1", "6.0"]),
        ("$[1:]", ["1", "2", "3", "6.0"]),
        ("$[1:4]", ["1", "2", "3"]),  # end exclusive (JavaScript slice, Jayway)
        ("$[:2]", ["id1", "1"]),
        ("$[-2:]", ["3", "6.0"]),
        ("$[3:100]", ["3", "6.0"]),  # ranges are clamped
        ("$[7:]", []),
        ("$[0,3:]", ["id1", "3", "6.0"]),
        ("$[4,0]", ["6.0", "id1"]),  # the path's order, not the row's
        ("$[0,0]", ["id1", "id1"]),
        ("$[-5]", ["id1"]),
    ],
)
def test_csv_row_selection(expr: str, expected: list[str]) -> None:
    assert parse_jsonpath(expr).select_fields(ROW) == expected


@pytest.mark.parametrize(
    ("expr", "index"), [("$[5]", "5"), ("$[-6]", "-6"), ("$[0,9]", "9"), ("$[9,1:]", "9")]
)
def test_csv_index_outside_the_row_is_an_error(expr: str, index: str) -> None:
    with pytest.raises(PathError, match=f"index {index} is outside the record's 5 fields"):
        parse_jsonpath(expr).select_fields(ROW)


DOC = json_loads('{"id":7,"features":[1.10,2,3e2],"meta":{"a":"x","b":null},"SageMakerOutput":0}')


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("$", DOC),
        ("$.id", "7"),
        ("$.features", ["1.10", "2", "3e2"]),
        ("$.features[0]", "1.10"),
        ("$.features[-1]", "3e2"),
        ("$.features[1:]", ["2", "3e2"]),
        ("$.features[*]", ["1.10", "2", "3e2"]),
        ("$.meta.a", "x"),
        ("$.meta.b", None),
        ("$['id']", "7"),
        ("$['id','meta']", {"id": "7", "meta": {"a": "x", "b": None}}),
        ("$['meta','id']", {"meta": {"a": "x", "b": None}, "id": "7"}),  # the path's key order
        ("$['id','nope']", {"id": "7"}),  # a missing key is left out (Jayway)
        ("$.meta.*", ["x", None]),
        ("$.*[0]", ["1.10"]),  # indefinite: children that are not arrays are skipped
        ("$['features','meta'].a", ["x"]),
    ],
)
def test_json_selection(expr: str, expected: Any) -> None:
    assert parse_jsonpath(expr).select(DOC) == expected


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("$.nope", "no key 'nope' in the object"),
        ("$.features[3]", "index 3 is outside an array of 3 elements"),
        ("$.id[0]", "an index needs an array, found a number"),
        ("$.features.a", "key 'a' needs an object, found an array"),
        ("$.meta.a.b", "key 'b' needs an object, found a string"),
        ("$.features[0,9]", "index 9 is outside"),
    ],
)
def test_json_selection_errors(expr: str, error: str) -> None:
    with pytest.raises(PathError, match=error):
        parse_jsonpath(expr).select(DOC)


# --- codecs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1.10,"b":1e3,"c":-0,"d":12345678901234567890123,"e":0.1000000000000000055511151231257827}',
        '{"z":1,"a":2,"m":{"y":[1,2.50,{"k":"v"}],"b":true,"n":null}}',
        '["héllo","tab\\tq\\"uote",NaN,-Infinity]',
        '"just a string"',
        "3.14159265358979323846264338327950288",
    ],
)
def test_json_numbers_and_key_order_are_kept(text: str) -> None:
    assert json_dumps(json_loads(text)) == text


def test_json_output_is_compact() -> None:
    assert json_dumps(json_loads('{ "a" : [ 1 , 2.0 ] ,\n "b" : { } }')) == '{"a":[1,2.0],"b":{}}'


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("a,b,c", ["a", "b", "c"]),
        ('"a,1",b', ["a,1", "b"]),
        ('"say ""hi""",x', ['say "hi"', "x"]),
        (" 1, 2 ", [" 1", " 2 "]),
        ("a,,", ["a", "", ""]),
        ("", []),
        ('"a\nb",c', ["a\nb", "c"]),
    ],
)
def test_csv_fields_round_trip(line: str, fields: list[str]) -> None:
    assert csv_fields(line) == fields
    assert csv_line(fields) == line


def test_csv_quotes_only_where_needed() -> None:
    assert csv_line(['"a"', "b", "c d"]) == '"""a""",b,c d'
    assert csv_fields('"plain",x') == ["plain", "x"]
    assert csv_line(csv_fields('"plain",x')) == "plain,x"  # the field's text is kept, not its quotes


def test_malformed_csv_is_an_error() -> None:
    with pytest.raises(PathError, match="not a valid CSV record"):
        csv_fields('"a"x,b')


# --- records in ----------------------------------------------------------------------------------------


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


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("chunking", [lambda d: [d], bytewise, lambda d: [d[:5], b"", d[5:]]])
def test_csv_input_filter_keeps_terminators_across_chunks(chunking: Any) -> None:
    data = b'id1,1,2,3\nid2,"4,5",6\r\n\nid3,7'
    proc = ObjectProcessor(processing(input_filter="$[1:]", join=True), "b/k")
    sent = b"".join(proc.input_chunks(chunking(data)))
    assert sent == b'1,2,3\n"4,5",6\r\n\n7'
    assert proc.take(4) == [b"id1,1,2,3\n", b'id2,"4,5",6\r\n', b"\n", b"id3,7"]


def test_json_input_filter() -> None:
    data = b'{"id":1,"features":[1.10,2]}\n{"id":2,"features":[3,4.50]}\n'
    proc = ObjectProcessor(processing(input_filter="$.features", content_type="application/jsonlines"), "b/k")
    assert b"".join(proc.input_chunks([data])) == b"[1.10,2]\n[3,4.50]\n"
    assert proc.take(2) == []  # nothing joined or filtered on the way out: originals are not kept


def test_pass_through_input_keeps_chunks_and_originals_for_the_join() -> None:
    data = b"a,1\nb,2\nc,3"
    proc = ObjectProcessor(processing(join=True), "b/k")
    chunks = [data[:6], data[6:]]
    assert list(proc.input_chunks(chunks)) == chunks  # no copies: the packer splits them
    assert proc.take(3) == [b"a,1\n", b"b,2\n", b"c,3"]


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        st.lists(st.sampled_from(["1", "x y", '"q,1"', "", "2.50"]), min_size=2, max_size=4), max_size=8
    ),
    crlf=st.booleans(),
    last_newline=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    filtered=st.booleans(),
)
def test_any_chunking_gives_the_same_records(
    rows: list[list[str]], crlf: bool, last_newline: bool, cuts: list[int], filtered: bool
) -> None:
    newline = b"\r\n" if crlf else b"\n"
    data = newline.join(",".join(r).encode() for r in rows) + (newline if rows and last_newline else b"")
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds)]
    p = processing(input_filter="$[1:]" if filtered else "$", join=True)
    whole, split = ObjectProcessor(p, "b/k"), ObjectProcessor(p, "b/k")
    try:
        expected = b"".join(whole.input_chunks([data]))
    except RecordFormatError:  # an empty unterminated last record after the filter
        with pytest.raises(RecordFormatError):
            b"".join(split.input_chunks(chunks))
        return
    assert b"".join(split.input_chunks(chunks)) == expected
    assert split.take(len(rows)) == whole.take(len(rows))
    if not filtered:
        assert expected == data


def test_whole_object_is_one_record() -> None:
    proc = ObjectProcessor(
        processing(input_filter="$.x", join=True, content_type="application/json", whole_object=True), "b/k"
    )
    assert b"".join(proc.input_chunks([b'{"x": [1,\n', b' 2.0], "y": 0}\n'])) == b"[1,2.0]\n"
    assert proc.take(1) == [b'{"x": [1,\n 2.0], "y": 0}\n']


@pytest.mark.parametrize(
    ("kw", "data", "message"),
    [
        (
            {"input_filter": "$[2]"},
            b"a,b,c\na,b\n",
            "b/k: record 1 at byte 6: InputFilter $[2]: index 2 is outside",
        ),
        (
            {"input_filter": "$.a", "content_type": "application/jsonlines"},
            b'{"a":1}\n\n',
            "b/k: record 1 at byte 8: InputFilter $.a: not valid JSON",
        ),
        ({"input_filter": "$[1:]"}, b"a,b\nlast", "record 1 at byte 4 is empty after InputFilter $[1:]"),
        ({"input_filter": "$[0]"}, b"\xff,b\n", "record 0 at byte 0: InputFilter $[0]: 'utf-8' codec"),
    ],
)
def test_input_errors_name_object_record_and_offset(kw: dict[str, Any], data: bytes, message: str) -> None:
    proc = ObjectProcessor(processing(**kw), "b/k")
    with pytest.raises(RecordFormatError) as info:
        b"".join(proc.input_chunks([data]))
    assert message in str(info.value)
    assert info.value.uri == "b/k"


# --- results out ---------------------------------------------------------------------------------------


def test_contract_example_3_csv_join_and_output_filter() -> None:
    p = processing(input_filter="$[1:]", join=True, output_filter="$[0,-1]")
    proc = ObjectProcessor(p, "b/in/ids.csv")
    assert b"".join(proc.input_chunks([b"id1,1,2,3\nid2,4,5,6\n"])) == b"1,2,3\n4,5,6\n"
    records = proc.take(2)
    assert proc.output(b"6.0\n15.0\n", records, 0, 0) == b"id1,6.0\nid2,15.0\n"
    without_filter = ObjectProcessor(processing(input_filter="$[1:]", join=True), "b/in/ids.csv")
    assert without_filter.output(b"6.0\n15.0\n", records, 0, 0) == b"id1,1,2,3,6.0\nid2,4,5,6,15.0\n"


JSONL = {"content_type": "application/jsonlines", "accept": "application/jsonlines"}


@pytest.mark.parametrize(
    ("output_filter", "expected"),
    [
        (
            "$",
            b'{"id":1,"text":"hi","SageMakerOutput":{"len":2}}\n'
            b'{"id":2,"text":"hello","SageMakerOutput":{"len":5}}\n',
        ),
        (
            "$['id','SageMakerOutput']",
            b'{"id":1,"SageMakerOutput":{"len":2}}\n{"id":2,"SageMakerOutput":{"len":5}}\n',
        ),
    ],
)
def test_contract_example_4_json_lines_join(output_filter: str, expected: bytes) -> None:
    records = [b'{"id":1,"text":"hi"}\n', b'{"id":2,"text":"hello"}\n']
    proc = ObjectProcessor(processing(join=True, output_filter=output_filter, **JSONL), "b/k")
    assert proc.output(b'{"len": 2}\n{"len": 5}\n', records, 0, 0) == expected


def test_json_join_wraps_non_objects_and_replaces_sagemaker_output() -> None:
    proc = ObjectProcessor(processing(join=True, **JSONL), "b/k")
    records = [b"[1.10,2]\n", b'"text"\r\n', b'{"SageMakerOutput":"old","z":1.50}']
    out = proc.output(b"0.5\n[1]\n{}\n", records, 0, 0)
    assert out == (
        b'{"SageMakerInput":[1.10,2],"SageMakerOutput":0.5}\n'
        b'{"SageMakerInput":"text","SageMakerOutput":[1]}\r\n'
        b'{"z":1.50,"SageMakerOutput":{}}'
    )


def test_json_array_response_is_split_per_record() -> None:
    proc = ObjectProcessor(
        processing(join=True, content_type="application/jsonlines", accept="application/json"), "b/k"
    )
    out = proc.output(b'[6.0, [1,2], {"a": 1}]', [b"{}\n", b"[]\n", b"3\n"], 0, 0)
    assert out == (
        b'{"SageMakerOutput":6.0}\n{"SageMakerInput":[],"SageMakerOutput":[1,2]}\n'
        b'{"SageMakerInput":3,"SageMakerOutput":{"a":1}}\n'
    )


def test_single_record_uses_the_whole_body() -> None:
    p = processing(join=True, content_type="application/jsonlines", accept="application/json")
    proc = ObjectProcessor(p, "b/k", single_record=True)
    assert proc.output(b"[6.0]", [b'{"id":1}\n'], 3, 3) == b'{"id":1,"SageMakerOutput":[6.0]}\n'
    csv_proc = ObjectProcessor(processing(join=True), "b/k", single_record=True)
    assert csv_proc.output(b"6.0,1\r\n", [b"a,b\n"], 0, 0) == b"a,b,6.0,1\n"


def test_output_filter_without_join_filters_results() -> None:
    proc = ObjectProcessor(processing(output_filter="$[-1]"), "b/k")
    # Without a join the records are still needed for their terminators.
    assert b"".join(proc.input_chunks([b"1,2\n3,4"])) == b"1,2\n3,4"
    assert proc.output(b"0.1,0.9\n0.8,0.2\n", proc.take(2), 0, 0) == b"0.9\n0.2"


def test_only_an_input_filter_leaves_responses_untouched() -> None:
    proc = ObjectProcessor(processing(input_filter="$[1:]"), "b/k")
    assert b"".join(proc.input_chunks([b"a,1\nb,2\n"])) == b"1\n2\n"
    assert proc.take(2) == []
    assert proc.output(b"anything at all", [], 0, 0) == b"anything at all"


@pytest.mark.parametrize(
    ("kw", "body", "found", "unit"),
    [
        ({}, b"6.0\n", "1 lines", "one line per record in the text/csv response"),
        ({}, b"6.0\n15.0\n24.0\n", "3 lines", "one line"),
        (JSONL, b'{"a":1}\n', "1 lines", "one line per record in the application/jsonlines response"),
        (
            {"accept": "application/json", "content_type": "application/json"},
            b"[1,2,3]",
            "an array of 3",
            "element",
        ),
        (
            {"accept": "application/json", "content_type": "application/json"},
            b'{"a":1}',
            "an object instead of an array",
            "array",
        ),
    ],
)
def test_result_count_mismatch_fails_with_both_counts(
    kw: dict[str, Any], body: bytes, found: str, unit: str
) -> None:
    proc = ObjectProcessor(processing(join=True, **kw), "b/k")
    with pytest.raises(RecordFormatError) as info:
        proc.output(body, [b"1\n", b"2\n"], 10, 4)
    message = str(info.value)
    assert message.startswith("b/k: payload 4 (records 10 to 11): the model returned ")
    assert found in message and "for 2 records" in message and unit in message


@pytest.mark.parametrize(
    ("kw", "records", "body", "message"),
    [
        (
            {"output_filter": "$[5]"},
            [b"a,b\n"],
            b"1\n",
            "b/k: record 7: OutputFilter $[5]: index 5 is outside the record's 3 fields",
        ),
        ({**JSONL}, [b"{bad\n"], b"1\n", "b/k: record 7: JoinSource Input: not valid JSON"),
        (
            {**JSONL},
            [b"{}\n"],
            b"{bad\n",
            "b/k: payload 2: the model's application/jsonlines response cannot be split",
        ),
    ],
)
def test_output_errors(kw: dict[str, Any], records: list[bytes], body: bytes, message: str) -> None:
    proc = ObjectProcessor(processing(join=True, **kw), "b/k")
    with pytest.raises(RecordFormatError, match=None) as info:
        proc.output(body, records, 7, 2)
    assert message in str(info.value)


# --- create-time checks and settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "path", "text"),
    [
        (("text/csv", "text/csv", "Line", "Input"), None, None),
        (("application/json", "application/json", None, "Input"), None, None),
        (("application/jsonlines", "application/json", "Line", "Input"), None, None),
        (("text/csv", "application/json", "Line", None), None, None),  # no join: any pair of types
        (
            ("text/csv", "text/csv", None, None),
            "transformInput.splitType",
            "SplitType None makes each object",
        ),
        (
            ("application/jsonlines", "application/jsonlines", "None", "Input"),
            "transformInput.splitType",
            "Line",
        ),
        (("text/csv", "text/csv", "RecordIO", None), "transformInput.splitType", "must be Line"),
        (
            ("text/csv", "application/json", "Line", "Input"),
            "transformOutput.accept",
            "must both be text/csv or both JSON",
        ),
        (
            ("application/json", "text/csv", "Line", "Input"),
            "transformOutput.accept",
            "must both be text/csv",
        ),
    ],
)
def test_setup_problem(args: tuple[Any, ...], path: str | None, text: str | None) -> None:
    problem = setup_problem(*args)
    if path is None:
        assert problem is None
    else:
        assert problem is not None and problem[0] == path and text is not None and text in problem[2]


REQUEST: dict[str, Any] = {
    "TransformJobName": "j",
    "ModelName": "m",
    "TransformInput": {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
        "ContentType": "text/csv",
        "SplitType": "Line",
    },
    "TransformOutput": {"S3OutputPath": "s3://bucket/out", "Accept": "text/csv"},
    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
}


def test_processing_for_a_spec() -> None:
    assert processing_for(parse_transform_job(REQUEST)) is None
    request = copy.deepcopy(REQUEST)
    request["DataProcessing"] = {"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"}
    assert processing_for(parse_transform_job(request)) is None
    request["DataProcessing"] = {"InputFilter": "$[1:]", "JoinSource": "Input"}
    p = processing_for(parse_transform_job(request))
    assert p == processing(input_filter="$[1:]", join=True)
    assert p is not None and p.filters_input and p.per_record_output and p.output_csv


@pytest.mark.parametrize("strategy", [BatchStrategy.MULTI_RECORD, BatchStrategy.SINGLE_RECORD])
def test_packed_payloads_line_up_with_their_original_records(strategy: BatchStrategy) -> None:
    """The limit counts the bytes sent (after InputFilter), and each payload's originals are its records."""
    rows = [f"{'id' * 20}{i},{i},{i + 1}\n".encode() for i in range(50)]  # 45+ bytes each, 6-8 sent
    proc = ObjectProcessor(processing(input_filter="$[1:]", join=True), "b/k")
    payloads = list(pack(proc.input_chunks(bytewise(b"".join(rows))), LineSplitter(), strategy, 20, "b/k", 1))
    assert all(len(p.data) <= 20 for p in payloads)
    assert sum(p.record_count for p in payloads) == 50
    for p in payloads:
        originals = proc.take(p.record_count)
        assert originals == rows[p.first_record : p.first_record + p.record_count]
        sums = b"".join(f"{sum(map(int, line.split(b','))) * 1.0}\n".encode() for line in p.data.splitlines())
        joined = proc.output(sums, originals, p.first_record, p.index)
        assert joined.splitlines() == [
            r.rstrip(b"\n") + f",{2.0 * i + 1}".encode()
            for i, r in enumerate(rows[p.first_record : p.first_record + p.record_count], p.first_record)
        ]
