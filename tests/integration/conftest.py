"""A real local Ray for the integration tests, started once, after the embedded S3 is up."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

SUM_MODEL = """
import numpy

def model_fn(model_dir):
    return None

def predict_fn(data, model):
    return numpy.atleast_2d(data).sum(axis=1)
"""


@pytest.fixture(scope="session")
def ray_local(s3_server: Any) -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def write_model(root: Path, code: str, name: str = "inference.py") -> Path:
    """A SageMaker model folder: code/<name> holding ``code``."""
    (root / "code").mkdir(parents=True, exist_ok=True)
    (root / "code" / name).write_text(textwrap.dedent(code))
    return root


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


@dataclass
class Bucket:
    """A fresh bucket plus helpers to put inputs and read outputs as a user would (boto3)."""

    name: str
    client: Any

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def open_uploads(self) -> list[Any]:
        return list(self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", []))


@pytest.fixture
def bucket(s3_bucket: str) -> Bucket:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    return Bucket(s3_bucket, client)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1)
