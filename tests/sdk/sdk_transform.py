"""Run by the SageMaker Python SDK's own interpreter (`.venv-sdk` for v3, `.venv-sdk2` for v2, see
`make test-sdk`), not by pytest: the SDK's ``Transformer`` against a `batch-transform serve` URL,
unchanged but for the endpoint, with the SDK's default arguments. Prints one JSON line last: what
the SDK saw.

Modes: ``transform`` calls ``transform(data, ...)`` with ``wait`` and ``logs`` left at their
defaults (True, True: the SDK tails the job's CloudWatch Logs streams); ``stop`` starts a job with
``wait=False`` and calls ``stop_transform_job()`` (default ``wait=True``) once it runs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from importlib.metadata import version
from typing import Any

import boto3

V3 = int(version("sagemaker").split(".")[0]) >= 3
if V3:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.transformer import Transformer
else:
    from sagemaker.session import Session  # type: ignore[no-redef]
    from sagemaker.transformer import Transformer  # type: ignore[no-redef]


def status_of(job: Any, session: Any) -> dict[str, Any]:
    if V3:
        job.refresh()
        return {
            "name": job.transform_job_name,
            "status": job.transform_job_status,
            "output_path": job.transform_output.s3_output_path,
        }
    described = session.describe_transform_job(job.job_name)
    return {
        "name": described["TransformJobName"],
        "status": described["TransformJobStatus"],
        "output_path": described["TransformOutput"]["S3OutputPath"],
    }


def main() -> None:
    args = json.loads(sys.argv[1])
    # v3 logs the tailed lines through the ``logging`` module and leaves handlers to the application
    # (v2 prints them): show INFO, as a notebook user who wants the job's log does.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    boto_session = boto3.Session(region_name="us-east-1")  # credentials: the standard AWS environment
    sagemaker_client = boto_session.client("sagemaker", endpoint_url=args["endpoint"])
    session = Session(boto_session=boto_session, sagemaker_client=sagemaker_client)
    transformer = Transformer(
        model_name=args["model_name"],
        instance_count=1,
        instance_type="ml.m5.large",
        strategy="MultiRecord",
        assemble_with="Line",
        accept="text/csv",
        output_path=args["output_path"],
        sagemaker_session=session,
    )
    content = args.get("content_type", "text/csv")
    if args["mode"] == "transform":
        transformer.transform(
            args["input"], content_type=content, split_type="Line", job_name=args["job_name"]
        )
    else:
        transformer.transform(
            args["input"], content_type=content, split_type="Line", job_name=args["job_name"], wait=False
        )
        deadline = time.monotonic() + 120
        while (
            sagemaker_client.describe_transform_job(TransformJobName=args["job_name"]).get(
                "TransformStartTime"
            )
            is None
        ):  # running: its workers are up
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.5)
        transformer.stop_transform_job()
    seen = status_of(transformer.latest_transform_job, session)
    print(json.dumps({"sdk": version("sagemaker"), **seen}))


if __name__ == "__main__":
    main()
