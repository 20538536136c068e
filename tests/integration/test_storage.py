"""runner.storage against a real S3 (the embedded SeaweedFS) and a real disk: what a caller sees."""

from __future__ import annotations

import os
import pickle
import re
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from runner.errors import (
    AccessDeniedError,
    ObjectChangedError,
    ObjectNotFoundError,
    StorageError,
    TransientStorageError,
)
from runner.storage import Storage, split_s3_uri, storage_for
from runner.storage.embedded import EmbeddedS3Info
from runner.storage.local import TEMP_SUFFIX, LocalStorage
from runner.storage.s3 import S3Settings, S3Storage, translate_error

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


@dataclass
class Backend:
    """A storage plus an independent way to put and inspect raw objects under ``root``."""

    name: str
    storage: Storage
    root: str
    put: Callable[[str, bytes], None]
    get: Callable[[str], bytes]
    leftovers: Callable[[], list[str]]  # open multipart uploads / temporary files

    def uri(self, key: str) -> str:
        return self.root + key

    def keys(self, prefix: str) -> list[str]:
        return [o.uri[len(self.root) :] for o in self.storage.list_objects(self.uri(prefix))]


def s3_backend(bucket: str, client: Any) -> Backend:
    def put(key: str, data: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=data)

    def get(key: str) -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def leftovers() -> list[str]:
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]

    return Backend("s3", storage_for("s3://"), f"s3://{bucket}/", put, get, leftovers)


def file_backend(root: Path) -> Backend:
    def put(key: str, data: bytes) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    def get(key: str) -> bytes:
        return (root / key).read_bytes()

    def leftovers() -> list[str]:
        return [str(p) for p in root.rglob(f"*{TEMP_SUFFIX}")]

    return Backend("file", storage_for("file://"), f"file://{root}/", put, get, leftovers)


