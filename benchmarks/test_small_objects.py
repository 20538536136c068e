"""Many small objects: 20,000 CSV objects of 18 rows x 20 float32 (~3.9 KB each) in the embedded S3,
the bundled ONNX MLP and request (models/mlp-onnx: MultiRecord, 6 MB, Line split, 2 workers).

Baseline, in the same run: one process lists the prefix, then a ThreadPoolExecutor (``THREADS``)
GETs each object, runs the model's own ``input_fn`` / ``predict_fn`` / ``output_fn`` and PUTs its
``.out``. The runner: ``run_job`` with Ray already up, once per ``objects_in_flight_per_instance``
value in ``BENCH_SMALL_IN_FLIGHT`` (comma-separated; default: 4, the RunnerConfig default).
Reported: objects/s of each and the ratios; CPU milliseconds per object of the measured side
(process tree, Ray's processes included) and of the S3 server apart; processes started; the job's
own counters (feeder seconds summed over object tasks, workers' busy seconds). At full size each
side takes ~2 minutes here; ``BENCH_SMALL_OBJECTS`` shrinks it. ``BENCH_SMALL_PROFILE=1``
also runs the first runner setting under cProfile (the driver only) and prints where its time goes.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import TransformJobStatus
from runner.storage import storage_for

from .conftest import TreeMeter
from .test_workload_t import ROOT, _load

OBJECTS = int(os.environ.get("BENCH_SMALL_OBJECTS", "20000"))
ROWS_PER_OBJECT = 18  # x ~218 bytes a row: ~3.9 KB
IN_FLIGHT = [int(v) for v in os.environ.get("BENCH_SMALL_IN_FLIGHT", "4").split(",")]
PROFILE = os.environ.get("BENCH_SMALL_PROFILE") == "1"
THREADS = 16
BUCKET = "bench-small"
RESULTS: dict[str, Any] = {}

pytestmark = pytest.mark.timeout(3600)


def put_model(bucket: str, work: Path) -> Path:
    """Build the bundled model into ``work``, put its tarball at s3://bucket/model/model.tar.gz and
    return the extracted model folder (for baselines that load it in process)."""
    build = _load(ROOT / "models" / "mlp-onnx" / "build.py", "mlp_onnx_build")
    _, tarball = build.build(work / "model")
    storage = storage_for(f"s3://{bucket}/")
    storage.ensure_bucket(f"s3://{bucket}/")
    storage.put_bytes(f"s3://{bucket}/model/model.tar.gz", tarball.read_bytes())
    model_dir = work / "extracted"
    with tarfile.open(tarball) as tar:
        tar.extractall(model_dir, filter="data")
    return model_dir


def put_small_objects(bucket: str, prefix: str, count: int, work: Path) -> int:
    """``count`` objects of ROWS_PER_OBJECT CSV rows under s3://bucket/prefix; returns their bytes."""
    build = _load(ROOT / "models" / "mlp-onnx" / "build.py", "mlp_onnx_build")
    rows = work / f"{prefix.strip('/').replace('/', '-')}-rows.csv"
    build.make_csv(rows, count * ROWS_PER_OBJECT, 1)
    lines = rows.read_bytes().splitlines(keepends=True)
    bodies = [b"".join(lines[i * ROWS_PER_OBJECT : (i + 1) * ROWS_PER_OBJECT]) for i in range(count)]
    s3 = s3_client(THREADS)
    with ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"{prefix}obj-{i:05d}.csv", Body=bodies[i]),
                range(count),
            )
        )
    return sum(map(len, bodies))


def s3_client(connections: int) -> Any:
    return boto3.client("s3", config=Config(max_pool_connections=connections))


