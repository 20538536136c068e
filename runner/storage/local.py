"""``file://`` storage with S3's semantics, for runs that need no S3 at all.

A URI is ``file://`` + a path, taken literally (no percent-decoding: output URIs are built by
concatenating keys). The "key" of an object is its absolute path, so a listing is a raw string
prefix match on paths, in the same (code point = UTF-8 byte) order S3 lists keys. Writers stream
into a hidden temporary file next to the target and rename it on commit, so, as with a multipart
upload, nothing is visible before the commit.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO

from runner.errors import AccessDeniedError, ObjectNotFoundError, StorageError
from runner.storage.base import DEFAULT_CHUNK_SIZE, ObjectInfo, StorageBase, WriterBase, changed

SCHEME = "file://"
TEMP_SUFFIX = ".batch-transform-partial"


def _path(uri: str) -> str:
    if not uri.startswith(SCHEME):
        raise StorageError(f"not a file URI: {uri!r}; expected file:///absolute/path", uri)
    raw = uri[len(SCHEME) :]
    if not raw:
        raise StorageError(f"file URI {uri!r} names no path", uri)
    path = os.path.abspath(os.path.expanduser(raw))
    # abspath drops a trailing "/", which is part of a prefix's meaning.
    return path + "/" if raw.endswith("/") and not path.endswith("/") else path


def _dot_segment(raw: str) -> str | None:
    """A ``.`` or ``..`` segment after a folder name: an object key that a path would resolve elsewhere
    (out of its folder for ``..``). Leading ones only say where a relative path starts."""
    named = False
    for part in raw.split("/"):
        if part in (".", ".."):
            if named:
                return part
        elif part:
            named = True
    return None


def _uri(path: str) -> str:
    return SCHEME + path


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def translate_os_error(exc: OSError, operation: str, uri: str) -> StorageError:
    """OSError -> the runner's StorageError family, naming the operation and URI."""
    message = f"file {operation} {uri} failed: {exc.strerror or exc}"
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return ObjectNotFoundError(message, uri)
    if isinstance(exc, PermissionError):
        return AccessDeniedError(message, uri)
    return StorageError(message, uri)


def _info(path: str, operation: str) -> ObjectInfo:
    try:
        st = os.stat(path)
    except OSError as e:
        raise translate_os_error(e, operation, _uri(path)) from e
    if not os.path.isfile(path):
        raise ObjectNotFoundError(f"file {operation} {_uri(path)} failed: not a regular file", _uri(path))
    # Size + mtime change whenever the content is rewritten: enough to key caches, like an ETag.
    return ObjectInfo(_uri(path), path, st.st_size, f"{st.st_size:x}-{st.st_mtime_ns:x}", st.st_mtime)


class LocalStorage(StorageBase):
    """``Storage`` for ``file://`` URIs."""

    def list_objects(self, prefix_uri: str) -> Iterator[ObjectInfo]:
        prefix = _path(prefix_uri)
        root = prefix if prefix.endswith("/") else os.path.dirname(prefix)
        if not os.path.isdir(root):
            return

        def fail(e: OSError) -> None:
            raise translate_os_error(e, "list", prefix_uri) from e

        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
            # Descend only into folders that can hold a match (prefix "a/b" needs "a/b*").
            dirnames[:] = [
                d
                for d in dirnames
                if (full := os.path.join(dirpath, d) + "/").startswith(prefix) or prefix.startswith(full)
            ]
            for name in filenames:
                full = os.path.join(dirpath, name)
                if full.startswith(prefix) and not _is_temp(name):
                    found.append(full)
        for path in sorted(found):
            try:
                yield _info(path, "list")
            except ObjectNotFoundError:
                continue  # removed since the walk, or not a regular file

    def head(self, uri: str) -> ObjectInfo:
        return _info(_path(uri), "head")

    def iter_chunks(
        self, uri: str, chunk_size: int = DEFAULT_CHUNK_SIZE, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        if start < 0 or (end is not None and end < 0) or chunk_size <= 0:
            raise StorageError(f"bad range for {uri}: start={start} end={end} chunk_size={chunk_size}", uri)
        path = _path(uri)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in the finally below, after the last yield
        except OSError as e:
            raise translate_os_error(e, "read", uri) from e
        try:
            f.seek(start)
            remaining = None if end is None else max(end - start, 0)
            while remaining is None or remaining > 0:
                try:
                    chunk = f.read(chunk_size if remaining is None else min(chunk_size, remaining))
                except OSError as e:
                    raise translate_os_error(e, "read", uri) from e
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    def read_range(self, uri: str, start: int, end: int, etag: str) -> bytes:
        path = _path(uri)
        data = b"".join(self.iter_chunks(uri, max(end - start, 1), start, end))
        now = _info(path, "read").etag  # after the read: a rewrite since the listing shows here
        if now != etag:
            raise changed(uri, etag, now)
        return data

    def open_writer(
        self, uri: str, content_type: str | None = None, kms_key_id: str | None = None
    ) -> LocalWriter:
        # content_type and kms_key_id have no meaning on a local disk.
        dot = _dot_segment(uri[len(SCHEME) :]) if uri.startswith(SCHEME) else None
        if dot is not None:
            # S3 keeps such a key as it is; a path would put the object somewhere else.
            raise StorageError(
                f"file URI {uri!r} has a {dot!r} segment after a folder name: the object would be written "
                "elsewhere (out of its folder for '..'), not at the key given; name it without '.' or '..' "
                "segments",
                uri,
            )
        return LocalWriter(_path(uri))

    def ensure_bucket(self, uri: str) -> None:
        path = _path(uri)
        folder = path if path.endswith("/") else os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise translate_os_error(e, "mkdir", uri) from e


class LocalWriter(WriterBase):
    """Writes ``.<name>.<random>.batch-transform-partial`` beside the target; commit renames it."""

    def __init__(self, path: str) -> None:
        if path.endswith("/"):
            raise StorageError(f"file URI {_uri(path)!r} names a folder, not an object", _uri(path))
        self.uri = _uri(path)
        self._path = path
        folder, name = os.path.split(path)
        self._temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        self._size = 0
        self.committed = False
        self.aborted = False
        try:
            os.makedirs(folder, exist_ok=True)
            # os.open with 0o666 so the umask decides the mode, as for any file the user writes.
            fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as e:
            raise translate_os_error(e, "open for writing", self.uri) from e
        self._file: BinaryIO = os.fdopen(fd, "wb")

    def write(self, data: bytes | memoryview) -> None:
        self._check_open()
        try:
            self._size += self._file.write(data)
        except OSError as e:
            self.abort()
            raise translate_os_error(e, "write", self.uri) from e

    def commit(self) -> ObjectInfo:
        self._check_open()
        try:
            self._file.flush()
            os.fsync(self._file.fileno())  # the rename must not publish a file whose data is not on disk
            self._file.close()
            os.replace(self._temp, self._path)
        except OSError as e:
            self.abort()
            raise translate_os_error(e, "commit", self.uri) from e
        self.committed = True
        return _info(self._path, "commit")

    def abort(self) -> None:
        if self.committed or self.aborted:
            return
        self.aborted = True
        self._file.close()
        try:
            os.unlink(self._temp)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise translate_os_error(e, "abort", self.uri) from e
