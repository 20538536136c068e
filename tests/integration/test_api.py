"""The SageMaker-compatible control plane as a user meets it: a real `batch-transform serve` process,
the unchanged boto3 ``sagemaker`` client pointed at it with ``endpoint_url``, the real embedded S3."""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, WaiterError

from runner.jobs.owner import owner_id
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus, job_arn
from runner.storage.embedded import EmbeddedS3Info

from .conftest import SUM_MODEL, Bucket, job_request, model_request, write_model

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "models" / "mlp-onnx"
READY_TIMEOUT_S = 60
FAST = {"Delay": 1, "MaxAttempts": 180}  # the waiters' 60 s delay, shortened

# A model that writes 9 MiB for a "fast" record (so a multipart upload is open) and sleeps on "sleep".
SLOW_MODEL = """
import time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    text = data.decode() if isinstance(data, bytes) else data
    if "sleep" in text:
        time.sleep(300)
    return b"x" * (9 * 1024 * 1024), accept
"""


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path
    key: str
    secret: str

    def client(self, key: str | None = None, secret: str | None = None) -> Any:
        return boto3.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key or self.key,
            aws_secret_access_key=secret or self.secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def jobs(self) -> dict[str, JobRecord]:
        """The jobs this server holds, read from its store."""
        return {r.name: r for r in JobStore(self.home / "jobs.sqlite").list_jobs()}

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_server(home: Path, info: EmbeddedS3Info, *args: str) -> Server:
    """A `batch-transform serve` process (``args``: more serve flags), once it prints its URL."""
    log = home.parent / f"{home.name}-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "runner.cli", "--home", str(home), "-v", "serve", "--port", "0", *args],
            env={**os.environ, **info.env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        for word in text.split():
            if word.startswith("http://127.0.0.1:"):
                return Server(word, home, process, log, info.access_key_id, info.secret_access_key)
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}:\n{text}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"serve did not start in {READY_TIMEOUT_S}s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server(s3_server: EmbeddedS3Info, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("api") / "home", s3_server)
    try:
        yield srv
    finally:
        status = srv.stop()
        print(srv.log.read_text(errors="replace")[-5000:])  # shown by pytest when a test failed
    assert status == 0, "serve did not shut down cleanly on SIGTERM"


@pytest.fixture
def sm(server: Server) -> Any:
    return server.client()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as e:
        call(**kwargs)
    return {**e.value.response["Error"], "Status": e.value.response["ResponseMetadata"]["HTTPStatusCode"]}


