"""`--object-parallelism cluster` (docs/contract.md §9): one object's payloads go to the workers of
every instance, not only its own, and the `.out` is byte-identical to SageMaker's one-instance-per-
object mode, for Line, RecordIO and TFRecord."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from tests.unit.test_recordio import write_record as recordio_frame
from tests.unit.test_tfrecord import write_record as tfrecord_frame

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Each payload's length, digest and first bytes: any reordering or regrouping of records shows.
DIGEST_MODEL = """
import hashlib

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    data = body.encode() if isinstance(body, str) else body
    return f"{len(data)} {hashlib.sha256(data).hexdigest()} {data[:12]!r}\\n", accept
"""

ROWS = b"".join(f"row-{i:06d},{'x' * (i % 97)}\n".encode() for i in range(60_000))  # ~3.3 MB
FRAMES = [bytes([65 + i % 26]) * (40_000 + 1_000 * i) for i in range(40)]  # ~2.4 MB


def inputs(split_type: str) -> bytes:
    if split_type == "Line":
        return ROWS
    frame = recordio_frame if split_type == "RecordIO" else tfrecord_frame
    return b"".join(frame(f) for f in FRAMES)


def run(bucket: Bucket, tmp_path: Path, split_type: str, mode: str) -> tuple[Any, bytes]:
    name = f"par-{split_type.lower()}-{mode}"
    request = job_request(
        name,
        bucket.name,
        ModelName="digest",
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=1,
        TransformInput={"SplitType": split_type, "ContentType": "application/octet-stream"},
        TransformOutput={"S3OutputPath": f"s3://{bucket.name}/{name}", "Accept": "text/plain"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2},
    )
    model = model_request("digest", write_model(tmp_path / "m", DIGEST_MODEL))
    config = RunnerConfig(home=tmp_path / "home", object_parallelism=mode, workers_per_instance=1)
    record = run_job(request, config, model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    return record, bucket.get(f"{name}/one.bin.out")


@pytest.mark.parametrize("split_type", ["Line", "RecordIO", "TFRecord"])
def test_cluster_mode_spreads_one_object_and_keeps_the_bytes(
    bucket: Bucket, tmp_path: Path, split_type: str
) -> None:
    bucket.put("in/one.bin", inputs(split_type))
    instance_record, instance_out = run(bucket, tmp_path, split_type, "instance")
    cluster_record, cluster_out = run(bucket, tmp_path, split_type, "cluster")

    assert cluster_out == instance_out
    payloads = instance_record.describe()["x-runner"]["payloads"]
    assert payloads >= 3 and cluster_record.describe()["x-runner"]["payloads"] == payloads
    assert instance_out.count(b"\n") == payloads
    assert hashlib.sha256(cluster_out).digest() == hashlib.sha256(instance_out).digest()

    def busy(record: Any) -> list[int]:
        return sorted(w.get("payloads", 0) for w in record.describe()["x-runner"]["workers"])

    # SageMaker's mode: the one object stays on its instance, whose one worker does every payload.
    assert busy(instance_record) == [0, payloads]
    # Cluster mode: both instances' workers took payloads of the same object.
    assert all(n > 0 for n in busy(cluster_record)) and sum(busy(cluster_record)) == payloads
