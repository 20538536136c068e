"""What each object costs the driver and the job store, on a 3-node Ray cluster
(``ray.cluster_utils.Cluster``: a head and two nodes on this machine), with a stub model, so that
docs/scale.md can say what 1M objects would cost.

``BENCH_SCALE_OBJECTS`` objects (default 20,000) of one CSV line each go through one job of 3
instances with ``on_progress`` set, as `batch-transform run` sets it. Measured: the driver
process's own CPU seconds (this pytest process: the run_job thread, its polling, counters, progress
and store writes; Ray's daemons and the object tasks are other processes), its peak memory, the job
store's file size and rows, and the wall time. Each count runs once; ``BENCH_SCALE_OBJECTS`` takes
several comma-separated counts to see how the cost grows.
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.counters import JobCounters
from runner.jobs.store import TransformJobStatus

from .test_small_objects import s3_client

COUNTS = [int(v) for v in os.environ.get("BENCH_SCALE_OBJECTS", "20000").split(",")]
BUCKET = "bench-scale"
THREADS = 16
STUB_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, accept
"""

pytestmark = pytest.mark.timeout(7200)


@pytest.fixture(scope="module")
def cluster(s3_server: Any) -> Any:
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    for _ in range(2):
        c.add_node(num_cpus=2)  # logical CPUs: an ml.m5.large instance each; the stub model needs none
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def put_objects(prefix: str, count: int) -> None:
    s3 = s3_client(THREADS)
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)

    def put(i: int) -> None:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/o-{i:07d}.csv", Body=b"1,2\n")

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(count)))


def store_stats(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    files = [path, *path.parent.glob(path.name + "-*")]  # with the WAL
    return {"bytes": sum(p.stat().st_size for p in files), "rows": rows}


@pytest.mark.parametrize("count", COUNTS)
def test_per_object_cost_of_driver_and_store(
    benchmark: Any, cluster: Any, tmp_path: Path, count: int
) -> None:
    prefix = f"n{count:07d}"
    t0 = time.perf_counter()
    put_objects(prefix, count)
    put_s = time.perf_counter() - t0
    model_dir = tmp_path / "stub"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(STUB_MODEL)
    model = {
        "ModelName": "stub",
        "PrimaryContainer": {"Image": "batch-transform/stub:latest", "ModelDataUrl": str(model_dir)},
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/t",
    }
    request = {
        "TransformJobName": f"scale-{count}-{int(time.time())}",
        "ModelName": "stub",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}/"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/out-{prefix}", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 3},
        "MaxConcurrentTransforms": 1,
    }
    home = tmp_path / "home"
    config = RunnerConfig(home=home, ray_address=cluster.address, workers_per_instance=1)
    updates = 0

    def on_progress(_: JobCounters) -> None:
        nonlocal updates
        updates += 1

    me = psutil.Process()

    def job() -> dict[str, Any]:
        cpu0, w0 = sum(me.cpu_times()[:2]), time.perf_counter()
        record = run_job(request, config, model_request=model, on_progress=on_progress)
        wall, cpu = time.perf_counter() - w0, sum(me.cpu_times()[:2]) - cpu0
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        assert record.describe()["x-runner"]["objects_done"] == count
        busy = record.transform_end_time - record.transform_start_time
        return {
            "objects": count,
            "put_s": round(put_s, 1),
            "wall_s": round(wall, 1),
            "seconds_after_workers_ready": round(busy, 1),
            "objects_per_s": round(count / busy, 1),
            "driver_cpu_s": round(cpu, 2),
            "driver_cpu_ms_per_object": round(1000 * cpu / count, 3),
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "progress_updates": updates,
            "store": store_stats(config.store_path),
        }

    result = benchmark.pedantic(job, rounds=1)
    benchmark.extra_info.update(result)
    print(f"\nscale, {count} objects: {json.dumps(result)}")
