"""No deadlock on a Ray with one or two CPUs: jobs with more objects than workers, several payloads per
object and several workers per CPU end, in bounded time, with every output right.

Each job runs ``batch-transform run`` in a process of its own whose local Ray has exactly 1 or 2 CPUs
(tests/cluster.py), never in the session's shared ``ray_local``. There the runner scales the
instances down to the machine (an ml.m5.large has 2 vCPUs), so 2 instances x 2 workers on 1 CPU is
4 workers of 0.25 CPU, while the object tasks that feed them take no CPU. With ``--ray-address`` the
same Ray is an existing cluster that is not scaled down: 2 workers then hold all of a 2-CPU Ray, and
a 1-CPU Ray, which cannot hold an ml.m5.large at all, must fail the job at once rather than wait.
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import run_cli_on_local_ray

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBJECTS = 5  # more than the 4 workers of the largest job here
ROWS = 210_000  # about 3.2 MB of CSV per object: 4 payloads of at most 1 MiB each
WORKERS_PER_INSTANCE = 2
# How long a job may take here (2 shared cores, a fresh Ray included); a deadlocked job never ends.
JOB_BOUND_S = 240.0


@cache
def inputs() -> dict[str, tuple[bytes, bytes]]:
    """Per key: the CSV object (4 integer columns, seeded) and the .out SUM_MODEL writes for it."""
    rng = np.random.default_rng(11)
    out = {}
    for i in range(OBJECTS):
        rows = rng.integers(0, 1000, size=(ROWS, 4))
        text = io.StringIO()
        np.savetxt(text, rows, fmt="%d", delimiter=",")
        # Integer CSV decodes to int64, as with the toolkit's genfromtxt(dtype=None), so sums print as ints.
        expected = "".join(f"{s}\n" for s in rows.sum(axis=1).tolist())
        out[f"in/obj-{i}.csv"] = (text.getvalue().encode(), expected.encode())
    return out


def put_inputs(bucket: Bucket) -> None:
    for key, (body, _) in inputs().items():
        bucket.put(key, body)


def request(name: str, bucket: Bucket, instances: int) -> dict[str, object]:
    return job_request(
        name,
        bucket.name,
        MaxConcurrentTransforms=WORKERS_PER_INSTANCE,
        MaxPayloadInMB=1,
        BatchStrategy="MultiRecord",
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": instances},
    )


@pytest.mark.parametrize(("cpus", "instances"), [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_jobs_end_with_right_outputs_on_a_ray_of_few_cpus(
    cpus: int, instances: int, s3_server: object, bucket: Bucket, tmp_path: Path
) -> None:
    put_inputs(bucket)
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    name = f"few-cpus-{cpus}-{instances}"
    home = tmp_path / "home"
    done = run_cli_on_local_ray(
        request(name, bucket, instances), model, tmp_path, home, cpus, timeout_s=JOB_BOUND_S
    )
    assert done.returncode == 0, done.output
    if 2 * instances > cpus:  # the runner said it scaled the instances down to this Ray
        assert f"this machine has {cpus} CPUs for {instances} instance(s)" in done.stderr, done.stderr
    for key, (_, expected) in inputs().items():
        assert bucket.get(key.replace("in/", "out/") + ".out") == expected, key
    counters = JobStore(RunnerConfig(home=home).store_path).get_job(name).describe()["x-runner"]
    assert counters["records"] == OBJECTS * ROWS
    assert counters["payloads"] >= 3 * OBJECTS  # several payloads per object
    workers = counters["workers"]
    assert len(workers) == instances * WORKERS_PER_INSTANCE
    assert sum(w["payloads"] for w in workers) == counters["payloads"]


def test_workers_holding_every_cpu_of_a_cluster_still_get_fed(
    s3_server: object, bucket: Bucket, tmp_path: Path
) -> None:
    """--ray-address on a 2-CPU Ray: one ml.m5.large, 2 workers of 1 CPU each, no CPU left over."""
    put_inputs(bucket)
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    home = tmp_path / "home"
    done = run_cli_on_local_ray(
        request("all-cpus-held", bucket, 1),
        model,
        tmp_path,
        home,
        2,
        ray_address_flag=True,
        timeout_s=JOB_BOUND_S,
    )
    assert done.returncode == 0, done.output
    assert "this machine has" not in done.stderr  # not scaled down: an existing cluster
    for key, (_, expected) in inputs().items():
        assert bucket.get(key.replace("in/", "out/") + ".out") == expected, key
    record = JobStore(RunnerConfig(home=home).store_path).get_job("all-cpus-held")
    assert len(record.describe()["x-runner"]["workers"]) == 2


def test_a_cluster_too_small_for_one_instance_fails_at_once(
    s3_server: object, bucket: Bucket, tmp_path: Path
) -> None:
    """--ray-address on a 1-CPU Ray: an ml.m5.large needs 2 CPUs on one node; the job fails, naming
    the numbers and what to change, instead of waiting for CPUs that will never come."""
    put_inputs(bucket)
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    home = tmp_path / "home"
    done = run_cli_on_local_ray(
        request("too-small", bucket, 1),
        model,
        tmp_path,
        home,
        1,
        ray_address_flag=True,
        timeout_s=JOB_BOUND_S,
    )
    assert done.returncode == 1, done.output
    record = JobStore(RunnerConfig(home=home).store_path).get_job("too-small")
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason or ""
    assert "TransformResources: 1 x ml.m5.large needs 2 CPUs on one node per instance" in reason, reason
    assert "this Ray cluster can hold 0 such instance(s) (its largest node has 1 CPUs" in reason, reason
    assert bucket.keys("out/") == []
