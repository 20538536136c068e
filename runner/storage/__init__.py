"""Object storage behind one small interface: ``s3://`` (boto3) and ``file://`` (local disk).

Other modules code against ``Storage`` / ``ObjectWriter`` (``storage/base.py``) and get an
implementation from ``storage_for(uri)``; they never see botocore. Every failure is a ``StorageError``
(``ObjectNotFoundError``, ``AccessDeniedError``, ``TransientStorageError``) naming the URI.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from runner.storage.s3 import S3Settings

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


# One instance per scheme and S3 settings per process: each S3 instance holds its own boto3 client.
_instances: dict[tuple[str, S3Settings | None], Storage] = {}
_instances_lock = threading.Lock()


def _instance(scheme: str, s3: S3Settings | None) -> Storage:
    # Locked: the threads of a grouped object task ask at once, and each instance builds its own
    # boto3 client (~0.1 CPU-s).
    key = (scheme, s3 if scheme == "s3" else None)
    with _instances_lock:
        if key not in _instances:
            if key[1] is not None:
                from runner.storage.s3 import S3Storage

                _instances[key] = S3Storage(key[1])
            else:
                _instances[key] = _factories()[scheme]()
        return _instances[key]


def storage_for(uri: str, s3: S3Settings | None = None) -> Storage:
    """The storage for ``uri``'s scheme; one shared instance per scheme (and S3 settings) per process.
    ``s3``: how to reach S3 (endpoint, region, credentials, retries); None follows this process's
    environment (the standard AWS variables and credential chain)."""
    scheme = scheme_of(uri)
    if scheme not in SCHEMES:
        valid = ", ".join(f"{s}://" for s in SCHEMES)
        raise StorageError(
            f"unsupported URI {uri!r}: scheme {scheme + '://' if scheme else '(none)'} is not one of {valid}",
            uri,
        )
    return _instance(scheme, s3)
