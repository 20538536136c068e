"""Every way a Ray user submits to a cluster of their own, against a cluster started the way users
start one: ``ray start --head`` (with the Jobs API and Ray Client served) and a second node by ``ray
start --address``, each a process the test stops by pid. Token authentication is on, as Ray 2.60
starts clusters by default: the driver holds the token in RAY_AUTH_TOKEN only.

The nodes hold the S3 keys in their environment (as an instance role or IRSA would give them); the
driver holds none, so listing the input, fetching the model and every read and write run with the
nodes' own credentials. The model comes from S3 (a model.tar.gz) so the workers' fetch is tested too.
"""

from __future__ import annotations

import io
import json
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobStore, TransformJobStatus
from tests.cluster import (
    ROOT,
    CliRun,
    RayNode,
    StartedCluster,
    driver_env,
    ray_start_cluster,
    run_cli_with,
)

from .conftest import SUM_MODEL, Bucket, model_request, one_instance_job, write_model
from .test_stop import SLOW_MODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture(scope="module")
def cluster(s3_server: Any) -> Iterator[StartedCluster]:
    # The head: 1 CPU (the Jobs API's driver and the object tasks); the second node: 2 CPUs, where
    # the one ml.m5.large instance (2 vCPUs) fits.
    with ray_start_cluster(
        [RayNode(1, env=s3_server.env), RayNode(2, env=s3_server.env)],
        dashboard=True,
        client=True,
        token=secrets.token_hex(32),
    ) as c:
        yield c


def model_tar(tmp_path: Path, code: str = SUM_MODEL) -> bytes:
    folder = write_model(tmp_path / "model-src", code)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder / "code", arcname="code")
    return buffer.getvalue()


def one_job(bucket: Bucket, tmp_path: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    bucket.put("in/a.csv", b"1,2\n3,4\n")
    bucket.put("in/b.csv", b"10,20,30\n")
    bucket.put("model/model.tar.gz", model_tar(tmp_path))
    model = model_request("sum", f"s3://{bucket.name}/model/model.tar.gz")
    request = one_instance_job(name, bucket.name)
    return request, model


def assert_completed(done: CliRun, bucket: Bucket) -> None:
    assert done.returncode == 0, done.output
    assert bucket.get("out/a.csv.out") == b"3\n7\n"
    assert bucket.get("out/b.csv.out") == b"60\n"


def record_of(home: Path, name: str) -> Any:
    return JobStore(RunnerConfig(home=home).store_path).get_job(name)


@pytest.mark.parametrize("form", ["flag", "RAY_ADDRESS", "auto"])
def test_gcs_address_forms_run_with_the_nodes_credentials(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path, form: str
) -> None:
    request, model = one_job(bucket, tmp_path, f"gcs-{form.lower().replace('_', '-')}")
    env = driver_env(cluster, drop=KEYS)
    flags: list[str] = []
    if form == "flag":
        flags = ["--ray-address", cluster.gcs]
    elif form == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = cluster.gcs
    else:  # the driver on a machine of the cluster: `auto` finds it (under the same RAY_TMPDIR)
        flags = ["--ray-address", "auto"]
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, *flags)
    assert_completed(done, bucket)
    assert "Ray: joined the cluster at" in done.output
    assert "each node reaches S3 with its own AWS credentials" in done.output
    assert record_of(tmp_path / "home", request["TransformJobName"]).status is TransformJobStatus.COMPLETED


def test_ray_client_address_runs_the_job(cluster: StartedCluster, bucket: Bucket, tmp_path: Path) -> None:
    assert cluster.client is not None
    request, model = one_job(bucket, tmp_path, "ray-client")
    env = driver_env(cluster, drop=KEYS)
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", cluster.client)
    assert_completed(done, bucket)
    assert f"Ray: joined the cluster at {cluster.client}" in done.output


