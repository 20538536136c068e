"""Bad-record quarantine: ``on_record_error=quarantine`` (docs/contract.md §9; beyond SageMaker, opt-in).

SageMaker fails an object when the model fails on one of its payloads (docs/contract.md §6.2), and that stays
the default (``fail_object``). With ``quarantine``, a payload the model fails on is bisected down to
the records that fail (``runner/engine/dispatch.py``); each is left out of the ``.out`` and written here::

    <quarantine_path>/<job name>/<relative key>.jsonl

``<relative key>`` is the input object's name under S3OutputPath without ``.out`` (docs/contract.md §6.1),
so the files mirror the outputs; one JSON line per bad record, in record order::

    {"key": "in/a.csv", "record_index": 17, "byte_offset": 1093, "error": "..."}

``key`` is the input object's key (a file:// object's path); ``record_index`` counts the object's
records from 0 (after a ``csv_header first-line`` header); ``byte_offset`` is where the record starts
in the object (decompressed, for Gzip). An object with no bad record gets no file. The location must
lie outside S3OutputPath, so the output keeps SageMaker's layout.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner.config import OnRecordError, RunnerConfig
from runner.contract.spec import SplitType, TransformJobSpec
from runner.errors import (
    HandlerContractError,
    HandlerError,
    InvocationError,
    Problem,
    SpecError,
    UnsupportedFormatError,
)
from runner.records.columnar import is_columnar, media_type
from runner.records.dataprocessing import processing_for
from runner.records.plan import InputObject
from runner.storage import scheme_of, storage_for

if TYPE_CHECKING:
    from runner.storage.s3 import S3Settings

QUARANTINE_SUFFIX = ".jsonl"
QUARANTINE_CONTENT_TYPE = "application/jsonlines"
SCHEMES = ("s3", "file")
# An error text is the hook's exception (or the container's answer); enough to tell why, not a dump.
MAX_ERROR_CHARS = 4096
KNOB = "RunnerConfig.quarantine_path"


@dataclass(frozen=True)
class Quarantine:
    """Where one job's bad records go: ``<quarantine_path>/<job name>``."""

    location: str

    def uri_for(self, obj: InputObject) -> str:
        return f"{self.location}/{obj.relative_key}{QUARANTINE_SUFFIX}"


@dataclass(frozen=True)
class BadRecord:
    """One record the model failed on, left out of its object's ``.out``."""

    record_index: int
    byte_offset: int
    error: str


def quarantine_for(config: RunnerConfig, spec: TransformJobSpec) -> Quarantine | None:
    """The job's quarantine, or None under the default ``fail_object``. A setting that cannot work
    raises SpecError naming the knob, before anything runs."""
    path = config.quarantine_path
    if config.on_record_error is not OnRecordError.QUARANTINE:
        if path:
            raise SpecError(
                [
                    Problem(
                        KNOB,
                        path,
                        "is used only with on_record_error quarantine, and on_record_error is "
                        f"{config.on_record_error}: set --on-record-error quarantine or drop "
                        "--quarantine-path",
                    )
                ]
            )
        return None
    output = spec.transform_output.s3_output_path
    problems: list[Problem] = []
    if not path:
        problems.append(
            Problem(
                KNOB,
                path,
                "is required with on_record_error quarantine: an s3:// or file:// prefix outside "
                f"S3OutputPath ({output}) where the bad records are written",
            )
        )
    elif scheme_of(path) not in SCHEMES or not path.split("://", 1)[1].strip("/"):
        problems.append(Problem(KNOB, path, "must be an s3://<bucket>/<prefix> or file://<folder> URI"))
    elif _inside(path, output):
        problems.append(
            Problem(
                KNOB,
                path,
                f"must lie outside S3OutputPath {output}, so the output keeps SageMaker's layout "
                "(only .out objects there); choose a prefix that is not under it",
            )
        )
    source = spec.transform_input
    processing = processing_for(spec)
    if processing is not None and processing.filters_input and source.split_type is not SplitType.NONE:
        problems.append(
            Problem(
                "RunnerConfig.on_record_error",
                "quarantine",
                f"cannot be combined with DataProcessing.InputFilter ({processing.input_filter}) over "
                "records split from the object: the records sent are filtered copies, so their byte "
                "offsets in the object are unknown; drop one of them",
            )
        )
    if config.split_parquet_row_groups and is_columnar(media_type(source.content_type)):
        problems.append(
            Problem(
                "RunnerConfig.on_record_error",
                "quarantine",
                "cannot be combined with split_parquet_row_groups: a payload of row groups cannot be "
                "split into single rows to find the bad ones; drop one of them",
            )
        )
    if problems:
        raise SpecError(problems)
    assert path is not None
    return Quarantine(f"{path.rstrip('/')}/{spec.name}")


def _normalized(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    if scheme.lower() == "file":
        rest = posixpath.normpath("/" + rest.lstrip("/"))
    else:
        bucket, _, key = rest.partition("/")
        rest = f"{bucket.lower()}/{key}"
    return f"{scheme.lower()}://{rest.rstrip('/')}"


def _inside(path: str, output_path: str) -> bool:
    """Whether ``path`` is S3OutputPath or under it (whole path segments: ``out-q`` is not ``out``)."""
    q, o = _normalized(path), _normalized(output_path)
    return q == o or q.startswith(o + "/")


def is_record_error(e: BaseException | None) -> bool:
    """A failure of the model on the payload's data: a hook raised, or the container answered with an
    error status. Not a dead worker (retried), a silent server, a broken hook contract or an
    unsupported content type, which no record causes by itself."""
    if isinstance(e, InvocationError):
        return True
    return isinstance(e, HandlerError) and not isinstance(e, (HandlerContractError, UnsupportedFormatError))


def object_key(uri: str) -> str:
    """``s3://bucket/in/a.csv`` -> ``in/a.csv``; a file:// URI's path."""
    rest = uri.split("://", 1)[-1]
    return rest.split("/", 1)[1] if scheme_of(uri) == "s3" and "/" in rest else rest


def error_text(e: BaseException) -> str:
    text = str(e)
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + " ..."


def write_quarantine(
    quarantine: Quarantine, obj: InputObject, records: list[BadRecord], s3: S3Settings | None = None
) -> str:
    """Write an object's bad records as JSON Lines, in record order; returns where. ``s3``: the
    settings to reach S3 with (None: this process's environment)."""
    uri = quarantine.uri_for(obj)
    key = object_key(obj.uri)
    lines = [
        json.dumps(
            {"key": key, "record_index": r.record_index, "byte_offset": r.byte_offset, "error": r.error}
        )
        + "\n"
        for r in sorted(records, key=lambda r: r.record_index)
    ]
    storage_for(uri, s3).put_bytes(uri, "".join(lines).encode(), content_type=QUARANTINE_CONTENT_TYPE)
    return uri
