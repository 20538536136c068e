"""The SageMaker Python SDK's ``Transformer``, v2 and v3, against `batch-transform serve`, with the
SDK's default arguments: ``transform(..., wait=True, logs=True)`` tails the job's CloudWatch Logs
streams, and ``stop_transform_job()`` waits for the job to stop.

The SDK cannot share the project's virtualenv: it pins protobuf < 7 and an older pyarrow, which would
change what the runner is tested with. `make test-sdk` installs v3 into `.venv-sdk` and the latest v2
into `.venv-sdk2`, and runs this file with ``SDK_PYTHON`` and ``SDK2_PYTHON`` pointing at those
interpreters; the SDK side runs there (tests/sdk/sdk_transform.py), the server and the checks run
here, over real HTTP and S3. boto3's service endpoint variables point the SDK's own clients (the
waiter's SageMaker client, the CloudWatch Logs client) at the server.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.storage.embedded import EmbeddedS3Info
from tests.integration.conftest import SUM_MODEL, Bucket, model_request, write_model
from tests.integration.test_api import SLOW_MODEL, Server, start_server, unique

SDKS = {"v3": os.environ.get("SDK_PYTHON"), "v2": os.environ.get("SDK2_PYTHON")}
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not any(SDKS.values()), reason="needs the SDK's own venvs: run `make test-sdk`"),
]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server(s3_server: EmbeddedS3Info, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("sdk") / "home", s3_server)
    try:
        yield srv
    finally:
        srv.stop()
        print(srv.log.read_text(errors="replace")[-5000:])


@pytest.fixture(params=sorted(SDKS))
def sdk(request: pytest.FixtureRequest) -> str:
    python = SDKS[request.param]
    if not python:
        pytest.skip(f"SDK {request.param}: its venv is not set (make test-sdk)")
    return python


def run_sdk(
    python: str, server: Server, s3_server: EmbeddedS3Info, **args: Any
) -> tuple[dict[str, Any], str]:
    """The SDK script's last JSON line, and everything it printed (the log lines it tailed)."""
    env = {
        **os.environ,
        **s3_server.env,
        "AWS_ENDPOINT_URL_SAGEMAKER": server.url,
        "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "COLUMNS": "400",  # v3 prints through rich: keep its lines whole
    }
    done = subprocess.run(
        [python, str(HERE / "sdk_transform.py"), json.dumps({"endpoint": server.url, **args})],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed
    return json.loads(done.stdout.strip().splitlines()[-1]), printed


def test_transform_with_the_default_wait_and_logs(
    sdk: str, server: Server, s3_server: EmbeddedS3Info, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n")
    bucket.put("in/sub/b.csv", b"7,8,9\n")
    model = unique("sdk-sum")
    server.client().create_model(**model_request(model, write_model(tmp_path / "m", SUM_MODEL)))
    name = unique("sdk-transform")
    seen, printed = run_sdk(
        sdk,
        server,
        s3_server,
        mode="transform",
        model_name=model,
        input=f"s3://{bucket.name}/in/",
        output_path=f"s3://{bucket.name}/out",
        job_name=name,
    )
    assert seen["status"] == "Completed" and seen["name"] == name, seen
    assert seen["output_path"] == f"s3://{bucket.name}/out"
    assert bucket.get("out/a.csv.out") == b"6\n15\n"
    assert bucket.get("out/sub/b.csv.out") == b"24\n"
    # The SDK tailed the job's stream: the lines it printed are the job's log.
    assert f"s3://{bucket.name}/in/a.csv: 2 records" in printed, printed[-3000:]
    assert f"transform job {name}: Completed" in printed, printed[-3000:]
    described = server.client().describe_transform_job(TransformJobName=name)
    assert described["TransformInput"]["SplitType"] == "Line"  # the request the SDK built, as sent
    assert described["BatchStrategy"] == "MultiRecord"


def test_stop_transform_job_waits_for_stopped(
    sdk: str, server: Server, s3_server: EmbeddedS3Info, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.txt", b"fast\nsleep\nfast\n")
    model = unique("sdk-slow")
    server.client().create_model(**model_request(model, write_model(tmp_path / "m", SLOW_MODEL)))
    name = unique("sdk-stop")
    seen, printed = run_sdk(
        sdk,
        server,
        s3_server,
        mode="stop",
        model_name=model,
        content_type="text/plain",
        input=f"s3://{bucket.name}/in/",
        output_path=f"s3://{bucket.name}/out",
        job_name=name,
    )
    assert seen["status"] == "Stopped", (seen, printed[-3000:])
    assert bucket.keys("out/") == []  # a stopped object leaves no partial output
