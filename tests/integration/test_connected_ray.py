"""A Ray the job joins, named by RAY_ADDRESS (as ``ray job submit`` and a KubeRay RayJob give it to
the driver) rather than by --ray-address, gets the cluster rules: instances are never scaled down to
fit, and a GPU instance type on a cluster without GPUs fails at once instead of running on the CPU.
Only a Ray the process started itself is scaled down (tests/integration/test_few_cpus.py).

The cluster (ray.cluster_utils.Cluster, one node of 2 CPUs and no GPU) lives in a helper process
(tests/cluster.py); each job is a ``batch-transform run`` process of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import ClusterInfo, ray_cluster, run_cli

from .conftest import SUM_MODEL, Bucket, model_request, one_instance_job, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_cpus(s3_server: Any) -> Iterator[ClusterInfo]:
    with ray_cluster([{"num_cpus": 2}]) as c:
        yield c


def run_on(
    cluster: ClusterInfo, bucket: Bucket, tmp_path: Path, name: str, instance_type: str
) -> tuple[int, str, Any]:
    bucket.put("in/a.csv", b"1,2\n3,4\n")
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    request = one_instance_job(name, bucket.name, instance_type)
    home = tmp_path / "home"
    done = run_cli(request, model, tmp_path, home, cluster, via_environment=True)
    return done.returncode, done.output, JobStore(RunnerConfig(home=home).store_path).get_job(name)


def test_a_gpu_type_never_runs_on_the_cpu_of_a_joined_cluster(
    two_cpus: ClusterInfo, bucket: Bucket, tmp_path: Path
) -> None:
    code, output, record = run_on(two_cpus, bucket, tmp_path, "gpu-on-cpu", "ml.g4dn.xlarge")
    assert code == 1, output
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason or ""
    assert "1 x ml.g4dn.xlarge needs 4 CPUs and 1 GPUs on one node per instance" in reason, reason
    assert "Ray: joined the cluster at" in output
    assert bucket.keys("out/") == []


def test_a_joined_cluster_is_not_scaled_down(two_cpus: ClusterInfo, bucket: Bucket, tmp_path: Path) -> None:
    # 4 vCPUs on a 2-CPU cluster: a Ray the runner started would scale the instance down; this one fails.
    code, output, record = run_on(two_cpus, bucket, tmp_path, "too-big", "ml.m5.xlarge")
    assert code == 1, output
    assert "this machine has" not in output  # no scale-down note
    assert "this Ray cluster can hold 0 such instance(s)" in (record.failure_reason or "")
    # A type that fits runs there, and the job says which Ray it ran on.
    code, output, record = run_on(two_cpus, bucket, tmp_path, "fits", "ml.m5.large")
    assert code == 0, output
    assert record.status is TransformJobStatus.COMPLETED
    assert f"Ray: joined the cluster at {two_cpus.address}" in output
    assert bucket.get("out/a.csv.out") == b"3\n7\n"
