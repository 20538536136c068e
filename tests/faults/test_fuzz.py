"""Random input never escapes as anything but the documented exception.

* ``parse_transform_job`` / ``parse_create_model`` on requests mutated from valid ones: a spec, or
  ``SpecError`` (every problem listed), never a KeyError or TypeError from deep inside.
* ``read_manifest`` on random manifests (a real ``file://`` object): the entries, or ``SpecError``.
* every splitter, through the packer that drives it in a job, on random bytes and on corrupted or
  truncated valid framings, in random chunkings, strategies and payload caps: payloads, or
  ``RecordFormatError``. Valid framings also come back record for record.
* ``gunzip`` on random, corrupted, truncated and multi-member streams: the bytes, or
  ``RecordFormatError``.
"""

from __future__ import annotations

import copy
import gzip
import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.contract.spec import BatchStrategy, TransformJobSpec, parse_transform_job
from runner.errors import Problem, RecordFormatError, SpecError
from runner.model.artifacts import ModelSpec, parse_create_model
from runner.records.batching import pack, pack_whole, pack_with_header
from runner.records.plan import read_manifest
from runner.records.splitters import Splitter
from runner.records.splitters.csv import CsvSplitter
from runner.records.splitters.line import LineSplitter
from runner.records.splitters.recordio import RecordIOSplitter
from runner.records.splitters.tfrecord import TFRecordSplitter, masked_crc
from runner.records.streams import gunzip
from runner.storage.local import LocalStorage

# Bounded: the whole module runs in seconds; the function-scoped tmp_path is reused on purpose.
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- requests -------------------------------------------------------------------------------------

JOB: dict[str, Any] = {
    "TransformJobName": "job-1",
    "ModelName": "m",
    "MaxConcurrentTransforms": 2,
    "MaxPayloadInMB": 6,
    "BatchStrategy": "MultiRecord",
    "ModelClientConfig": {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1},
    "Environment": {"A": "1"},
    "TransformInput": {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
        "ContentType": "text/csv",
        "CompressionType": "None",
        "SplitType": "Line",
    },
    "TransformOutput": {"S3OutputPath": "s3://bucket/out", "Accept": "text/csv", "AssembleWith": "Line"},
    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    "DataProcessing": {"InputFilter": "$[0]", "OutputFilter": "$", "JoinSource": "Input"},
}
MODEL: dict[str, Any] = {
    "ModelName": "m",
    "PrimaryContainer": {
        "Image": "batch-transform/test:latest",
        "ModelDataUrl": "s3://bucket/model.tar.gz",
        "Environment": {"A": "1"},
    },
    "ExecutionRoleArn": "arn:aws:iam::123456789012:role/t",
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "None", "Line", "Gzip", "s3://", "s3://b/", "$[0]", "text/csv", "SingleRecord"]),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)


def member_paths(obj: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from member_paths(value, (*prefix, key))


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    """``seed`` with a few members replaced, removed or added (the request itself may be replaced)."""
    request: Any = copy.deepcopy(seed)
    paths = list(member_paths(seed))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        if not path:
            if op == "set":
                request = draw(json_like)
            continue
        parent = request
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if op == "set":
            parent[path[-1]] = draw(json_like)
        elif op == "drop":
            parent.pop(path[-1], None)
        else:
            parent[draw(st.text(max_size=12))] = draw(json_like)
    return request


def assert_problems_listed(e: SpecError) -> None:
    assert e.problems and all(isinstance(p, Problem) for p in e.problems)
    assert str(e).startswith(f"{len(e.problems)} validation error")


@FUZZ
@given(mutated(JOB))
def test_transform_job_requests_parse_or_raise_spec_error(request: Any) -> None:
    try:
        spec = parse_transform_job(request)
    except SpecError as e:
        assert_problems_listed(e)
    else:
        assert isinstance(spec, TransformJobSpec)


@FUZZ
@given(mutated(MODEL))
def test_create_model_requests_parse_or_raise_spec_error(request: Any) -> None:
    try:
        model = parse_create_model(request)
    except SpecError as e:
        assert_problems_listed(e)
    else:
        assert isinstance(model, ModelSpec)


def test_the_seeds_are_valid() -> None:
    # Otherwise every mutation would fail on the seed's own problem and prove little.
    assert parse_transform_job(JOB).name == "job-1"
    assert parse_create_model(MODEL).name == "m"


@FUZZ
@given(
    st.one_of(
        st.builds(lambda v: json.dumps(v).encode(), json_like),
        st.builds(
            lambda entries: json.dumps([{"prefix": "s3://b/p/"}, *entries]).encode(),
            st.lists(json_like, max_size=4),
        ),
        st.binary(max_size=60),
        st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n * 20),
    )
)
def test_manifests_read_or_raise_spec_error(tmp_path: Path, body: bytes) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(body)
    try:
        prefix, entries = read_manifest(f"file://{path}", LocalStorage())
    except SpecError as e:
        assert_problems_listed(e)
    else:
        assert prefix.startswith("s3://") and entries and all(isinstance(x, str) and x for x in entries)


