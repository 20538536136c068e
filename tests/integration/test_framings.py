"""SplitType RecordIO and TFRecord end to end (docs/contract.md §4.2, examples 5 and 6): whole jobs on a real
local Ray against the real embedded S3, checking the ``.out`` bytes a user reads back."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from tests.unit.test_recordio import EXAMPLE_5, MAGIC
from tests.unit.test_recordio import write_record as recordio_frame
from tests.unit.test_tfrecord import EXAMPLE_6
from tests.unit.test_tfrecord import write_record as tfrecord_frame

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Each payload's length and digest: SingleRecord shows the record's data, MultiRecord the framed bytes.
ECHO_MODEL = """
import hashlib

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}", accept
"""

# Records of 300,000 bytes, some holding the RecordIO magic at aligned offsets, so MaxPayloadInMB=1
# packs three to a payload and RecordIO writes some of them in parts.
RECORDS = [
    bytes([65 + i]) * 100_000 + (MAGIC if i % 2 else b"abcd") + bytes([97 + i]) * 199_996 for i in range(7)
]


def digests(payloads: list[bytes]) -> bytes:
    return b"".join(f"{len(p)} {hashlib.sha256(p).hexdigest()}\n".encode() for p in payloads)


def greedy(frames: list[bytes], limit: int) -> list[bytes]:
    out: list[bytes] = []
    for f in frames:
        if out and len(out[-1]) + len(f) <= limit:
            out[-1] += f
        else:
            out.append(f)
    return out


def framing_job(
    name: str, bucket: Bucket, split_type: str, strategy: str, **overrides: Any
) -> dict[str, Any]:
    return job_request(
        name,
        bucket.name,
        ModelName="echo",
        BatchStrategy=strategy,
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=2,
        TransformInput={"ContentType": "application/octet-stream", "SplitType": split_type, **overrides},
        TransformOutput={"Accept": "text/plain", "AssembleWith": "Line"},
    )


def run(request: dict[str, Any], tmp_path: Path) -> Any:
    model = model_request("echo", write_model(tmp_path / "echo", ECHO_MODEL))
    return run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)


def test_recordio_single_record_and_a_corrupt_object_that_fails_alone(bucket: Bucket, tmp_path: Path) -> None:
    frames = [recordio_frame(r) for r in RECORDS]
    bucket.put("in/ex5.rec", EXAMPLE_5)
    bucket.put("in/big.rec", b"".join(frames))
    bad = len(frames[0]) + len(frames[1])
    bucket.put("in/corrupt.rec", frames[0] + frames[1] + b"RIFF" + frames[2][4:])
    record = run(framing_job("rio-single", bucket, "RecordIO", "SingleRecord"), tmp_path)
    assert record.status is TransformJobStatus.FAILED
    # Each request is one record's data: headers and padding removed, parts joined with the magic.
    assert bucket.get("out/ex5.rec.out") == digests([b"abc", b"hello"])
    assert bucket.get("out/big.rec.out") == digests(RECORDS)
    assert sorted(bucket.keys("out/")) == ["out/big.rec.out", "out/ex5.rec.out"]
    assert bucket.open_uploads() == []
    reason = record.failure_reason
    assert reason.startswith("ClientError: ")
    assert (
        f"{bucket.name}/in/corrupt.rec: record 2 at byte {bad}: bad RecordIO magic 0x46464952, "
        "expected 0xced7230a"
    ) in reason


def test_gzip_tfrecord_multi_record_and_a_bad_crc_that_fails_alone(bucket: Bucket, tmp_path: Path) -> None:
    frames = [tfrecord_frame(r) for r in RECORDS]
    data = b"".join(frames)
    bucket.put("in/big.tfrecord.gz", gzip.compress(data, compresslevel=1))
    bucket.put("in/ex6.tfrecord.gz", gzip.compress(EXAMPLE_6))
    corrupt = bytearray(data)
    bad = len(frames[0]) + len(frames[1])
    corrupt[bad + 12 + 5] ^= 0xFF  # a data byte of record 2
    bucket.put("in/corrupt.tfrecord.gz", gzip.compress(bytes(corrupt), compresslevel=1))
    request = framing_job("tfr-multi-gz", bucket, "TFRecord", "MultiRecord", CompressionType="Gzip")
    record = run(request, tmp_path)
    assert record.status is TransformJobStatus.FAILED
    # Each request is whole frames verbatim, packed greedily up to MaxPayloadInMB on the framed bytes.
    payloads = greedy(frames, 1_048_576)
    assert len(payloads) == 3
    assert bucket.get("out/big.tfrecord.gz.out") == digests(payloads)
    assert bucket.get("out/ex6.tfrecord.gz.out") == digests([EXAMPLE_6])
    assert sorted(bucket.keys("out/")) == ["out/big.tfrecord.gz.out", "out/ex6.tfrecord.gz.out"]
    assert bucket.open_uploads() == []
    assert (
        f"{bucket.name}/in/corrupt.tfrecord.gz: record 2 at byte {bad}: TFRecord data CRC mismatch"
        in record.failure_reason
    )
