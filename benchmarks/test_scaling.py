"""Scaling over nodes: one input, a real 4-node Ray cluster, TransformResources.InstanceCount 1, 2, 4.

The cluster is ``ray.cluster_utils.Cluster`` (tests/cluster.py): 4 raylets on this one machine, each
claiming 2 logical CPUs, the vCPUs of an ml.m5.large, the smallest instance type the runner knows (a
1-CPU node could hold none). With MaxConcurrentTransforms 1 an instance is one worker of 2 CPUs and
fills a node, so InstanceCount n puts n workers on n different nodes. The nodes share the machine's
real cores (2 on the development machine): the logical CPUs are promises, not cores.

Input: 40 CSV objects x 50,000 rows x 20 features (``models/mlp-onnx/build.py make_csv``, ~10.9 MB
each, 436 MB in all) in the embedded S3; the bundled request's knobs (MultiRecord, MaxPayloadInMB 6,
Line split). Two models over it:
  mlp-onnx  the bundled ONNX MLP, single-threaded (Environment OMP_NUM_THREADS=1: a worker's work is
            one core's, as on a 1-CPU node): parsing and inference use the CPU, so throughput can
            only grow while there are real cores left;
  sleep     a fixed sleep per payload and almost no CPU (a model bound by something other than this
            machine's cores, e.g. a remote accelerator): it shows how far the runner's spreading
            alone scales.
Each job runs through ``batch-transform run --ray-address``. Reported per model and InstanceCount:
records/s after the workers are ready (TransformStartTime to TransformEndTime), records/s of the
whole command, the nodes whose workers transformed payloads, and the machine's load average
before the run (other processes share the cores). Written to benchmarks/scaling-last.json and
benchmarks/scaling.png. ``BENCH_SCALING_ROWS`` (rows per object), ``BENCH_SCALING_MODELS``
(comma-separated) and ``BENCH_SCALING_SLEEP_S`` (per payload) change it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from runner.storage import storage_for
from tests.cluster import ClusterInfo, ray_cluster, run_cli

from .test_workload_t import _load

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
JSON_OUT = HERE / "scaling-last.json"
PNG_OUT = HERE / "scaling.png"
BUCKET = "bench-scaling"
OBJECTS = 40
ROWS = int(os.environ.get("BENCH_SCALING_ROWS", "50000"))
MODELS = os.environ.get("BENCH_SCALING_MODELS", "mlp-onnx,sleep").split(",")
NODES = 4
CPUS_PER_NODE = 2  # an ml.m5.large's vCPUs
INSTANCE_COUNTS = (1, 2, 4)
SLEEP_PER_PAYLOAD_S = float(os.environ.get("BENCH_SCALING_SLEEP_S", "0.75"))
JOB_TIMEOUT_S = 900.0

pytestmark = pytest.mark.timeout(1800)

# Sleeps a fixed time per payload; one output line per input line, without parsing the CSV.
SLEEP_MODEL = f"""
import time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body.count("\\n" if isinstance(body, str) else b"\\n")

def predict_fn(lines, model):
    time.sleep({SLEEP_PER_PAYLOAD_S})
    return lines

def output_fn(lines, accept):
    return "0\\n" * lines, accept
"""

RESULTS: dict[str, Any] = {"runs": []}


@pytest.fixture(scope="module")
def inputs(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The objects and both models in the embedded S3 (objects of different seeds)."""
    build = _load(ROOT / "models" / "mlp-onnx" / "build.py", "mlp_onnx_build")
    work = tmp_path_factory.mktemp("scaling")
    build.build(work / "model")
    storage = storage_for(f"s3://{BUCKET}/")
    storage.ensure_bucket(f"s3://{BUCKET}/")
    size = 0
    for i in range(OBJECTS):
        path = work / "part.csv"
        size += build.make_csv(path, ROWS, i)
        _upload(storage, path, f"s3://{BUCKET}/in/part-{i:02d}.csv")
    _upload(storage, work / "model" / "model.tar.gz", f"s3://{BUCKET}/model/model.tar.gz")
    sleep_dir = work / "sleep-model" / "code"
    sleep_dir.mkdir(parents=True)
    (sleep_dir / "inference.py").write_text(SLEEP_MODEL)
    return {"bytes": size, "work": work, "sleep_model": sleep_dir.parent}


def _upload(storage: Any, src: Path, uri: str) -> None:
    with storage.open_writer(uri) as w, open(src, "rb") as f:
        while chunk := f.read(8 << 20):
            w.write(chunk)
        w.commit()


@pytest.fixture(scope="module")
def cluster(s3_server: Any) -> Iterator[ClusterInfo]:
    node = {"num_cpus": CPUS_PER_NODE, "object_store_memory": 1 << 30}
    with ray_cluster([node] * NODES) as c:
        yield c


