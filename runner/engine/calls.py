"""Ray calls whose errors come back as the runner's own: a task or actor method that raised reaches the
caller as a ``RayTaskError`` wrapping the original exception, which is what a user should see."""

from __future__ import annotations

from typing import Any

import ray


def cause_of(error: BaseException) -> BaseException:
    """The exception a Ray task raised, unwrapped from its ``RayTaskError``; any other error as it is."""
    if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None:
        return error.cause
    return error


def ray_get(ref: Any, timeout: float | None = None) -> Any:
    """``ray.get`` that raises what the task raised (a SpecError, a WorkerStartupError, ...)."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as e:
        raise cause_of(e) from None
