"""The settings a job runs with (docs/contract.md §5.1): MaxConcurrentTransforms, MaxPayloadInMB and
BatchStrategy come from the request, else the model's execution parameters, else the defaults; the
combination is checked again after the model's answer. A member of the model's answer that SageMaker
could not use (a wrong type, out of range, an unknown strategy) is ignored, as SageMaker ignores it,
and said so in the job's notes and Describe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.contract.spec import (
    DEFAULT_MAX_CONCURRENT_TRANSFORMS,
    DEFAULT_MAX_PAYLOAD_MB,
    MAX_PAYLOAD_LIMIT_MB,
    BatchStrategy,
    TransformJobSpec,
)
from runner.errors import Problem, SpecError

# The spellings a model may answer BatchStrategy with: the toolkit's and the request's.
BATCH_STRATEGIES = {
    "MULTI_RECORD": BatchStrategy.MULTI_RECORD,
    "SINGLE_RECORD": BatchStrategy.SINGLE_RECORD,
    "MultiRecord": BatchStrategy.MULTI_RECORD,
    "SingleRecord": BatchStrategy.SINGLE_RECORD,
}
# Integer members: (lowest, highest or None), the request's own ranges.
INTEGER_PARAMETERS = {"MaxConcurrentTransforms": (0, None), "MaxPayloadInMB": (0, MAX_PAYLOAD_LIMIT_MB)}


@dataclass(frozen=True)
class ModelParameters:
    """What a model's execution parameters can be used of: the valid known members (unknown members
    and nulls left out, BatchStrategy as the request spells it), and what was ignored, each naming
    the member, its value and what is allowed."""

    values: Mapping[str, Any]
    ignored: tuple[str, ...] = ()


def model_parameters(answer: Any) -> ModelParameters:
    """``answer``: the model's execution parameters as decoded JSON (None when it has none); a body
    that is not JSON comes as bytes or str."""
    if answer is None:
        return ModelParameters({})
    if not isinstance(answer, dict):
        shown = answer if isinstance(answer, (dict, list, int, float)) else _preview(answer)
        return ModelParameters({}, (f"the answer {shown!r} is not a JSON object",))
    values: dict[str, Any] = {}
    ignored: list[str] = []
    for key, (low, high) in INTEGER_PARAMETERS.items():
        value = answer.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            allowed = f"an integer {low}..{high}" if high else f"an integer >= {low}"
            ignored.append(f"{key}={value!r} (allowed: {allowed})")
            continue
        values[key] = value
    strategy = answer.get("BatchStrategy")
    if strategy is not None:
        if isinstance(strategy, str) and strategy in BATCH_STRATEGIES:
            values["BatchStrategy"] = BATCH_STRATEGIES[strategy]
        else:
            ignored.append(f"BatchStrategy={strategy!r} (allowed: {', '.join(BATCH_STRATEGIES)})")
    return ModelParameters(values, tuple(ignored))


def _preview(body: Any, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else str(body)
    return text[:limit] + ("…" if len(text) > limit else "")


@dataclass(frozen=True)
class Resolved:
    """Request > the model's execution parameters > defaults (docs/contract.md §5.1)."""

    max_concurrent_transforms: int
    max_payload_mb: int
    batch_strategy: BatchStrategy

    def describe(self) -> dict[str, Any]:
        return {
            "MaxConcurrentTransforms": self.max_concurrent_transforms,
            "MaxPayloadInMB": self.max_payload_mb,
            "BatchStrategy": str(self.batch_strategy),
        }


def resolve(spec: TransformJobSpec, params: Mapping[str, Any] | None) -> Resolved:
    """``params``: the usable members of the model's answer (``ModelParameters.values``)."""
    p = params or {}
    strategy = spec.batch_strategy or p.get("BatchStrategy")
    resolved = Resolved(
        max_concurrent_transforms=spec.max_concurrent_transforms
        or int(p.get("MaxConcurrentTransforms") or DEFAULT_MAX_CONCURRENT_TRANSFORMS),
        max_payload_mb=spec.max_payload_mb
        if spec.max_payload_mb is not None
        else int(p.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)),
        batch_strategy=BatchStrategy(strategy or BatchStrategy.MULTI_RECORD),
    )
    mct, mb = resolved.max_concurrent_transforms, resolved.max_payload_mb
    if mb > MAX_PAYLOAD_LIMIT_MB or mct * mb > MAX_PAYLOAD_LIMIT_MB:
        raise SpecError(
            [
                Problem(
                    "maxConcurrentTransforms",
                    mct,
                    f"MaxConcurrentTransforms x MaxPayloadInMB must be at most {MAX_PAYLOAD_LIMIT_MB} after "
                    f"applying the model's execution parameters {dict(p)}; got {mct} x {mb}",
                )
            ]
        )
    return resolved
