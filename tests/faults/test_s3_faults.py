"""Jobs through an S3 that misbehaves: 503 SlowDown, 500s, connection resets, bodies cut short and
slow answers. botocore's retry mode absorbs the failed requests and the storage layer resumes cut
downloads, so every output is byte-identical to a run without faults; persistent errors fail fast.

The faults come from a proxy in front of the real SeaweedFS server (tests/faults/proxy.py), not moto.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from tests.integration.conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

from .proxy import FaultProxy, Faults

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the runner (driver and Ray tasks, which get the AWS settings from it) at a proxy."""

    def use(faults: Faults) -> FaultProxy:
        proxy = FaultProxy(os.environ["AWS_ENDPOINT_URL_S3"], faults)
        proxy.__enter__()
        started.append(proxy)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.endpoint)
        return proxy

    started: list[FaultProxy] = []
    yield use
    for p in started:
        p.__exit__()


def inputs(bucket: Bucket) -> dict[str, bytes]:
    rows = {f"in/part-{i}.csv": b"".join(f"{i},{j}\n".encode() for j in range(20_000)) for i in range(6)}
    rows["in/small.csv"] = b"1,2\n"
    for key, body in rows.items():
        bucket.put(key, body)
    return rows


def expected(body: bytes) -> bytes:
    return b"".join(f"{sum(int(x) for x in line.split(b','))}\n".encode() for line in body.splitlines())


def test_output_is_identical_under_a_fault_storm(
    bucket: Bucket, tmp_path: Path, endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = inputs(bucket)
    model = model_request("sum", write_model(tmp_path / "m", SUM_MODEL))
    # 20 % of requests fail one way or another: far above what S3 does, within botocore's 5 attempts.
    proxy = endpoint(
        Faults(slow_down=0.06, internal_error=0.04, reset=0.04, cut_body=0.04, delay=0.02, seed=7)
    )
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    request = job_request("storm", bucket.name, MaxPayloadInMB=1, MaxConcurrentTransforms=2)
    record = run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    for key, body in data.items():
        out = "out/" + key.removeprefix("in/") + ".out"
        assert bucket.get(out) == expected(body), out
    assert bucket.open_uploads() == []
    counters = record.describe()["x-runner"]
    assert counters["records"] == sum(b.count(b"\n") for b in data.values())
    injected = sum(proxy.injected.values())
    print(f"\nfault storm: {proxy.requests} requests, {injected} faults injected {dict(proxy.injected)}")
    assert injected >= 5 and proxy.injected["cut_body"] >= 1 and proxy.injected["slow_down"] >= 1


def test_wrong_secret_fails_fast_with_a_clear_message(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket.put("in/a.csv", b"1\n")
    model = model_request("sum", write_model(tmp_path / "m", SUM_MODEL))
    secret = "not-the-secret-" + "x" * 20
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    t0 = time.monotonic()
    with pytest.raises(Exception) as err:
        run_job(job_request("denied", bucket.name), RunnerConfig(home=tmp_path / "home"), model_request=model)
    assert time.monotonic() - t0 < 20  # not minutes of retries
    text = str(err.value)
    assert type(err.value).__name__ == "AccessDeniedError" and bucket.name in text
    assert secret not in text


def test_missing_input_bucket_fails_fast_naming_it(tmp_path: Path) -> None:
    # (SeaweedFS creates a missing bucket on PutObject, so a missing *output* bucket cannot be played.)
    model = model_request("sum", write_model(tmp_path / "m", SUM_MODEL))
    t0 = time.monotonic()
    with pytest.raises(Exception) as err:
        run_job(
            job_request("nobucket", "no-such-bucket-xyz"),
            RunnerConfig(home=tmp_path / "home"),
            model_request=model,
        )
    assert time.monotonic() - t0 < 20
    assert type(err.value).__name__ in {"SpecError", "ObjectNotFoundError"}
    assert "no-such-bucket-xyz" in str(err.value)
