"""The image tag's framework version against the workers' (runner/model/frameworks.py), end to end.

The workers' xgboost here is a stand-in wheel that the model's code/requirements.txt installs (the
real path a version reaches the workers by, without pulling a 200 MB framework into the test): it
has only a ``__version__``, which is all the script below reads of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus

from .conftest import Bucket, job_request, model_request, wheel, write_model

pytestmark = pytest.mark.integration

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# Every hook given, so the image's default hooks (which would need the real xgboost) are not used.
VERSION_MODEL = """
import xgboost


def model_fn(model_dir):
    return xgboost.__version__


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return model


def output_fn(prediction, accept):
    return prediction + "\\n", accept
"""


def xgboost_model(tmp_path: Path, version: str) -> dict[str, Any]:
    src = write_model(tmp_path / f"m-{version}", VERSION_MODEL)
    whl = wheel(src / "code", "xgboost", version, {"xgboost/__init__.py": f'__version__ = "{version}"\n'})
    (src / "code" / "requirements.txt").write_text(f"./{whl.name}\n")
    model = model_request("xgb", src, {"SAGEMAKER_PROGRAM": "inference.py"})  # script mode
    model["PrimaryContainer"]["Image"] = XGBOOST_IMAGE
    return model


def run(bucket: Bucket, tmp_path: Path, version: str, name: str, **config: Any) -> tuple[Any, list[str]]:
    bucket.put("in/a.csv", b"1,2\n")
    notes: list[str] = []
    record = run_job(
        job_request(name, bucket.name, ModelName="xgb"),
        RunnerConfig(home=tmp_path / "home", **config),
        model_request=xgboost_model(tmp_path, version),
        on_note=notes.append,
    )
    return record, notes


def test_another_major_version_than_the_image_has_is_refused(bucket: Bucket, tmp_path: Path) -> None:
    record, _ = run(bucket, tmp_path, "3.1.0", "xgb-major")
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason
    assert "sagemaker-xgboost:1.7-1 has xgboost 1.7, but the workers have xgboost 3.1.0" in reason
    assert "install xgboost==1.7.* where the workers run" in reason and "--framework-versions warn" in reason
    assert bucket.keys("out/") == []  # refused before any model was loaded


def test_the_image_version_runs_and_is_said(bucket: Bucket, tmp_path: Path) -> None:
    record, notes = run(bucket, tmp_path, "1.7.6", "xgb-same")
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"1.7.6\n"
    said = "xgboost 1.7.6 (the image's 1.7)"
    assert f"frameworks: {said}" in notes
    assert all(w["frameworks"] == said for w in record.describe()["x-runner"]["workers"])


def test_warn_runs_another_major_version_and_says_so(bucket: Bucket, tmp_path: Path) -> None:
    record, notes = run(bucket, tmp_path, "3.1.0", "xgb-warn", framework_versions="warn")
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get("out/a.csv.out") == b"3.1.0\n"
    said = "xgboost 3.1.0 (the image's 1.7): another major version, run as --framework-versions warn asks"
    assert f"frameworks: {said}" in notes
    assert record.describe()["x-runner"]["workers"][0]["frameworks"] == said
