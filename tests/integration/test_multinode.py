"""One job over a real 3-node Ray cluster: its objects run on more than one node, and its outputs are
byte for byte those of the same job on a single-node Ray.

The cluster (``ray.cluster_utils.Cluster``: three raylets on this machine, 2 CPUs each) lives in a
helper process (tests/cluster.py) and the job runs through the CLI with ``--ray-address``. An
ml.m5.large has 2 vCPUs, so each of the job's three instances (a placement group packed on one node)
fills one node: the instances cannot share a node. The single-node run is the test session's own
local Ray (``ray_local``), where the runner scales the three instances down to its 2 CPUs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import ClusterInfo, ray_cluster, run_cli

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OBJECTS = 12
INSTANCES = 3


@pytest.fixture(scope="module")
def three_nodes(s3_server: Any) -> Iterator[ClusterInfo]:
    with ray_cluster([{"num_cpus": 2}] * INSTANCES) as cluster:
        yield cluster


def inputs() -> dict[str, bytes]:
    """Twelve small CSV objects of different shapes, floats with varied digits (seeded)."""
    rng = random.Random(5)
    out = {}
    for i in range(OBJECTS):
        columns = rng.randint(2, 6)  # one column would be one 1-D row to SUM_MODEL
        rows = [
            ",".join(f"{rng.uniform(-1e4, 1e4):.{rng.randint(0, 6)}f}" for _ in range(columns))
            for _ in range(rng.randint(20, 400))
        ]
        out[f"in/part-{i:02d}.csv"] = ("\n".join(rows) + "\n").encode()
    return out


def test_objects_run_on_several_nodes_with_the_single_node_outputs(
    three_nodes: ClusterInfo, ray_local: None, bucket: Bucket, tmp_path: Path
) -> None:
    objects = inputs()
    for key, body in objects.items():
        bucket.put(key, body)
    model = model_request("sum", write_model(tmp_path / "model", SUM_MODEL))

    def request(name: str, out: str) -> dict[str, Any]:
        return job_request(
            name,
            bucket.name,
            MaxConcurrentTransforms=1,
            MaxPayloadInMB=1,
            BatchStrategy="MultiRecord",
            TransformOutput={"S3OutputPath": f"s3://{bucket.name}/{out}"},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": INSTANCES},
        )

    home = tmp_path / "home"
    done = run_cli(request("three-nodes", "multi"), model, tmp_path, home, three_nodes)
    assert done.returncode == 0, done.output
    record = JobStore(RunnerConfig(home=home).store_path).get_job("three-nodes")
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason

    # Which node did the work: each worker reports its node, and how many payloads it transformed.
    workers = record.describe()["x-runner"]["workers"]
    assert len(workers) == INSTANCES
    assert {w["node_id"] for w in workers} == set(three_nodes.node_ids)  # one instance per node
    payloads_per_node: dict[str, int] = {}
    for w in workers:
        payloads_per_node[w["node_id"]] = payloads_per_node.get(w["node_id"], 0) + w["payloads"]
    busy_nodes = [node for node, n in payloads_per_node.items() if n > 0]
    assert len(busy_nodes) > 1, payloads_per_node
    assert sum(payloads_per_node.values()) == record.describe()["x-runner"]["payloads"] >= OBJECTS
    # And the objects' own tasks (S3 read, split, upload) ran beside the workers, on every node, not
    # all on the driver's.
    by_node = record.describe()["x-runner"]["objects_by_node"]
    assert set(by_node) == set(three_nodes.node_ids) and sum(by_node.values()) == OBJECTS, by_node

    single = run_job(
        request("one-node", "single"), RunnerConfig(home=tmp_path / "home-single"), model_request=model
    )
    assert single.status is TransformJobStatus.COMPLETED, single.failure_reason
    assert sorted(bucket.keys("multi/")) == [k.replace("in/", "multi/") + ".out" for k in sorted(objects)]
    for key in objects:
        name = key.removeprefix("in/") + ".out"
        multi_out = bucket.get(f"multi/{name}")
        assert multi_out == bucket.get(f"single/{name}"), name
        assert multi_out.count(b"\n") == objects[key].count(b"\n")
