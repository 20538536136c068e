"""Run by the SageMaker Python SDK's own interpreter (`.venv-sdk`, see `make test-sdk`), not by pytest:
the SDK's ``Transformer.transform(..., wait=True)`` against a `batch-transform serve` URL, unchanged
but for the endpoint. Prints one JSON line: what the SDK saw."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version

import boto3
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.transformer import Transformer


def main() -> None:
    args = json.loads(sys.argv[1])
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
    transformer.transform(
        args["input"],
        content_type="text/csv",
        split_type="Line",
        job_name=args["job_name"],
        wait=True,
        logs=False,
    )
    job = transformer.latest_transform_job
    job.refresh()
    print(
        json.dumps(
            {
                "sdk": version("sagemaker"),
                "name": job.transform_job_name,
                "status": job.transform_job_status,
                "output_path": job.transform_output.s3_output_path,
            }
        )
    )


if __name__ == "__main__":
    main()
