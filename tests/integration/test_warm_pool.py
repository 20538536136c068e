"""Model workers kept warm between the jobs of one process (runner/engine/warm.py, `serve
--warm-pool-seconds`): the next job of the same model and settings reuses them; a changed model or
other settings never do, and parked workers never keep another job from being placed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.engine.sizing import InstanceSizing
from runner.engine.warm import WARM_POOLS, pool_key
from runner.engine.worker import WorkerTemplate
from runner.jobs.store import JobRecord, TransformJobStatus
from runner.model.artifacts import parse_create_model
from runner.model.runtime import RuntimeSettings

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return "VERSION %d\\n" % len(body), accept
"""


@pytest.fixture(autouse=True)
def no_parked_pools() -> Iterator[None]:
    yield
    WARM_POOLS.release_all()  # the session's Ray is shared with the other tests


def run(
    bucket: Bucket, model: dict[str, Any], config: RunnerConfig, name: str, **overrides: Any
) -> tuple[JobRecord, bytes]:
    request = job_request(
        name,
        bucket.name,
        ModelName="warm",
        TransformInput={"ContentType": "text/plain"},
        TransformOutput={"S3OutputPath": f"s3://{bucket.name}/{name}", "Accept": "text/plain"},
        **overrides,
    )
    record = run_job(request, config, model_request=model)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    return record, bucket.get(f"{name}/a.txt.out")


def workers(record: JobRecord) -> list[dict[str, Any]]:
    return list(record.describe()["x-runner"]["workers"])


def test_the_next_job_of_a_model_reuses_its_workers_until_something_changes(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.txt", b"one\ntwo\n")
    folder = write_model(tmp_path / "m", MODEL.replace("VERSION", "v1"))
    model = model_request("warm", folder)
    config = RunnerConfig(home=tmp_path / "home", warm_pool_s=30)

    first, out1 = run(bucket, model, config, "warm-1", MaxConcurrentTransforms=2)
    second, out2 = run(bucket, model, config, "warm-2", MaxConcurrentTransforms=2)
    assert out1 == out2 == b"v1 8\n"
    assert not any(w.get("warm") for w in workers(first))
    assert all(w["warm"] and w["model_load_s"] == 0.0 for w in workers(second))
    assert sorted(w["pid"] for w in workers(second)) == sorted(w["pid"] for w in workers(first))
    # The counts are this job's, not the pool's since it started.
    assert sum(w["payloads"] for w in workers(second)) == second.describe()["x-runner"]["payloads"] == 1

    # The model's code changes in place (same ModelDataUrl): new workers load the new code.
    time.sleep(0.01)  # a distinct mtime
    write_model(tmp_path / "m", MODEL.replace("VERSION", "v2"))
    third, out3 = run(bucket, model, config, "warm-3", MaxConcurrentTransforms=2)
    assert out3 == b"v2 8\n"
    assert not any(w.get("warm") for w in workers(third))
    assert not {w["pid"] for w in workers(third)} & {w["pid"] for w in workers(first)}

    # Other settings (one worker, not two): not reused, and the parked pool, which holds both of
    # this Ray's CPUs, is shut down so this job's instance can be placed.
    fourth, out4 = run(bucket, model, config, "warm-4", MaxConcurrentTransforms=1)
    assert out4 == b"v2 8\n"
    assert len(workers(fourth)) == 1 and not workers(fourth)[0].get("warm")


def test_without_warm_pool_seconds_every_job_starts_its_own_workers(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.txt", b"one\n")
    model = model_request("warm", write_model(tmp_path / "m", MODEL.replace("VERSION", "v1")))
    config = RunnerConfig(home=tmp_path / "home")  # warm_pool_s 0: `run`'s default

    first, _ = run(bucket, model, config, "cold-1")
    second, _ = run(bucket, model, config, "cold-2")
    assert not any(w.get("warm") for w in workers(second))
    assert not {w["pid"] for w in workers(second)} & {w["pid"] for w in workers(first)}


def test_pool_keys_differ_in_anything_the_workers_start_with(tmp_path: Path) -> None:
    model = parse_create_model(model_request("warm", tmp_path / "m"))
    sizing = InstanceSizing(cpus_per_worker=1.0, gpus_per_worker=0.0, workers=1)
    template = WorkerTemplate(
        model, {"A": "1"}, sizing, "/cache", "text/csv", None, 600.0, RuntimeSettings(log_dir="/logs/job-1")
    )
    key = pool_key("fingerprint", template, 1)
    # Another job's log folder and ready timeout: the same workers.
    same = replace(template, runtime=RuntimeSettings(log_dir="/logs/job-2"), ready_timeout_s=5.0)
    assert pool_key("fingerprint", same, 1) == key
    assert hash(pool_key("fingerprint", same, 1)) == hash(key)
    others = [
        pool_key("another model", template, 1),
        pool_key("fingerprint", template, 2),
        pool_key("fingerprint", replace(template, environment={"A": "2"}), 1),
        pool_key("fingerprint", replace(template, sizing=replace(sizing, workers=2)), 1),
        pool_key("fingerprint", replace(template, accept="application/json"), 1),
        pool_key("fingerprint", replace(template, runtime=RuntimeSettings(invocations_max_retries=1)), 1),
    ]
    assert all(other != key for other in others)
