"""The S3 secret key never shows: not in what the CLI prints, not in the job store, not in Ray's logs,
not in a job's log folder, not in the outputs, not in the API server's request log or answers.

Jobs run as a user runs them: ``batch-transform run`` (in this process, on the session's local Ray)
with the secret in the standard AWS environment; a job with in-process hooks, a job with a serving
container (which writes the job's log folder), a job refused with a wrong secret, then ``validate``,
``describe``, ``list`` and a SageMaker API server answering boto3 with the right and a wrong key.
Every byte each of them left is then searched for both secrets.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from runner import cli
from runner.config import RunnerConfig
from runner.jobs.store import JobStore
from runner.server.http import make_server
from runner.server.sigv4 import identities_from_env
from tests.conftest import Bucket
from tests.integration.conftest import SUM_MODEL, job_request, model_request, write_model

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "models" / "byoc-echo"
# Distinctive, so a hit cannot be a coincidence; the real secret is the embedded S3's random one.
WRONG_SECRET = "wrong-SECRET-credentials-test-9f8e7d6c5b4a"


class Lines(logging.Handler):
    """Every log record of the runner, formatted as the CLI would print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Evidence:
    """Everything the runs left, by where a user (or an attacker) could read it."""

    secrets: tuple[str, str]
    home: Path
    printed: list[str] = field(default_factory=list)  # stdout, stderr and log lines of each command
    api: list[str] = field(default_factory=list)  # the API server's log and its answers
    outputs: dict[str, bytes] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)