@pytest.fixture(params=["s3", "file"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return s3_backend(request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_client"))
    return file_backend(tmp_path)


@pytest.fixture
def s3(s3_bucket: str, s3_client: Any) -> Backend:
    return s3_backend(s3_bucket, s3_client)


# --- listing -------------------------------------------------------------------------------------


def test_listing_is_a_raw_key_prefix_match_in_s3_order(backend: Backend) -> None:
    keys = ["in/data1.csv", "in/data/x.csv", "in/data/sub/y.csv", "in/datb.csv", "in/other/z.csv", "top.csv"]
    for i, key in enumerate(keys):
        backend.put(key, b"x" * i)
    # SageMaker S3Prefix: `in/data` also matches `in/data1.csv` (GH aws/sagemaker-python-sdk#3557).
    assert backend.keys("in/data") == ["in/data/sub/y.csv", "in/data/x.csv", "in/data1.csv"]
    assert backend.keys("in/data/") == ["in/data/sub/y.csv", "in/data/x.csv"]
    assert backend.keys("in/data1.csv") == ["in/data1.csv"]
    assert backend.keys("in/nothing") == []
    assert backend.keys("") == sorted(keys)
    info = {o.uri: o for o in backend.storage.list_objects(backend.uri("in/data1"))}
    assert list(info) == [backend.uri("in/data1.csv")]
    assert info[backend.uri("in/data1.csv")].size == 0
    assert info[backend.uri("in/data1.csv")].etag


def test_s3_listing_of_the_whole_bucket_skips_folder_markers(s3: Backend) -> None:
    for key in ["in/", "in/sub/", "in/sub/a.csv", "b.csv"]:
        s3.put(key, b"" if key.endswith("/") else b"1")
    bucket = s3.root.removeprefix("s3://").rstrip("/")
    for prefix_uri in (f"s3://{bucket}", f"s3://{bucket}/"):
        listed = [o.key for o in s3.storage.list_objects(prefix_uri)]
        assert listed == ["b.csv", "in/sub/a.csv"]


def test_s3_listing_paginates_past_1000_keys(s3: Backend) -> None:
    keys = [f"many/{i:05d}.csv" for i in range(1500)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda k: s3.put(k, b"1"), keys))
    assert s3.keys("many/") == keys


def test_local_listing_hides_unfinished_writes(tmp_path: Path) -> None:
    backend = file_backend(tmp_path)
    backend.put("out/done.csv.out", b"1")
    with backend.storage.open_writer(backend.uri("out/pending.csv.out")) as writer:
        writer.write(b"half")
        assert backend.keys("out/") == ["out/done.csv.out"]
        writer.commit()
    assert backend.keys("out/") == ["out/done.csv.out", "out/pending.csv.out"]


# --- reading -------------------------------------------------------------------------------------


def test_iter_chunks_streams_a_large_object_and_reads_ranges(backend: Backend) -> None:
    size = 20 * MiB + 123
    data = os.urandom(size)
    backend.put("big.bin", data)
    uri = backend.uri("big.bin")

    tracemalloc.start()
    try:
        received = 0
        chunk_sizes = []
        for chunk in backend.storage.iter_chunks(uri, chunk_size=MiB):
            received += len(chunk)
            chunk_sizes.append(len(chunk))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    assert len(chunk_sizes) == 21 and max(chunk_sizes) <= MiB
    assert peak < 6 * MiB, f"streaming held {peak / MiB:.1f} MiB at once"

    assert b"".join(backend.storage.iter_chunks(uri, chunk_size=3 * MiB)) == data
    ranges = [(0, 10), (5, 5), (MiB - 3, 3 * MiB + 7), (size - 5, None), (size - 5, size + 100), (size, None)]
    for start, end in ranges:
        got = b"".join(backend.storage.iter_chunks(uri, chunk_size=MiB, start=start, end=end))
        assert got == data[start:end], (start, end)
    assert backend.storage.read_bytes(uri) == data
    head = backend.storage.head(uri)
    assert (head.uri, head.size) == (uri, size) and head.etag


def test_read_range_reads_the_listed_version_or_says_it_changed(backend: Backend) -> None:
    data = os.urandom(3 * MiB)
    backend.put("v.bin", data)
    uri = backend.uri("v.bin")
    etag = backend.storage.head(uri).etag
    for start, end in [(0, 1), (MiB - 1, 2 * MiB + 1), (3 * MiB - 7, 3 * MiB), (5, 5)]:
        assert backend.storage.read_range(uri, start, end, etag) == data[start:end], (start, end)
    time.sleep(0.01)  # a file's version is its size and mtime
    backend.put("v.bin", data[::-1])
    changed = rf"{re.escape(uri)} changed while it was being read: its ETag is no longer"
    with pytest.raises(ObjectChangedError, match=changed):
        backend.storage.read_range(uri, 0, 10, etag)


def test_missing_objects_raise_object_not_found_naming_the_uri(backend: Backend) -> None:
    uri = backend.uri("no/such/key.csv")
    calls: list[Callable[[], object]] = [
        lambda: backend.storage.head(uri),
        lambda: backend.storage.read_bytes(uri),
        lambda: list(backend.storage.iter_chunks(uri, start=3, end=9)),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFoundError) as caught:
            call()
        assert uri in str(caught.value) and caught.value.uri == uri


def test_s3_missing_bucket_raises_object_not_found(s3_server: EmbeddedS3Info) -> None:
    storage = storage_for("s3://")
    uri = "s3://no-such-bucket-here/key.csv"
    for call in (
        lambda: storage.head(uri),
        lambda: storage.read_bytes(uri),
        lambda: list(storage.list_objects(uri)),
    ):
        with pytest.raises(ObjectNotFoundError, match=re.escape(uri)):
            call()
    with pytest.raises(ObjectNotFoundError, match="NoSuchBucket"):
        list(storage.list_objects("s3://no-such-bucket-here/"))


def test_wrong_secret_raises_access_denied_without_the_secret(s3: Backend, s3_server: EmbeddedS3Info) -> None:
    s3.put("a.csv", b"1")
    wrong = "wrong-secret-0123456789abcdefghijklmnop"
    storage = S3Storage(S3Settings(s3_server.endpoint, "us-east-1", s3_server.access_key_id, wrong))
    assert wrong not in repr(storage.settings)
    calls: list[Callable[[], object]] = [
        lambda: storage.head(s3.uri("a.csv")),
        lambda: storage.read_bytes(s3.uri("a.csv")),
        lambda: list(storage.list_objects(s3.root)),
        lambda: storage.put_bytes(s3.uri("b.csv"), b"2"),
    ]
    for call in calls:
        with pytest.raises(AccessDeniedError) as caught:
            call()
        message = str(caught.value)
        assert s3.root in message and "AWS_SECRET_ACCESS_KEY" in message
        assert wrong not in message and s3_server.secret_access_key not in message


def test_s3_storage_follows_the_environment_and_pickles_without_secrets(
    s3: Backend, s3_server: EmbeddedS3Info, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("a.csv", b"1")
    storage = storage_for("s3://b/k")
    assert storage is storage_for("s3://other") and isinstance(storage, S3Storage)
    assert storage.head(s3.uri("a.csv")).size == 1
    payload = pickle.dumps(storage)  # crosses Ray process boundaries like this
    assert s3_server.secret_access_key.encode() not in payload
    assert pickle.loads(payload).read_bytes(s3.uri("a.csv")) == b"1"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "changed-secret")
    with pytest.raises(AccessDeniedError):
        storage.head(s3.uri("a.csv"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    assert storage.head(s3.uri("a.csv")).size == 1


# --- writing -------------------------------------------------------------------------------------


def test_multipart_writer_commits_a_large_object_byte_exact(backend: Backend, s3_client: Any) -> None:
    data = os.urandom(2 * 8 * MiB + 3 * MiB + 11)
    uri = backend.uri("out/big.csv.out")
    with backend.storage.open_writer(uri, content_type="text/csv") as writer:
        writer.write(data[:7])
        writer.write(memoryview(data)[7 : 9 * MiB])  # more than a part in one call
        for pos in range(9 * MiB, len(data), MiB + 1):
            writer.write(data[pos : pos + MiB + 1])
        with pytest.raises(ObjectNotFoundError):
            backend.storage.head(uri)  # nothing visible before the commit
        info = writer.commit()
    assert (info.uri, info.size) == (uri, len(data))
    assert backend.get("out/big.csv.out") == data
    assert backend.leftovers() == []
    if backend.name == "s3":
        bucket, key = split_s3_uri(uri)
        head = s3_client.head_object(Bucket=bucket, Key=key)
        assert head["ETag"].strip('"').endswith("-3")  # three parts
        assert head["ContentType"] == "text/csv"
        assert info.etag == head["ETag"].strip('"')


def test_abort_leaves_no_object_and_no_upload(backend: Backend) -> None:
    uri = backend.uri("out/aborted.out")
    writer = backend.storage.open_writer(uri)
    writer.write(os.urandom(9 * MiB))  # one part already uploaded
    if backend.name == "s3":
        assert backend.leftovers() == ["out/aborted.out"]
    writer.abort()
    writer.abort()  # idempotent
    assert backend.leftovers() == []
    assert backend.keys("out/") == []
    with pytest.raises(StorageError, match="already aborted"):
        writer.write(b"more")


def test_writer_context_aborts_on_error_or_without_commit(backend: Backend) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        backend.storage.open_writer(backend.uri("o/a.out")) as writer,
    ):
        writer.write(os.urandom(9 * MiB))
        raise RuntimeError("boom")
    with backend.storage.open_writer(backend.uri("o/b.out")) as writer:
        writer.write(b"never committed")
    assert backend.keys("o/") == []
    assert backend.leftovers() == []


@pytest.mark.parametrize("data", [b"", b"a,b\n1,2\n"], ids=["empty", "small"])
def test_small_and_empty_commit(backend: Backend, data: bytes) -> None:
    uri = backend.uri("out/x.out")
    with backend.storage.open_writer(uri, content_type="application/octet-stream") as writer:
        writer.write(data)
        info = writer.commit()
    assert info.size == len(data) and backend.get("out/x.out") == data
    assert backend.storage.head(uri).size == len(data)
    assert backend.storage.put_bytes(backend.uri("out/y.out"), data).size == len(data)
    assert backend.storage.read_bytes(backend.uri("out/y.out")) == data
    assert backend.leftovers() == []


def test_kms_key_is_requested_and_a_refused_upload_is_aborted(s3: Backend, s3_server: EmbeddedS3Info) -> None:
    # SeaweedFS has no KMS: it refuses the upload, which shows the failure path too.
    settings = S3Settings(
        s3_server.endpoint, "us-east-1", s3_server.access_key_id, s3_server.secret_access_key, max_attempts=1
    )
    storage = S3Storage(settings)
    sent: list[tuple[str, dict[str, Any]]] = []
    storage.client().meta.events.register(
        "provide-client-params.s3.*", lambda params, model, **_: sent.append((model.name, dict(params)))
    )
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    for size in (10, 9 * MiB):  # one PutObject, then a multipart upload
        with pytest.raises(StorageError), storage.open_writer(s3.uri("k.out"), kms_key_id=key_arn) as writer:
            writer.write(b"x" * size)
            writer.commit()
    encrypted = {
        name
        for name, p in sent
        if p.get("ServerSideEncryption") == "aws:kms" and p.get("SSEKMSKeyId") == key_arn
    }
    assert encrypted == {"PutObject", "CreateMultipartUpload"}
    assert s3.leftovers() == [] and s3.keys("") == []


def test_ensure_bucket_creates_once(s3_server: EmbeddedS3Info, s3_client: Any, tmp_path: Path) -> None:
    storage = storage_for("s3://")
    name = f"ensure-{os.getpid()}-{os.urandom(3).hex()}"
    try:
        storage.ensure_bucket(f"s3://{name}/some/prefix")
        storage.ensure_bucket(f"s3://{name}")
        assert name in [b["Name"] for b in s3_client.list_buckets()["Buckets"]]
    finally:
        s3_client.delete_bucket(Bucket=name)
    LocalStorage().ensure_bucket(f"file://{tmp_path}/made/here/")
    assert (tmp_path / "made" / "here").is_dir()


# --- URIs and the registry -----------------------------------------------------------------------


def test_storage_for_picks_by_scheme_and_lists_the_valid_ones() -> None:
    assert isinstance(storage_for("file:///tmp/x"), LocalStorage)
    assert storage_for("file:///a") is storage_for("file:///b")
    for uri in ("gs://bucket/key", "/just/a/path"):
        with pytest.raises(StorageError, match=r"file://, s3://"):
            storage_for(uri)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("s3://b/k/x.csv", ("b", "k/x.csv")), ("s3://bucket", ("bucket", "")), ("s3://bucket/", ("bucket", ""))],
)
def test_split_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["http://b/k", "s3:///k", "b/k", "s3://"])
def test_split_s3_uri_rejects_other_forms(uri: str) -> None:
    with pytest.raises(StorageError, match="s3://<bucket>"):
        split_s3_uri(uri)


