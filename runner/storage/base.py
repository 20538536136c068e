"""The storage interface every scheme implements: ``ObjectInfo``, ``Storage``, ``ObjectWriter``, and the
shared halves of their implementations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from runner.errors import ObjectChangedError, StorageError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object. ``key`` is the key within the bucket (the absolute path for file://)."""

    uri: str
    key: str
    size: int
    etag: str
    # Epoch seconds the object was last written (S3's LastModified, whole seconds); None where unknown.
    last_modified: float | None = None


@runtime_checkable
class ObjectWriter(Protocol):
    """Streams one object; nothing is visible until ``commit``. Leaving a ``with`` block without
    a commit (or with an exception) aborts."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self) -> ObjectInfo: ...

    def abort(self) -> None: ...

    def __enter__(self) -> ObjectWriter: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class Storage(Protocol):
    """What the engine needs from an object store. URIs are absolute (``s3://bucket/key``, ``file:///path``).
    The iterators raise their errors (missing object, ...) on the first ``next``, not when called."""

    def list_objects(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with the prefix (raw string match, recursive), in S3 list order;
        keys ending in ``/`` (folder markers) are skipped."""
        ...

    def head(self, uri: str) -> ObjectInfo: ...

    def iter_chunks(
        self, uri: str, chunk_size: int = DEFAULT_CHUNK_SIZE, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of the object (like ``data[start:end]``), streamed in chunks
        of at most ``chunk_size``; never the whole object in memory."""
        ...

    def read_bytes(self, uri: str) -> bytes: ...

    def read_range(self, uri: str, start: int, end: int, etag: str) -> bytes:
        """The bytes ``[start, end)`` of the object's version ``etag`` (an ``ObjectInfo.etag``), in one
        read; ``ObjectChangedError`` when the object is no longer that version."""
        ...

    def put_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> ObjectInfo: ...

    def open_writer(
        self, uri: str, content_type: str | None = None, kms_key_id: str | None = None
    ) -> ObjectWriter: ...

    def ensure_bucket(self, uri: str) -> None:
        """Create the bucket (or folder) ``uri`` lives in if it does not exist."""
        ...


class StorageBase:
    """Whole-object reads and writes, built on each scheme's streaming primitives."""

    def iter_chunks(
        self, uri: str, chunk_size: int = DEFAULT_CHUNK_SIZE, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        raise NotImplementedError

    def open_writer(
        self, uri: str, content_type: str | None = None, kms_key_id: str | None = None
    ) -> ObjectWriter:
        raise NotImplementedError

    def read_bytes(self, uri: str) -> bytes:
        return b"".join(self.iter_chunks(uri))

    def put_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        with self.open_writer(uri, content_type=content_type) as writer:
            writer.write(data)
            return writer.commit()


class WriterBase:
    """The context-manager half of every ``ObjectWriter``: an exception, or no commit, means abort."""

    uri = ""
    committed = False
    aborted = False

    def _check_open(self) -> None:
        if self.committed or self.aborted:
            state = "committed" if self.committed else "aborted"
            raise StorageError(f"writer for {self.uri} is already {state}", self.uri)

    def commit(self) -> ObjectInfo:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.committed or self.aborted:
            return
        if exc is None:
            self.abort()
            return
        try:
            self.abort()
        except StorageError as abort_error:
            # Never hide the error that made us abort behind the abort's own failure.
            log.warning("abort after %s failed too: %s", type(exc).__name__, abort_error)


def changed(uri: str, etag: str, now: str) -> ObjectChangedError:
    now_text = f" (now {now})" if now else ""
    return ObjectChangedError(
        f"{uri} changed while it was being read: its ETag is no longer {etag}{now_text}; "
        "do not overwrite a job's inputs while it runs",
        uri,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; ``s3://bucket`` -> ``("bucket", "")``."""
    if not uri.startswith("s3://"):
        raise StorageError(f"not an S3 URI: {uri!r}; expected s3://<bucket>/<key>", uri)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"S3 URI {uri!r} names no bucket; expected s3://<bucket>/<key>", uri)
    return bucket, key


def scheme_of(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""
