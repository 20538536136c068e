"""Object storage behind one small interface: ``s3://`` (boto3) and ``file://`` (local disk).

Other modules code against ``Storage`` / ``ObjectWriter`` (``storage/base.py``) and get an
implementation from ``storage_for(uri)``; they never see botocore. Every failure is a ``StorageError``
(``ObjectNotFoundError``, ``AccessDeniedError``, ``TransientStorageError``) naming the URI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from runner.errors import StorageError
from runner.storage.base import (
    DEFAULT_CHUNK_SIZE,
    ObjectInfo,
    ObjectWriter,
    Storage,
    StorageBase,
    WriterBase,
    scheme_of,
    split_s3_uri,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SCHEMES",
    "ObjectInfo",
    "ObjectWriter",
    "Storage",
    "StorageBase",
    "WriterBase",
    "scheme_of",
    "split_s3_uri",
    "storage_for",
]

SCHEMES = ("file", "s3")


def _factories() -> dict[str, Callable[[], Storage]]:
    # Imported on first use: boto3 is not needed for file:// alone.
    from runner.storage.local import LocalStorage
    from runner.storage.s3 import S3Storage

    return {"file": LocalStorage, "s3": S3Storage}


_instances: dict[str, Storage] = {}
_instances_lock = threading.Lock()


def _instance(scheme: str) -> Storage:
    # Locked: the threads of a grouped object task ask at once, and each instance builds its own
    # boto3 client (~0.1 CPU-s).
    with _instances_lock:
        if scheme not in _instances:
            _instances[scheme] = _factories()[scheme]()
        return _instances[scheme]


def storage_for(uri: str) -> Storage:
    """The storage for ``uri``'s scheme; one shared instance per scheme per process."""
    scheme = scheme_of(uri)
    if scheme not in SCHEMES:
        valid = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageError(
            f"unsupported URI {uri!r}: scheme {scheme + '://' if scheme else '(none)'} is not one of {valid}",
            uri,
        )
    return _instance(scheme)
