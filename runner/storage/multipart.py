"""The S3 writer: an object's bytes buffered into parts, each uploaded as it fills (multipart
upload); a small object becomes one PutObject; ``abort`` leaves no upload behind."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Any

from runner.errors import StorageError
from runner.storage.base import ObjectInfo, WriterBase

PART_SIZE_BYTES = 8 * 1024 * 1024
MAX_PARTS = 10_000
# Part size doubles every this many parts, so 10,000 parts reach S3's 5 TB object limit.
PARTS_PER_SIZE_STEP = 1_000


def etag_of(raw: object) -> str:
    return str(raw or "").strip('"')


def part_size_for(part_number: int) -> int:
    """8 MiB for the first 1,000 parts, doubling every 1,000 after (S3: >= 5 MiB, <= 10,000 parts)."""
    return PART_SIZE_BYTES << ((part_number - 1) // PARTS_PER_SIZE_STEP)


class S3Writer(WriterBase):
    """Buffers into parts and uploads each as it fills; a small object becomes one PutObject."""

    def __init__(
        self,
        client: Callable[[], Any],
        error: Callable[[BaseException, str, str], StorageError],
        bucket: str,
        key: str,
        content_type: str | None,
        kms_key_id: str | None,
    ) -> None:
        # The S3 client and the storage's one botocore-error translation, so that a writer needs
        # nothing else of S3Storage.
        self._client = client
        self._error = error
        self._bucket = bucket
        self._key = key
        self.uri = f"s3://{bucket}/{key}"
        self._extra: dict[str, str] = {}
        if content_type:
            self._extra["ContentType"] = content_type
        if kms_key_id:
            self._extra["ServerSideEncryption"] = "aws:kms"
            self._extra["SSEKMSKeyId"] = kms_key_id
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._size = 0
        self.committed = False
        self.aborted = False

    def write(self, data: bytes | memoryview) -> None:
        self._check_open()
        view = memoryview(data).cast("B")
        self._size += len(view)
        pos = 0
        while pos < len(view):
            target = part_size_for(len(self._parts) + 1)
            if not self._buffer and len(view) - pos >= target:
                self._upload_part(bytes(view[pos : pos + target]))  # a whole part straight from the input
                pos += target
                continue
            take = min(target - len(self._buffer), len(view) - pos)
            self._buffer += view[pos : pos + take]
            pos += take
            if len(self._buffer) >= target:
                self._upload_part(bytes(self._buffer))
                self._buffer.clear()

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(), operation)(Bucket=self._bucket, Key=self._key, **kwargs)
        except Exception as e:
            raise self._error(e, _op_name(operation), self.uri) from e

    def _upload_part(self, body: bytes) -> None:
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(f"{self.uri}: over {MAX_PARTS} parts, past S3's object size limit", self.uri)
        try:
            if self._upload_id is None:
                r = self._call("create_multipart_upload", **self._extra)
                self._upload_id = str(r["UploadId"])
            r = self._call("upload_part", UploadId=self._upload_id, PartNumber=number, Body=body)
        except StorageError:
            self._abort_quietly()
            raise
        self._parts.append({"PartNumber": number, "ETag": r["ETag"]})

    def commit(self) -> ObjectInfo:
        self._check_open()
        try:
            if self._upload_id is None:
                r = self._call("put_object", Body=bytes(self._buffer), **self._extra)
            else:
                if self._buffer:
                    self._upload_part(bytes(self._buffer))  # the last part may be under 5 MiB
                parts = {"Parts": self._parts}
                r = self._call("complete_multipart_upload", UploadId=self._upload_id, MultipartUpload=parts)
        except StorageError:
            self._abort_quietly()
            raise
        self._buffer = bytearray()
        self.committed = True
        return ObjectInfo(self.uri, self._key, self._size, etag_of(r.get("ETag")))

    def abort(self) -> None:
        if self.committed or self.aborted:
            return
        self.aborted = True
        self._buffer = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            self._call("abort_multipart_upload", UploadId=upload_id)

    def _abort_quietly(self) -> None:
        with suppress(StorageError):  # the caller raises the error that made us abort
            self.abort()


def _op_name(method: str) -> str:
    """``upload_part`` -> ``UploadPart``, the name AWS uses in its errors."""
    return "".join(word.capitalize() for word in method.split("_"))
