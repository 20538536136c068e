"""SageMaker Batch Transform jobs, unchanged, on Ray.

The Python API (the README's "Python API" section shows it in use)::

    from runner import RunnerConfig, run_job

    record = run_job(create_transform_job_request, RunnerConfig(), model_request=create_model_request)
    record.status, record.failure_reason, record.counters, record.describe()

``run_job`` and ``resume_job`` import Ray on first use; the rest does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from runner.errors import (
    AccessDeniedError,
    ContainerError,
    HandlerContractError,
    HandlerError,
    InvocationError,
    JobError,
    MissingExtraError,
    ModelError,
    ObjectNotFoundError,
    Problem,
    RecordFormatError,
    ResourceInUseError,
    ResourceNotFoundError,
    ResumeError,
    RunnerError,
    SpecError,
    StorageError,
    TransientStorageError,
    UnsupportedFormatError,
    WorkerLostError,
    WorkerStartupError,
)

if TYPE_CHECKING:
    from runner.config import CsvHeader, ModelRuntime, ObjectParallelism, OnRecordError, RunnerConfig
    from runner.engine.job import resume_job, run_job
    from runner.jobs.counters import JobCounters, WorkerInfo
    from runner.jobs.store import JobRecord, TransformJobStatus

__version__ = "0.2.0"

# Public names and the module each comes from, imported when first used (Ray only with the engine).
_LAZY = {
    "RunnerConfig": "runner.config",
    "ModelRuntime": "runner.config",
    "ObjectParallelism": "runner.config",
    "OnRecordError": "runner.config",
    "CsvHeader": "runner.config",
    "run_job": "runner.engine.job",
    "resume_job": "runner.engine.job",
    "JobRecord": "runner.jobs.store",
    "TransformJobStatus": "runner.jobs.store",
    "JobCounters": "runner.jobs.counters",
    "WorkerInfo": "runner.jobs.counters",
}

__all__ = [
    "AccessDeniedError",
    "ContainerError",
    "CsvHeader",
    "HandlerContractError",
    "HandlerError",
    "InvocationError",
    "JobCounters",
    "JobError",
    "JobRecord",
    "MissingExtraError",
    "ModelError",
    "ModelRuntime",
    "ObjectNotFoundError",
    "ObjectParallelism",
    "OnRecordError",
    "Problem",
    "RecordFormatError",
    "ResourceInUseError",
    "ResourceNotFoundError",
    "ResumeError",
    "RunnerConfig",
    "RunnerError",
    "SpecError",
    "StorageError",
    "TransformJobStatus",
    "TransientStorageError",
    "UnsupportedFormatError",
    "WorkerInfo",
    "WorkerLostError",
    "WorkerStartupError",
    "__version__",
    "resume_job",
    "run_job",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