# --- splitters and gunzip -------------------------------------------------------------------------


def tfrecord(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def recordio(data: bytes, cflag: int = 0) -> bytes:
    return struct.pack("<II", 0xCED7230A, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def csv_records(texts: list[str]) -> bytes:
    return "".join(t + "\n" for t in texts).encode()


records = st.lists(st.binary(max_size=40), max_size=6)
csv_text = st.lists(st.text(alphabet='ab,"\r1 ', max_size=12), max_size=6)
# Each framing: its splitter and how valid objects are written.
FRAMINGS: dict[str, tuple[Callable[[], Splitter], st.SearchStrategy[bytes]]] = {
    "line": (LineSplitter, csv_text.map(csv_records)),
    "csv": (CsvSplitter, csv_text.map(csv_records)),
    "recordio": (
        RecordIOSplitter,
        st.lists(st.tuples(st.binary(max_size=40), st.integers(0, 7)), max_size=6).map(
            lambda rs: b"".join(recordio(d, c) for d, c in rs)
        ),
    ),
    "tfrecord": (TFRecordSplitter, records.map(lambda rs: b"".join(tfrecord(d) for d in rs))),
}


@st.composite
def damaged(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """Random bytes, or a valid object with some bytes changed and/or cut short."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    data = bytearray(draw(valid))
    for position, value in draw(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=3)):
        if data:
            data[position % len(data)] = value
    if data and draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    out, pos = [], 0
    for cut in cuts:
        out.append(data[pos : pos + cut])
        pos += cut
    return [*out, data[pos:]]


cuts = st.lists(st.integers(min_value=0, max_value=64), max_size=6)
caps = st.sampled_from([None, 1, 7, 16, 64, 4096])
strategies = st.sampled_from(list(BatchStrategy))


@pytest.mark.parametrize("framing", FRAMINGS)
def test_splitters_pack_or_raise_record_format_error(framing: str) -> None:
    make, valid = FRAMINGS[framing]

    @FUZZ
    @given(damaged(valid), cuts, strategies, caps)
    def check(data: bytes, cut: list[int], strategy: BatchStrategy, cap: int | None) -> None:
        for run in (
            lambda: list(pack(chunked(data, cut), make(), strategy, cap, "b/k", 1)),
            lambda: list(pack_with_header(chunked(data, cut), make(), strategy, cap, "b/k", 1)),
            lambda: make().record_end(data, 0, True),
            lambda: make().greedy_end(data, 0, cap or 8, True),
            lambda: make().record_count(data, 0, len(data)),
        ):
            try:
                run()
            except RecordFormatError as e:
                assert str(e)

    check()


@pytest.mark.parametrize("framing", ["recordio", "tfrecord"])
def test_valid_framings_come_back_record_for_record(framing: str) -> None:
    make, _ = FRAMINGS[framing]
    frame = recordio if framing == "recordio" else tfrecord

    @FUZZ
    @given(records, cuts)
    def check(datas: list[bytes], cut: list[int]) -> None:
        body = b"".join(frame(d) for d in datas)
        sent = list(pack(chunked(body, cut), make(), BatchStrategy.SINGLE_RECORD, 4096, "b/k", 1))
        assert [p.data for p in sent] == datas

    check()


def test_whole_objects_pack_or_raise_record_format_error() -> None:
    @FUZZ
    @given(st.binary(max_size=300), cuts, caps)
    def check(data: bytes, cut: list[int], cap: int | None) -> None:
        try:
            assert [p.data for p in pack_whole(chunked(data, cut), cap, "b/k", 1)] == [data]
        except RecordFormatError:
            assert cap is not None and len(data) > cap

    check()


@FUZZ
@given(
    st.lists(st.binary(max_size=80), min_size=1, max_size=3),
    st.sampled_from(["intact", "random", "cut", "flip", "junk-after"]),
    st.integers(min_value=0, max_value=10_000),
    cuts,
)
def test_gunzip_decodes_or_raises_record_format_error(
    members: list[bytes], damage: str, where: int, cut: list[int]
) -> None:
    stream = b"".join(gzip.compress(m) for m in members)
    if damage == "random":
        stream = bytes((b * 31 + where) % 256 for b in stream)
    elif damage == "cut":
        stream = stream[: where % len(stream)]
    elif damage == "flip":
        i = where % len(stream)
        stream = stream[:i] + bytes([stream[i] ^ 0xFF]) + stream[i + 1 :]
    elif damage == "junk-after":
        stream += b"junk"
    try:
        out = b"".join(gunzip(chunked(stream, cut), "b/k.gz"))
    except RecordFormatError as e:
        assert str(e).startswith("b/k.gz: ")
        assert damage != "intact"
    else:
        if damage == "intact":
            assert out == b"".join(members)
