"""A model worker that dies mid-payload (a hard process exit, or ray.kill from outside): it is replaced
by a new worker in its place, its payloads run again within the request's InvocationsMaxRetries, and
the output is byte-identical to a run without the fault."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import ray

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# Dies (a hard process exit, as an OOM kill would look) on the payload named in DIE_ON, once per
# marker file, so the retry on the next worker succeeds; DIE_ALWAYS kills every worker that gets it.
DYING_MODEL = """
import os

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    text = body if isinstance(body, str) else body.decode()  # text/csv arrives as str (toolkit rule)
    marker = os.environ["DIE_MARKER"]
    if text.startswith(os.environ["DIE_ON"]):
        if os.environ.get("DIE_ALWAYS") or not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
    return text.upper(), accept
"""


def run_dying(
    bucket: Bucket, tmp_path: Path, name: str, always: bool, retries: int, workers: int = 2
) -> object:
    env = {"DIE_MARKER": str(tmp_path / "died"), "DIE_ON": "row-0050"}
    if always:
        env["DIE_ALWAYS"] = "1"
    model = model_request("dying", write_model(tmp_path / "m", DYING_MODEL), env)
    request = job_request(
        name,
        bucket.name,
        ModelName="dying",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=workers,
        ModelClientConfig={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": retries},
    )
    return run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)


# With one worker per instance, only its replacement can finish the job.
@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_killed_mid_payload_is_replaced_and_loses_and_doubles_nothing(
    bucket: Bucket, tmp_path: Path, workers: int
) -> None:
    rows = b"".join(f"row-{i:04d}\n".encode() for i in range(200))
    bucket.put("in/a.csv", rows)
    record = run_dying(bucket, tmp_path, f"worker-dies-{workers}", always=False, retries=3, workers=workers)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason  # type: ignore[attr-defined]
    assert bucket.get("out/a.csv.out") == rows.upper()
    counters = record.describe()["x-runner"]  # type: ignore[attr-defined]
    # The dying payload and any others queued on that worker ran again; none twice in the output.
    assert counters["payloads_retried"] >= 1 and counters["records"] == 200
    assert counters["workers_replaced"] == 1
    assert sum(1 for w in counters["workers"] if w.get("lost")) == 1


def test_a_payload_that_kills_every_worker_fails_its_object_saying_how_many_tries(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.csv", b"".join(f"row-{i:04d}\n".encode() for i in range(100)))
    record = run_dying(bucket, tmp_path, "workers-die", always=True, retries=1)
    assert record.status is TransformJobStatus.FAILED  # type: ignore[attr-defined]
    reason = record.failure_reason  # type: ignore[attr-defined]
    assert "payload 50: the model worker died while transforming it; 2 of at most 2 tries made" in reason
    assert "InvocationsMaxRetries=1" in reason
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []
    # Both workers that got the payload died, and each was replaced.
    assert record.describe()["x-runner"]["workers_replaced"] == 2  # type: ignore[attr-defined]


# Registers each worker's own actor handle (from model_fn, inside the actor) with the test, so the test
# can ray.kill it from outside, as an operator or a node failure would; every payload leaves a mark.
REGISTERING_MODEL = """
import os
import time

import ray

def model_fn(model_dir):
    registry = ray.get_actor(os.environ["REGISTRY"])
    ray.get(registry.add.remote(os.getpid(), ray.get_runtime_context().current_actor))
    return None

def transform_fn(model, body, content_type, accept):
    text = body if isinstance(body, str) else body.decode()
    with open(os.environ["PROGRESS"], "a") as f:
        f.write(".")
    time.sleep(0.02)
    return text.upper(), accept
"""


@ray.remote(num_cpus=0)
class Registry:
    def __init__(self) -> None:
        self.workers: dict[int, object] = {}

    def add(self, pid: int, handle: object) -> None:
        self.workers[pid] = handle

    def handles(self) -> list[object]:
        return list(self.workers.values())


def test_the_only_worker_killed_with_ray_kill_mid_job_is_replaced(bucket: Bucket, tmp_path: Path) -> None:
    rows = b"".join(f"row-{i:04d}\n".encode() for i in range(300))
    bucket.put("in/a.csv", rows)
    name = f"registry-{uuid.uuid4().hex[:8]}"
    registry = Registry.options(name=name).remote()  # type: ignore[attr-defined]
    progress = tmp_path / "progress"
    progress.touch()
    env = {"REGISTRY": name, "PROGRESS": str(progress)}
    model = model_request("registering", write_model(tmp_path / "m", REGISTERING_MODEL), env)
    request = job_request(
        "ray-kill",
        bucket.name,
        ModelName="registering",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=1,
        ModelClientConfig={"InvocationsTimeoutInSeconds": 600, "InvocationsMaxRetries": 2},
    )
    outcome: list[object] = []
    job = threading.Thread(
        target=lambda: outcome.append(
            run_job(request, RunnerConfig(home=tmp_path / "home"), model_request=model)
        )
    )
    job.start()
    try:
        deadline = time.monotonic() + 120
        while progress.stat().st_size < 40 and job.is_alive():  # well into the job
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.05)
        [worker] = ray.get(registry.handles.remote())
        ray.kill(worker)
    finally:
        job.join(timeout=300)
    record = outcome[0]
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason  # type: ignore[attr-defined]
    assert bucket.get("out/a.csv.out") == rows.upper()
    counters = record.describe()["x-runner"]  # type: ignore[attr-defined]
    assert counters["records"] == 300 and counters["payloads_retried"] >= 1
    assert counters["workers_replaced"] == 1
    # A second worker process loaded the model, and it did the rest: the instance kept its one worker.
    assert len(ray.get(registry.handles.remote())) == 2
    assert progress.stat().st_size >= 300
    ray.kill(registry)
