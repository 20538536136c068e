"""Ray Data doing workload T, against the runner on the same data in the same run.

The job: ``ray.data.read_csv`` of workload T's object straight from the embedded S3 (pyarrow's
S3FileSystem) -> ``map_batches`` with an actor pool running the same ONNX model (the bundled
``code/inference.py``: ``model_fn`` / ``predict_fn``) -> ``write_csv`` of label + 3 probabilities
per row back to S3 (no header). Ray Data formats the floats itself (pyarrow's CSV writer), where the
runner uses the model's ``output_fn``; either way one text line per row.

Several honest settings are tried (``SETTINGS``; each finishes on a 2-CPU Ray without deadlock:
the read task needs a CPU too, so two 1-CPU actors would starve it) and the best counts.
The runner's job runs in this module first (``test_runner_job`` from test_workload_t, on this
module's copy of the workload fixture), so runner / Ray Data is a ratio from one run.
``BENCH_T_ROWS`` shrinks the workload; ``BENCH_RAY_DATA_SETTINGS`` (names separated by ``;``)
picks settings.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from .test_workload_t import BUCKET, RESULTS, ROWS, _load, test_runner_job, workload

__all__ = ["test_runner_job", "workload"]  # collected here too: the runner's side of the ratio

pytestmark = pytest.mark.timeout(1800)

# name -> (actor pool min, max, CPUs per actor, batch_size). 27,000 rows ~ a 6 MB payload (the
# runner's MaxPayloadInMB); None = whole read blocks. Fractional CPUs let two actors share the cores
# with the read and write tasks; Ray sets OMP_NUM_THREADS=1 for them, so onnxruntime and pyarrow
# stay single-threaded, as the runner's 1-CPU workers are.
SETTINGS: dict[str, tuple[int, int, float, int | None]] = {
    "1 actor x 1 CPU, batch 100k": (1, 1, 1.0, 100_000),
    "2 actors x 0.5 CPU, batch 27k": (2, 2, 0.5, 27_000),
    "2 actors x 0.5 CPU, batch 100k": (2, 2, 0.5, 100_000),
    "2 actors x 0.5 CPU, whole blocks": (2, 2, 0.5, None),
    "1-2 actors x 0.5 CPU, batch 100k": (1, 2, 0.5, 100_000),
}
CHOSEN = [s.strip() for s in os.environ.get("BENCH_RAY_DATA_SETTINGS", "").split(";") if s.strip()] or list(
    SETTINGS
)
if unknown := [s for s in CHOSEN if s not in SETTINGS]:
    raise ValueError(f"BENCH_RAY_DATA_SETTINGS names {unknown}; the settings are: {'; '.join(SETTINGS)}")


class OnnxPredictor:
    """The map_batches actor: the bundled hooks' model, one ``predict_fn`` per batch."""

    def __init__(self, model_dir: str) -> None:
        self.hooks = _load(Path(model_dir) / "code" / "inference.py", "ray_data_hooks")
        self.model = self.hooks.model_fn(model_dir)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        x = np.column_stack([c.to_numpy() for c in batch.columns])  # batch_format pyarrow: zero-copy
        probabilities = self.hooks.predict_fn(x, self.model)
        out = {"label": probabilities.argmax(axis=1).astype(np.uint8)}
        out.update({f"p{j}": probabilities[:, j] for j in range(probabilities.shape[1])})
        return out


def s3_filesystem() -> Any:
    """pyarrow's S3 client on the embedded S3, from the env the s3_server fixture set."""
    import pyarrow.fs

    endpoint = os.environ["AWS_ENDPOINT_URL_S3"]
    scheme, host = endpoint.split("://", 1)
    return pyarrow.fs.S3FileSystem(
        endpoint_override=host,
        scheme=scheme,
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"),
    )


def output_lines(prefix: str) -> int:
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return sum(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().count(b"\n") for k in keys)


def ray_data_job(model_dir: Path, name: str, setting: tuple[int, int, float, int | None]) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    fs = s3_filesystem()
    prefix = f"ray-data/{name.replace(' ', '-').replace(',', '')}-{int(time.time())}"
    t0 = time.perf_counter()
    ds = ray.data.read_csv(
        f"{BUCKET}/in/t.csv",
        filesystem=fs,
        read_options=pacsv.ReadOptions(autogenerate_column_names=True, block_size=6 << 20),
        convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.float32() for i in range(20)}),
    )
    min_size, max_size, cpus, batch_size = setting
    ds = ds.map_batches(
        OnnxPredictor,
        fn_constructor_args=(str(model_dir),),
        batch_format="pyarrow",
        batch_size=batch_size,
        num_cpus=cpus,
        compute=ray.data.ActorPoolStrategy(min_size=min_size, max_size=max_size),
    )
    ds.write_csv(
        f"{BUCKET}/{prefix}",
        filesystem=fs,
        arrow_csv_args_fn=lambda: {"write_options": pacsv.WriteOptions(include_header=False)},
    )
    elapsed = time.perf_counter() - t0
    assert output_lines(prefix + "/") == ROWS
    return {"rows_per_s": ROWS / elapsed, "seconds": elapsed}


def test_ray_data(benchmark: Any, workload: dict[str, Any], ray_bench: None) -> None:
    def all_settings() -> dict[str, dict[str, float]]:
        return {name: ray_data_job(workload["model_dir"], name, SETTINGS[name]) for name in CHOSEN}

    runs = benchmark.pedantic(all_settings, rounds=1)
    best_name = max(runs, key=lambda n: runs[n]["rows_per_s"])
    RESULTS["ray_data"] = {"best": best_name, **runs[best_name], "settings": runs}
    benchmark.extra_info.update(RESULTS["ray_data"])
    if "runner" in RESULTS:
        ratio = RESULTS["runner"]["rows_per_s"] / runs[best_name]["rows_per_s"]
        benchmark.extra_info["ratio_runner_vs_ray_data"] = ratio
        print(f"\nRay Data, {ROWS} rows: {runs}\nratio runner/Ray Data (best) = {ratio:.3f}")
