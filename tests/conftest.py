"""Fixtures shared by every test suite: one real S3 (embedded SeaweedFS) per test session."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from runner.storage.embedded import EmbeddedS3, EmbeddedS3Info

# A developer's own AWS settings must not leak into the tests (a profile or session token would
# change how requests to the embedded S3 are signed).
SHADOWED_AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3Info]:
    """The embedded S3 on free 127.0.0.1 ports; its AWS_* variables are set for the session."""
    server = EmbeddedS3(tmp_path_factory.mktemp("embedded-s3"))
    info = server.start()
    names = (*info.env, *SHADOWED_AWS_VARS)
    saved = {name: os.environ.get(name) for name in names}
    for name in SHADOWED_AWS_VARS:
        os.environ.pop(name, None)
    os.environ.update(info.env)
    try:
        yield info
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server: EmbeddedS3Info) -> Any:
    """A plain boto3 client on the embedded S3, to set up and check objects as a user would."""
    return boto3.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=s3_server.access_key_id,
        aws_secret_access_key=s3_server.secret_access_key,
        region_name="us-east-1",
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket, deleted afterwards: each bucket holds several SeaweedFS volumes,
    and the server has room for about forty at a time."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    # SeaweedFS deletes a non-empty bucket with its objects and pending uploads.
    with contextlib.suppress(Exception):
        s3_client.delete_bucket(Bucket=name)


@pytest.fixture(scope="session")
def ray_local(s3_server: Any) -> Iterator[None]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


@dataclass
class Bucket:
    """A fresh bucket plus helpers to put inputs and read outputs as a user would (boto3)."""

    name: str
    client: Any

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def open_uploads(self) -> list[Any]:
        return list(self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", []))


@pytest.fixture
def bucket(s3_bucket: str) -> Bucket:
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    return Bucket(s3_bucket, client)
