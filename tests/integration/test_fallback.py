"""``batch-transform run --prefer sagemaker`` as a user meets it: the CLI (in this process, on the
session's local Ray) sends the job through the unchanged boto3 client to a real ``batch-transform
serve`` process that stands in for SageMaker, healthy or in a ``--fault`` mode (a closed port plays an
unreachable endpoint). Every failure here is played by the control plane over real HTTP; no stubs."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.cli.main import main
from runner.errors import ResourceNotFoundError
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus
from runner.server.faults import FaultMode
from runner.storage.embedded import EmbeddedS3Info

from .conftest import SUM_MODEL, job_request, model_request, write_model
from .test_api import Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("ray_local")]

READY_TIMEOUT_S = 60
INPUTS = {
    "in/a.csv": b"1,2,3\n4,5,6\n",
    "in/nested/b.csv": b"".join(b"%d,%d\n" % (i, i * i) for i in range(50)),
}
FAILING_MODEL = """
def model_fn(model_dir):
    return None

def predict_fn(data, model):
    raise ValueError("model cannot score this input")
"""


@pytest.fixture(scope="module")
def servers(
    s3_server: EmbeddedS3Info, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Server]]:
    """``servers(mode)``: one server per fault mode (None: healthy), started on first use. The healthy
    one runs its jobs on this session's Ray, so that no second Ray is started."""
    import ray

    started: dict[FaultMode | None, Server] = {}

    def get(mode: FaultMode | None) -> Server:
        if mode not in started:
            home = tmp_path_factory.mktemp("sagemaker") / str(mode or "healthy")
            args = (
                ["--fault", str(mode)] if mode else ["--ray-address", ray.get_runtime_context().gcs_address]
            )
            started[mode] = start_server(home, s3_server, *args)
        return started[mode]

    yield get
    for server in started.values():
        server.stop()
        print(server.log.read_text(errors="replace")[-3000:])  # shown by pytest when a test failed


