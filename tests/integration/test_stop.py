"""Stopping a job run by `batch-transform run`: with `batch-transform stop` from another process, and
with Ctrl-C. Either way the job ends Stopped in bounded time and no partial `.out` is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.jobs.store import JobStore, TransformJobStatus

from .conftest import Bucket, job_request, model_request, write_model

pytestmark = pytest.mark.integration

SLOW_MODEL = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    time.sleep(0.5)
    return body, accept
"""


def start_slow_job(bucket: Bucket, tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], JobStore]:
    bucket.put("in/fast.csv", b"1\n")
    bucket.put("in/slow.csv", b"x\n" * 400)
    model = model_request("slow", write_model(tmp_path / "m", SLOW_MODEL))
    request = job_request(name, bucket.name, ModelName="slow", BatchStrategy="SingleRecord")
    (tmp_path / "job.json").write_text(json.dumps(request))
    (tmp_path / "model.json").write_text(json.dumps(model))
    home = tmp_path / "home"
    env = {**os.environ, "BATCH_TRANSFORM_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.cli",
            "run",
            str(tmp_path / "job.json"),
            "--model",
            str(tmp_path / "model.json"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = JobStore(home / "jobs.sqlite")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # running: workers ready and the fast object written
        try:
            record = store.get_job(name)
            if record.transform_start_time and bucket.keys("out/fast"):
                return proc, store
        except Exception:
            pass
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the job never started")


def assert_stopped(proc: subprocess.Popen[str], store: JobStore, bucket: Bucket, name: str) -> None:
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, output
    record = store.get_job(name)
    assert record.status is TransformJobStatus.STOPPED, (record, output)
    assert record.transform_end_time is not None
    assert bucket.keys("out/") == ["out/fast.csv.out"]  # written before the stop; no partial slow.csv.out
    assert bucket.open_uploads() == []


def test_batch_transform_stop_from_another_process(bucket: Bucket, tmp_path: Path) -> None:
    proc, store = start_slow_job(bucket, tmp_path, "stop-me")
    env = {**os.environ, "BATCH_TRANSFORM_HOME": str(tmp_path / "home")}
    t0 = time.monotonic()
    stop = subprocess.run(
        [sys.executable, "-m", "runner.cli", "stop", "stop-me"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    assert_stopped(proc, store, bucket, "stop-me")
    assert time.monotonic() - t0 < 45
    again = subprocess.run(
        [sys.executable, "-m", "runner.cli", "stop", "stop-me"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2
    assert "The request was rejected because the transform job is in status Stopped." in again.stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_job(bucket: Bucket, tmp_path: Path, stop_signal: signal.Signals) -> None:
    # SIGTERM is what `ray job stop`, a pod's deletion and `kill` send: the same clean stop as Ctrl-C.
    proc, store = start_slow_job(bucket, tmp_path, "interrupt-me")
    proc.send_signal(stop_signal)
    assert_stopped(proc, store, bucket, "interrupt-me")
