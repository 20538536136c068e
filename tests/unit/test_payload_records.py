"""Splitting a packed payload into its records again (on_record_error=quarantine), and the knob's
validation: every part carries exactly its records' bytes, first record index and byte offset."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.config import RunnerConfig
from runner.contract.spec import BatchStrategy, SplitType, parse_transform_job
from runner.errors import (
    ContainerError,
    HandlerContractError,
    HandlerError,
    InvocationError,
    SpecError,
    UnsupportedFormatError,
)
from runner.records.batching import Payload, PayloadRecords, pack, pack_with_header
from runner.records.quarantine import is_record_error, object_key, quarantine_for
from runner.records.splitters import splitter_for
from tests.unit import test_recordio, test_tfrecord

LINE = splitter_for(SplitType.LINE)
MULTI = BatchStrategy.MULTI_RECORD


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def check_parts(payloads: list[Payload], frames: list[bytes], splitter: Any, header: bytes = b"") -> None:
    """Each record's part is the header plus its frame, at its index and offset in the object."""
    offsets = [len(header) + sum(len(f) for f in frames[:i]) for i in range(len(frames))]
    seen = 0
    for p in payloads:
        records = PayloadRecords.of(p, splitter, bool(header), "b/in/x")
        assert len(records) == p.record_count
        for i in range(len(records)):
            part = records.part(i, i + 1)
            k = p.first_record + i
            assert (part.data, part.first_record, part.byte_offset) == (header + frames[k], k, offsets[k])
            assert part.record_count == 1 and part.index == p.index
        # A run of records is their frames, in order, atop one header.
        half = len(records) // 2 or 1
        run = records.part(0, half)
        assert run.data == header + b"".join(frames[p.first_record : p.first_record + half])
        assert records.part(0, len(records)) is p
        seen += p.record_count
    assert seen == len(frames)


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\n"), min_size=1, max_size=40
    ),
    last_newline=st.booleans(),
    limit=st.integers(16, 80),
    chunk=st.integers(1, 17),
)
def test_line_payloads_split_into_their_lines(
    lines: list[bytes], last_newline: bool, limit: int, chunk: int
) -> None:
    if not last_newline and lines[-1] != b"\n":
        lines[-1] = lines[-1][:-1]  # the object's last line may end without a newline
    data = b"".join(lines)
    check_parts(list(pack(chunked(data, chunk), LINE, MULTI, limit, "b/in/x", 1)), lines, LINE)


@pytest.mark.parametrize(
    ("module", "split_type"), [(test_recordio, SplitType.RECORDIO), (test_tfrecord, SplitType.TFRECORD)]
)
def test_framed_payloads_split_into_whole_frames(module: Any, split_type: SplitType) -> None:
    # RecordIO records holding the magic are written in several frames: a part keeps all of them.
    magic = bytes.fromhex("0a23d7ce")
    records = [b"abc", b"x" * 8 + magic + b"yz", b"", b"hello world", magic * 3, b"q" * 30]
    frames = [module.write_record(r) for r in records]
    splitter = splitter_for(split_type)
    payloads = list(pack(chunked(b"".join(frames), 5), splitter, MULTI, 90, "b/in/x", 1))
    assert len(payloads) > 1 and any(p.record_count > 1 for p in payloads)
    check_parts(payloads, frames, splitter)


def test_csv_header_goes_atop_every_part_and_offsets_count_it() -> None:
    header = b"a,b\n"
    rows = [f"{i},{i * i}\n".encode() for i in range(30)]
    payloads = list(pack_with_header(chunked(header + b"".join(rows), 7), LINE, MULTI, 40, "b/in/x", 1))
    assert len(payloads) > 1
    check_parts(payloads, rows, LINE, header)


def test_one_record_payloads_are_their_own_only_part() -> None:
    # SingleRecord / SplitType None: the data may be a frame's contents, which no splitter reads again.
    p = Payload(3, b"\x00\x01 not a frame", 7, 1, 120)
    records = PayloadRecords.of(p, splitter_for(SplitType.RECORDIO), False, "b/in/x")
    assert len(records) == 1 and records.part(0, 1) is p
    assert len(PayloadRecords.of(Payload(0, b"a\nb\n", 0, 2, 0), None, False, "b/in/x")) == 1


def request(**transform_input: Any) -> dict[str, Any]:
    return {
        "TransformJobName": "qjob",
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
            **transform_input,
        },
        "TransformOutput": {"S3OutputPath": "s3://bkt/out/"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


SPEC = parse_transform_job(request())


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("s3://bkt/quarantine", "s3://bkt/quarantine/qjob"),
        ("s3://bkt/out-q/", "s3://bkt/out-q/qjob"),  # a sibling that only starts like S3OutputPath
        ("s3://other/out", "s3://other/out/qjob"),
        ("file:///tmp/q", "file:///tmp/q/qjob"),
    ],
)
def test_quarantine_location_is_path_slash_job(path: str, location: str) -> None:
    q = quarantine_for(RunnerConfig(on_record_error="quarantine", quarantine_path=path), SPEC)
    assert q is not None and q.location == location


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (None, "is required with on_record_error quarantine"),
        ("", "is required with on_record_error quarantine"),
        ("s3://bkt/out", "must lie outside S3OutputPath s3://bkt/out/"),
        ("s3://bkt/out/", "must lie outside S3OutputPath"),
        ("s3://bkt/out/bad", "must lie outside S3OutputPath"),
        ("S3://BKT/out//bad/", "must lie outside S3OutputPath"),
        ("https://bkt/q", "must be an s3://<bucket>/<prefix> or file://<folder> URI"),
        ("s3://", "must be an s3://<bucket>/<prefix> or file://<folder> URI"),
    ],
)
def test_unworkable_quarantine_paths_are_refused(path: str | None, message: str) -> None:
    with pytest.raises(SpecError) as e:
        quarantine_for(RunnerConfig(on_record_error="quarantine", quarantine_path=path), SPEC)
    assert "'RunnerConfig.quarantine_path'" in str(e.value) and message in str(e.value)


def test_default_mode_has_no_quarantine_and_refuses_a_stray_path() -> None:
    assert quarantine_for(RunnerConfig(), SPEC) is None
    with pytest.raises(SpecError, match="used only with on_record_error quarantine"):
        quarantine_for(RunnerConfig(quarantine_path="s3://bkt/q"), SPEC)
    with pytest.raises(ValueError, match="on_record_error must be one of fail_object, quarantine"):
        RunnerConfig(on_record_error="skip")


def test_quarantine_with_an_input_filter_over_lines_is_refused() -> None:
    req = request()
    req["TransformOutput"]["Accept"] = "text/csv"
    spec = parse_transform_job({**req, "DataProcessing": {"InputFilter": "$[1:]"}})
    with pytest.raises(SpecError, match="InputFilter"):
        quarantine_for(RunnerConfig(on_record_error="quarantine", quarantine_path="s3://bkt/q"), spec)


def test_record_errors_are_the_models_failures_on_data() -> None:
    assert is_record_error(HandlerError("predict_fn raised", hook="predict_fn"))
    assert is_record_error(InvocationError("400"))
    assert not is_record_error(ContainerError("no response within InvocationsTimeoutInSeconds"))
    assert not is_record_error(HandlerContractError("takes 3 arguments"))
    assert not is_record_error(UnsupportedFormatError("415"))
    assert not is_record_error(None)
    assert object_key("s3://bkt/in/a.csv") == "in/a.csv" and object_key("file:///d/a.csv") == "/d/a.csv"