def cli_run(evidence: Evidence, name: str, *args: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        evidence.exit_codes[name] = cli.main(["-v", *args])
    evidence.printed += [f"$ batch-transform {' '.join(args)}", out.getvalue(), err.getvalue()]


@pytest.fixture(scope="module")
def evidence(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    tmp = tmp_path_factory.mktemp("credentials")
    bucket = Bucket(f"test-credentials-{uuid.uuid4().hex[:12]}", s3_client)
    s3_client.create_bucket(Bucket=bucket.name)
    bucket.put("in/a.csv", b"1,2\n3,4\n")
    evidence = Evidence((os.environ["AWS_SECRET_ACCESS_KEY"], WRONG_SECRET), tmp / "home")
    echo_output = {"S3OutputPath": f"s3://{bucket.name}/out-echo"}
    sum_model = model_request("sum", write_model(tmp / "m", SUM_MODEL))
    requests = {
        "hooks": (job_request("creds-hooks", bucket.name), sum_model),
        "container": (
            job_request("creds-container", bucket.name, ModelName="echo", TransformOutput=echo_output),
            model_request("echo", ECHO),
        ),
        "denied": (job_request("creds-denied", bucket.name), sum_model),
    }
    for name, (job, model) in requests.items():
        (tmp / f"{name}.json").write_text(json.dumps(job))
        (tmp / f"{name}-model.json").write_text(json.dumps(model, default=str))

    def run(name: str) -> list[str]:
        return ["run", str(tmp / f"{name}.json"), "--model", str(tmp / f"{name}-model.json")]

    commands: list[tuple[str, dict[str, str], list[str]]] = [
        ("hooks", {}, run("hooks")),
        ("container", {}, run("container")),  # its model server writes the job's log folder
        ("denied", {"AWS_SECRET_ACCESS_KEY": WRONG_SECRET}, run("denied")),
        ("validate", {}, ["validate", str(tmp / "hooks.json"), "--model", str(tmp / "hooks-model.json")]),
        ("describe", {}, ["describe", "creds-hooks"]),
        ("list", {}, ["list"]),
    ]
    runner_log = logging.getLogger("runner")
    lines, level = Lines(), runner_log.level
    lines.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    runner_log.addHandler(lines)
    runner_log.setLevel(logging.DEBUG)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BATCH_TRANSFORM_HOME", str(evidence.home))
            for name, env, args in commands:
                with pytest.MonkeyPatch.context() as changed:
                    for key, value in env.items():
                        changed.setenv(key, value)
                    cli_run(evidence, name, *args)
            evidence.api += api_session(RunnerConfig(home=evidence.home))
        evidence.printed += lines.lines
    finally:
        runner_log.removeHandler(lines)
        runner_log.setLevel(level)
    evidence.outputs = {key: bucket.get(key) for key in bucket.keys("") if key.endswith(".out")}
    yield evidence
    s3_client.delete_bucket(Bucket=bucket.name)


def api_session(config: RunnerConfig) -> list[str]:
    """A SageMaker API server in this process, called by boto3 with the right key and a wrong one; its
    log lines and every answer (a wrong key's error included)."""
    # The control plane's operations and its HTTP front end (request lines) log separately.
    api_logs = [logging.getLogger("runner.server.api"), logging.getLogger("runner.server.http")]
    lines = Lines()
    lines.setFormatter(logging.Formatter("%(message)s"))
    for api_log in api_logs:
        api_log.addHandler(lines)
    server = make_server("127.0.0.1", 0, config, identities_from_env())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answers: list[str] = []
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for secret in (os.environ["AWS_SECRET_ACCESS_KEY"], WRONG_SECRET):
            client = boto3.client(
                "sagemaker",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=secret,
                config=Config(retries={"max_attempts": 1}),
            )
            try:
                answers.append(
                    json.dumps(client.describe_transform_job(TransformJobName="creds-hooks"), default=str)
                )
                answers.append(json.dumps(client.list_transform_jobs(), default=str))
            except ClientError as e:
                answers.append(json.dumps(e.response, default=str))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        for api_log in api_logs:
            api_log.removeHandler(lines)
    return [*lines.lines, *answers]


def files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def ray_logs() -> dict[str, bytes]:
    """This session's Ray log folder (not /tmp/ray/session_latest: another Ray may have started since)."""
    import ray

    node = ray._private.worker._global_node
    assert node is not None, "Ray is not running in this process"
    return files(Path(node.get_logs_dir_path()))


def leaks(texts: dict[str, bytes], secrets: tuple[str, ...]) -> list[str]:
    return [
        f"{where} holds secret {i}"
        for where, data in texts.items()
        for i, s in enumerate(secrets)
        if s.encode() in data
    ]


def test_the_commands_ran_as_intended(evidence: Evidence) -> None:
    # The scan below means something only if each command did what a user would see.
    assert evidence.exit_codes == {
        "hooks": 0,
        "container": 0,
        "denied": 3,
        "validate": 0,
        "describe": 0,
        "list": 0,
    }, evidence.printed
    printed = "\n".join(evidence.printed)
    assert "SignatureDoesNotMatch" in printed  # the wrong secret was used, and refused
    assert any("InvalidSignatureException" in a or "SignatureDoesNotMatch" in a for a in evidence.api), (
        evidence.api
    )
    assert any("creds-hooks" in a for a in evidence.api)  # the right key was answered
    assert any(a.endswith("SageMaker.DescribeTransformJob -> 200") for a in evidence.api), evidence.api
    assert sorted(evidence.outputs) == ["out-echo/a.csv.out", "out/a.csv.out"]
    assert (evidence.home / "logs" / "creds-container").is_dir()  # the container job's log folder


def test_nothing_printed_holds_a_secret(evidence: Evidence) -> None:
    assert leaks({"printed": "\n".join(evidence.printed).encode()}, evidence.secrets) == []


def test_the_runner_home_holds_no_secret(evidence: Evidence) -> None:
    """The job store (SQLite), the job log folders and the model cache."""
    found = files(evidence.home)
    assert str(evidence.home / "jobs.sqlite") in found and any("/logs/creds-container/" in p for p in found)
    assert leaks(found, evidence.secrets) == []


def test_ray_logs_hold_no_secret(evidence: Evidence) -> None:
    logs = ray_logs()
    assert any("worker" in p for p in logs), sorted(logs)[:20]
    assert leaks(logs, evidence.secrets) == []


def test_outputs_hold_no_secret(evidence: Evidence) -> None:
    assert leaks(evidence.outputs, evidence.secrets) == []


def test_the_api_server_log_and_answers_hold_no_secret(evidence: Evidence) -> None:
    assert leaks({"api": "\n".join(evidence.api).encode()}, evidence.secrets) == []


def test_the_scan_finds_a_secret_where_one_is_stored(tmp_path: Path, evidence: Evidence) -> None:
    """The control: a secret the user puts in a model's Environment is in the job store, and found."""
    store = JobStore(tmp_path / "jobs.sqlite")
    store.put_model("leaky", model_request("leaky", "/m", {"MY_KEY": evidence.secrets[1]}))
    assert leaks(files(tmp_path), evidence.secrets) == [f"{tmp_path / 'jobs.sqlite'} holds secret 1"]