def mlp_requests(
    bucket: str, name: str, input_prefix: str, output_prefix: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundled job and model requests, pointed at ``bucket``."""
    request = json.loads((ROOT / "models" / "mlp-onnx" / "job.json").read_text())
    request["TransformJobName"] = name
    request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{bucket}/{input_prefix}"
    request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket}/{output_prefix}"
    model = json.loads((ROOT / "models" / "mlp-onnx" / "model.json").read_text())
    model["PrimaryContainer"]["ModelDataUrl"] = f"s3://{bucket}/model/model.tar.gz"
    return request, model


@pytest.fixture(scope="module")
def small(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("small-objects")
    model_dir = put_model(BUCKET, work)
    t0 = time.perf_counter()
    size = put_small_objects(BUCKET, "in/", OBJECTS, work)
    print(f"\nput {OBJECTS} objects ({size} bytes) in {time.perf_counter() - t0:.1f}s")
    return {"model_dir": model_dir, "home": work / "home"}


def raw_loop(model_dir: Path, out_prefix: str) -> dict[str, float]:
    """The single-process reference: list, then GET -> input_fn -> predict_fn -> output_fn -> PUT."""
    hooks = _load(model_dir / "code" / "inference.py", "bench_small_hooks")
    model = hooks.model_fn(str(model_dir))
    s3 = s3_client(THREADS)

    def one(key: str) -> int:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        prediction = hooks.predict_fn(hooks.input_fn(body, "text/csv"), model)
        out, content_type = hooks.output_fn(prediction, "text/csv")
        name = key.removeprefix("in/")
        s3.put_object(Bucket=BUCKET, Key=f"{out_prefix}/{name}.out", Body=out, ContentType=content_type)
        return int(out.count(b"\n"))

    with TreeMeter() as meter:
        t0 = time.perf_counter()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="in/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        with ThreadPoolExecutor(THREADS) as pool:
            records = sum(pool.map(one, keys))
        elapsed = time.perf_counter() - t0
    assert (len(keys), records) == (OBJECTS, OBJECTS * ROWS_PER_OBJECT)
    return {
        "objects_per_s": OBJECTS / elapsed,
        "seconds": elapsed,
        "cpu_ms_per_object": 1000 * meter.cpu_s / OBJECTS,
        "s3_server_cpu_ms_per_object": 1000 * meter.s3_cpu_s / OBJECTS,
    }


def runner_job(home: Path, in_flight: int, profile: bool = False) -> dict[str, Any]:
    name = f"bench-small-{in_flight}-{int(time.time() * 1000)}"
    request, model = mlp_requests(BUCKET, name, "in/", f"out-runner-{name}")
    config = RunnerConfig(home=home, objects_in_flight_per_instance=in_flight)
    profiler = cProfile.Profile() if profile else None
    with TreeMeter() as meter:
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        record = run_job(request, config, model_request=model)
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - t0
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    counters = record.describe()["x-runner"]
    assert (counters["objects_done"], counters["records"]) == (OBJECTS, OBJECTS * ROWS_PER_OBJECT)
    assert record.transform_end_time is not None and record.transform_start_time is not None
    busy = record.transform_end_time - record.transform_start_time
    result = {
        "objects_per_s": OBJECTS / elapsed,
        "seconds": elapsed,
        "seconds_after_workers_ready": busy,
        "objects_per_s_after_workers_ready": OBJECTS / busy,
        "feeder_s": counters["feeder_s"],
        "workers_busy_s": [w.get("busy_s") for w in counters["workers"]],
        "ray_worker_processes_started": len(meter.started),
        "cpu_ms_per_object": 1000 * meter.cpu_s / OBJECTS,
        "s3_server_cpu_ms_per_object": 1000 * meter.s3_cpu_s / OBJECTS,
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        print(f"\ndriver profile, objects_in_flight_per_instance={in_flight}:\n{text.getvalue()}")
    return result


def test_raw_loop(benchmark: Any, small: dict[str, Any]) -> None:
    result = benchmark.pedantic(raw_loop, args=(small["model_dir"], "out-raw"), rounds=1)
    RESULTS["raw_loop"] = result
    benchmark.extra_info.update(result)


@pytest.mark.parametrize("in_flight", IN_FLIGHT)
def test_runner_small_objects(benchmark: Any, small: dict[str, Any], ray_bench: None, in_flight: int) -> None:
    profile = PROFILE and in_flight == IN_FLIGHT[0]
    result = benchmark.pedantic(runner_job, args=(small["home"], in_flight, profile), rounds=1)
    RESULTS[f"runner_in_flight_{in_flight}"] = result
    benchmark.extra_info.update(result)
    if "raw_loop" in RESULTS:
        ratio = result["objects_per_s"] / RESULTS["raw_loop"]["objects_per_s"]
        benchmark.extra_info["ratio_vs_raw_loop"] = ratio
        print(f"\n{OBJECTS} small objects: {json.dumps(RESULTS, indent=1)}\nratio runner/raw = {ratio:.3f}")
