"""Talking to a `batch-transform serve` endpoint (or SageMaker itself) from the CLI.

AWS operations go through boto3's own ``sagemaker`` client. The runner's own operations (today
``ResumeTransformJob``), which botocore has no method for, are sent the way botocore sends AWS JSON
1.1: POST /, ``X-Amz-Target: SageMaker.<Operation>``, signed with SigV4 by botocore's signer with
the standard AWS credentials.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from runner.errors import JobError, RunnerError

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
TIMEOUT_S = 60


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def sagemaker_client(endpoint_url: str) -> Any:
    """boto3's own sagemaker client on a `batch-transform serve` endpoint (or SageMaker itself)."""
    import boto3

    return boto3.client("sagemaker", endpoint_url=endpoint_url, region_name=region())


def remote_call(endpoint_url: str, operation: str, **kwargs: Any) -> dict[str, Any]:
    """``operation`` (boto3's snake_case name); AWS errors become JobError with AWS's code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        response: dict[str, Any] = getattr(sagemaker_client(endpoint_url), operation)(**kwargs)
    except ClientError as e:
        error = e.response.get("Error", {})
        raise JobError(f"{error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as e:
        raise RunnerError(f"{endpoint_url}: {e}") from None
    response.pop("ResponseMetadata", None)
    return response


def runner_operation(endpoint_url: str, operation: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """One of the runner's own operations (``ResumeTransformJob``), signed as botocore signs."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise RunnerError(f"{endpoint_url}: no AWS credentials to sign {operation} with")
    request = AWSRequest(
        method="POST",
        url=endpoint_url.rstrip("/") + "/",
        data=json.dumps(body).encode(),
        headers={"X-Amz-Target": f"SageMaker.{operation}", "Content-Type": JSON_CONTENT_TYPE},
    )
    SigV4Auth(credentials.get_frozen_credentials(), "sagemaker", region()).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(
        prepared.url, data=prepared.body, headers=dict(prepared.headers.items()), method="POST"
    )
    try:
        with urllib.request.urlopen(http, timeout=TIMEOUT_S) as answer:
            return dict(json.loads(answer.read() or b"{}"))
    except urllib.error.HTTPError as e:
        error = json.loads(e.read() or b"{}")
        code = str(error.get("__type", e.code)).rsplit("#", 1)[-1]
        raise JobError(f"{code}: {error.get('message') or error.get('Message')}") from None
    except OSError as e:
        raise RunnerError(f"{endpoint_url}: {e}") from None
