"""S3DataType ManifestFile through real jobs (docs/contract.md §4.1, 6.1): inputs are prefix + entry, outputs
are named after the entry, a bad manifest is refused before anything runs, and a missing object fails
that object only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.errors import SpecError
from runner.jobs.store import JobStore, TransformJobStatus

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sum_model(tmp_path: Path) -> dict[str, Any]:
    return model_request("sum", write_model(tmp_path / "sum-model", SUM_MODEL))


def manifest_request(name: str, bucket: Bucket, key: str = "manifests/job.manifest") -> dict[str, Any]:
    source = {"S3DataType": "ManifestFile", "S3Uri": f"s3://{bucket.name}/{key}"}
    return job_request(name, bucket.name, TransformInput={"DataSource": {"S3DataSource": source}})


def put_manifest(bucket: Bucket, manifest: Any, key: str = "manifests/job.manifest") -> None:
    bucket.put(key, manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode())


def test_manifest_entries_nested_and_under_another_prefix(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("data/2024/a.csv", b"1,2\n")
    bucket.put("data/2024/x/y/b.csv", b"3,4\n5,6\n")
    bucket.put("data/2024/not-listed.csv", b"9,9\n")  # under the prefix, but not in the manifest
    put_manifest(bucket, [{"prefix": f"s3://{bucket.name}/data/2024/"}, "x/y/b.csv", "a.csv"])
    record = run_job(manifest_request("manifest", bucket), RunnerConfig(home=home), model_request=sum_model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert sorted(bucket.keys("out/")) == ["out/a.csv.out", "out/x/y/b.csv.out"]
    assert bucket.get("out/a.csv.out") == b"3\n"
    assert bucket.get("out/x/y/b.csv.out") == b"7\n11\n"
    d = record.describe()
    assert d["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"] == "ManifestFile"
    assert d["x-runner"]["objects_total"] == 2


def test_missing_entry_object_fails_that_object_only(
    bucket: Bucket, sum_model: dict[str, Any], home: Path
) -> None:
    bucket.put("in/a.csv", b"1,2\n")
    put_manifest(bucket, [{"prefix": f"s3://{bucket.name}/in/"}, "a.csv", "gone.csv"])
    record = run_job(
        manifest_request("manifest-missing", bucket), RunnerConfig(home=home), model_request=sum_model
    )
    assert record.status is TransformJobStatus.FAILED
    assert record.failure_reason.startswith("ClientError: ")
    assert f"{bucket.name}/in/gone.csv" in record.failure_reason
    assert bucket.keys("out/") == ["out/a.csv.out"]
    assert bucket.get("out/a.csv.out") == b"3\n"
    assert bucket.open_uploads() == []


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (None, "the manifest cannot be read"),
        (b'[{"prefix": "s3://b/in/"}, "a.csv",', "the manifest is not valid JSON"),
        (["a.csv"], 'the manifest must be [{"prefix": "s3://bucket/prefix/"}, "relative/key/1", ...]'),
        ([{"prefix": "s3://b/in/"}], "the manifest lists no objects"),
        (
            [{"prefix": "s3://b/in/"}, "a.csv", "x/b.csv", "a.csv"],
            "manifest entries 1 and 3 are both 'a.csv'",
        ),
    ],
    ids=["missing", "unparsable", "no-prefix", "no-entries", "duplicate"],
)
def test_bad_manifest_is_refused_before_anything_runs(
    bucket: Bucket, sum_model: dict[str, Any], home: Path, manifest: Any, message: str
) -> None:
    bucket.put("in/a.csv", b"1,2\n")
    if manifest is not None:
        put_manifest(bucket, manifest)
    with pytest.raises(SpecError) as info:
        run_job(manifest_request("bad-manifest", bucket), RunnerConfig(home=home), model_request=sum_model)
    assert message in str(info.value)
    assert f"s3://{bucket.name}/manifests/job.manifest" in str(info.value)
    assert JobStore(RunnerConfig(home=home).store_path).list_jobs() == []
    assert bucket.keys("out/") == []
