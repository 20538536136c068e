"""DataProcessing through real jobs (docs/contract.md §6.4, worked examples 3 and 4): InputFilter -> model ->
JoinSource -> OutputFilter, byte for byte in S3, and the failures a user sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.errors import SpecError
from runner.jobs.store import JobStore, TransformJobStatus

from .conftest import JSONL_MODEL, SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]


# Answers every payload with one line, whatever it holds: a MultiRecord count mismatch.
ONE_LINE_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return "1\\n", accept
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sum_model(tmp_path: Path) -> dict[str, Any]:
    return model_request("sum", write_model(tmp_path / "sum-model", SUM_MODEL))


@pytest.fixture
def jsonl_model(tmp_path: Path) -> dict[str, Any]:
    return model_request("jsonl", write_model(tmp_path / "jsonl-model", JSONL_MODEL))


def run(request: dict[str, Any], model: dict[str, Any], home: Path) -> Any:
    return run_job(request, RunnerConfig(home=home), model_request=model)


def test_contract_example_3_csv_filter_join_output_filter(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("in/ids.csv", b"id1,1,2,3\nid2,4,5,6\n")
    request = job_request(
        "ex3",
        bucket.name,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    record = run(request, sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/ids.csv.out") == b"id1,6\nid2,15\n"
    d = record.describe()
    assert d["DataProcessing"] == request["DataProcessing"]
    # One request of the filtered records (b"1,2,3\n4,5,6\n", 12 bytes), not the 20 input bytes.
    assert d["x-runner"]["payloads"] == 1 and d["x-runner"]["bytes_in"] == 12


@pytest.mark.parametrize(
    ("output_filter", "expected"),
    [
        (
            None,
            b'{"id":1,"text":"hi","SageMakerOutput":{"len":2}}\n'
            b'{"id":2,"text":"hello","SageMakerOutput":{"len":5}}\n',
        ),
        (
            "$['id','SageMakerOutput']",
            b'{"id":1,"SageMakerOutput":{"len":2}}\n{"id":2,"SageMakerOutput":{"len":5}}\n',
        ),
    ],
)
def test_contract_example_4_json_lines_join(
    bucket: Bucket, jsonl_model: dict[str, Any], home: Path, output_filter: str | None, expected: bytes
) -> None:
    bucket.put("in/docs.jsonl", b'{"id":1,"text":"hi"}\n{"id":2,"text":"hello"}\n')
    dp = {"JoinSource": "Input"} | ({"OutputFilter": output_filter} if output_filter else {})
    request = job_request(
        f"ex4-{'filtered' if output_filter else 'joined'}",
        bucket.name,
        ModelName="jsonl",
        TransformInput={"ContentType": "application/jsonlines"},
        TransformOutput={"Accept": "application/jsonlines", "AssembleWith": "Line"},
        DataProcessing=dp,
    )
    record = run(request, jsonl_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/docs.jsonl.out") == expected


def test_payload_limit_counts_filtered_bytes_and_many_payloads_join_in_order(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    """Rows with a 600,000-byte id column: two never fit 1 MB, but after `$[1:]` a payload holds all;
    a second object with many small payloads checks that joins follow record order."""
    big = [b"x" * 600_000 + f",{i},1\n".encode() for i in range(3)]
    bucket.put("in/wide.csv", b"".join(big))
    bucket.put("in/many.csv", b"".join(f"r{i},{i},{i}\n".encode() for i in range(400)))
    request = job_request(
        "dp-limit",
        bucket.name,
        MaxPayloadInMB=1,
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[-1]"},
    )
    record = run(request, sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/wide.csv.out") == b"1\n2\n3\n"
    assert bucket.get("out/many.csv.out") == b"".join(f"{2 * i}\n".encode() for i in range(400))


def test_index_outside_the_row_and_a_result_count_mismatch_fail_their_object_only(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    model = model_request("one", write_model(tmp_path / "m", ONE_LINE_MODEL))
    bucket.put("in/ok.csv", b"a,1\n")
    bucket.put("in/short.csv", b"a,1\nb\n")  # record 1 has no field 1 for the OutputFilter
    bucket.put("in/multi.csv", b"a,1\nb,2\n")  # one payload of 2 records, answered with 1 line
    request = job_request(
        "dp-errors",
        bucket.name,
        ModelName="one",
        DataProcessing={"OutputFilter": "$[1]", "JoinSource": "Input"},
    )
    record = run(request, model, home)
    assert record.status is TransformJobStatus.FAILED
    assert bucket.keys("out/") == ["out/ok.csv.out"]
    assert bucket.get("out/ok.csv.out") == b"1\n"
    assert bucket.open_uploads() == []
    assert record.describe()["x-runner"]["objects_failed"] == 2
    errors = record.failure_reason
    assert errors.startswith("ClientError: ")
    assert f"{bucket.name}/in/" in errors
    # Both messages, whichever object failed first, say what went wrong and where.
    assert ("record 1: OutputFilter $[1]: index 1 is outside the record's 1 field" in errors) or (
        "the model returned 1 lines for 2 records" in errors
    )


def test_whole_application_json_object_is_one_record(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    model = model_request(
        "count",
        write_model(
            tmp_path / "m",
            """
            import json

            def model_fn(model_dir):
                return None

            def transform_fn(model, body, content_type, accept):
                doc = json.loads(body)
                return json.dumps({"n": len(doc)}), accept
            """,
        ),
    )
    bucket.put("in/doc.json", b'{"features": [1.10, 2, 3],\n "id": "d1"}\n')
    request = job_request(
        "dp-whole",
        bucket.name,
        ModelName="count",
        TransformInput={"ContentType": "application/json", "SplitType": "None"},
        TransformOutput={"Accept": "application/json", "AssembleWith": "None"},
        DataProcessing={"InputFilter": "$.features", "JoinSource": "Input"},
    )
    record = run(request, model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/doc.json.out") == b'{"features":[1.10,2,3],"id":"d1","SageMakerOutput":{"n":3}}\n'


@pytest.mark.parametrize(
    ("dp", "message"),
    [
        ({"InputFilter": "$[0:2,246:]"}, "only single range filters of format (eg: [1:5]) are supported"),
        ({"InputFilter": "$.id"}, "A text/csv record is an array of fields"),
    ],
)
def test_unsupported_expressions_are_refused_before_anything_runs(
    bucket: Bucket, sum_model: dict[str, Any], home: Path, dp: dict[str, str], message: str
) -> None:
    bucket.put("in/a.csv", b"1,2\n")
    with pytest.raises(SpecError) as info:
        run(job_request("dp-refused", bucket.name, DataProcessing=dp), sum_model, home)
    assert message in str(info.value)
    assert JobStore(RunnerConfig(home=home).store_path).list_jobs() == []
    assert bucket.keys("out/") == []
