"""What the embedded S3 spends to serve one object streamed against the same object read as
MaxPayloadInMB=6 ranges (what `--payload-reads ranged` asks of it), for CSV text and for random
bytes: the reason ranged reads are not the default on one machine (benchmarks/RESULTS.md).

Each read pattern is measured as the CPU seconds of the ``weed`` process while the reads run.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import psutil
import pytest

from runner.storage import storage_for

BUCKET = "bench-ranges"
SIZE = 200 * 1024 * 1024
PAYLOAD = 6 * 1024 * 1024
RESULTS: dict[str, dict[str, float]] = {}


def csv_bytes(size: int) -> bytes:
    rng = random.Random(0)
    block = "".join(",".join(f"{rng.random():.6f}" for _ in range(20)) + "\n" for _ in range(5000)).encode()
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture(scope="module")
def objects(s3_server: Any) -> dict[str, str]:
    storage = storage_for(f"s3://{BUCKET}/")
    storage.ensure_bucket(f"s3://{BUCKET}/")
    uris = {}
    for name, data in (("csv", csv_bytes(SIZE)), ("random", os.urandom(SIZE))):
        uri = f"s3://{BUCKET}/{name}"
        with storage.open_writer(uri) as w:  # 8 MiB parts, as the CLI and the AWS CLI upload
            for i in range(0, SIZE, 8 << 20):
                w.write(data[i : i + (8 << 20)])
            w.commit()
        uris[name] = uri
    return uris


def weed_cpu_s() -> float:
    return sum(
        sum(p.cpu_times()[:2]) for p in psutil.Process().children(recursive=True) if p.name() == "weed"
    )


@pytest.mark.parametrize("data", ["csv", "random"])
def test_streamed_against_ranged_reads(benchmark: Any, objects: dict[str, str], data: str) -> None:
    uri = objects[data]
    storage = storage_for(uri)
    etag = storage.head(uri).etag

    def streamed() -> int:
        return sum(len(c) for c in storage.iter_chunks(uri))

    def ranged() -> int:
        return sum(
            len(storage.read_range(uri, a, min(SIZE, a + PAYLOAD), etag)) for a in range(0, SIZE, PAYLOAD)
        )

    def measure() -> dict[str, float]:
        out: dict[str, float] = {}
        for name, read in (("streamed", streamed), ("ranged", ranged)):
            c0, t0 = weed_cpu_s(), time.perf_counter()
            assert read() == SIZE
            out[f"{name}_server_cpu_s"] = round(weed_cpu_s() - c0, 2)
            out[f"{name}_s"] = round(time.perf_counter() - t0, 2)
        out["ranged_over_streamed_server_cpu"] = round(
            out["ranged_server_cpu_s"] / out["streamed_server_cpu_s"], 2
        )
        return out

    result = benchmark.pedantic(measure, rounds=1)
    RESULTS[data] = result
    benchmark.extra_info.update(result)
    print(f"\n{SIZE >> 20} MiB of {data}: {json.dumps(result)}")
