"""The SageMaker Python SDK's ``Transformer`` against `batch-transform serve`.

The SDK (``sagemaker`` 3.x) cannot share the project's virtualenv: it pins protobuf < 7 and an older
pyarrow, which would change what the runner is tested with. `make test-sdk` installs it into its own
`.venv-sdk` and runs this file with ``SDK_PYTHON`` pointing at that interpreter; the SDK side runs
there (tests/sdk/sdk_transform.py), the server and the checks run here, over real HTTP and S3.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.storage.embedded import EmbeddedS3Info
from tests.integration.conftest import SUM_MODEL, Bucket, model_request, write_model
from tests.integration.test_api import Server, start_server

SDK_PYTHON = os.environ.get("SDK_PYTHON")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not SDK_PYTHON, reason="needs the SDK's own venv: run `make test-sdk`"),
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


def test_transformer_transform_wait(
    server: Server, s3_server: EmbeddedS3Info, bucket: Bucket, tmp_path: Path
) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n")
    bucket.put("in/sub/b.csv", b"7,8,9\n")
    model = model_request("sdk-sum", write_model(tmp_path / "m", SUM_MODEL))
    server.client().create_model(**model)
    args = {
        "endpoint": server.url,
        "model_name": "sdk-sum",
        "input": f"s3://{bucket.name}/in/",
        "output_path": f"s3://{bucket.name}/out",
        "job_name": "sdk-transform-1",
    }
    env = {
        **os.environ,
        **s3_server.env,
        # The SDK's TransformJob.wait() builds its own client from the boto session: boto3's
        # service-specific endpoint variable points that one at the server too.
        "AWS_ENDPOINT_URL_SAGEMAKER": server.url,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [str(SDK_PYTHON), str(HERE / "sdk_transform.py"), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "Completed" and seen["name"] == "sdk-transform-1", seen
    assert seen["output_path"] == f"s3://{bucket.name}/out"
    assert bucket.get("out/a.csv.out") == b"6.0\n15.0\n"
    assert bucket.get("out/sub/b.csv.out") == b"24.0\n"
    described = server.client().describe_transform_job(TransformJobName="sdk-transform-1")
    assert described["TransformInput"]["SplitType"] == "Line"  # the request the SDK built, as sent
    assert described["BatchStrategy"] == "MultiRecord"