def model_request(model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    bundled = json.loads((ROOT / "models" / "mlp-onnx" / "model.json").read_text())
    if model == "mlp-onnx":
        bundled["PrimaryContainer"]["ModelDataUrl"] = f"s3://{BUCKET}/model/model.tar.gz"
        bundled["PrimaryContainer"]["Environment"]["OMP_NUM_THREADS"] = "1"
    else:
        bundled["ModelName"] = "sleep"
        bundled["PrimaryContainer"]["ModelDataUrl"] = str(inputs["sleep_model"])
    return bundled


def job_request(model: str, name: str, instances: int) -> dict[str, Any]:
    request = json.loads((ROOT / "models" / "mlp-onnx" / "job.json").read_text())
    request.update(TransformJobName=name, ModelName="sleep" if model == "sleep" else "mlp-onnx")
    request["MaxConcurrentTransforms"] = 1  # one 2-CPU worker per instance: an instance fills a node
    request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{BUCKET}/in/"
    request["TransformOutput"]["S3OutputPath"] = f"s3://{BUCKET}/out/{name}"
    request["TransformResources"] = {"InstanceType": "ml.m5.large", "InstanceCount": instances}
    return request


@pytest.mark.parametrize("instances", INSTANCE_COUNTS)
@pytest.mark.parametrize("model", MODELS)
def test_scaling(
    benchmark: Any, cluster: ClusterInfo, inputs: dict[str, Any], model: str, instances: int
) -> None:
    name = f"scaling-{model}-{instances}-{int(time.time())}"
    home = inputs["work"] / "home"

    def job() -> dict[str, Any]:
        load = os.getloadavg()[0]
        done = run_cli(
            job_request(model, name, instances),
            model_request(model, inputs),
            inputs["work"] / "requests",
            home,
            cluster,
            timeout_s=JOB_TIMEOUT_S,
        )
        assert done.returncode == 0, done.output
        record = JobStore(RunnerConfig(home=home).store_path).get_job(name)
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        counters = record.describe()["x-runner"]
        assert counters["records"] == OBJECTS * ROWS
        payloads: dict[str, int] = {}
        for w in counters["workers"]:
            payloads[w["node_id"]] = payloads.get(w["node_id"], 0) + w["payloads"]
        assert record.transform_start_time is not None and record.transform_end_time is not None
        after_ready = record.transform_end_time - record.transform_start_time
        return {
            "model": model,
            "instance_count": instances,
            "records": counters["records"],
            "payloads": counters["payloads"],
            "seconds_after_workers_ready": round(after_ready, 2),
            "records_per_s": round(counters["records"] / after_ready),
            "wall_s": round(done.seconds, 2),
            "wall_records_per_s": round(counters["records"] / done.seconds),
            "nodes_used": sum(1 for n in payloads.values() if n > 0),
            "payloads_per_node": sorted(payloads.values(), reverse=True),
            "load_average_1min_before": round(load, 2),
            # Where the object tasks' time went, summed over objects (runner/engine/job.py _counters).
            "feeder_s": counters.get("feeder_s", {}),
        }

    result = benchmark.pedantic(job, rounds=1)
    benchmark.extra_info.update(result)
    # Every worker sits on a node of its own (an instance fills a 2-CPU node) and has work.
    assert result["nodes_used"] == instances, result
    RESULTS["runs"].append(result)
    write_curve()


def write_curve() -> None:
    """benchmarks/scaling-last.json and scaling.png from the runs so far (rewritten after each run)."""
    RESULTS.update(
        machine={
            "cpu_cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        cluster=f"{NODES} Ray nodes (ray.cluster_utils.Cluster) x {CPUS_PER_NODE} logical CPUs, one machine",
        input=f"{OBJECTS} CSV objects x {ROWS} rows x 20 float features",
        request="ml.m5.large, MaxConcurrentTransforms 1, MaxPayloadInMB 6, MultiRecord, SplitType Line",
        sleep_per_payload_s=SLEEP_PER_PAYLOAD_S,
    )
    JSON_OUT.write_text(json.dumps(RESULTS, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, speedup) = plt.subplots(1, 2, figsize=(11, 4.5))
    for model in MODELS:
        runs = sorted(
            (r for r in RESULTS["runs"] if r["model"] == model), key=lambda r: int(r["instance_count"])
        )
        if not runs:
            continue
        xs = [int(r["instance_count"]) for r in runs]
        ys = [float(r["records_per_s"]) for r in runs]
        (line,) = ax.plot(xs, ys, marker="o", label=model)
        for r in runs:
            ax.annotate(f" {r['nodes_used']} node(s)", (r["instance_count"], r["records_per_s"]), fontsize=8)
        speedup.plot(xs, [y / ys[0] for y in ys], marker="o", color=line.get_color(), label=model)
    speedup.plot(INSTANCE_COUNTS, INSTANCE_COUNTS, linestyle=":", color="grey", label="linear")
    cores = os.cpu_count() or 1
    speedup.axhline(cores, linestyle="--", color="grey", linewidth=0.8, label=f"{cores} real cores")
    for axis, ylabel in ((ax, "records/s after the workers are ready"), (speedup, "x records/s at 1")):
        axis.set_xticks(list(INSTANCE_COUNTS))
        axis.set_xlabel("TransformResources.InstanceCount (one worker per node)")
        axis.set_ylabel(ylabel)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(
        f"{OBJECTS} x {ROWS}-row CSV objects over {NODES} Ray nodes on one {cores}-core machine", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(PNG_OUT, dpi=100)
    plt.close(fig)
