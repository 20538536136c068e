"""``s3://`` storage on boto3: paginated listing, streamed and ranged GETs; writes go through
``multipart.py``.

This is the only module that sees botocore: every botocore/boto3 exception becomes a
``StorageError`` in ``translate_error``. The client is built lazily in each process from the
standard AWS environment, so an ``S3Storage`` pickles without it and can cross Ray processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions as boto_errors
import urllib3.exceptions
from botocore.config import Config

from runner.errors import (
    AccessDeniedError,
    ObjectNotFoundError,
    StorageError,
    TransientStorageError,
)
from runner.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, StorageBase, changed, split_s3_uri
from runner.storage.multipart import S3Writer, etag_of

DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_ATTEMPTS = 5
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
MAX_POOL_CONNECTIONS = 64

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchUpload"})
# fmt: off
ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
    "AccountProblem", "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "KMS.AccessDeniedException",
})
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
    "TooManyRequestsException", "RequestTimeout", "RequestTimeoutException", "InternalError",
    "ServiceUnavailable", "500", "503",
})
# fmt: on
TRANSIENT_EXCEPTIONS: tuple[type[Exception], ...] = (
    boto_errors.EndpointConnectionError,
    boto_errors.ConnectTimeoutError,
    boto_errors.ProxyConnectionError,
    boto_errors.HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
    boto_errors.IncompleteReadError,
    urllib3.exceptions.HTTPError,  # a raw stream read that botocore did not wrap
    ConnectionError,
    TimeoutError,
)
CREDENTIAL_EXCEPTIONS: tuple[type[Exception], ...] = (
    boto_errors.NoCredentialsError,
    boto_errors.PartialCredentialsError,
    boto_errors.CredentialRetrievalError,
)


def translate_error(exc: BaseException, operation: str, uri: str, redact: Iterable[str] = ()) -> StorageError:
    """The one place botocore errors become runner errors; the message names the operation, the
    URI and the AWS error code and message. Strings in ``redact`` (secrets) never reach the text."""
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or "Unknown"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        http = f" (HTTP {status})" if status and str(status) != code else ""
        detail = f"{code}{http}: {error.get('Message', '') or exc}"
        cls: type[StorageError]
        if code in NOT_FOUND_CODES or status == 404:
            cls, hint = ObjectNotFoundError, "; the bucket or key does not exist"
        elif code in ACCESS_DENIED_CODES or status == 403:
            cls = AccessDeniedError
            hint = "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's permissions"
        elif code in TRANSIENT_CODES or status >= 500 or status == 429:
            cls, hint = TransientStorageError, "; still failing after botocore's retries"
        else:
            cls, hint = StorageError, ""
    elif isinstance(exc, CREDENTIAL_EXCEPTIONS):
        cls, detail = AccessDeniedError, f"{type(exc).__name__}: {exc}"
        hint = "; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile / role)"
    elif isinstance(exc, boto_errors.SSLError):
        cls, detail, hint = StorageError, f"{type(exc).__name__}: {exc}", ""
    elif isinstance(exc, TRANSIENT_EXCEPTIONS):
        cls, detail = TransientStorageError, f"{type(exc).__name__}: {exc}"
        hint = "; check AWS_ENDPOINT_URL_S3 and the network"
    else:
        cls, detail, hint = StorageError, f"{type(exc).__name__}: {exc}", ""
    message = f"S3 {operation} {uri} failed: {detail}{hint}"
    for secret in redact:
        if secret:
            message = message.replace(secret, "***")
    return cls(message, uri)


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3. ``None`` credentials mean boto3's default chain (profile, role, ...)."""

    endpoint_url: str | None = None
    region: str = DEFAULT_REGION
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    retry_mode: str = "standard"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = READ_TIMEOUT_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        env = os.environ if environ is None else environ
        attempts = env.get("AWS_MAX_ATTEMPTS") or str(DEFAULT_MAX_ATTEMPTS)
        if not attempts.isdigit() or int(attempts) < 1:
            raise StorageError(f"AWS_MAX_ATTEMPTS={attempts!r} is not allowed; use a whole number >= 1")
        return cls(
            # AWS_ENDPOINT_URL_S3 first: AWS_ENDPOINT_URL alone would also redirect every other service.
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            retry_mode=env.get("AWS_RETRY_MODE") or "standard",
            max_attempts=int(attempts),
        )

    def make_client(self) -> Any:
        config = Config(
            retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
            # Path style: local endpoints (SeaweedFS, MinIO) have no per-bucket DNS names.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            max_pool_connections=MAX_POOL_CONNECTIONS,
            tcp_keepalive=True,
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            aws_session_token=self.session_token,
            config=config,
        )


