"""Resume: a job killed, failed or stopped half-way is finished by `batch-transform resume`,
which re-runs only the objects without a valid output and refuses when the input or model changed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.engine.job import resume_job, run_job
from runner.errors import ResumeError
from runner.jobs.owner import owner_id
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus, job_arn
from tests.integration.conftest import Bucket, job_request, model_request, write_model

pytestmark = pytest.mark.integration

# Each line becomes "<line>:<length>"; slow enough that a 200-object job can be killed half-way.
SLOW_ECHO_MODEL = """
import os
import time

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    text = body.decode() if isinstance(body, bytes) else body
    if "poison" in text and os.path.exists(os.environ["POISON_FLAG"]):
        raise ValueError("poisoned input while the flag file exists")
    time.sleep(float(os.environ.get("SLEEP_S", "0")))
    return "".join(f"{line}:{len(line)}\\n" for line in text.splitlines()), accept
"""


def expected(body: bytes) -> bytes:
    return "".join(f"{line}:{len(line)}\n" for line in body.decode().splitlines()).encode()


def inputs(n: int) -> dict[str, bytes]:
    return {f"in/part-{i:04d}.csv": f"obj{i}-a\nobj{i}-bb\nobj{i}-ccc\n".encode() for i in range(n)}


def outputs_state(bucket: Bucket) -> dict[str, tuple[str, Any]]:
    """ETag and LastModified of every .out: unchanged for the objects a resume keeps."""
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.name, Prefix="out/")
    return {o["Key"]: (o["ETag"], o["LastModified"]) for p in pages for o in p.get("Contents", [])}


def ledger_rows(home: Path, name: str) -> int:
    path = home / "jobs.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return int(db.execute("SELECT count(*) FROM ledger WHERE job_key = ?", (name,)).fetchone()[0])
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


def ledger_outputs(home: Path, name: str) -> set[str]:
    with sqlite3.connect(home / "jobs.sqlite", timeout=30) as db:
        rows = db.execute("SELECT output_uri FROM ledger WHERE job_key = ?", (name,)).fetchall()
    return {str(r[0]).split("/", 3)[3] for r in rows}  # s3://bucket/<key>


def cli(home: Path, *args: str, **popen: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runner.cli", "--home", str(home), *args, "--no-progress"],
        env={**os.environ, "BATCH_TRANSFORM_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


@pytest.mark.slow  # a 200-object job in its own Ray, killed, then resumed in another: `make test-slow`
def test_kill_9_of_the_driver_then_resume(bucket: Bucket, tmp_path: Path) -> None:
    objects = inputs(200)
    for key, body in objects.items():
        bucket.put(key, body)
    model_dir = write_model(tmp_path / "m", SLOW_ECHO_MODEL)
    model = model_request(
        "echo", model_dir, {"SLEEP_S": "0.1", "POISON_FLAG": str(tmp_path / "no-such-flag")}
    )
    request = job_request("killed", bucket.name, ModelName="echo")
    (tmp_path / "job.json").write_text(json.dumps(request))
    (tmp_path / "model.json").write_text(json.dumps(model))
    home = tmp_path / "home"

    proc = cli(home, "run", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"))
    deadline = time.monotonic() + 180
    while ledger_rows(home, "killed") < 20:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    store = JobStore(home / "jobs.sqlite")
    assert store.get_job("killed").status is TransformJobStatus.IN_PROGRESS  # nobody could record an end
    kept = ledger_rows(home, "killed")
    assert 20 <= kept < 200, kept
    kept_keys = ledger_outputs(home, "killed")
    before = outputs_state(bucket)

    resumed = cli(home, "resume", "killed")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"{kept} of 200 objects have a valid output and are kept" in output

    record = store.get_job("killed")
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    counters = record.describe()["x-runner"]
    assert counters["objects_resumed"] == kept
    assert counters["objects_done"] == counters["objects_total"] == 200
    assert counters["records"] == 3 * (200 - kept)  # finished objects were not computed again
    after = outputs_state(bucket)
    assert sorted(after) == sorted(f"out/{k.removeprefix('in/')}.out" for k in objects)
    for key, body in objects.items():
        assert bucket.get(f"out/{key.removeprefix('in/')}.out") == expected(body), key
    assert {k: after[k] for k in kept_keys} == {k: before[k] for k in kept_keys}  # not rewritten
    assert bucket.open_uploads() == []


@pytest.fixture
def failed_job(
    bucket: Bucket, tmp_path: Path, ray_local: None
) -> tuple[RunnerConfig, dict[str, bytes], Path]:
    """A job whose one poisoned object failed while the flag file existed; the other four finished."""
    objects = inputs(4)
    objects["in/poisoned.csv"] = b"poison-a\npoison-b\n"
    for key, body in objects.items():
        bucket.put(key, body)
    flag = tmp_path / "flag"
    flag.write_text("on")
    model = model_request("echo", write_model(tmp_path / "m", SLOW_ECHO_MODEL), {"POISON_FLAG": str(flag)})
    config = RunnerConfig(home=tmp_path / "home")
    record = run_job(job_request("poisoned", bucket.name, ModelName="echo"), config, model_request=model)
    assert record.status is TransformJobStatus.FAILED
    assert "poisoned input while the flag file exists" in (record.failure_reason or "")
    return config, objects, flag


def test_a_failed_job_resumes_only_its_failed_object(
    bucket: Bucket, failed_job: tuple[RunnerConfig, dict[str, bytes], Path]
) -> None:
    config, objects, flag = failed_job
    before = outputs_state(bucket)
    assert len(before) == 4 and "out/poisoned.csv.out" not in before

    with pytest.raises(ResumeError, match="changed since the job started"):
        bucket.put("in/part-0001.csv", b"edited\n")  # the input changed: refused, nothing runs
        resume_job("poisoned", config)
    bucket.put("in/part-0001.csv", objects["in/part-0001.csv"])  # same bytes, same ETag again
    with pytest.raises(ResumeError, match=r"input object s3://.*/in/new.csv is new"):
        bucket.put("in/new.csv", b"x\n")
        resume_job("poisoned", config)
    bucket.client.delete_object(Bucket=bucket.name, Key="in/new.csv")

    flag.unlink()  # what made the object fail is gone
    bucket.client.delete_object(Bucket=bucket.name, Key="out/part-0002.csv.out")  # no longer valid
    del before["out/part-0002.csv.out"]
    record = resume_job("poisoned", config)
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    assert record.failure_reason is None
    counters = record.describe()["x-runner"]
    assert counters["objects_resumed"] == 3 and counters["records"] == 3 + 2
    after = outputs_state(bucket)
    assert {k: after[k] for k in before} == before  # the three kept outputs were not rewritten
    for key, body in objects.items():
        assert bucket.get(f"out/{key.removeprefix('in/')}.out") == expected(body)

    with pytest.raises(ResumeError, match="is Completed: every output exists, nothing to resume"):
        resume_job("poisoned", config)


@pytest.mark.slow  # a resumed job in a process of its own
def test_resume_json_prints_the_resumed_jobs_describe(
    bucket: Bucket, failed_job: tuple[RunnerConfig, dict[str, bytes], Path]
) -> None:
    config, _, flag = failed_job
    flag.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "runner.cli", "--home", str(config.home), "resume", "poisoned", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)  # stdout holds the JSON alone; notes go to stderr
    assert described["TransformJobStatus"] == "Completed"
    assert described["x-runner"]["objects_resumed"] == 4 and described["x-runner"]["engine"] == "ray"
    assert "1 to run" in done.stderr


def test_a_changed_model_is_refused(
    tmp_path: Path, failed_job: tuple[RunnerConfig, dict[str, bytes], Path]
) -> None:
    config = failed_job[0]
    code = tmp_path / "m" / "code" / "inference.py"
    original = code.read_text()
    code.write_text(original + "\n# changed\n")
    with pytest.raises(ResumeError, match="its model changed since the job started"):
        resume_job("poisoned", config)
    code.write_text(original)
    os.utime(code, ns=(0, 0))  # a file:// model's ETag is size + mtime: still not the same model
    with pytest.raises(ResumeError, match="its model changed"):
        resume_job("poisoned", config)


def test_a_running_job_is_not_resumed(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    now = time.time()
    store.create_job(JobRecord("busy", job_arn("busy"), TransformJobStatus.IN_PROGRESS, {}, now, now))
    store.claim_job("busy", owner_id())  # this very process: alive
    with pytest.raises(ResumeError, match="'busy' is InProgress and still running"):
        resume_job("busy", RunnerConfig(home=tmp_path))


@pytest.mark.slow  # a server process with its own Ray, on top of the first run's
def test_resume_on_the_server(bucket: Bucket, tmp_path: Path, s3_server: Any) -> None:
    """`batch-transform resume NAME --endpoint-url` sends ResumeTransformJob; the server finishes it."""
    from botocore.exceptions import WaiterError

    from tests.integration.test_api import FAST, start_server

    objects = inputs(3)
    objects["in/poisoned.csv"] = b"poison\n"
    for key, body in objects.items():
        bucket.put(key, body)
    flag = tmp_path / "flag"
    flag.write_text("on")
    server = start_server(tmp_path / "home", s3_server)
    try:
        sm = server.client()
        model = model_request(
            "echo", write_model(tmp_path / "m", SLOW_ECHO_MODEL), {"POISON_FLAG": str(flag)}
        )
        sm.create_model(**model)
        sm.create_transform_job(**job_request("on-server", bucket.name, ModelName="echo"))
        with pytest.raises(
            WaiterError, match='matched expected path: "Failed"'
        ):  # the waiter's way to say it
            sm.get_waiter("transform_job_completed_or_stopped").wait(
                TransformJobName="on-server", WaiterConfig=FAST
            )
        kept = outputs_state(bucket)
        assert len(kept) == 3

        flag.unlink()
        env = {**os.environ, "AWS_ACCESS_KEY_ID": server.key, "AWS_SECRET_ACCESS_KEY": server.secret}
        resumed = subprocess.run(
            [sys.executable, "-m", "runner.cli", "resume", "on-server", "--endpoint-url", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "resumed on" in resumed.stdout
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="on-server", WaiterConfig=FAST
        )
        described = sm.describe_transform_job(TransformJobName="on-server")
        assert described["TransformJobStatus"] == "Completed" and "FailureReason" not in described
        after = outputs_state(bucket)
        assert {k: after[k] for k in kept} == kept
        assert bucket.get("out/poisoned.csv.out") == expected(b"poison\n")
        assert (
            JobStore(tmp_path / "home" / "jobs.sqlite")
            .get_job("on-server")
            .describe()["x-runner"]["objects_resumed"]
            == 3
        )

        again = subprocess.run(
            [sys.executable, "-m", "runner.cli", "resume", "on-server", "--endpoint-url", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert again.returncode == 2
        assert "ValidationException: transform job 'on-server' is Completed" in again.stderr
    finally:
        server.stop()