def test_jobs_api_address_submits_the_run_as_a_ray_job(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    assert cluster.dashboard is not None
    request, model = one_job(bucket, tmp_path, "jobs-api")
    env = driver_env(cluster, drop=KEYS)
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", cluster.dashboard)
    assert_completed(done, bucket)
    assert "Ray: submitted as Ray job batch-transform-jobs-api-" in done.output
    # The remote run's own log, streamed back: its summary line.
    assert "Transform job jobs-api: Completed" in done.output


def test_ray_job_submit_runs_the_cli_on_the_cluster(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    assert cluster.dashboard is not None
    request, model = one_job(bucket, tmp_path, "ray-job-submit")
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.json").write_text(json.dumps(request))
    (work / "model.json").write_text(json.dumps(model))
    ray = str(Path(sys.executable).parent / "ray")
    command = [
        ray, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(work), "--",
        "batch-transform", "run", "job.json", "--model", "model.json", "--no-progress",
    ]  # fmt: skip
    # Ray's own CLI sends the token only in token mode (the runner turns that on itself).
    env = driver_env(cluster, drop=KEYS, RAY_AUTH_MODE="token")
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Transform job ray-job-submit: Completed" in done.stdout
    assert bucket.get("out/a.csv.out") == b"3\n7\n"


def test_driver_keys_travel_only_when_asked(cluster: StartedCluster, bucket: Bucket, tmp_path: Path) -> None:
    # Keys the S3 server does not know: if they reached the nodes, every read would be refused.
    wrong = {"AWS_ACCESS_KEY_ID": "AKIADRIVERONLY000000", "AWS_SECRET_ACCESS_KEY": "not-the-nodes-secret"}
    request, model = one_job(bucket, tmp_path, "driver-keys-stay")
    env = driver_env(cluster, drop=KEYS, **wrong)
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", cluster.gcs)
    assert_completed(done, bucket)

    request, model = one_job(bucket, tmp_path, "driver-keys-forwarded")
    request["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/forwarded"
    done = run_cli_with(
        request,
        model,
        tmp_path,
        tmp_path / "home",
        env,
        "--ray-address",
        cluster.gcs,
        "--forward-aws-credentials",
    )
    assert done.returncode != 0, done.output
    assert "AKIADRIVERONLY000000" not in done.output and "not-the-nodes-secret" not in done.output
    assert "InvalidAccessKeyId" in done.output or "does not exist in our records" in done.output, done.output
    assert bucket.keys("forwarded/") == []


def test_a_missing_or_unreadable_token_is_named(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    request, model = one_job(bucket, tmp_path, "no-token")
    # No token anywhere (HOME elsewhere: no ~/.ray/auth_token): the cluster refuses the connection.
    env = driver_env(cluster, drop=(*KEYS, "RAY_AUTH_TOKEN"), HOME=str(tmp_path))
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", cluster.gcs)
    assert done.returncode == 3, done.output
    assert (
        f"error: cannot join the Ray cluster at {cluster.gcs}: token authentication failed (" in done.output
    )
    assert "Set RAY_AUTH_TOKEN to the cluster's token" in done.output
    # A token file that is not there: said at once, with its path.
    missing = tmp_path / "no-such-token"
    env = driver_env(cluster, drop=(*KEYS, "RAY_AUTH_TOKEN"), RAY_AUTH_TOKEN_PATH=str(missing))
    done = run_cli_with(request, model, tmp_path, tmp_path / "home", env, "--ray-address", cluster.gcs)
    assert done.returncode == 3, done.output
    assert f"RAY_AUTH_TOKEN_PATH is set but file cannot be opened or is empty: {missing}" in done.output
    assert "Traceback" not in done.output


def test_ctrl_c_on_a_jobs_api_run_stops_the_ray_job(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    assert cluster.dashboard is not None
    bucket.put("in/fast.csv", b"1\n")
    bucket.put("in/slow.csv", b"x\n" * 400)  # 400 records of 0.5 s each: still running when stopped
    bucket.put("model/slow.tar.gz", model_tar(tmp_path, SLOW_MODEL))
    model = model_request("slow", f"s3://{bucket.name}/model/slow.tar.gz")
    request = one_instance_job("jobs-api-stop", bucket.name)
    request.update(ModelName="slow", BatchStrategy="SingleRecord")
    job_file, model_file = tmp_path / "job.json", tmp_path / "model.json"
    job_file.write_text(json.dumps(request))
    model_file.write_text(json.dumps(model))
    command = [
        sys.executable, "-m", "runner.cli", "--home", str(tmp_path / "home"), "run", str(job_file),
        "--model", str(model_file), "--no-progress", "--ray-address", cluster.dashboard,
    ]  # fmt: skip
    run = subprocess.Popen(
        command,
        env=driver_env(cluster, drop=KEYS),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    head_store = JobStore(Path(cluster.ray_tmp) / "head-home" / "jobs.sqlite")
    try:
        deadline = time.monotonic() + 180
        while not bucket.keys("out/fast") and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.3)
        assert bucket.keys("out/fast"), "the job never wrote its first output"
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, output
    assert "stopping Ray job batch-transform-jobs-api-stop-" in output
    record = head_store.get_job("jobs-api-stop")
    assert record.status is TransformJobStatus.STOPPED, (record, output)
    assert bucket.keys("out/") == ["out/fast.csv.out"]  # no partial slow.csv.out
    assert bucket.open_uploads() == []


def test_serve_joined_to_the_cluster_runs_jobs_with_the_nodes_credentials(
    cluster: StartedCluster, bucket: Bucket, tmp_path: Path
) -> None:
    """`serve --ray-address`: boto3's sagemaker client creates a job; the server holds no S3 keys (its
    API keys are its own setting), so the listing and every read and write use the nodes' keys."""
    import boto3
    from botocore.config import Config

    request, model = one_job(bucket, tmp_path, "served-on-cluster")
    env = driver_env(cluster, drop=KEYS, BATCH_TRANSFORM_API_KEYS="AKIASERVECLIENT:serve-client-secret")
    log = tmp_path / "serve.log"
    command = [
        sys.executable, "-m", "runner.cli", "--home", str(tmp_path / "home"), "serve", "--port", "0",
        "--ray-address", cluster.gcs,
    ]  # fmt: skip
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.2)
            url = next((w for w in log.read_text().split() if w.startswith("http://127.0.0.1:")), None)
        assert url is not None, log.read_text()
        sm = boto3.client(
            "sagemaker",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="AKIASERVECLIENT",
            aws_secret_access_key="serve-client-secret",
            config=Config(retries={"max_attempts": 1}),
        )
        sm.create_model(**model)
        sm.create_transform_job(**request)
        sm.get_waiter("transform_job_completed_or_stopped").wait(
            TransformJobName="served-on-cluster", WaiterConfig={"Delay": 1, "MaxAttempts": 240}
        )
        described = sm.describe_transform_job(TransformJobName="served-on-cluster")
        assert described["TransformJobStatus"] == "Completed", (described, log.read_text())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    assert bucket.get("out/a.csv.out") == b"3\n7\n"
    assert "serve-client-secret" not in log.read_text()
