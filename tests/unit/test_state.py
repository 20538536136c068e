"""The job store: lifecycle statuses, Describe shape, unique names."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runner.errors import ResourceInUseError, ResourceNotFoundError
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus, job_arn


def record(name: str) -> JobRecord:
    now = time.time()
    request = {
        "TransformJobName": name,
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}},
        "TransformOutput": {"S3OutputPath": "s3://b/out"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    return JobRecord(name, job_arn(name), TransformJobStatus.IN_PROGRESS, request, now, now)


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("InProgress", False), ("Stopping", False), ("Completed", True), ("Failed", True), ("Stopped", True)],
)
def test_terminal_statuses(status: str, terminal: bool) -> None:
    assert TransformJobStatus(status).is_terminal() is terminal


def test_store_round_trip_and_describe_shape(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create_job(record("job-1"))
    store.update_job(
        "JOB-1",
        status=TransformJobStatus.FAILED,
        failure_reason="ClientError: b/k: boom",
        resolved={"MaxPayloadInMB": 6, "BatchStrategy": "MultiRecord", "MaxConcurrentTransforms": 1},
        transform_end_time=time.time(),
    )
    d = JobStore(tmp_path / "jobs.sqlite").get_job("job-1").describe()
    assert d["TransformJobStatus"] == "Failed"
    assert d["FailureReason"] == "ClientError: b/k: boom"
    assert d["TransformJobArn"] == "arn:aws:sagemaker:us-east-1:000000000000:transform-job/job-1"
    assert (
        d["MaxPayloadInMB"] == 6
        and d["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == "s3://b/in/"
    )
    assert "Tags" not in d  # as in DescribeTransformJob
    assert isinstance(d["CreationTime"], float) and "TransformEndTime" in d


def test_names_are_unique_case_insensitively(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    store.create_job(record("Job-A"))
    with pytest.raises(
        ResourceInUseError, match=r"already exists \(arn:aws:sagemaker:.*:transform-job/Job-A\)"
    ):
        store.create_job(record("job-a"))
    with pytest.raises(ResourceNotFoundError, match="Requested resource not found"):
        store.get_job("job-b")


def test_a_fresh_store_opened_by_many_at_once_opens_for_all(tmp_path: Path) -> None:
    # A job's thread and a watcher (or two job processes) often open a new store together; the switch
    # to WAL must not fail either of them with "database is locked".
    errors: list[BaseException] = []
    for trial in range(40):
        path = tmp_path / f"store-{trial}" / "jobs.db"
        barrier = threading.Barrier(8)

        def open_store(path: Path = path, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                JobStore(path)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
