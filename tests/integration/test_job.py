"""Whole jobs on a real local Ray against the real embedded S3: what a user sees in S3 and in Describe."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.errors import ResourceInUseError, SpecError
from runner.jobs.counters import JobCounters
from runner.jobs.store import JobStore, TransformJobStatus

from .conftest import JSONL_MODEL, SUM_MODEL, Bucket, job_request, model_request, wheel, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sum_model(tmp_path: Path) -> dict[str, Any]:
    return model_request("sum", write_model(tmp_path / "sum-model", SUM_MODEL))


def run(request: dict[str, Any], model: dict[str, Any], home: Path, **config: Any) -> Any:
    return run_job(request, RunnerConfig(home=home, **config), model_request=model)


def test_contract_example_1_csv_multirecord_line(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n7,8,9\n")
    record = run(job_request("ex1", bucket.name, BatchStrategy="MultiRecord"), sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"6\n15\n24\n"
    d = record.describe()
    assert d["TransformJobStatus"] == "Completed"
    assert (
        d["MaxPayloadInMB"] == 6 and d["BatchStrategy"] == "MultiRecord" and d["MaxConcurrentTransforms"] == 1
    )
    assert d["TransformStartTime"] >= d["CreationTime"] and d["TransformEndTime"] >= d["TransformStartTime"]
    assert d["x-runner"]["records"] == 3 and d["x-runner"]["payloads"] == 1


@pytest.mark.parametrize(
    ("assemble_with", "expected"),
    [("None", b"[6][15][24]"), ("Line", b"[6]\n[15]\n[24]\n")],
)
def test_contract_example_2_single_record_json(
    bucket: Bucket, sum_model: dict[str, Any], home: Path, assemble_with: str, expected: bytes
) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n7,8,9\n")
    request = job_request(
        f"ex2-{assemble_with.lower()}",
        bucket.name,
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        TransformOutput={"Accept": "application/json", "AssembleWith": assemble_with},
    )
    record = run(request, sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == expected
    assert record.describe()["x-runner"]["payloads"] == 3


def test_json_lines_multirecord_and_record_order(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    model = model_request("jsonl", write_model(tmp_path / "m", JSONL_MODEL))
    rows = [{"id": i, "text": "x" * (i % 7)} for i in range(3000)]
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    bucket.put("in/docs.jsonl", body)
    request = job_request(
        "jsonl",
        bucket.name,
        ModelName="jsonl",
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=2,
        TransformInput={"ContentType": "application/jsonlines"},
        TransformOutput={"Accept": "application/jsonlines", "AssembleWith": "Line"},
    )
    # Small payloads and two workers: results arrive out of order and must be put back in order.
    record = run_job(request, RunnerConfig(home=home, in_flight_per_worker=4), model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    out = bucket.get("out/docs.jsonl.out").splitlines()
    assert [json.loads(line)["len"] for line in out] == [r["id"] % 7 for r in rows]


def test_nested_keys_partial_prefix_and_gzip(bucket: Bucket, sum_model: dict[str, Any], home: Path) -> None:
    bucket.put("in/data1.csv", b"1,1\n")
    bucket.put("in/data/x/b.csv", b"2,2\n")
    bucket.put("in/data/c.csv.gz", gzip.compress(b"3,3\n") + gzip.compress(b"4,4\n"))  # two members
    bucket.put("in/data/folder/", b"")  # a folder marker is not an input
    request = job_request(
        "naming",
        bucket.name,
        TransformInput={
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket.name}/in/data"}
            },
            "CompressionType": "Gzip",
        },
    )
    # CompressionType applies to every object, so give the plain ones gzip bodies too.
    bucket.put("in/data1.csv", gzip.compress(b"1,1\n"))
    bucket.put("in/data/x/b.csv", gzip.compress(b"2,2\n"))
    record = run(request, sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    # docs/contract.md §6.1: keys continuing "in/data/" lose it; "in/data1.csv" is named relative to "in/".
    assert sorted(bucket.keys("out/")) == ["out/c.csv.gz.out", "out/data1.csv.out", "out/x/b.csv.out"]
    assert bucket.get("out/c.csv.gz.out") == b"6\n8\n"
    assert bucket.get("out/x/b.csv.out") == b"4\n"
    assert bucket.get("out/data1.csv.out") == b"2\n"


@pytest.mark.slow  # 1,500 objects: half a minute of the default suite's budget
def test_many_small_objects(bucket: Bucket, sum_model: dict[str, Any], home: Path) -> None:
    n = 1500
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: bucket.put(f"in/part-{i:05d}.csv", f"{i},1\n".encode()), range(n)))
    record = run(job_request("many", bucket.name, MaxConcurrentTransforms=2), sum_model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    keys = bucket.keys("out/")
    assert len(keys) == n
    for i in (0, 777, n - 1):
        assert bucket.get(f"out/part-{i:05d}.csv.out") == f"{i + 1}\n".encode()
    assert record.describe()["x-runner"]["objects_done"] == n


def test_oversize_record_fails_that_object_only(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("in/big.csv", b"1,2\n" + b"1," * 550_000 + b"1\n")  # second record is 1,100,002 bytes
    bucket.put("in/ok.csv", b"1,2\n")
    record = run(job_request("oversize", bucket.name, MaxPayloadInMB=1), sum_model, home)
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason.startswith("ClientError: ")
    assert f"{bucket.name}/in/big.csv: record 1 at byte 4 is 1100002 bytes" in record.failure_reason
    assert "MaxPayloadInMB=1" in record.failure_reason
    assert bucket.keys("out/") == ["out/ok.csv.out"]
    assert bucket.open_uploads() == []


RAISING_MODEL = """
import numpy

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    data = numpy.atleast_2d(data)
    if (data < 0).any():
        raise ValueError("negative input is not allowed")
    return data.sum(axis=1)
