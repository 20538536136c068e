"""A joined cluster too small for the job's instances yet: with ``--wait-for-nodes`` (or an
autoscaler) the job asks for the nodes, says in its notes and in Describe what it waits for, and
runs once a node joins; past the deadline it fails naming what never came.

The cluster is a ``ray start --head`` of 1 CPU, each process stopped by pid; the node that joins
mid-wait is a second ``ray start --address`` of 2 CPUs, where the one ml.m5.large (2 vCPUs) fits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.errors import ResourceNotFoundError
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import (
    ROOT,
    RayNode,
    StartedCluster,
    driver_env,
    join_node,
    ray_start_cluster,
    run_cli_with,
)

from .conftest import SUM_MODEL, Bucket, model_request, one_instance_job, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 240


@pytest.fixture(scope="module")
def small_head(s3_server: Any) -> Iterator[StartedCluster]:
    with ray_start_cluster([RayNode(1)]) as c:
        yield c


def requests(bucket: Bucket, tmp_path: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bucket.put("in/a.csv", b"1,2\n3,4\n")
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))
    request = one_instance_job(name, bucket.name)
    return request, model


def test_past_the_deadline_the_job_names_what_never_came(
    small_head: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    request, model = requests(bucket, tmp_path, "never-came")
    env = driver_env(small_head)
    done = run_cli_with(
        request,
        model,
        tmp_path,
        tmp_path / "home",
        env,
        "--ray-address",
        small_head.gcs,
        "--wait-for-nodes",
        "3",
    )
    assert done.returncode == 1, done.output
    assert "waiting up to 3s for the cluster to grow" in done.output
    reason = (
        JobStore(RunnerConfig(home=tmp_path / "home").store_path).get_job("never-came").failure_reason or ""
    )
    assert reason.startswith(
        "ClientError: waited 3s for nodes that never came: TransformResources: 1 x ml.m5.large"
    ), reason
    assert bucket.keys("out/") == []
    # Without the flag (and no autoscaler), the same job fails at once, as before.
    request, model = requests(bucket, tmp_path, "no-wait")
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", small_head.gcs)
    assert done.returncode == 1 and "waiting up to" not in done.output, done.output


def test_a_node_that_joins_during_the_wait_runs_the_job(
    small_head: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    request, model = requests(bucket, tmp_path, "grows")
    home = tmp_path / "home"
    job_file, model_file = tmp_path / "job.json", tmp_path / "model.json"
    job_file.write_text(json.dumps(request))
    model_file.write_text(json.dumps(model))
    command = [
        sys.executable, "-m", "runner.cli", "--home", str(home),
        "run", str(job_file), "--model", str(model_file), "--no-progress",
        "--ray-address", small_head.gcs, "--wait-for-nodes", str(WAIT_S),
    ]  # fmt: skip
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        job = subprocess.Popen(
            command, env=driver_env(small_head), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        store = JobStore(RunnerConfig(home=home).store_path)
        waiting = None
        deadline = time.monotonic() + 120
        while waiting is None and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.5)
            try:
                counters = store.get_job("grows").counters
            except ResourceNotFoundError:
                continue
            waiting = counters.waiting_for_nodes if counters is not None else None
        assert waiting == f"1 x ml.m5.large on nodes not there yet (--wait-for-nodes); up to {WAIT_S}s", (
            waiting,
            log.read_text(),
        )
        described = store.get_job("grows").describe()
        assert described["TransformJobStatus"] == "InProgress"
        assert described["x-runner"]["waiting_for_nodes"] == waiting
        with join_node(small_head, RayNode(2), "joined"):
            code = job.wait(timeout=300)
            output = log.read_text()
            assert code == 0, output
    finally:
        if job.poll() is None:
            job.kill()
    assert "the cluster grew in" in output
    record = store.get_job("grows")
    assert record.status is TransformJobStatus.COMPLETED
    assert record.counters is not None and record.counters.waiting_for_nodes is None
    assert bucket.get("out/a.csv.out") == b"3\n7\n"


def test_ray_s_autoscaler_starts_the_node_the_job_waits_for(
    s3_server: Any, bucket: Bucket, tmp_path: Path
) -> None:
    """No --wait-for-nodes: the head runs Ray's own autoscaler, as the cluster launcher's head does
    (its node type starts at zero nodes). The job sees the autoscaler, asks it for the instance's node,
    the autoscaler starts one and the job runs on it."""
    with ray_start_cluster([RayNode(1)], autoscaler={"cpu2": ({"CPU": 2}, 1)}) as cluster:
        request, model = requests(bucket, tmp_path, "autoscaled")
        done = run_cli_with(
            request, model, tmp_path, tmp_path / "home", driver_env(cluster), "--ray-address", cluster.gcs
        )
        assert done.returncode == 0, done.output
        nodes = JobStore(RunnerConfig(home=tmp_path / "home").store_path).get_job("autoscaled").describe()
    assert "waiting up to 600s for the cluster to grow" in done.output, done.output
    assert "the cluster grew in" in done.output, done.output
    assert bucket.get("out/a.csv.out") == b"3\n7\n"
    # The instance ran on the node the autoscaler started, not on the 1-CPU head.
    assert [n["cpus"] for n in nodes["x-runner"]["nodes"]] == [2.0], nodes["x-runner"]["nodes"]
