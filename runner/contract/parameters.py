"""The settings a job runs with (docs/contract.md §5.1): MaxConcurrentTransforms, MaxPayloadInMB and
BatchStrategy come from the request, else the model's execution parameters, else the defaults; the
combination is checked again after the model's answer."""

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
    p = params or {}
    strategy = spec.batch_strategy
    if strategy is None and p.get("BatchStrategy"):
        text = str(p["BatchStrategy"]).replace("_", "").lower()
        strategy = BatchStrategy.SINGLE_RECORD if text == "singlerecord" else BatchStrategy.MULTI_RECORD
    resolved = Resolved(
        max_concurrent_transforms=spec.max_concurrent_transforms
        or int(p.get("MaxConcurrentTransforms") or DEFAULT_MAX_CONCURRENT_TRANSFORMS),
        max_payload_mb=spec.max_payload_mb
        if spec.max_payload_mb is not None
        else int(p.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)),
        batch_strategy=strategy or BatchStrategy.MULTI_RECORD,
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
