"""docs/contract.md §9 input/output knobs, one whole job each on a real local Ray and the embedded S3, with
byte-exact outputs; and the same input with every knob off, byte-identical to SageMaker's rules."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Echoes each payload between < and >: the output shows exactly where payloads were cut.
BOUNDARY_MODEL = """
def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body if isinstance(body, str) else body.decode()

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    return "<" + prediction + ">\\n", accept
"""

# Reads each payload with its header (csv.DictReader) and answers column b of every record.
HEADER_MODEL = """
import csv, io

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return list(csv.DictReader(io.StringIO(body)))

def predict_fn(rows, model):
    return [row["b"] for row in rows]

def output_fn(prediction, accept):
    return "".join(value + "\\n" for value in prediction), accept
"""

# Reads each payload as a Parquet file: the number of row groups it holds, then the ids of its rows.
PARQUET_MODEL = """
import io
import pyarrow.parquet as pq

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return pq.ParquetFile(io.BytesIO(body))

def predict_fn(f, model):
    return f.num_row_groups, f.read().column("id").to_pylist()

def output_fn(prediction, accept):
    groups, ids = prediction
    return f"groups {groups}\\n" + "".join(f"{i}\\n" for i in ids), accept
"""

QUOTED = b'id,text\n1,"a\nb"\n2,"c,""d"""\r\n3,e'


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def model(tmp_path: Path, name: str, code: str) -> dict[str, Any]:
    return model_request(name, write_model(tmp_path / name, code))


def run(request: dict[str, Any], model_req: dict[str, Any], home: Path, **knobs: Any) -> Any:
    record = run_job(request, RunnerConfig(home=home, **knobs), model_request=model_req)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    return record


def test_all_knobs_off_is_sagemakers_line_splitting(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    bucket.put("in/q.csv", QUOTED)
    request = job_request("off", bucket.name, ModelName="edge", BatchStrategy="SingleRecord")
    run(request, model(tmp_path, "edge", BOUNDARY_MODEL), home)
    # Every newline ends a record, quoted or not, and the header line is a record.
    assert bucket.get("out/q.csv.out") == b'<id,text\n>\n<1,"a\n>\n<b"\n>\n<2,"c,""d"""\r\n>\n<3,e>\n'


def test_csv_quoted_newlines(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    bucket.put("in/q.csv", QUOTED)
    request = job_request("quoted", bucket.name, ModelName="edge", BatchStrategy="SingleRecord")
    record = run(request, model(tmp_path, "edge", BOUNDARY_MODEL), home, csv_quoted_newlines=True)
    assert bucket.get("out/q.csv.out") == b'<id,text\n>\n<1,"a\nb"\n>\n<2,"c,""d"""\r\n>\n<3,e>\n'
    assert record.describe()["x-runner"]["records"] == 4


def test_csv_header_is_sent_with_every_payload(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    bucket.put("in/a.csv", b"a,b\n1,2\n3,4\n5,6\n")
    bucket.put("in/header-only.csv", b"a,b\n")
    bucket.put("in/empty.csv", b"")
    request = job_request("header", bucket.name, ModelName="hdr", BatchStrategy="SingleRecord")
    record = run(request, model(tmp_path, "hdr", HEADER_MODEL), home, csv_header="first-line")
    # One payload per record, each "a,b\n<record>": the model answers once per record, nothing repeated.
    assert bucket.get("out/a.csv.out") == b"2\n4\n6\n"
    assert bucket.get("out/header-only.csv.out") == b""
    assert bucket.get("out/empty.csv.out") == b""
    counters = record.describe()["x-runner"]
    assert counters["records"] == 3 and counters["payloads"] == 3


def test_csv_header_in_output(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    bucket.put("in/a.csv", b"a,b\n1,2\n3,4\n5,6\n")
    bucket.put("in/header-only.csv", b"a,b\n")
    bucket.put("in/empty.csv", b"")
    request = job_request("header-out", bucket.name, ModelName="hdr", BatchStrategy="MultiRecord")
    knobs = {"csv_header": "first-line", "csv_header_in_output": True}
    record = run(request, model(tmp_path, "hdr", HEADER_MODEL), home, **knobs)
    assert bucket.get("out/a.csv.out") == b"a,b\n2\n4\n6\n"
    assert bucket.get("out/header-only.csv.out") == b"a,b\n"
    assert bucket.get("out/empty.csv.out") == b""
    assert record.describe()["x-runner"]["payloads"] == 1


def test_split_parquet_row_groups(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    rng = random.Random(7)
    rows = 500
    table = pa.table({"id": range(rows), "blob": [rng.randbytes(2900) for _ in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=100, compression="none")  # 5 groups of about 290 KB
    bucket.put("in/t.parquet", sink.getvalue())
    request = job_request(
        "parquet",
        bucket.name,
        ModelName="pq",
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        TransformInput={"ContentType": "application/x-parquet", "SplitType": "None"},
        TransformOutput={"Accept": "text/csv", "AssembleWith": "None"},
    )
    record = run(request, model(tmp_path, "pq", PARQUET_MODEL), home, split_parquet_row_groups=True)
    # Greedy under 1 MiB: three whole row groups, then the last two; rows in order.
    expected = "groups 3\n" + "".join(f"{i}\n" for i in range(300))
    expected += "groups 2\n" + "".join(f"{i}\n" for i in range(300, 500))
    assert bucket.get("out/t.parquet.out") == expected.encode()
    counters = record.describe()["x-runner"]
    assert counters["payloads"] == 2 and counters["records"] == rows


def test_a_knob_that_cannot_work_fails_the_job_before_it_runs(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    bucket.put("in/q.csv", QUOTED)
    request = job_request(
        "refused", bucket.name, ModelName="edge", DataProcessing={"InputFilter": "$[1]", "JoinSource": "None"}
    )
    record = run_job(
        request,
        RunnerConfig(home=home, csv_quoted_newlines=True),
        model_request=model(tmp_path, "edge", BOUNDARY_MODEL),
    )
    assert record.status is TransformJobStatus.FAILED
    assert "RunnerConfig.csv_quoted_newlines" in (record.failure_reason or "")
    assert bucket.keys("out/") == []
