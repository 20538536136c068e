"""Helpers for the integration tests: model folders and requests (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.conftest import Bucket

SUM_MODEL = """
import numpy

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    return numpy.atleast_2d(data).sum(axis=1)
"""


# docs/contract.md §8 example 4's hooks: JSON Lines in, one {"len": …} line out per record.
JSONL_MODEL = """
import json

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    text = body.decode() if isinstance(body, bytes) else body
    return [json.loads(line) for line in text.splitlines() if line]

def predict_fn(rows, model):
    return [{"len": len(r["text"])} for r in rows]

def output_fn(prediction, accept):
    return "".join(json.dumps(x) + "\\n" for x in prediction), accept
"""


def write_model(root: Path, code: str, name: str = "inference.py") -> Path:
    """A SageMaker model folder: code/<name> holding ``code``."""
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "code" / name).write_text(textwrap.dedent(code))
    return root


def wheel(folder: Path, name: str, version: str, files: Mapping[str, str]) -> Path:
    """A minimal wheel built by hand (a zip of ``files`` with its metadata), so pip needs no index or
    build step."""
    import zipfile

    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    contents[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*contents, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for n, text in contents.items():
            z.writestr(n, text)
    return path


def model_request(
    name: str, model_dir: Path | str, environment: Mapping[str, str] | None = None
) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": "batch-transform/test:latest", "ModelDataUrl": str(model_dir)}
    if environment:
        container["Environment"] = dict(environment)
    return {
        "ModelName": name,
        "PrimaryContainer": container,
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/t",
    }


def job_request(name: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """A CreateTransformJob request over s3://<bucket>/in/ -> s3://<bucket>/out."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": "sum",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{bucket}/out",
            "Accept": "text/csv",
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(request.get(key), dict):
            request[key] = {**request[key], **value}
        else:
            request[key] = value
    return request


def one_instance_job(name: str, bucket: str, instance_type: str = "ml.m5.large") -> dict[str, Any]:
    """A job of the ``sum`` model on one instance with one worker: what cluster tests place."""
    return job_request(
        name,
        bucket,
        ModelName="sum",
        TransformResources={"InstanceType": instance_type, "InstanceCount": 1},
        MaxConcurrentTransforms=1,
    )


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1)


__all__ = ["JSONL_MODEL", "SUM_MODEL", "Bucket", "dumps", "job_request", "model_request", "write_model"]
