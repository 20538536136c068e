"""Workload T: 2,000,000 rows x 20 float32 CSV in one object (~436 MB) in the embedded S3, the example
ONNX MLP, MultiRecord, MaxPayloadInMB 6, Line split.

Baseline, in the same run: one plain Python process streaming the same object with pyarrow's CSV
reader into onnxruntime and writing the same text output (the model's own output_fn) to S3.
Reported: rows/s of both and the ratio, time to the first output byte, peak RSS (process tree).
``BENCH_T_ROWS`` shrinks the workload for a quick look.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from runner.config import PayloadReads, RunnerConfig
from runner.engine.job import run_job
from runner.engine.warm import WARM_POOLS
from runner.jobs.store import TransformJobStatus
from runner.storage import storage_for
from tests.cluster import _ray_env, _ray_tmpdir

from .conftest import ROOT, PeakRss, TreeMeter, cli_job, machine_ray, write_bars_png

ROWS = int(os.environ.get("BENCH_T_ROWS", "2000000"))
BUCKET = "bench-t"
RESULTS: dict[str, dict[str, Any]] = {}


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workload(s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    build = _load(ROOT / "models" / "mlp-onnx" / "build.py", "mlp_onnx_build")
    work = tmp_path_factory.mktemp("workload-t")
    build.build(work / "model")
    data = work / "t.csv"
    build.make_csv(data, ROWS, 0)
    storage = storage_for(f"s3://{BUCKET}/")
    storage.ensure_bucket(f"s3://{BUCKET}/")
    for src, dest in ((work / "model" / "model.tar.gz", "model/model.tar.gz"), (data, "in/t.csv")):
        with storage.open_writer(f"s3://{BUCKET}/{dest}") as w, open(src, "rb") as f:
            while chunk := f.read(8 << 20):
                w.write(chunk)
            w.commit()
    model_dir = work / "extracted"
    with tarfile.open(work / "model" / "model.tar.gz") as tar:
        tar.extractall(model_dir, filter="data")
    return {"size": data.stat().st_size, "model_dir": model_dir, "home": work / "home"}


def baseline(model_dir: Path, out_key: str) -> dict[str, float]:
    """The single-process reference: stream, parse, predict, format, upload; nothing else."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    hooks = _load(model_dir / "code" / "inference.py", "bench_t_hooks")
    model = hooks.model_fn(str(model_dir))
    s3 = boto3.client("s3")
    t0 = time.perf_counter()
    body = s3.get_object(Bucket=BUCKET, Key="in/t.csv")["Body"]
    reader = pacsv.open_csv(
        body,
        read_options=pacsv.ReadOptions(autogenerate_column_names=True, block_size=6 << 20),
        convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.float32() for i in range(20)}),
    )
    first_byte = None
    rows = 0
    with storage_for(f"s3://{BUCKET}/").open_writer(f"s3://{BUCKET}/{out_key}") as w:
        for batch in reader:
            x = np.column_stack([c.to_numpy() for c in batch.columns])
            body_out, _ = hooks.output_fn(hooks.predict_fn(x, model), "text/csv")
            w.write(body_out)
            rows += batch.num_rows
            if first_byte is None:
                first_byte = time.perf_counter() - t0
        w.commit()
    elapsed = time.perf_counter() - t0
    assert rows == ROWS
    return {"rows_per_s": rows / elapsed, "seconds": elapsed, "first_output_s": first_byte or elapsed}


def _usage(rss: PeakRss, meter: TreeMeter) -> dict[str, float]:
    """Peak memory, and CPU seconds: this side's processes, and the S3 server's for its traffic."""
    return {
        "peak_rss_mb": rss.peak / 1e6,
        "cpu_s": meter.cpu_s,
        "s3_server_cpu_s": meter.s3_cpu_s,
        "samplers_cpu_s": round(meter.samplers_cpu_s, 2),  # the meters' own, left out of cpu_s
        "cpu_s_by_process": meter.by_process,
    }


def test_baseline_single_process(benchmark: Any, workload: dict[str, Any]) -> None:
    with PeakRss() as rss, TreeMeter() as meter:
        result = benchmark.pedantic(baseline, args=(workload["model_dir"], "baseline/t.csv.out"), rounds=1)
    result.update(_usage(rss, meter))
    RESULTS["baseline"] = result
    benchmark.extra_info.update(result)


