"""CreateModel parsing, environment precedence, and the per-node artifact cache (local files only)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runner.contract.spec import parse_transform_job
from runner.errors import ModelError, SpecError
from runner.model.artifacts import ensure_model_dir, job_environment, parse_create_model


def model_req(**container: Any) -> dict[str, Any]:
    return {
        "ModelName": "m",
        "PrimaryContainer": {"Image": "img:1", **container},
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/r",
    }


def job_req(**top: Any) -> dict[str, Any]:
    return {
        "TransformJobName": "j",
        "ModelName": "m",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bkt/in/"}}
        },
        "TransformOutput": {"S3OutputPath": "s3://bkt/out"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **top,
    }


def test_environment_precedence_model_then_platform_then_job() -> None:
    model = parse_create_model(
        model_req(Environment={"A": "model", "SAGEMAKER_BATCH": "false", "B": "model"})
    )
    job = parse_transform_job(
        job_req(Environment={"B": "job"}, MaxPayloadInMB=4, BatchStrategy="SingleRecord")
    )
    env = job_environment(model, job)
    assert env["A"] == "model" and env["B"] == "job"
    assert env["SAGEMAKER_BATCH"] == "true"
    assert env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] == "4"
    assert env["SAGEMAKER_BATCH_STRATEGY"] == "SINGLE_RECORD"
    assert "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS" not in env  # not set by the request, so not passed


@pytest.mark.parametrize(
    ("request_", "fragment"),
    [
        ({"ModelName": "m"}, "primaryContainer"),
        (model_req(ModelDataSource={"S3DataSource": {}}), "doesn't support Model entity"),
        (model_req(Mode="MultiModel"), "only SingleModel"),
        ({**model_req(), "ModelName": "bad_name"}, "modelName"),
    ],
)
def test_bad_create_model_requests(request_: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_create_model(request_)
    assert fragment in str(err.value)


def tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_local_tarball_is_extracted_once_and_cached(tmp_path: Path) -> None:
    t = tarball(tmp_path / "model.tar.gz", {"model.onnx": b"weights", "code/inference.py": b"x = 1\n"})
    first = ensure_model_dir(str(t), tmp_path / "cache")
    assert (first / "code" / "inference.py").read_text() == "x = 1\n"
    (first / "marker").write_text("kept")
    assert ensure_model_dir(str(t), tmp_path / "cache") == first
    assert (first / "marker").exists()  # not extracted again


def test_local_folder_is_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    assert ensure_model_dir(str(tmp_path / "m"), tmp_path / "cache") == tmp_path / "m"


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py"])
def test_archive_members_outside_the_model_folder_are_refused(tmp_path: Path, name: str) -> None:
    t = tarball(tmp_path / "bad.tar.gz", {name: b"x"})
    with pytest.raises(ModelError, match="cannot extract the model archive"):
        ensure_model_dir(str(t), tmp_path / "cache")
    assert not (tmp_path / "evil.py").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []  # nothing half-extracted kept


def test_missing_and_corrupt_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file or folder"):
        ensure_model_dir(str(tmp_path / "nope.tar.gz"), tmp_path / "cache")
    (tmp_path / "corrupt.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ModelError, match="cannot extract"):
        ensure_model_dir(str(tmp_path / "corrupt.tar.gz"), tmp_path / "cache")
