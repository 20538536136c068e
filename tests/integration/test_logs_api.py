"""`serve`'s CloudWatch Logs subset through boto3's own ``logs`` client: the streams the SageMaker SDK
tails while it waits on a transform job (``/aws/sagemaker/TransformJobs``, ``<job>/<instance-id>``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, WaiterError

from runner.storage.embedded import EmbeddedS3Info
from tests.integration.conftest import SUM_MODEL, Bucket, job_request, model_request, write_model
from tests.integration.test_api import FAST, Server, raw, start_server, unique

pytestmark = pytest.mark.integration
GROUP = "/aws/sagemaker/TransformJobs"
FAILING_MODEL = """
def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    raise ValueError("no such feature: colour")
"""


@pytest.fixture(scope="module")
def server(s3_server: EmbeddedS3Info, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("logs") / "home", s3_server)
    try:
        yield srv
    finally:
        srv.stop()
        print(srv.log.read_text(errors="replace")[-5000:])  # shown by pytest when a test failed


def logs_client(server: Server, service: str = "logs") -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=server.key,
        aws_secret_access_key=server.secret,
    )


def run_job(server: Server, bucket: Bucket, tmp_path: Path, code: str, **overrides: Any) -> str:
    sm = server.client()
    model = unique("logs-model")
    sm.create_model(**model_request(model, write_model(tmp_path / model, code)))
    name = unique("logs-job")
    sm.create_transform_job(**job_request(name, bucket.name, ModelName=model, **overrides))
    with contextlib.suppress(WaiterError):  # a job that Failed ends the waiter too
        sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Completed", "Failed")
    return name


def read_all(logs: Any, stream: str, limit: int | None = None) -> list[str]:
    """The stream as the SDK reads it: from the head, following nextForwardToken to an empty page."""
    messages: list[str] = []
    token = None
    while True:
        args: dict[str, Any] = {"logGroupName": GROUP, "logStreamName": stream, "startFromHead": True}
        if token:
            args["nextToken"] = token
        if limit:
            args["limit"] = limit
        page = logs.get_log_events(**args)
        if not page["events"]:
            assert page["nextForwardToken"] == (token or page["nextForwardToken"])
            return messages
        messages += [e["message"] for e in page["events"]]
        token = page["nextForwardToken"]


def test_a_jobs_stream_tells_its_run(server: Server, bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2,3\n4,5,6\n")
    bucket.put("in/b.csv", b"7,8,9\n")
    name = run_job(server, bucket, tmp_path, SUM_MODEL)
    logs = logs_client(server)

    streams = logs.describe_log_streams(
        logGroupName=GROUP, logStreamNamePrefix=name + "/", orderBy="LogStreamName", limit=1
    )
    assert "nextToken" not in streams  # one instance, one stream
    [stream] = streams["logStreams"]
    assert re.fullmatch(rf"{re.escape(name)}/i-[0-9a-f]{{17}}", stream["logStreamName"])
    assert stream["firstEventTimestamp"] <= stream["lastEventTimestamp"] <= stream["lastIngestionTime"]

    messages = read_all(logs, stream["logStreamName"])
    text = "\n".join(messages)
    assert re.search(r"model worker pid \d+ on node \w+: model loaded in [\d.]+s", text), text
    assert f"s3://{bucket.name}/in/a.csv: 2 records in 1 payload(s)" in text
    assert f"s3://{bucket.name}/in/b.csv: 1 records in 1 payload(s)" in text
    assert messages[-1] == f"transform job {name}: Completed"
    assert read_all(logs, stream["logStreamName"], limit=2) == messages  # pages of 2 add up to the same

    # Reading back from the end, as GetLogEvents does without startFromHead.
    tail = logs.get_log_events(logGroupName=GROUP, logStreamName=stream["logStreamName"], limit=1)
    assert [e["message"] for e in tail["events"]] == [messages[-1]]
    before = logs.get_log_events(
        logGroupName=GROUP,
        logStreamName=stream["logStreamName"],
        nextToken=tail["nextBackwardToken"],
        limit=1,
    )
    assert [e["message"] for e in before["events"]] == [messages[-2]]


def test_a_failed_jobs_stream_names_the_error(server: Server, bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2,3\n")
    name = run_job(server, bucket, tmp_path, FAILING_MODEL)
    logs = logs_client(server)
    [stream] = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=name + "/")["logStreams"]
    text = "\n".join(read_all(logs, stream["logStreamName"]))
    assert f"s3://{bucket.name}/in/a.csv: failed:" in text and "no such feature: colour" in text, text
    assert f"transform job {name}: Failed: ClientError:" in text


def test_each_instance_has_its_stream(server: Server, bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2,3\n")
    name = run_job(
        server,
        bucket,
        tmp_path,
        SUM_MODEL,
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 2},
        MaxConcurrentTransforms=1,
    )
    logs = logs_client(server)
    first = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=name + "/", limit=1)
    second = logs.describe_log_streams(
        logGroupName=GROUP, logStreamNamePrefix=name + "/", limit=1, nextToken=first["nextToken"]
    )
    assert "nextToken" not in second
    names = [s["logStreamName"] for s in first["logStreams"] + second["logStreams"]]
    assert len(set(names)) == 2 and names == sorted(names)
    for stream in names:  # each instance's worker in its own stream; the job's lines in both
        messages = read_all(logs, stream)
        assert sum("model loaded" in m for m in messages) == 1, messages
        assert messages[-1] == f"transform job {name}: Completed"


def test_errors_are_cloudwatchs(server: Server, bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("in/a.csv", b"1,2,3\n")
    name = run_job(server, bucket, tmp_path, SUM_MODEL)
    logs = logs_client(server)

    def error(call: Any, **kwargs: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as e:
            call(**kwargs)
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    assert error(logs.describe_log_streams, logGroupName="/aws/sagemaker/TrainingJobs") == (
        "ResourceNotFoundException",
        "The specified log group does not exist.",
    )
    assert error(logs.get_log_events, logGroupName=GROUP, logStreamName=f"{name}/i-0") == (
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    )
    code, message = error(
        logs.describe_log_streams, logGroupName=GROUP, logStreamNamePrefix=name, orderBy="LastEventTime"
    )
    assert code == "InvalidParameterException" and "LastEventTime" in message
    code, message = error(logs.describe_log_streams, logGroupName=GROUP, limit=51)
    assert code == "ValidationException" and "limit" in message and "50" in message
    assert error(logs.get_log_events, logGroupName=GROUP, logStreamName=f"{name}/x", nextToken="zz")[0] in (
        "ResourceNotFoundException",
        "InvalidParameterException",
    )
    # A request signed for SageMaker is refused at the Logs target: the scope names the service.
    status, answer = raw(
        server, "Logs_20140328.DescribeLogStreams", b'{"logGroupName": "%s"}' % GROUP.encode()
    )
    assert status == 400 and answer["__type"] == "InvalidSignatureException", answer
    assert "'logs'" in answer["message"]
    status, answer = raw(server, "Logs_20140328.PutLogEvents", b"{}")
    assert answer["__type"] == "InvalidSignatureException"  # the signature is checked first
