"""Ranged payloads end to end (runner/records/ranges.py): the workers read their own payload bytes,
and every payload, record count, output byte and error is what the streamed path gives."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from runner.config import PayloadReads, RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Each payload's length, record count and digest: equal .out files mean equal payloads.
ECHO_MODEL = """
import hashlib

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    body = body.encode() if isinstance(body, str) else body  # text/csv arrives decoded
    newlines = body.count(bytes([10]))
    return f"{len(body)} {newlines} {hashlib.sha256(body).hexdigest()}", accept
"""

MIB = 1024 * 1024


def lines(seed: int, total: int) -> bytes:
    """Random lines of 0 to 3,000 bytes: blank lines, ``\\r\\n`` endings, and no final newline."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < total:
        n = rng.choice([0, 1, 40, 200, 3000, rng.randrange(3000)])
        end = b"\r\n" if rng.random() < 0.2 else b"\n"
        out += bytes(rng.randrange(32, 127) for _ in range(n)) + end
    return bytes(out) + b"tail-without-newline"


@pytest.fixture
def echo(tmp_path: Path) -> dict[str, Any]:
    return model_request("echo", write_model(tmp_path / "echo", ECHO_MODEL))


def both(
    bucket: Bucket, model: dict[str, Any], home: Path, name: str, **overrides: Any
) -> dict[str, tuple[Any, bytes | None]]:
    """The same job streamed and ranged: each one's record and .out (None if none was written)."""
    out: dict[str, tuple[Any, bytes | None]] = {}
    for reads in ("stream", "ranged"):
        request = job_request(f"{name}-{reads}", bucket.name, ModelName="echo", **overrides)
        request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/out-{reads}"
        record = run_job(
            request, RunnerConfig(home=home, payload_reads=PayloadReads(reads)), model_request=model
        )
        keys = bucket.keys(f"out-{reads}/")
        out[reads] = (record, bucket.get(keys[0]) if keys else None)
    return out


def test_line_payloads_are_the_streamed_ones(bucket: Bucket, echo: dict[str, Any], tmp_path: Path) -> None:
    bucket.put("in/a.txt", lines(0, 5 * MIB))
    runs = both(bucket, echo, tmp_path / "home", "lines", MaxPayloadInMB=1, BatchStrategy="MultiRecord")
    (streamed, s_out), (ranged, r_out) = runs["stream"], runs["ranged"]
    assert ranged.status is TransformJobStatus.COMPLETED, ranged.failure_reason
    assert s_out is not None and r_out == s_out and len(s_out.splitlines()) >= 5
    s, r = streamed.describe()["x-runner"], ranged.describe()["x-runner"]
    assert (r["records"], r["payloads"], r["bytes_in"]) == (s["records"], s["payloads"], s["bytes_in"])
    assert r["payload_reads"].startswith("ranged:") and r["objects_ranged"] == 1
    assert s["payload_reads"] == "streamed: --payload-reads stream" and s["objects_ranged"] == 0
    # Each worker read its next payload's bytes while the one before ran: all but each one's first.
    assert sum(w["payloads_read_ahead"] for w in r["workers"]) == r["payloads"] - len(r["workers"])
    assert all(w["payloads_read_ahead"] == 0 for w in s["workers"])


def test_objects_over_1_mib_are_ranged_and_the_default_streams(
    bucket: Bucket, echo: dict[str, Any], tmp_path: Path
) -> None:
    bucket.put("in/big.txt", lines(1, 2 * MIB))
    bucket.put("in/small.txt", b"1\n2\n")
    for reads in (PayloadReads.RANGED, None):
        request = job_request(
            f"reads-{reads or 'default'}",
            bucket.name,
            ModelName="echo",
            MaxPayloadInMB=1,
            BatchStrategy="MultiRecord",
        )
        config = (
            RunnerConfig(home=tmp_path / "home")
            if reads is None
            else RunnerConfig(home=tmp_path / "home", payload_reads=reads)
        )
        record = run_job(request, config, model_request=echo)
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        x = record.describe()["x-runner"]
        if reads is None:
            assert (x["objects_ranged"], x["payload_reads"]) == (0, "streamed: --payload-reads stream")
        else:
            assert x["objects_ranged"] == 1 and "over 1 MiB" in x["payload_reads"]


