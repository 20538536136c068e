"""Fault modes of the control plane (``batch-transform serve --fault MODE``): our own server standing
in for a SageMaker that is unavailable, so that ``run --prefer sagemaker`` can be tested end to end
against real HTTP and the unchanged boto3 client.

Each mode plays one way the real service fails, answering as AWS does (JSON 1.1 ``__type``):

==============  ==========================================================================================
``throttle``    every call answers 400 ``ThrottlingException`` (botocore retries it, then gives up)
``limit``       CreateTransformJob answers 400 ``ResourceLimitExceeded`` (an account quota); the rest work
``error``       CreateTransformJob answers 500 ``InternalFailure`` and creates nothing; the rest work
``unavailable`` every call answers 503 ``ServiceUnavailable``
``stuck``       jobs are accepted (InProgress) but never start; StopTransformJob ends them Stopped
``hang``        the transform-job calls are never answered (the client's read timeout fires)
==============  ==========================================================================================

A closed port plays an unreachable endpoint; no mode is needed for it.

It can also play a *slow* SageMaker, for the tests of ``batch-transform benchmark``: ``--provisioning-delay
S`` holds each accepted job InProgress, without TransformStartTime, for S seconds before its instances
start (SageMaker's provisioning and image pull), and ``--record-delay S`` adds S seconds a record to the
model's time (``SlowSageMaker``). Both sides of a benchmark are then measured as a real pair would be.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

# Long enough that any client gives up first; the handler threads are daemons and die with the server.
HANG_S = 300.0
TRANSFORM_JOB_OPERATIONS = frozenset(
    {"CreateTransformJob", "DescribeTransformJob", "ListTransformJobs", "StopTransformJob"}
)


class FaultMode(StrEnum):
    THROTTLE = "throttle"
    LIMIT = "limit"
    ERROR = "error"
    UNAVAILABLE = "unavailable"
    STUCK = "stuck"
    HANG = "hang"


@dataclass(frozen=True)
class FaultAnswer:
    """The error answer a faulty server gives instead of running the operation."""

    code: str
    message: str
    status: int


@dataclass(frozen=True)
class SlowSageMaker:
    """A SageMaker slower than the runner: seconds before a job's instances start, and a record's extra
    seconds."""

    provisioning_delay_s: float = 0.0
    record_delay_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("provisioning_delay_s", "record_delay_s"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be 0 or more seconds; got {value!r}")


def injected_error(mode: FaultMode | None, operation: str) -> FaultAnswer | None:
    """The answer ``mode`` gives ``operation`` in place of the real one; None to run it normally."""
    if mode is FaultMode.THROTTLE:
        return FaultAnswer("ThrottlingException", "Rate exceeded", 400)
    if mode is FaultMode.UNAVAILABLE:
        return FaultAnswer("ServiceUnavailable", "Service is unavailable. Please try again later.", 503)
    if mode is FaultMode.LIMIT and operation == "CreateTransformJob":
        return FaultAnswer(
            "ResourceLimitExceeded",
            "The account-level service limit 'ml.m5.large for transform job usage' is 0 Instances, with "
            "current utilization of 0 Instances and a request delta of 1 Instances. Please use AWS "
            "Service Quotas to request an increase for this quota.",
            400,
        )
    if mode is FaultMode.ERROR and operation == "CreateTransformJob":
        return FaultAnswer("InternalFailure", "An internal error occurred. Try again later.", 500)
    return None


def hold(mode: FaultMode | None, operation: str) -> bool:
    """In ``hang`` mode, hold a transform-job call unanswered; True when the caller must not answer."""
    if mode is not FaultMode.HANG or operation not in TRANSFORM_JOB_OPERATIONS:
        return False
    time.sleep(HANG_S)
    return True


def starts_jobs(mode: FaultMode | None) -> bool:
    """Whether accepted jobs run (``stuck``: they stay InProgress, never started, until stopped)."""
    return mode is not FaultMode.STUCK
