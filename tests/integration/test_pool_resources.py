"""Node labels on a real multi-node Ray cluster: a job's workers land on the node that advertises the
job's ml instance type, and a job whose type no node advertises fails at once, naming the types.

The cluster (ray.cluster_utils.Cluster: a head with 8 CPUs and no label, plus a 4-CPU node
advertising {"ml.m5.xlarge": 1}) lives in a helper process (tests/cluster.py), and each job runs
through the CLI with --ray-address, so nothing here touches the test session's own Ray. Left to
itself, Ray places a 4-CPU instance on the node with the most room, the head (so it did, 5 runs of
5, with the labels switched off): only the label sends it to the labelled node. RAY_TMPDIR keeps
the cluster's files (and its "current cluster" address file) out of /tmp/ray, where other local
Rays look.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import ClusterInfo, ray_cluster, run_cli

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(s3_server: Any) -> Iterator[ClusterInfo]:
    with ray_cluster([{"num_cpus": 8}, {"num_cpus": 4, "resources": {"ml.m5.xlarge": 1}}]) as c:
        yield c


@pytest.fixture(scope="module")
def labelled_cluster(cluster: ClusterInfo) -> dict[str, str]:
    return {"address": cluster.address, "head": cluster.node_ids[0], "labelled": cluster.node_ids[1]}


def test_workers_are_placed_on_the_node_of_the_jobs_type(
    labelled_cluster: dict[str, str], cluster: ClusterInfo, bucket: Bucket, tmp_path: Path
) -> None:
    """The unlabelled head has more free CPUs, but the two workers of the ml.m5.xlarge instance both
    run on the node that advertises ml.m5.xlarge."""
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n")
    bucket.put("in/b.csv", b"7,8\n")
    request = job_request(
        "placed-by-label",
        bucket.name,
        MaxConcurrentTransforms=2,
        MaxPayloadInMB=6,
        BatchStrategy="MultiRecord",
        TransformResources={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    )
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    home = tmp_path / "home"
    done = run_cli(request, model, tmp_path, home, cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert bucket.get("out/a.csv.out") == b"6\n15\n"
    assert bucket.get("out/b.csv.out") == b"15\n"
    record = JobStore(RunnerConfig(home=home).store_path).get_job("placed-by-label")
    assert record.status is TransformJobStatus.COMPLETED
    workers = record.describe()["x-runner"]["workers"]
    assert len(workers) == 2
    assert {w["node_id"] for w in workers} == {labelled_cluster["labelled"]}
    assert labelled_cluster["head"] != labelled_cluster["labelled"]


def test_a_type_no_node_advertises_fails_at_once_naming_the_types(
    labelled_cluster: dict[str, str], cluster: ClusterInfo, bucket: Bucket, tmp_path: Path
) -> None:
    """ml.c5.xlarge has 4 vCPUs, which either node has free, but no node stands for an ml.c5.xlarge."""
    bucket.put("in/a.csv", b"1\n")
    request = job_request(
        "no-such-node",
        bucket.name,
        MaxConcurrentTransforms=1,
        MaxPayloadInMB=6,
        BatchStrategy="MultiRecord",
        TransformResources={"InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
    )
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    home = tmp_path / "home"
    done = run_cli(request, model, tmp_path, home, cluster)
    assert done.returncode == 1, done.stdout + done.stderr
    record = JobStore(RunnerConfig(home=home).store_path).get_job("no-such-node")
    assert record.status is TransformJobStatus.FAILED
    reason = record.failure_reason or ""
    assert "TransformResources.InstanceType ml.c5.xlarge: no alive node" in reason
    assert "stand for these ml instance types: ml.m5.xlarge (1 node)" in reason
    assert """--resources='{"ml.c5.xlarge": 1}'""" in reason
    assert "FailureReason:" in done.stdout
    assert bucket.keys("out/") == []