def raw(server: Server, target: str, body: bytes, sign: bool = True) -> tuple[int, dict[str, Any]]:
    """A request made by hand (urllib), SigV4-signed by botocore's signer unless ``sign`` is False."""
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    if sign:
        request = AWSRequest(method="POST", url=server.url + "/", headers=headers, data=body)
        SigV4Auth(Credentials(server.key, server.secret), "sagemaker", "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + "/", body, headers)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def slow_job(sm: Any, bucket: Bucket, tmp_path: Path) -> str:
    """A job whose output has an open multipart upload and whose model then sleeps; its name."""
    model = unique("slow")
    sm.create_model(**model_request(model, write_model(tmp_path / "m", SLOW_MODEL)))
    bucket.put("in/a.txt", b"fast\nsleep\nfast\n")
    name = unique("slow-job")
    request = job_request(
        name,
        bucket.name,
        ModelName=model,
        BatchStrategy="SingleRecord",
        TransformInput={"ContentType": "text/plain"},
        TransformOutput={"Accept": "application/octet-stream", "AssembleWith": "None"},
    )
    sm.create_transform_job(**request)
    deadline = time.monotonic() + 90
    while not bucket.open_uploads():  # the first 8 MiB part of the output is uploaded
        assert time.monotonic() < deadline, sm.describe_transform_job(TransformJobName=name)
        time.sleep(0.2)
    return name


def test_models_create_describe_list_delete(sm: Any, tmp_path: Path) -> None:
    name = unique("sum")
    request = model_request(name, write_model(tmp_path / "m", SUM_MODEL))
    arn = sm.create_model(**request)["ModelArn"]
    assert arn.endswith(f":model/{name}")
    d = sm.describe_model(ModelName=name)
    assert d["ModelName"] == name and d["ModelArn"] == arn
    assert d["PrimaryContainer"] == request["PrimaryContainer"]
    assert d["ExecutionRoleArn"] == request["ExecutionRoleArn"]
    assert isinstance(d["CreationTime"], dt.datetime) and d["CreationTime"].tzinfo is not None

    again = error_of(sm.create_model, **{**request, "ModelName": name.upper()})
    assert (
        again["Code"] == "ValidationException" and "Cannot create already existing model" in again["Message"]
    )
    bad = error_of(sm.create_model, **{**request, "ModelName": "bad_name!"})
    assert bad["Code"] == "ValidationException" and "modelName" in bad["Message"]

    listed = sm.list_models(NameContains=name.upper())["Models"]
    assert [(m["ModelName"], m["ModelArn"]) for m in listed] == [(name, arn)]
    sm.delete_model(ModelName=name)
    assert sm.list_models(NameContains=name)["Models"] == []
    gone = error_of(sm.describe_model, ModelName=name)
    assert gone["Code"] == "ValidationException" and f'Could not find model "{arn}"' in gone["Message"]


def test_seed_request_through_boto3_to_completed(
    sm: Any, server: Server, bucket: Bucket, tmp_path: Path
) -> None:
    """models/mlp-onnx/job.json and model.json verbatim but for their S3 locations."""
    spec = importlib.util.spec_from_file_location("mlp_build", EXAMPLE / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    _, tarball = build.build(tmp_path / "model")
    build.make_csv(tmp_path / "data.csv", 300, 7)
    bucket.put("model/model.tar.gz", tarball.read_bytes())
    bucket.put("in/nested/data.csv", (tmp_path / "data.csv").read_bytes())

    model: dict[str, Any] = json.loads((EXAMPLE / "model.json").read_text())
    model["PrimaryContainer"]["ModelDataUrl"] = f"s3://{bucket.name}/model/model.tar.gz"
    job: dict[str, Any] = json.loads((EXAMPLE / "job.json").read_text())
    job["TransformJobName"] = unique("mlp-onnx-demo")  # the module's server keeps every job
    job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{bucket.name}/in/"
    job["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/out"
    model["ModelName"] = job["ModelName"] = unique("mlp-onnx")

    sm.create_model(**model)
    arn = sm.create_transform_job(**job)["TransformJobArn"]
    assert arn == job_arn(job["TransformJobName"])
    assert sm.describe_transform_job(TransformJobName=job["TransformJobName"])["TransformJobStatus"] in (
        "InProgress",
        "Completed",
    )
    sm.get_waiter("transform_job_completed_or_stopped").wait(
        TransformJobName=job["TransformJobName"], WaiterConfig=FAST
    )

    d = sm.describe_transform_job(TransformJobName=job["TransformJobName"])
    assert d["TransformJobStatus"] == "Completed", d.get("FailureReason")
    assert d["TransformJobName"] == job["TransformJobName"] and d["TransformJobArn"] == arn
    assert d["ModelName"] == job["ModelName"] and "FailureReason" not in d
    for key in ("MaxConcurrentTransforms", "MaxPayloadInMB", "BatchStrategy", "Environment"):
        assert d[key] == job[key]
    for key in ("TransformInput", "TransformOutput", "TransformResources"):
        assert d[key] == job[key]
    times = [d["CreationTime"], d["TransformStartTime"], d["TransformEndTime"]]
    assert all(isinstance(t, dt.datetime) and t.tzinfo is not None for t in times)
    assert times == sorted(times)
    assert "x-runner" not in d  # botocore keeps the AWS shape only

    rows = bucket.get("out/nested/data.csv.out").decode().splitlines()
    assert len(rows) == 300 and abs(sum(float(p) for p in rows[0].split(",")[1:]) - 1) < 1e-5

    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as answer:  # Prometheus, unsigned
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    name = job["TransformJobName"]
    assert f'batch_transform_job_status{{job="{name}",status="Completed"}} 1.0' in text
    assert f'batch_transform_job_records_total{{job="{name}"}} 300.0' in text

    dup = error_of(sm.create_transform_job, **job)
    assert dup["Code"] == "ResourceInUse" and arn in dup["Message"]
    stop = error_of(sm.stop_transform_job, TransformJobName=job["TransformJobName"])
    assert stop["Code"] == "ValidationException"
    assert stop["Message"] == "The request was rejected because the transform job is in status Completed."


def test_list_transform_jobs_filters_and_pages(sm: Any, bucket: Bucket, tmp_path: Path) -> None:
    model = unique("sum")
    sm.create_model(**model_request(model, write_model(tmp_path / "m", SUM_MODEL)))
    bucket.put("in/a.csv", b"1,2,3\n")
    tag = unique("page")
    names = [f"{tag}-{i}" for i in range(3)]
    for i, name in enumerate(names):
        if i == 2:
            time.sleep(0.3)
        sm.create_transform_job(**job_request(name, bucket.name, ModelName=model))

    pages = list(
        sm.get_paginator("list_transform_jobs").paginate(
            NameContains=tag.upper(), SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 2}
        )
    )
    assert [len(p["TransformJobSummaries"]) for p in pages] == [2, 1]
    summaries = [s for p in pages for s in p["TransformJobSummaries"]]
    assert [s["TransformJobName"] for s in summaries] == names
    assert all(isinstance(s["CreationTime"], dt.datetime) for s in summaries)

    newest = sm.list_transform_jobs(NameContains=tag, MaxResults=1)  # CreationTime, Descending
    assert [s["TransformJobName"] for s in newest["TransformJobSummaries"]] == [names[2]]
    assert newest["NextToken"]
    third = summaries[2]["CreationTime"] - dt.timedelta(seconds=0.15)
    after = sm.list_transform_jobs(NameContains=tag, CreationTimeAfter=third)["TransformJobSummaries"]
    assert [s["TransformJobName"] for s in after] == names[2:]
    before = sm.list_transform_jobs(NameContains=tag, CreationTimeBefore=third)["TransformJobSummaries"]
    assert {s["TransformJobName"] for s in before} == set(names[:2])
    bad = error_of(sm.list_transform_jobs, NextToken="not-a-token")
    assert bad["Code"] == "ValidationException"
    other = error_of(sm.list_transform_jobs, NextToken=newest["NextToken"], SortBy="Name")
    assert other["Code"] == "ValidationException"
    too_many = error_of(sm.list_transform_jobs, MaxResults=101)
    assert too_many["Code"] == "ValidationException" and "maxResults" in too_many["Message"]

    waiter = sm.get_waiter("transform_job_completed_or_stopped")
    for name in names:  # done before the next test takes the CPUs
        with contextlib.suppress(WaiterError):  # a Failed job: its FailureReason is asserted below
            waiter.wait(TransformJobName=name, WaiterConfig=FAST)
        job = sm.describe_transform_job(TransformJobName=name)
        assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    done = sm.list_transform_jobs(NameContains=tag, StatusEquals="Completed")["TransformJobSummaries"]
    assert len(done) == 3 and all(s["TransformEndTime"] >= s["CreationTime"] for s in done)
    assert sm.list_transform_jobs(NameContains=tag, StatusEquals="InProgress")["TransformJobSummaries"] == []


def test_serve_keeps_a_models_workers_warm_for_its_next_job(
    sm: Any, server: Server, bucket: Bucket, tmp_path: Path
) -> None:
    """`serve`'s default --warm-pool-seconds: the second job of a model reuses the first one's workers."""
    model = unique("warm")
    sm.create_model(**model_request(model, write_model(tmp_path / "m", SUM_MODEL)))
    bucket.put("in/a.csv", b"1,2,3\n")
    names = [unique("warm-job") for _ in range(2)]
    waiter = sm.get_waiter("transform_job_completed_or_stopped")
    for name in names:
        request = job_request(name, bucket.name, ModelName=model, MaxConcurrentTransforms=1)
        request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/{name}"
        sm.create_transform_job(**request)
        waiter.wait(TransformJobName=name, WaiterConfig=FAST)
    store = JobStore(server.home / "jobs.sqlite")
    first, second = (store.get_job(name) for name in names)
    assert (first.status, second.status) == (TransformJobStatus.COMPLETED, TransformJobStatus.COMPLETED)
    first_workers, second_workers = (
        first.describe()["x-runner"]["workers"],
        second.describe()["x-runner"]["workers"],
    )
    assert not any(w.get("warm") for w in first_workers)
    assert second_workers and all(w["warm"] for w in second_workers)
    assert [w["pid"] for w in second_workers] == [w["pid"] for w in first_workers]
    assert bucket.get(f"{names[1]}/a.csv.out") == bucket.get(f"{names[0]}/a.csv.out") == b"6\n"


def test_stop_slow_job_leaves_no_output(sm: Any, server: Server, bucket: Bucket, tmp_path: Path) -> None:
    name = slow_job(sm, bucket, tmp_path)
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] == "InProgress"

    # The server answers while the job runs.
    client = server.client()
    latencies = []
    for _ in range(10):
        t0 = time.perf_counter()
        client.describe_transform_job(TransformJobName=name)
        latencies.append(time.perf_counter() - t0)
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.1 and latencies[-1] < 1.0, latencies

    assert sm.stop_transform_job(TransformJobName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Stopping", "Stopped")
    sm.stop_transform_job(TransformJobName=name)  # Stopping: accepted again
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    d = sm.describe_transform_job(TransformJobName=name)
    assert d["TransformJobStatus"] == "Stopped" and isinstance(d["TransformEndTime"], dt.datetime)
    assert bucket.keys("out/") == []
    assert bucket.open_uploads() == []
    again = error_of(sm.stop_transform_job, TransformJobName=name)
    assert again["Message"] == "The request was rejected because the transform job is in status Stopped."


def test_cli_describe_list_and_stop_against_the_server(
    sm: Any, server: Server, bucket: Bucket, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    name = slow_job(sm, bucket, tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BATCH_TRANSFORM_HOME": str(tmp_path / "elsewhere")}  # not the server's store
        return subprocess.run(
            [sys.executable, "-m", "runner.cli", *args, "--endpoint-url", server.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    described = cli("describe", name)
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["TransformJobStatus"] == "InProgress"
    listed = cli("list", "--json")
    assert name in [s["TransformJobName"] for s in json.loads(listed.stdout)["TransformJobSummaries"]]
    assert cli("stop", name).returncode == 0
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    assert json.loads(cli("describe", name).stdout)["TransformJobStatus"] == "Stopped"
    unknown = cli("describe", "no-such-job")
    assert unknown.returncode == 2 and "ValidationException: Requested resource not found." in unknown.stderr
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []


def test_unknown_job_and_unknown_operation(sm: Any, server: Server) -> None:
    for call in (sm.describe_transform_job, sm.stop_transform_job):
        e = error_of(call, TransformJobName="no-such-job")
        assert (e["Code"], e["Message"], e["Status"]) == (
            "ValidationException",
            "Requested resource not found.",
            400,
        )
    status, body = raw(server, "SageMaker.NoSuchOperation", b"{}")
    assert status == 400 and body["__type"] == "UnknownOperationException"
    status, body = raw(server, "SageMaker.DescribeTransformJob", b"[]")
    assert status == 400 and body["__type"] == "SerializationException"


@pytest.mark.parametrize(
    ("case", "code", "status"),
    [
        ("unsigned", "MissingAuthenticationToken", 403),
        ("wrong key id", "UnrecognizedClientException", 400),
        ("wrong secret", "InvalidSignatureException", 400),
        ("tampered body", "InvalidSignatureException", 400),
        ("expired", "InvalidSignatureException", 400),
    ],
)
def test_sigv4_failures(
    server: Server, monkeypatch: pytest.MonkeyPatch, case: str, code: str, status: int
) -> None:
    if case == "unsigned":
        got, body = raw(server, "SageMaker.ListModels", b"{}", sign=False)
        assert (got, body["__type"]) == (status, code)
        return
    client = server.client(
        key="AKIDNOTKNOWN" if case == "wrong key id" else None,
        secret="not-the-secret" if case == "wrong secret" else None,
    )
    if case == "tampered body":

        def tamper(request: Any, **_: Any) -> None:  # after signing, same length
            request.body = request.body.replace(b"5", b"6")

        client.meta.events.register("before-send.sagemaker.ListModels", tamper)
    if case == "expired":
        skewed = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=6)
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    e = error_of(client.list_models, MaxResults=5)
    assert (e["Code"], e["Status"]) == (code, status), e
    if case == "expired":
        assert e["Message"].startswith("Signature expired: ")
    assert server.secret not in e["Message"]


def test_restart_marks_jobs_a_dead_server_left_failed(s3_server: EmbeddedS3Info, tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = JobStore(home / "jobs.sqlite")
    now = time.time()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name, owner in (("left-running", owner_id(gone.pid)), ("cli-job", None)):
        request = job_request(name, "bucket")
        store.create_job(JobRecord(name, job_arn(name), TransformJobStatus.IN_PROGRESS, request, now, now))
        if owner:
            store.claim_job(name, owner)
    srv = start_server(home, s3_server)
    try:
        sm = srv.client()
        failed = sm.describe_transform_job(TransformJobName="left-running")
        assert failed["TransformJobStatus"] == "Failed"
        assert failed["FailureReason"].startswith(
            "InternalServerError: the server restarted while the job was running;"
        )
        # A job the CLI runs has no server behind it: not the server's to fail.
        assert sm.describe_transform_job(TransformJobName="cli-job")["TransformJobStatus"] == "InProgress"
    finally:
        srv.stop()


def test_serve_refuses_remote_host_and_missing_credentials(tmp_path: Path) -> None:
    def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "runner.cli", "--home", str(tmp_path), "serve", "--port", "0", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    creds = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cret"}
    remote = serve("--host", "0.0.0.0", env=creds)
    assert remote.returncode == 2 and "--allow-remote" in remote.stderr
    anonymous = {k: v for k, v in creds.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    missing = serve(env=anonymous)
    assert missing.returncode == 2 and "BATCH_TRANSFORM_API_KEYS" in missing.stderr
    assert "s3cret" not in remote.stderr + remote.stdout


def test_serve_takes_its_api_keys_apart_from_its_s3_credentials(
    s3_server: EmbeddedS3Info, tmp_path: Path
) -> None:
    # The server reaches S3 with its AWS_* (here the embedded S3's keys; under IRSA, a role); clients
    # sign with the keys of its own setting, and its S3 keys are not API keys.
    keys = tmp_path / "api-keys"
    keys.write_text(
        "# clients of this server\nAKIACLIENTONE:client-secret-1\nAKIACLIENTTWO:client-secret-2\n"
    )
    srv = start_server(tmp_path / "home", s3_server, "--api-keys-file", str(keys))
    try:
        for key, secret in (("AKIACLIENTONE", "client-secret-1"), ("AKIACLIENTTWO", "client-secret-2")):
            assert srv.client(key, secret).list_transform_jobs()["TransformJobSummaries"] == []
        s3_keys = srv.client(s3_server.access_key_id, s3_server.secret_access_key)
        assert error_of(s3_keys.list_transform_jobs)["Code"] == "UnrecognizedClientException"
        wrong = srv.client("AKIACLIENTONE", "client-secret-2")
        assert error_of(wrong.list_transform_jobs)["Code"] == "InvalidSignatureException"
    finally:
        assert srv.stop() == 0
    log = srv.log.read_text()
    assert "access key id AKIACLIENTONE, AKIACLIENTTWO" in log
    assert "client-secret" not in log and s3_server.secret_access_key not in log


def test_serve_refuses_api_keys_it_cannot_use(tmp_path: Path) -> None:
    def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "runner.cli", "--home", str(tmp_path), "serve", "--port", "0"]
        return subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)

    bad = serve({"BATCH_TRANSFORM_API_KEYS": "AKIAGOOD:s3cret-good,AKIABAD s3cret-bad"})
    assert bad.returncode == 2
    assert (
        "BATCH_TRANSFORM_API_KEYS: API key 2 ((no ':')) is not ACCESS_KEY_ID:SECRET_ACCESS_KEY" in bad.stderr
    )
    absent = serve({"BATCH_TRANSFORM_API_KEYS_FILE": str(tmp_path / "nowhere")})
    assert absent.returncode == 2
    assert f"cannot read the API keys file {tmp_path / 'nowhere'}: No such file or directory" in absent.stderr
    assert "s3cret" not in bad.stderr + bad.stdout


def test_sigterm_stops_running_jobs_and_exits(
    sm: Any, server: Server, bucket: Bucket, tmp_path: Path
) -> None:
    """Last in this module: it stops the module's server."""
    name = slow_job(sm, bucket, tmp_path)
    assert server.stop() == 0
    record = JobStore(server.home / "jobs.sqlite").get_job(name)
    assert record.status is TransformJobStatus.STOPPED
    assert bucket.keys("out/") == [] and bucket.open_uploads() == []
