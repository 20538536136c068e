"""Public inference scripts' forms, each a folder of its own, run end to end as a user would run them.

Each folder holds a model of our own in the form of a public script (its SOURCE.md names the script,
the repository and commit it mirrors, and how the expected output follows from the family's
container code), ``form.json`` (the CreateModel image and environment, the job's content type,
accept, split, strategy and assembly, the input and expected output files), ``code/`` and, where the
form loads a trained artifact, ``build.py`` with ``build(model_dir)`` that trains and saves it as
the script expects. The job runs against the embedded S3 with the family's image URI in CreateModel;
the ``.out`` is compared byte for byte with ``expected``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from tests.conftest import Bucket

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
FORMS = sorted(p.name for p in HERE.iterdir() if (p / "form.json").is_file())


def test_the_corpus_has_its_twenty_forms() -> None:
    assert len(FORMS) >= 20, FORMS
    for form in FORMS:
        source = (HERE / form / "SOURCE.md").read_text()
        assert "commit" in source.lower() and "github.com/" in source, f"{form}/SOURCE.md names no commit"


def model_folder(form: Path, into: Path) -> Path:
    """The form's model directory, as its model.tar.gz would unpack: code/ (if the form has a script)
    plus what build.py saves."""
    model_dir = into / "model"
    model_dir.mkdir(parents=True)
    if (form / "code").is_dir():
        shutil.copytree(form / "code", model_dir / "code")
    build = form / "build.py"
    if build.is_file():
        spec = importlib.util.spec_from_file_location(f"build_{form.name.replace('-', '_')}", build)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.build(model_dir)
    return model_dir


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("form", FORMS)
def test_form_runs_as_in_its_container(form: str, bucket: Bucket, tmp_path: Path) -> None:
    folder = HERE / form
    spec: dict[str, Any] = json.loads((folder / "form.json").read_text())
    model_dir = model_folder(folder, tmp_path)
    model_data = str(model_dir)
    if spec.get("model_tarball"):  # as a training job leaves it: s3://.../model.tar.gz
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(model_dir.rglob("*")):
                tar.add(path, arcname=str(path.relative_to(model_dir)), recursive=False)
        bucket.put("model/model.tar.gz", buffer.getvalue())
        model_data = f"s3://{bucket.name}/model/model.tar.gz"
    container: dict[str, Any] = {"Image": spec["image"], "ModelDataUrl": model_data}
    if spec.get("environment"):
        container["Environment"] = spec["environment"]
    model = {
        "ModelName": form,
        "PrimaryContainer": container,
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/t",
    }
    input_name = spec["input"]
    bucket.put(f"in/{input_name}", (folder / input_name).read_bytes())
    transform_input: dict[str, Any] = {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket.name}/in/"}},
        "SplitType": spec.get("split_type", "None"),
    }
    if spec.get("content_type"):
        transform_input["ContentType"] = spec["content_type"]
    transform_output: dict[str, Any] = {"S3OutputPath": f"s3://{bucket.name}/out"}
    if spec.get("accept"):
        transform_output["Accept"] = spec["accept"]
    if spec.get("assemble_with"):
        transform_output["AssembleWith"] = spec["assemble_with"]
    request: dict[str, Any] = {
        "TransformJobName": f"rw-{form}"[:63],
        "ModelName": form,
        "TransformInput": transform_input,
        "TransformOutput": transform_output,
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "MaxConcurrentTransforms": 1,
    }
    if spec.get("batch_strategy"):
        request["BatchStrategy"] = spec["batch_strategy"]
    record = run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)
    expected_failure = spec.get("expected_failure")
    if expected_failure:
        assert record.status is TransformJobStatus.FAILED
        assert expected_failure in record.failure_reason
        assert bucket.keys("out/") == []
        return
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert bucket.get(f"out/{input_name}.out") == (folder / spec["expected"]).read_bytes()