"""


def test_hook_error_names_hook_and_object(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    model = model_request("sum", write_model(tmp_path / "m", RAISING_MODEL))
    bucket.put("in/bad.csv", b"1,2\n" * 10 + b"-1,2\n")
    bucket.put("in/good.csv", b"1,2\n")
    record = run(job_request("raises", bucket.name), model, home)
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason
    assert "predict_fn" in reason and f"{bucket.name}/in/bad.csv" in reason
    assert "negative input is not allowed" in reason and "payload 0" in reason
    assert bucket.keys("out/") == ["out/good.csv.out"]
    assert bucket.get("out/good.csv.out") == b"3\n"


ENV_MODEL = """
import os

def model_fn(model_dir):
    with open(os.environ["LOAD_LOG"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    return None

def transform_fn(model, body, content_type, accept):
    keys = ["A", "B", "C", "SAGEMAKER_BATCH", "SAGEMAKER_MAX_PAYLOAD_IN_MB", "SAGEMAKER_BATCH_STRATEGY",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"]
    return ",".join(f"{k}={os.environ.get(k, '-')}" for k in keys) + "\\n", accept
"""


def test_environment_precedence_and_model_fn_once_per_worker(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    log = tmp_path / "loads.txt"
    model = model_request(
        "env", write_model(tmp_path / "m", ENV_MODEL), {"A": "model", "B": "model", "LOAD_LOG": str(log)}
    )
    bucket.put("in/a.csv", b"x\n" * 40)
    request = job_request(
        "env",
        bucket.name,
        ModelName="env",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=2,
        Environment={"B": "job", "C": "job"},
    )
    record = run(request, model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    lines = bucket.get("out/a.csv.out").splitlines()
    assert len(lines) == 40
    assert set(lines) == {
        b"A=model,B=job,C=job,SAGEMAKER_BATCH=true,SAGEMAKER_MAX_PAYLOAD_IN_MB=-,"
        b"SAGEMAKER_BATCH_STRATEGY=SINGLE_RECORD,SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=2"
    }
    pids = log.read_text().split()
    assert len(pids) == 2 and len(set(pids)) == 2  # two workers, model_fn once each, not per payload


def test_duplicate_name_is_resource_in_use(bucket: Bucket, sum_model: dict[str, Any], home: Path) -> None:
    bucket.put("in/a.csv", b"1\n")
    first = run(job_request("Dup-Name", bucket.name), sum_model, home)
    assert first.status is TransformJobStatus.COMPLETED
    with pytest.raises(
        ResourceInUseError, match=r"a transform job with this name already exists \(arn:aws:sagemaker"
    ):
        run(job_request("dup-name", bucket.name), sum_model, home)
    assert [r.name for r in JobStore(RunnerConfig(home=home).store_path).list_jobs()] == ["Dup-Name"]


def test_empty_prefix_and_unknown_model_are_refused_before_anything_runs(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    with pytest.raises(SpecError, match=f'No S3 objects found under S3 URL "s3://{bucket.name}/in/"'):
        run(job_request("empty", bucket.name), sum_model, home)
    bucket.put("in/a.csv", b"1\n")
    with pytest.raises(
        SpecError, match=r'Could not find model "arn:aws:sagemaker:us-east-1:\d{12}:model/nope"'
    ):
        run_job(job_request("nomodel", bucket.name, ModelName="nope"), RunnerConfig(home=home))
    assert JobStore(RunnerConfig(home=home).store_path).list_jobs() == []


def test_model_tarball_from_s3(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    import tarfile

    src = write_model(tmp_path / "m", SUM_MODEL)
    tarball = tmp_path / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(src / "code", arcname="code")
    bucket.put("models/sum/model.tar.gz", tarball.read_bytes())
    bucket.put("in/a.csv", b"1,2\n")
    model = model_request("sum", f"s3://{bucket.name}/models/sum/model.tar.gz")
    record = run(job_request("tarball", bucket.name), model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"3\n"


FAILING_LOAD = """
def model_fn(model_dir):
    raise RuntimeError("weights are corrupt")
"""


def test_model_fn_failure_fails_the_job_with_the_hook_named(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    model = model_request("sum", write_model(tmp_path / "m", FAILING_LOAD))
    bucket.put("in/a.csv", b"1\n")
    record = run(job_request("load-fails", bucket.name), model, home)
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason.startswith("ClientError: ")
    assert "model_fn raised RuntimeError: weights are corrupt" in record.failure_reason
    assert record.transform_end_time is not None
    assert bucket.keys("out/") == []


def test_instances_that_cannot_fit_an_existing_cluster_fail_fast(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    """With --ray-address the cluster is taken as it is: no scaling down, a message naming the setting."""
    bucket.put("in/a.csv", b"1\n")
    request = job_request("too-big", bucket.name, TransformResources={"InstanceType": "ml.m5.24xlarge"})
    record = run(request, sum_model, home, ray_address="auto")  # the test session's Ray is already connected
    assert record.status is TransformJobStatus.FAILED
    assert "1 x ml.m5.24xlarge needs 96 CPUs on one node per instance" in record.failure_reason
    assert "TransformResources.InstanceType" in record.failure_reason
    assert bucket.keys("out/") == []


def test_instance_bigger_than_the_machine_is_scaled_down_on_local_ray(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("in/a.csv", b"1,2\n")
    notes: list[str] = []
    request = job_request("scaled", bucket.name, TransformResources={"InstanceType": "ml.m5.24xlarge"})
    record = run_job(request, RunnerConfig(home=home), model_request=sum_model, on_note=notes.append)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert any("ml.m5.24xlarge has 96 vCPUs" in n and "runs on 2 CPUs" in n for n in notes)
    assert bucket.get("out/a.csv.out") == b"3\n"


PID_MODEL = """
import os

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return f"{os.getpid()}\\n", accept
"""


def test_objects_spread_over_instances_and_model_from_an_s3_prefix(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    src = write_model(tmp_path / "m", PID_MODEL)
    bucket.put("models/pid/code/inference.py", (src / "code" / "inference.py").read_bytes())
    model = model_request("pid", f"s3://{bucket.name}/models/pid/")
    for i in range(8):
        bucket.put(f"in/{i}.csv", b"x\n")
    request = job_request(
        "instances",
        bucket.name,
        ModelName="pid",
        TransformResources={"InstanceCount": 2},
        BatchStrategy="SingleRecord",
    )
    record = run(request, model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    pids = {bucket.get(f"out/{i}.csv.out") for i in range(8)}
    assert len(pids) == 2  # one worker per instance (MaxConcurrentTransforms 1), both used
    workers = record.describe()["x-runner"]["workers"]
    assert len(workers) == 2 and all(w["payloads"] > 0 for w in workers)


PARAMS_MODEL = """
import numpy

def execution_parameters_fn():
    return {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 1, "BatchStrategy": "SINGLE_RECORD"}

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    return numpy.atleast_2d(data).sum(axis=1)
"""


@pytest.mark.parametrize(
    ("overrides", "resolved"),
    [
        ({}, {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 1, "BatchStrategy": "SingleRecord"}),
        (  # request > the model's execution parameters > defaults (docs/contract.md §5.1)
            {"BatchStrategy": "MultiRecord", "MaxConcurrentTransforms": 1},
            {"MaxConcurrentTransforms": 1, "MaxPayloadInMB": 1, "BatchStrategy": "MultiRecord"},
        ),
    ],
)
def test_execution_parameters_fn_fills_what_the_request_left_out(
    bucket: Bucket, tmp_path: Path, home: Path, overrides: dict[str, Any], resolved: dict[str, Any]
) -> None:
    model = model_request("sum", write_model(tmp_path / "m", PARAMS_MODEL))
    bucket.put("in/a.csv", b"1,2\n3,4\n5,6\n")
    record = run(job_request(f"params-{len(overrides)}", bucket.name, **overrides), model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    d = record.describe()
    assert {k: d[k] for k in resolved} == resolved
    assert d["x-runner"]["payloads"] == (3 if resolved["BatchStrategy"] == "SingleRecord" else 1)
    assert len(d["x-runner"]["workers"]) == resolved["MaxConcurrentTransforms"]
    assert bucket.get("out/a.csv.out") == b"3\n7\n11\n"


def test_single_payload_objects_use_every_worker_of_an_instance(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    model = model_request("pid", write_model(tmp_path / "m", PID_MODEL))
    for i in range(4):
        bucket.put(f"in/{i}.csv", b"x\n")
    record = run(job_request("rotate", bucket.name, ModelName="pid", MaxConcurrentTransforms=2), model, home)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert len({bucket.get(f"out/{i}.csv.out") for i in range(4)}) == 2
    assert [w["payloads"] for w in record.describe()["x-runner"]["workers"]] == [2, 2]


REQUIREMENTS_MODEL = """
import demo_req_pkg

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return demo_req_pkg.VALUE + "\\n", accept
"""


def test_code_requirements_are_installed_once_per_node(bucket: Bucket, tmp_path: Path, home: Path) -> None:
    src = write_model(tmp_path / "m", REQUIREMENTS_MODEL)
    whl = wheel(src / "code", "demo_req_pkg", "1.0", {"demo_req_pkg.py": 'VALUE = "from requirements.txt"\n'})
    (src / "code" / "requirements.txt").write_text(f"./{whl.name}\n")
    model = model_request("req", src)
    bucket.put("in/a.csv", b"x\n")
    record = run(
        job_request("requirements", bucket.name, ModelName="req", MaxConcurrentTransforms=2), model, home
    )
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"from requirements.txt\n"
    installed = list((home / "model-cache" / "requirements").iterdir())
    assert len([p for p in installed if p.is_dir()]) == 1  # one install for the probe and both workers

    (src / "code" / "requirements.txt").write_text("no-such-package-anywhere==0.0.0\n")
    bucket.put("in/a.csv", b"x\n")
    failed = run(job_request("bad-requirements", bucket.name, ModelName="req"), model, home)
    assert failed.status is TransformJobStatus.FAILED
    assert "pip could not install the model's requirements" in failed.failure_reason


SLOW_MODEL = """
import time


def model_fn(model_dir):
    return None


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    time.sleep(0.1)
    return data


def output_fn(prediction, accept):
    return prediction, accept
"""


def test_live_counters_move_while_an_object_is_still_running(
    bucket: Bucket, tmp_path: Path, home: Path
) -> None:
    """The object's task reports what it has done as it goes, not only when the object is done: the
    CLI's progress and Describe's x-runner counters move during a long object."""
    model = model_request("slow", write_model(tmp_path / "slow", SLOW_MODEL))
    bucket.put("in/a.csv", b"".join(f"{i}\n".encode() for i in range(30)))
    seen: list[JobCounters] = []
    request = job_request("live", bucket.name, ModelName="slow", BatchStrategy="SingleRecord")
    record = run_job(request, RunnerConfig(home=home), model_request=model, on_progress=seen.append)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"".join(f"{i}\n".encode() for i in range(30))
    during = [c.records for c in seen if c.objects_done == 0 and 0 < c.records < 30]
    assert during, f"no live count while the object ran: {[(c.objects_done, c.records) for c in seen]}"
    records = [c.records for c in seen]
    assert records == sorted(records) and records[-1] == 30
    assert record.describe()["x-runner"]["records"] == 30 and record.describe()["x-runner"]["payloads"] == 30