@dataclass(frozen=True)
class Inputs:
    bucket: str
    s3: Any
    model_dir: Path

    def outputs(self, prefix: str) -> dict[str, bytes]:
        """The objects under ``prefix``, by key relative to it."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        return {k[len(prefix) :]: self.s3.get_object(Bucket=self.bucket, Key=k)["Body"].read() for k in keys}


@pytest.fixture(scope="module")
def inputs(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inputs]:
    name = f"test-fallback-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    for key, body in INPUTS.items():
        s3_client.put_object(Bucket=name, Key=key, Body=body)
    yield Inputs(name, s3_client, write_model(tmp_path_factory.mktemp("model"), SUM_MODEL))
    s3_client.delete_bucket(Bucket=name)  # SeaweedFS deletes a bucket with its objects


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    name: str
    home: Path

    def local_job(self) -> JobRecord | None:
        """The job as the Ray engine recorded it; None when Ray never ran it."""
        try:
            return JobStore(self.home / "jobs.sqlite").get_job(self.name)
        except ResourceNotFoundError:
            return None


@pytest.fixture
def run_cli(
    inputs: Inputs, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """``batch-transform run job.json [--model model.json] ARGS`` on a fresh home, in this process."""
    home = tmp_path / "home"
    monkeypatch.setenv("BATCH_TRANSFORM_HOME", str(home))

    def run(case: str, *args: str, model: str = "sum", with_model: bool = True) -> Run:
        name = f"{case}-{uuid.uuid4().hex[:6]}"
        job = job_request(
            name,
            inputs.bucket,
            ModelName=model,
            TransformOutput={"S3OutputPath": f"s3://{inputs.bucket}/{case}"},
        )
        (tmp_path / "job.json").write_text(json.dumps(job))
        (tmp_path / "model.json").write_text(json.dumps(model_request(model, inputs.model_dir)))
        flags = ["--model", str(tmp_path / "model.json")] if with_model else []
        capsys.readouterr()
        code = main(["run", str(tmp_path / "job.json"), *flags, "--no-progress", *args])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err, name, home)

    return run


@pytest.fixture(scope="module")
def plain_output(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """What a plain ``run`` (Ray, no SageMaker) writes: the outputs every engine must match."""
    tmp = tmp_path_factory.mktemp("plain")
    job = job_request("plain", inputs.bucket, TransformOutput={"S3OutputPath": f"s3://{inputs.bucket}/plain"})
    (tmp / "job.json").write_text(json.dumps(job))
    (tmp / "model.json").write_text(json.dumps(model_request("sum", inputs.model_dir)))
    argv = ["run", str(tmp / "job.json"), "--model", str(tmp / "model.json"), "--no-progress"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BATCH_TRANSFORM_HOME", str(tmp / "home"))
        assert main(argv) == 0
    output = inputs.outputs("plain/")
    assert sorted(output) == ["a.csv.out", "nested/b.csv.out"] and output["a.csv.out"] == b"6\n15\n"
    return output


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# (case, fault mode or None for a closed port, extra flags, the fallback reason's start, a note on stderr)
FALLBACKS = [
    (
        "closed-port",
        None,
        [],
        "CreateModel: Could not connect to the endpoint URL",
        "SageMaker is unavailable",
    ),
    (
        "throttle",
        FaultMode.THROTTLE,
        [],
        "CreateModel: ThrottlingException after 3 attempts: Rate exceeded",
        "",
    ),
    (
        "limit",
        FaultMode.LIMIT,
        [],
        "CreateTransformJob: ResourceLimitExceeded: The account-level service limit",
        "",
    ),
    ("error", FaultMode.ERROR, [], "CreateTransformJob: InternalFailure (HTTP 500) after 3 attempts", ""),
    (
        "unavailable",
        FaultMode.UNAVAILABLE,
        [],
        "CreateModel: ServiceUnavailable (HTTP 503) after 3 attempts",
        "",
    ),
    (
        "stuck",
        FaultMode.STUCK,
        ["--sagemaker-start-deadline", "1"],
        "transform job stuck-",
        "did not start on SageMaker within 1 s: stopping it there",
    ),
    (
        "hang",
        FaultMode.HANG,
        ["--sagemaker-timeout", "1"],
        "CreateTransformJob: Read timeout on endpoint URL",
        "SageMaker could not say whether it created transform job hang-",
    ),
]


@pytest.mark.parametrize(
    ("case", "mode", "flags", "reason", "note"), FALLBACKS, ids=[f[0] for f in FALLBACKS]
)
def test_unavailable_sagemaker_falls_back_to_ray(
    case: str,
    mode: FaultMode | None,
    flags: list[str],
    reason: str,
    note: str,
    servers: Callable[..., Server],
    run_cli: Callable[..., Run],
    inputs: Inputs,
    plain_output: dict[str, bytes],
) -> None:
    server = servers(mode) if mode else None
    endpoint = server.url if server else f"http://127.0.0.1:{closed_port()}"
    t0 = time.monotonic()
    run = run_cli(case, "--prefer", "sagemaker", "--sagemaker-endpoint", endpoint, *flags)
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert f"Transform job {run.name}: Completed" in lines
    assert lines[-1].startswith(f"engine: ray (fallback: {reason}"), run.out
    assert "note: SageMaker is unavailable" in run.err or "is Stopped on SageMaker" in run.err
    assert note in run.err
    assert ("could not say whether it created" in run.err) == (mode is FaultMode.HANG)
    assert inputs.outputs(f"{case}/") == plain_output  # same keys, same bytes
    local = run.local_job()
    assert local is not None and local.status is TransformJobStatus.COMPLETED
    if server is not None:  # SageMaker ran nothing: a stuck job was stopped before Ray started
        jobs = server.jobs()
        if mode is FaultMode.STUCK:
            assert jobs[run.name].status is TransformJobStatus.STOPPED
            assert "TransformStartTime" not in jobs[run.name].describe()
            assert jobs[run.name].last_modified_time <= local.transform_start_time  # type: ignore[operator]
        else:
            assert run.name not in jobs
    print(f"{case}: fell back and finished in {time.monotonic() - t0:.1f}s")


def test_healthy_sagemaker_runs_the_job_and_ray_does_not(
    servers: Callable[..., Server],
    run_cli: Callable[..., Run],
    inputs: Inputs,
    plain_output: dict[str, bytes],
) -> None:
    server = servers(None)
    # The model exists there already: CreateModel's "already existing model" is not a failure.
    server.client().create_model(**model_request("sum", inputs.model_dir))
    run = run_cli("healthy", "--prefer", "sagemaker", "--sagemaker-endpoint", server.url)
    assert run.code == 0, run.err
    arn = server.jobs()[run.name].arn
    assert run.out.splitlines() == [
        f"Transform job {run.name}: Completed",
        f"Output: s3://{inputs.bucket}/healthy/<input key>.out",
        f"engine: sagemaker (job ARN {arn})",
    ]
    assert "model sum already exists on SageMaker" in run.err and "Ray" not in run.err
    assert server.jobs()[run.name].status is TransformJobStatus.COMPLETED
    assert run.local_job() is None  # exactly one engine wrote the output
    assert inputs.outputs("healthy/") == plain_output


def test_job_that_failed_on_sagemaker_is_reported_not_rerun(
    servers: Callable[..., Server], run_cli: Callable[..., Run], inputs: Inputs, tmp_path: Path
) -> None:
    server = servers(None)
    server.client().create_model(**model_request("failing", write_model(tmp_path / "failing", FAILING_MODEL)))
    run = run_cli(
        "failed",
        "--prefer",
        "sagemaker",
        "--sagemaker-endpoint",
        server.url,
        model="failing",
        with_model=False,
    )
    assert run.code == 1, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"Transform job {run.name}: Failed"
    assert lines[1].startswith("FailureReason: ") and "model cannot score this input" in lines[1]
    assert lines[-1] == f"engine: sagemaker (job ARN {server.jobs()[run.name].arn})"
    assert run.local_job() is None and inputs.outputs("failed/") == {}


def test_validation_exception_is_reported_not_rerun(
    servers: Callable[..., Server], run_cli: Callable[..., Run], inputs: Inputs
) -> None:
    server = servers(None)
    run = run_cli(
        "invalid",
        "--prefer",
        "sagemaker",
        "--sagemaker-endpoint",
        server.url,
        model="nowhere",
        with_model=False,
    )
    assert run.code == 2
    assert "ValidationException: SageMaker CreateTransformJob:" in run.err
    assert 'Could not find model "arn:aws:sagemaker:' in run.err and "model/nowhere" in run.err
    assert "engine:" not in run.out and run.name not in server.jobs()
    assert run.local_job() is None and inputs.outputs("invalid/") == {}


def test_bad_signature_is_reported_without_the_secret(
    servers: Callable[..., Server], run_cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers(None)
    secret = "not-the-server-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    run = run_cli("badsig", "--prefer", "sagemaker", "--sagemaker-endpoint", server.url)
    assert run.code == 3
    assert "error: SageMaker CreateModel refused: InvalidSignatureException:" in run.err
    assert secret not in run.err + run.out and "engine:" not in run.out
    assert run.local_job() is None


def test_flags_checked_before_anything_is_sent(run_cli: Callable[..., Run]) -> None:
    run = run_cli("flags", "--sagemaker-endpoint", "http://127.0.0.1:1")
    assert run.code == 2
    assert (
        "'--sagemaker-endpoint' failed to satisfy constraint: only applies with --prefer sagemaker" in run.err
    )
    zero = run_cli("flags", "--prefer", "sagemaker", "--sagemaker-start-deadline", "0")
    assert zero.code == 2 and "must be a positive number of seconds" in zero.err
    knob = run_cli("flags", "--prefer", "sagemaker", "--csv-header", "first-line")
    assert (
        knob.code == 2 and "'--csv-header' failed to satisfy constraint: is a runner-only option" in knob.err
    )
    assert run.local_job() is None and zero.local_job() is None and knob.local_job() is None