def _requests(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundled request and model, pointed at this module's bucket."""
    from .test_small_objects import mlp_requests  # here: that module imports this one

    return mlp_requests(BUCKET, name, "in/", "out")


def cli_run(workload: dict[str, Any], env: dict[str, str], way: str) -> dict[str, float]:
    """One ``batch-transform run`` process over workload T, timed from its start to its exit."""
    request, model = _requests(f"bench-t-cli-{way}-{int(time.time())}")
    home = workload["home"]
    seconds, wall0, record = cli_job(request, model, Path(home).parent, home, env)
    assert record.describe()["x-runner"]["records"] == ROWS
    assert record.transform_start_time is not None and record.transform_end_time is not None
    return {
        "rows_per_s": ROWS / seconds,
        "seconds": seconds,
        "to_workers_ready_s": record.transform_start_time - wall0,
        "job_s": record.transform_end_time - record.transform_start_time,
        "end_to_exit_s": wall0 + seconds - record.transform_end_time,
    }


@pytest.mark.parametrize("way", ["warm", "cold"])
def test_cli_run(benchmark: Any, workload: dict[str, Any], way: str) -> None:
    """``batch-transform run`` as a user types it: ``warm`` joins the Ray that ``batch-transform ray
    up`` keeps on this machine (started before the measured run); ``cold`` starts and stops a Ray of
    its own. Runs before the in-process jobs, while no other Ray is up."""
    with _ray_tmpdir() as ray_tmp:
        env = _ray_env(ray_tmp)
        kept = machine_ray(workload["home"], env) if way == "warm" else contextlib.nullcontext()
        with kept:
            result = benchmark.pedantic(cli_run, args=(workload, env, way), rounds=1)
    RESULTS[f"cli_{way}"] = result
    benchmark.extra_info.update(result)
    if "baseline" in RESULTS:
        ratio = result["rows_per_s"] / RESULTS["baseline"]["rows_per_s"]
        benchmark.extra_info["ratio_vs_baseline"] = ratio
        print(f"\nworkload T, batch-transform run ({way}): {json.dumps(result)}; wall ratio = {ratio:.3f}")


WARM_POOL_S = 120.0  # long enough for the measured job to find the primed pool


@pytest.mark.parametrize("way", ["stream", "ranged", "warm-pool"])
def test_runner_job(benchmark: Any, workload: dict[str, Any], ray_bench: None, way: str) -> None:
    """``stream`` (the default): the object task reads the object and sends the workers the bytes;
    ``ranged``: the workers read their payloads' bytes themselves (runner/records/ranges.py);
    ``warm-pool``: streamed, a repeat job of the same model in the same process as ``serve`` runs
    it (``--warm-pool-seconds``): an unmeasured job first, whose workers the measured job takes."""
    n = len(RESULTS) + 1
    key = {"stream": "runner", "ranged": "runner_ranged", "warm-pool": "runner_warm_pool"}[way]
    reads = PayloadReads.RANGED if way == "ranged" else PayloadReads.STREAM
    warm_s = WARM_POOL_S if way == "warm-pool" else 0.0

    def one_job(name: str) -> Any:
        request, model = _requests(name)
        config = RunnerConfig(home=workload["home"], payload_reads=reads, warm_pool_s=warm_s)
        record = run_job(request, config, model_request=model)
        assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
        return record

    def job() -> dict[str, float]:
        t0, wall0 = time.perf_counter(), time.time()
        record = one_job(f"bench-t-{n}-{int(time.time())}")
        elapsed = time.perf_counter() - t0
        counters = record.describe()["x-runner"]
        assert counters["records"] == ROWS
        if warm_s:
            assert all(w["warm"] for w in counters["workers"]), "no primed pool taken"
        busy = record.transform_end_time - record.transform_start_time
        RESULTS[f"{key}_detail"] = {"feeder_s": counters["feeder_s"], "workers": counters["workers"]}
        return {
            "rows_per_s": ROWS / elapsed,
            "seconds": elapsed,
            "seconds_after_workers_ready": busy,
            "startup_s": elapsed - busy,
            # Workers ready, then the first object's first result (measured inside its feeder task).
            "first_output_s": record.transform_start_time - wall0 + counters.get("first_output_s", 0.0),
        }

    try:
        if warm_s:
            one_job(f"bench-t-{n}-prime-{int(time.time())}")
        with PeakRss() as rss, TreeMeter() as meter:
            result = benchmark.pedantic(job, rounds=1)
    finally:
        WARM_POOLS.release_all()  # the next test starts its own workers
    result.update(_usage(rss, meter))
    RESULTS[key] = result
    benchmark.extra_info.update(result)
    if "baseline" in RESULTS:
        ratio = result["rows_per_s"] / RESULTS["baseline"]["rows_per_s"]
        benchmark.extra_info["ratio_vs_baseline"] = ratio
        print(
            f"\nworkload T, {ROWS} rows: {json.dumps(RESULTS, indent=1)}\nratio {key}/baseline = {ratio:.3f}"
        )
    if "baseline" in RESULTS and way == "stream":
        write_bars_png(
            Path(__file__).parent / "throughput.png",
            {"baseline (1 process)": RESULTS["baseline"]["rows_per_s"], "runner": result["rows_per_s"]},
            f"Workload T, {ROWS:,} rows in one object: runner / baseline = {ratio:.2f}x",
        )