def test_split_none_is_one_ranged_payload(bucket: Bucket, echo: dict[str, Any], tmp_path: Path) -> None:
    bucket.put("in/blob.bin", lines(2, 3 * MIB))
    runs = both(
        bucket, echo, tmp_path / "home", "whole", MaxPayloadInMB=4, TransformInput={"SplitType": "None"}
    )
    assert runs["ranged"][0].status is TransformJobStatus.COMPLETED, runs["ranged"][0].failure_reason
    assert runs["ranged"][1] == runs["stream"][1] is not None


def test_an_oversize_record_fails_with_the_streamed_message(
    bucket: Bucket, echo: dict[str, Any], tmp_path: Path
) -> None:
    body = b"short\n" * 300_000 + b"x" * (MIB + 10) + b"\n" + b"after\n"
    bucket.put("in/a.txt", body)
    runs = both(bucket, echo, tmp_path / "home", "oversize", MaxPayloadInMB=1, BatchStrategy="MultiRecord")
    (streamed, s_out), (ranged, r_out) = runs["stream"], runs["ranged"]
    assert streamed.status is ranged.status is TransformJobStatus.FAILED
    assert s_out is None and r_out is None  # nothing partial
    assert (
        "record 300000 at byte 1800000 is 1048587 bytes, larger than MaxPayloadInMB=1"
        in ranged.failure_reason
    )
    assert ranged.failure_reason == streamed.failure_reason.replace("oversize-stream", "oversize-ranged")
    assert bucket.open_uploads() == []


def test_gzip_and_single_record_stay_streamed(bucket: Bucket, echo: dict[str, Any], tmp_path: Path) -> None:
    bucket.put("in/a.txt", lines(3, 2 * MIB))
    request = job_request("single-reads", bucket.name, ModelName="echo", BatchStrategy="SingleRecord")
    record = run_job(
        request, RunnerConfig(home=tmp_path / "home", payload_reads=PayloadReads.RANGED), model_request=echo
    )
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    x = record.describe()["x-runner"]
    assert x["payload_reads"] == "streamed: BatchStrategy SingleRecord sends one line a payload"
    assert x["objects_ranged"] == 0


# Dies once (a hard exit, as an OOM kill looks) on the payload holding the line "die-here".
DYING_ECHO = (
    ECHO_MODEL
    + """
import os

_transform = transform_fn

def transform_fn(model, body, content_type, accept):
    text = body if isinstance(body, str) else body.decode()
    marker = os.environ["DIE_MARKER"]
    if "die-here" in text and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return _transform(model, body, content_type, accept)
"""
)


def test_a_ranged_payload_whose_worker_dies_is_read_again_by_another(
    bucket: Bucket, echo: dict[str, Any], tmp_path: Path
) -> None:
    bucket.put("in/a.txt", lines(4, 2 * MIB) + b"\n" + b"die-here\n" + lines(5, MIB))
    overrides: dict[str, Any] = {
        "MaxPayloadInMB": 1,
        "BatchStrategy": "MultiRecord",
        "MaxConcurrentTransforms": 2,
    }
    home = tmp_path / "home"
    streamed = run_job(
        job_request("dies-stream", bucket.name, ModelName="echo", **overrides),
        RunnerConfig(home=home),
        model_request=echo,
    )
    expected = bucket.get("out/a.txt.out")
    dying = model_request(
        "echo", write_model(tmp_path / "dying", DYING_ECHO), {"DIE_MARKER": str(tmp_path / "died")}
    )
    request = job_request("dies-ranged", bucket.name, ModelName="echo", **overrides)
    request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/ranged"
    ranged = run_job(request, RunnerConfig(home=home, payload_reads=PayloadReads.RANGED), model_request=dying)
    assert ranged.status is TransformJobStatus.COMPLETED, ranged.failure_reason
    assert (tmp_path / "died").exists() and bucket.get("ranged/a.txt.out") == expected
    x = ranged.describe()["x-runner"]
    assert x["payloads_retried"] >= 1 and x["workers_replaced"] == 1 and x["objects_ranged"] == 1
    assert x["records"] == streamed.describe()["x-runner"]["records"]