class S3Storage(StorageBase):
    """``Storage`` for ``s3://``. Without explicit settings it follows the process environment,
    rebuilding its client if the AWS_* variables change (Ray reuses worker processes)."""

    def __init__(self, settings: S3Settings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._cached: tuple[S3Settings, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self._settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._settings = state["settings"]
        self._lock = threading.Lock()
        self._cached = None

    @property
    def settings(self) -> S3Settings:
        return self._settings if self._settings is not None else S3Settings.from_env()

    def client(self) -> Any:
        settings = self.settings
        cached = self._cached
        if cached is not None and cached[0] == settings:
            return cached[1]
        with self._lock:
            if self._cached is None or self._cached[0] != settings:
                try:
                    self._cached = (settings, settings.make_client())
                except Exception as e:
                    raise self._error(e, "CreateClient", settings.endpoint_url or "s3://") from e
            return self._cached[1]

    def _error(self, exc: BaseException, operation: str, uri: str) -> StorageError:
        settings = self._cached[0] if self._cached else self.settings
        return translate_error(exc, operation, uri, redact=(settings.secret_access_key or "",))

    def _object(self, uri: str) -> tuple[str, str]:
        bucket, key = split_s3_uri(uri)
        if not key:
            raise StorageError(f"S3 URI {uri!r} names a bucket, not an object", uri)
        return bucket, key

    def list_objects(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        bucket, prefix = split_s3_uri(prefix_uri)
        try:
            pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue  # a console "folder" marker, not data
                    modified = obj.get("LastModified")
                    yield ObjectInfo(
                        f"s3://{bucket}/{key}",
                        key,
                        int(obj["Size"]),
                        etag_of(obj.get("ETag")),
                        modified.timestamp() if modified is not None else None,
                    )
        except Exception as e:
            raise self._error(e, "ListObjectsV2", prefix_uri) from e

    def list_buckets(self) -> list[str]:
        try:
            return [b["Name"] for b in self.client().list_buckets().get("Buckets", [])]
        except Exception as e:
            raise self._error(e, "ListBuckets", "s3://") from e

    def abort_uploads(self, uris: Iterable[str]) -> int:
        """Abort the open multipart uploads to these objects (left by a process killed mid-upload);
        returns how many were aborted."""
        wanted: dict[str, set[str]] = {}
        for uri in uris:
            bucket, key = self._object(uri)
            wanted.setdefault(bucket, set()).add(key)
        aborted = 0
        for bucket, keys in wanted.items():
            first, last = min(keys), max(keys)  # their common leading characters (S3 prefixes are strings)
            pairs = zip(first, last, strict=False)
            same = next((i for i, (x, y) in enumerate(pairs) if x != y), min(len(first), len(last)))
            prefix = first[:same]
            try:
                pages = (
                    self.client()
                    .get_paginator("list_multipart_uploads")
                    .paginate(Bucket=bucket, Prefix=prefix)
                )
                for page in pages:
                    for upload in page.get("Uploads", []):
                        if upload["Key"] in keys:
                            self.client().abort_multipart_upload(
                                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                            )
                            aborted += 1
            except Exception as e:
                raise self._error(e, "ListMultipartUploads", f"s3://{bucket}/{prefix}") from e
        return aborted

    def head(self, uri: str) -> ObjectInfo:
        bucket, key = self._object(uri)
        try:
            r = self.client().head_object(Bucket=bucket, Key=key)
        except Exception as e:
            raise self._error(e, "HeadObject", uri) from e
        return ObjectInfo(uri, key, int(r["ContentLength"]), etag_of(r.get("ETag")))

    def iter_chunks(
        self, uri: str, chunk_size: int = DEFAULT_CHUNK_SIZE, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        bucket, key = self._object(uri)
        if start < 0 or (end is not None and end < 0) or chunk_size <= 0:
            raise StorageError(f"bad range for {uri}: start={start} end={end} chunk_size={chunk_size}", uri)
        if end is not None and end <= start:
            return
        # botocore retries a failed GET, but not a body cut off mid-stream: that is resumed here with a
        # ranged GET from the last byte received, pinned to the first response's ETag so a changed object
        # fails instead of being stitched together.
        pos, etag, resumes = start, None, 0
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if pos or end is not None:
                kwargs["Range"] = f"bytes={pos}-{'' if end is None else end - 1}"
            if etag is not None:
                kwargs["IfMatch"] = etag
            try:
                response = self.client().get_object(**kwargs)
            except boto_errors.ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return  # start at or past the end: like data[start:end], nothing
                raise self._error(e, "GetObject", uri) from e
            except Exception as e:
                raise self._error(e, "GetObject", uri) from e
            etag = etag or response.get("ETag")
            body = response["Body"]
            try:
                while True:
                    try:
                        chunk = body.read(chunk_size)
                    except Exception as e:
                        error = self._error(e, "GetObject (reading the body)", uri)
                        if isinstance(error, TransientStorageError) and resumes < self.settings.max_attempts:
                            resumes += 1
                            break
                        raise error from e
                    if not chunk:
                        return
                    pos += len(chunk)
                    yield chunk
            finally:
                body.close()  # an abandoned stream must not hold a pooled connection

    def read_range(self, uri: str, start: int, end: int, etag: str) -> bytes:
        if end <= start:
            return b""
        bucket, key = self._object(uri)
        tries = 0
        while True:
            tries += 1
            try:
                response = self.client().get_object(
                    Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", IfMatch=f'"{etag_of(etag)}"'
                )
            except boto_errors.ClientError as e:
                if e.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    raise changed(uri, etag, "") from None
                raise self._error(e, "GetObject", uri) from e
            except Exception as e:
                raise self._error(e, "GetObject", uri) from e
            # A server that ignores If-Match still names the version it sent.
            if etag_of(response.get("ETag")) != etag_of(etag):
                response["Body"].close()
                raise changed(uri, etag, str(response.get("ETag")))
            try:
                data: bytes = response["Body"].read()
            except Exception as e:  # a body cut off mid-stream: read the range again
                error = self._error(e, "GetObject (reading the body)", uri)
                if isinstance(error, TransientStorageError) and tries < self.settings.max_attempts:
                    continue
                raise error from e
            finally:
                response["Body"].close()
            if len(data) != end - start:
                raise StorageError(
                    f"GetObject {uri} bytes {start}-{end - 1}: {len(data)} bytes came back, "
                    f"not {end - start}",
                    uri,
                )
            return data

    def open_writer(
        self, uri: str, content_type: str | None = None, kms_key_id: str | None = None
    ) -> S3Writer:
        bucket, key = self._object(uri)
        return S3Writer(self.client, self._error, bucket, key, content_type, kms_key_id)

    def ensure_bucket(self, uri: str) -> None:
        bucket, _ = split_s3_uri(uri)
        client = self.client()
        try:
            client.head_bucket(Bucket=bucket)
            return
        except Exception as e:
            error = self._error(e, "HeadBucket", f"s3://{bucket}")
            if not isinstance(error, ObjectNotFoundError):
                raise error from e
        kwargs: dict[str, Any] = {"Bucket": bucket}
        region = self.settings.region
        if region != DEFAULT_REGION:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except Exception as e:
            if "BucketAlreadyOwnedByYou" not in str(e):  # created meanwhile by us: fine
                raise self._error(e, "CreateBucket", f"s3://{bucket}") from e