# --- the one botocore translation boundary -------------------------------------------------------


def client_error(code: str, status: int, message: str = "the message") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


URL = "http://127.0.0.1:1"
TRANSLATIONS: list[tuple[BaseException, type[StorageError], str]] = [
    (client_error("NoSuchKey", 404), ObjectNotFoundError, "NoSuchKey"),
    (client_error("NoSuchBucket", 404), ObjectNotFoundError, "NoSuchBucket"),
    (client_error("404", 404, "Not Found"), ObjectNotFoundError, "404: Not Found"),
    (client_error("AccessDenied", 403), AccessDeniedError, "AccessDenied (HTTP 403)"),
    (client_error("403", 403, "Forbidden"), AccessDeniedError, "403: Forbidden"),
    (client_error("InvalidAccessKeyId", 403), AccessDeniedError, "InvalidAccessKeyId"),
    (client_error("SignatureDoesNotMatch", 403), AccessDeniedError, "SignatureDoesNotMatch"),
    (client_error("ExpiredToken", 400), AccessDeniedError, "ExpiredToken"),
    (client_error("SlowDown", 503), TransientStorageError, "SlowDown"),
    (client_error("Throttling", 400), TransientStorageError, "Throttling"),
    (client_error("InternalError", 500), TransientStorageError, "InternalError"),
    (client_error("ServiceUnavailable", 503), TransientStorageError, "ServiceUnavailable"),
    (client_error("BadGateway", 502), TransientStorageError, "BadGateway (HTTP 502)"),
    (client_error("RequestTimeout", 400), TransientStorageError, "RequestTimeout"),
    (client_error("InvalidRange", 416), StorageError, "InvalidRange"),
    (client_error("InvalidBucketName", 400), StorageError, "InvalidBucketName"),
    (EndpointConnectionError(endpoint_url=URL), TransientStorageError, "EndpointConnectionError"),
    (ReadTimeoutError(endpoint_url=URL), TransientStorageError, "ReadTimeoutError"),
    (ConnectionClosedError(endpoint_url=URL), TransientStorageError, "ConnectionClosedError"),
    (IncompleteReadError(actual_bytes=1, expected_bytes=2), TransientStorageError, "IncompleteReadError"),
    (ResponseStreamingError(error="reset"), TransientStorageError, "ResponseStreamingError"),
    (ConnectionResetError(104, "reset by peer"), TransientStorageError, "ConnectionResetError"),
    (NoCredentialsError(), AccessDeniedError, "Unable to locate credentials"),
    (ParamValidationError(report="bad key"), StorageError, "bad key"),
    (ValueError("odd"), StorageError, "ValueError: odd"),
]


@pytest.mark.parametrize(("exc", "expected", "fragment"), TRANSLATIONS, ids=lambda v: type(v).__name__)
def test_translate_error(exc: BaseException, expected: type[StorageError], fragment: str) -> None:
    error = translate_error(exc, "GetObject", "s3://b/k.csv")
    assert type(error) is expected
    assert error.uri == "s3://b/k.csv"
    text = str(error)
    assert text.startswith("S3 GetObject s3://b/k.csv failed: ") and fragment in text


def test_translate_error_redacts_secrets() -> None:
    exc = client_error("SignatureDoesNotMatch", 403, "string to sign used sEcReT123")
    assert "sEcReT123" not in str(translate_error(exc, "PutObject", "s3://b/k", redact=("sEcReT123",)))
