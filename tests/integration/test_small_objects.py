"""Small objects run several to a task (runner/engine/feeder.py ``run_objects``): each object is
still split, sent and written alone, a bad object fails alone, and a stop ends every running group
before it writes more outputs."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.engine.sizing import GROUP_OBJECTS, SMALL_OBJECT_BYTES, take_batch
from runner.jobs.store import JobStore, TransformJobStatus
from runner.records.plan import InputObject

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

# One line per payload: its records reversed and its length, so a payload that mixed objects, lost a
# record or changed order shows in the object's own .out. "boom" fails the payload it is in.
ECHO_MODEL = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    text = body.decode() if isinstance(body, bytes) else body
    if "boom" in text:
        raise ValueError("boom record")
    if "slow" in text:
        time.sleep(0.4)
    lines = text.splitlines()
    return "|".join(reversed(lines)) + f" {len(text)}\\n", accept
"""


def echo(body: str) -> bytes:
    lines = body.splitlines()
    return ("|".join(reversed(lines)) + f" {len(body)}\n").encode()


def echo_job(
    bucket: Bucket, tmp_path: Path, name: str, workers: int
) -> tuple[dict[str, Any], dict[str, Any], RunnerConfig]:
    """The request, the echo model and a config with one object task in flight, so every group is
    as big as GROUP_OBJECTS allows."""
    request = job_request(
        name,
        bucket.name,
        ModelName="echo",
        MaxConcurrentTransforms=workers,
        TransformInput={"ContentType": "text/plain"},
        TransformOutput={"Accept": "text/plain"},
    )
    model = model_request("echo", write_model(tmp_path / "m", ECHO_MODEL))
    return request, model, RunnerConfig(home=tmp_path / "home", objects_in_flight_per_instance=1)


def obj(i: int, size: int) -> InputObject:
    return InputObject(f"s3://b/in/{i}", size, "e", f"{i}", f"s3://b/out/{i}.out")


def test_take_batch_groups_small_objects_and_leaves_large_ones_alone() -> None:
    big = SMALL_OBJECT_BYTES + 1
    queue = deque(
        [obj(i, 100) for i in range(100)] + [obj(100, big)] + [obj(i, 100) for i in range(101, 104)]
    )
    first = take_batch(queue, slots=2)
    assert [o.relative_key for o in first] == [str(i) for i in range(GROUP_OBJECTS)]
    # Every slot still gets a share: 72 objects left, 8 slots -> 9 each.
    assert len(take_batch(queue, slots=8)) == 9
    while queue[0].size <= SMALL_OBJECT_BYTES:
        batch = take_batch(queue, slots=1)
        assert all(o.size <= SMALL_OBJECT_BYTES for o in batch)
    assert [o.size for o in take_batch(queue, slots=1)] == [big]  # a large object runs alone
    assert len(take_batch(queue, slots=1)) == 3


def test_grouped_objects_keep_their_own_outputs_and_failures(bucket: Bucket, tmp_path: Path) -> None:
    n = 90
    bodies = {i: "".join(f"o{i}r{j}\n" for j in range(1 + i % 4)) for i in range(n)}
    bodies[41] = "boom\n"
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: bucket.put(f"in/s-{i:03d}.txt", bodies[i].encode()), range(n)))
    request, model, config = echo_job(bucket, tmp_path, "grouped", workers=2)
    record = run_job(request, config, model_request=model)

    assert record.status is TransformJobStatus.FAILED
    assert "s-041.txt" in (record.failure_reason or "") and "boom record" in (record.failure_reason or "")
    counters = record.describe()["x-runner"]
    assert counters["objects_done"] == n - 1 and counters["objects_failed"] == 1
    assert sorted(bucket.keys("out/")) == [f"out/s-{i:03d}.txt.out" for i in range(n) if i != 41]
    for i in range(n):
        if i != 41:
            assert bucket.get(f"out/s-{i:03d}.txt.out") == echo(bodies[i]), i
    assert counters["records"] == sum(len(b.splitlines()) for b in bodies.values())
    assert bucket.open_uploads() == []


def test_stop_ends_grouped_objects_without_more_outputs(bucket: Bucket, tmp_path: Path) -> None:
    n = 60
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: bucket.put(f"in/s-{i:03d}.txt", f"slow {i}\n".encode()), range(n)))
    request, model, config = echo_job(bucket, tmp_path, "grouped-stop", workers=1)
    done: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: done.update(record=run_job(request, config, model_request=model))
    )
    thread.start()
    store = JobStore(config.store_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(bucket.keys("out/")) < 3:
        time.sleep(0.1)
    assert len(bucket.keys("out/")) >= 3, "the job wrote no outputs"
    store.update_job("grouped-stop", status=TransformJobStatus.STOPPING)
    thread.join(90)
    assert not thread.is_alive(), "the stopped job did not end"

    record = done["record"]
    assert record.status is TransformJobStatus.STOPPED
    written = bucket.keys("out/")
    assert 3 <= len(written) < n
    time.sleep(2)  # nothing of the stopped job writes later
    assert bucket.keys("out/") == written
    for key in written:  # what was written is whole
        i = int(key[len("out/s-") : len("out/s-") + 3])
        assert bucket.get(key) == echo(f"slow {i}\n")
    assert bucket.open_uploads() == []
