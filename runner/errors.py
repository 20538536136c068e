"""The one exception tree of the runner.

Every error a user can see is a ``RunnerError``; messages say what failed, where, which value and
what is allowed::

    RunnerError
    ├── SpecError                 the request (or a CreateModel request) is invalid; lists every problem
    ├── ModelError                the model cannot be found, fetched or extracted
    ├── StorageError              S3 / file:// access (botocore errors are translated in storage/s3.py only)
    │   ├── ObjectNotFoundError
    │   ├── AccessDeniedError
    │   └── TransientStorageError retried by botocore and still failing
    ├── RecordFormatError         an object cannot be split into records (uri, record index, byte offset)
    ├── HandlerError              a user hook raised (hook, uri, payload index, original traceback)
    │   └── HandlerContractError  a hook breaks the toolkit's contract (arity, transform_fn + input_fn, ...)
    ├── ContainerError            a serving container misbehaved
    │   └── InvocationError       it answered an invocation with an error status (4xx/5xx)
    ├── WorkerStartupError        workers could not be placed or started (names the setting to change)
    ├── WorkerLostError           model workers died on a payload more times than the retries allow
    ├── ResumeError               a job cannot be resumed (still running, input or model changed)
    ├── MissingExtraError         an optional dependency is not installed (names the extra to install)
    └── JobError                  job-store conflicts: duplicate name (ResourceInUse), unknown job
        ├── ResourceInUseError
        └── ResourceNotFoundError
"""

from __future__ import annotations

from dataclasses import dataclass


class RunnerError(Exception):
    """Base of every error the runner raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the extra attributes (uri, hook, ...) when the error crosses a Ray process boundary.
        return (type(self), self.args, self.__dict__)


@dataclass(frozen=True)
class Problem:
    """One validation problem: the field path (AWS camelCase, e.g. ``transformInput.splitType``),
    the value given, and what is allowed."""

    path: str
    value: object
    constraint: str

    def __str__(self) -> str:
        value = aws_value(self.value)
        return f"Value {value} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def aws_value(value: object) -> str:
    """A value as AWS's validation messages quote it: ``'3601'``, ``'Lines'``, ``'[a, b]'``, ``'{k=v}'``
    (Java's toString in single quotes), and ``null`` unquoted."""
    if value is None:
        return "null"
    return f"'{_java_text(value)}'"


def _java_text(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_java_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_java_text(k)}={_java_text(v)}" for k, v in value.items()) + "}"
    return str(value)


class SpecError(RunnerError):
    """The request is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        noun = "error" if n == 1 else "errors"
        super().__init__(f"{n} validation {noun} detected: " + "; ".join(str(p) for p in self.problems))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.problems,))


class ModelError(RunnerError):
    """The model named by the job cannot be resolved, fetched or extracted."""


class StorageError(RunnerError):
    """Reading or writing an object failed. ``uri`` names the object or prefix."""

    def __init__(self, message: str, uri: str = "") -> None:
        self.uri = uri
        super().__init__(message)


class ObjectNotFoundError(StorageError):
    """The bucket or object does not exist."""


class AccessDeniedError(StorageError):
    """The credentials may not read or write the object."""


class TransientStorageError(StorageError):
    """A throttling / 5xx / connection failure that outlived botocore's retries."""


class ObjectChangedError(StorageError):
    """The object was replaced while its parts were being read (its ETag no longer matches)."""


class RecordFormatError(RunnerError):
    """An object cannot be split into records or a record does not fit the payload limit."""

    def __init__(self, message: str, uri: str = "", record_index: int = -1, byte_offset: int = -1) -> None:
        self.uri = uri
        self.record_index = record_index
        self.byte_offset = byte_offset
        super().__init__(message)


class HandlerError(RunnerError):
    """A user hook raised. Carries the hook name, object and payload index, and the traceback text."""

    def __init__(
        self, message: str, hook: str = "", uri: str = "", payload_index: int = -1, traceback_text: str = ""
    ) -> None:
        self.hook = hook
        self.uri = uri
        self.payload_index = payload_index
        self.traceback_text = traceback_text
        super().__init__(message)


class HandlerContractError(HandlerError):
    """A hook breaks the inference toolkit's contract (wrong arity, transform_fn with input_fn, ...)."""


class UnsupportedFormatError(HandlerError):
    """The default codecs cannot decode/encode the content type (HTTP 415 in the toolkit)."""


class ContainerError(RunnerError):
    """A serving container failed its health check or answered an invocation with an error."""


class InvocationError(ContainerError):
    """The serving container answered ``POST /invocations`` with an error status (4xx, or 5xx after the
    retries): the model refused the payload, as a hook that raises does (not a dead or silent server)."""


class WorkerStartupError(RunnerError):
    """Workers cannot be placed or did not become ready. The message names the setting to change."""


class WorkerLostError(RunnerError):
    """The model worker process died on a payload, on every try the retry budget allowed."""


class JobError(RunnerError):
    """A job-store request cannot be served."""


class ResourceInUseError(JobError):
    """A job with this name already exists (SageMaker's ResourceInUse)."""


class ResourceNotFoundError(JobError):
    """No job or model with this name exists."""


class MissingExtraError(RunnerError):
    """An optional dependency is missing. ``extra`` is the package extra that installs it."""

    def __init__(self, message: str, extra: str = "") -> None:
        self.extra = extra
        super().__init__(message)


class ResumeError(RunnerError):
    """``batch-transform resume`` refuses: the job still runs, completed, or its input or model changed."""
