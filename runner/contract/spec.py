"""CreateTransformJob request -> validated, frozen dataclasses (docs/contract.md §1, §2).

Shape rules (required, type, length/value bounds, pattern, enum, unknown members) are read from
botocore's own ``sagemaker`` service model by ``runner.contract.shapes``, never copied by hand.
Cross-field rules, the documented maxima botocore lacks, and what this runner does not run yet
follow. Every problem is collected into one SpecError, with AWS camelCase paths
(``transformInput.splitType``, ``tags.1.key``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from runner.contract.instances import INSTANCE_TYPES, unknown_instance_type
from runner.contract.jsonpath import CSV, JSON, jsonpath_problem
from runner.contract.shapes import camel_path, validate_request
from runner.errors import Problem, SpecError


class S3DataType(StrEnum):
    S3_PREFIX = "S3Prefix"
    MANIFEST_FILE = "ManifestFile"
    AUGMENTED_MANIFEST_FILE = "AugmentedManifestFile"
    CONVERSE = "Converse"


class SplitType(StrEnum):
    NONE = "None"
    LINE = "Line"
    RECORDIO = "RecordIO"
    TFRECORD = "TFRecord"


class CompressionType(StrEnum):
    NONE = "None"
    GZIP = "Gzip"


class BatchStrategy(StrEnum):
    MULTI_RECORD = "MultiRecord"
    SINGLE_RECORD = "SingleRecord"


class AssembleWith(StrEnum):
    NONE = "None"
    LINE = "Line"


class JoinSource(StrEnum):
    NONE = "None"
    INPUT = "Input"


DEFAULT_MAX_PAYLOAD_MB = 6
DEFAULT_MAX_CONCURRENT_TRANSFORMS = 1
MAX_PAYLOAD_LIMIT_MB = 100
MAX_INSTANCE_COUNT = 100
DEFAULT_INVOCATIONS_TIMEOUT_S = 600
DEFAULT_INVOCATIONS_MAX_RETRIES = 3
MIB = 1_048_576
OPERATION = "CreateTransformJob"

# Values SageMaker accepts that this runner does not run yet, by field path; delete an entry (or a
# value) when its feature lands. NON_DEFAULT stands for "any value other than the default".
NON_DEFAULT = "<not default>"
NOT_SUPPORTED_YET: Mapping[str, frozenset[str]] = MappingProxyType({})
# Documented maxima the service model lacks (docs/contract.md §1, §2 rule 1).
EXTRA_MAXIMA: Mapping[tuple[str, ...], int] = MappingProxyType(
    {("MaxPayloadInMB",): MAX_PAYLOAD_LIMIT_MB, ("TransformResources", "InstanceCount"): MAX_INSTANCE_COUNT}
)
# S3DataType values of the shared enum that batch transform itself refuses (docs/contract.md §2 rule 11).
NOT_FOR_TRANSFORM = {
    S3DataType.AUGMENTED_MANIFEST_FILE: "AugmentedManifestFile is not compatible with batch transform",
    S3DataType.CONVERSE: "Converse is a training data type, not compatible with batch transform",
}
# Fields NOT_SUPPORTED_YET can restrict, with the values the runner may run (the default first).
_RUNNER_VALUES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("TransformInput", "SplitType"), tuple(SplitType)),
    (("TransformInput", "DataSource", "S3DataSource", "S3DataType"), ("S3Prefix", "ManifestFile")),
    (("DataProcessing", "InputFilter"), ("$",)),
    (("DataProcessing", "OutputFilter"), ("$",)),
    (("DataProcessing", "JoinSource"), tuple(JoinSource)),
)
JSONPATH_OPERATORS = ("$", "[", "]", "*", ".", " ", ",", ":", "-", "'")
DATA_PROCESSING_CONTENT_TYPES = ("text/csv", "application/json", "application/jsonlines")


@dataclass(frozen=True)
class TransformInput:
    data_type: S3DataType
    s3_uri: str
    content_type: str | None
    compression_type: CompressionType
    split_type: SplitType


@dataclass(frozen=True)
class TransformOutput:
    s3_output_path: str
    accept: str | None
    assemble_with: AssembleWith
    kms_key_id: str | None


@dataclass(frozen=True)
class TransformResources:
    instance_type: str
    instance_count: int
    volume_kms_key_id: str | None


@dataclass(frozen=True)
class ModelClientConfig:
    invocations_timeout_s: int = DEFAULT_INVOCATIONS_TIMEOUT_S
    invocations_max_retries: int = DEFAULT_INVOCATIONS_MAX_RETRIES


@dataclass(frozen=True)
class DataProcessing:
    input_filter: str = "$"
    output_filter: str = "$"
    join_source: JoinSource = JoinSource.NONE

    @property
    def is_default(self) -> bool:
        return self == DataProcessing()


@dataclass(frozen=True)
class TransformJobSpec:
    name: str
    model_name: str
    max_concurrent_transforms: int | None  # None when absent or 0 (0 means unset)
    max_payload_mb: int | None  # None when absent (0 is a real value: no cap)
    batch_strategy: BatchStrategy | None  # None when absent
    model_client_config: ModelClientConfig
    environment: Mapping[str, str]
    transform_input: TransformInput
    transform_output: TransformOutput
    transform_resources: TransformResources
    data_processing: DataProcessing
    request: Mapping[str, Any]  # deep copy of the request, echoed by DescribeTransformJob

    def __post_init__(self) -> None:
        # Read-only views; the request is copied so later changes by the caller cannot leak in.
        object.__setattr__(self, "environment", MappingProxyType(dict(self.environment)))
        object.__setattr__(self, "request", MappingProxyType(copy.deepcopy(dict(self.request))))

    def __reduce__(self) -> tuple[Any, ...]:
        # mappingproxy does not pickle; rebuild from plain dicts (__post_init__ wraps them again).
        values = (getattr(self, f.name) for f in fields(self))
        return (type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values))

    @property
    def resolved_max_payload_mb(self) -> int:
        return DEFAULT_MAX_PAYLOAD_MB if self.max_payload_mb is None else self.max_payload_mb

    @property
    def resolved_batch_strategy(self) -> BatchStrategy:
        return self.batch_strategy or BatchStrategy.MULTI_RECORD

    @property
    def resolved_max_concurrent_transforms(self) -> int:
        return self.max_concurrent_transforms or DEFAULT_MAX_CONCURRENT_TRANSFORMS

    @property
    def payload_limit_bytes(self) -> int | None:
        """The payload byte cap, or None for MaxPayloadInMB=0 (no cap, streamed)."""
        return self.resolved_max_payload_mb * MIB or None


# --- CreateTransformJob: cross-field rules and parsing ---------------------------------------------


def _get(request: Mapping[str, Any], *keys: str) -> Any:
    value: Any = request
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _extra_problems(request: Mapping[str, Any], bad: set[str]) -> list[Problem]:
    """docs/contract.md §2 rules on fields whose shape is already valid (``bad`` = paths with problems)."""
    problems: list[Problem] = []

    def field(*keys: str) -> tuple[str, Any]:
        path = camel_path(*keys)
        return path, (None if path in bad else _get(request, *keys))

    for keys, maximum in EXTRA_MAXIMA.items():
        path, value = field(*keys)
        if value is not None and value > maximum:
            problems.append(Problem(path, value, f"Member must have value less than or equal to {maximum}"))
            bad.add(path)
    path, mct = field("MaxConcurrentTransforms")
    mb_path, mb = field("MaxPayloadInMB")
    if mct and mb_path not in bad:
        mb_used = DEFAULT_MAX_PAYLOAD_MB if mb is None else mb
        if mct * mb_used > MAX_PAYLOAD_LIMIT_MB:
            default = " (MaxPayloadInMB defaults to 6 when absent)" if mb is None else ""
            problems.append(
                Problem(
                    path,
                    mct,
                    "MaxConcurrentTransforms x MaxPayloadInMB must be less than or equal to "
                    f"{MAX_PAYLOAD_LIMIT_MB}; got {mct} x {mb_used} = {mct * mb_used}{default}",
                )
            )
    for keys in (
        ("TransformInput", "DataSource", "S3DataSource", "S3Uri"),
        ("TransformOutput", "S3OutputPath"),
    ):
        path, uri = field(*keys)
        if uri is not None:
            problems.extend(_s3_uri_problems(path, uri))
    path, data_type = field("TransformInput", "DataSource", "S3DataSource", "S3DataType")
    if data_type in NOT_FOR_TRANSFORM:
        not_yet = NOT_SUPPORTED_YET.get(path, frozenset())
        supported = [t for t in S3DataType if t not in NOT_FOR_TRANSFORM and t not in not_yet]
        problems.append(
            Problem(path, data_type, f"{NOT_FOR_TRANSFORM[data_type]}; supported: [{', '.join(supported)}]")
        )
        bad.add(path)
    problems.extend(_data_processing_problems(request, bad))
    problems.extend(_not_supported_yet(request, bad))
    path, instance_type = field("TransformResources", "InstanceType")
    if instance_type is not None and instance_type not in INSTANCE_TYPES:
        problems.append(unknown_instance_type(instance_type))
    return problems


def _s3_uri_problems(path: str, uri: str) -> list[Problem]:
    # The model's pattern also allows https://; the runner reads and writes s3:// URIs only.
    if not uri.startswith("s3://"):
        return [
            Problem(path, uri, "Member must be an s3://bucket/prefix URI; https:// URIs are not supported")
        ]
    bucket = uri[len("s3://") :].split("/", 1)[0]
    if not 3 <= len(bucket) <= 63:
        return [Problem(path, uri, f"S3 bucket names have 3 to 63 characters; got {bucket!r}")]
    return []


def _data_processing_problems(request: Mapping[str, Any], bad: set[str]) -> list[Problem]:
    """JsonPath characters (§2 rule 9) and content types (§2 rule 10)."""
    dp = _get(request, "DataProcessing")
    if not isinstance(dp, Mapping) or "dataProcessing" in bad:
        return []
    problems: list[Problem] = []
    operators = "[" + ", ".join(f"'{c}'" for c in JSONPATH_OPERATORS) + "]"
    for key, media in (
        ("InputFilter", ("TransformInput", "ContentType")),
        ("OutputFilter", ("TransformOutput", "Accept")),
    ):
        path, expr = camel_path("DataProcessing", key), dp.get(key)
        if not isinstance(expr, str) or path in bad:
            continue
        unexpected = next((c for c in expr if not c.isalnum() and c not in JSONPATH_OPERATORS), None)
        if unexpected is not None:
            problems.append(
                Problem(
                    path,
                    expr,
                    f'Invalid {key}: "{expr}". Unexpected "{unexpected}" in JsonPath. '
                    f'Supported operators for "{_get(request, *media)}" are {operators}',
                )
            )
        elif (unsupported := jsonpath_problem(key, expr, _get(request, *media))) is not None:
            problems.append(Problem(path, expr, unsupported))
    # Only members already valid count, so one bad value is not reported twice.
    defaults = {"InputFilter": "$", "OutputFilter": "$", "JoinSource": JoinSource.NONE}
    used = [
        k
        for k, v in defaults.items()
        if dp.get(k) not in (None, v) and camel_path("DataProcessing", k) not in bad
    ]
    for parent, key in (("TransformInput", "ContentType"), ("TransformOutput", "Accept")):
        value = _get(request, parent, key)
        if used and value not in DATA_PROCESSING_CONTENT_TYPES and camel_path(parent) not in bad:
            allowed = ", ".join(DATA_PROCESSING_CONTENT_TYPES)
            text = f"Member must be one of [{allowed}] when DataProcessing sets {', '.join(used)}"
            problems.append(Problem(camel_path(parent, key), value, text))
    media = (_get(request, "TransformInput", "ContentType"), _get(request, "TransformOutput", "Accept"))
    if used and not problems and all(m in DATA_PROCESSING_CONTENT_TYPES for m in media):
        split, join = _get(request, "TransformInput", "SplitType"), dp.get("JoinSource")
        setup = setup_problem(*media, split, join)
        problems.extend([Problem(*setup)] if setup and setup[0] not in bad else [])
    return problems


def _not_supported_yet(request: Mapping[str, Any], bad: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    for keys, values in _RUNNER_VALUES:
        path, value = camel_path(*keys), _get(request, *keys)
        unsupported = NOT_SUPPORTED_YET.get(path, frozenset())
        if value is None or path in bad:
            continue
        if value in unsupported or (NON_DEFAULT in unsupported and value != values[0]):
            supported = (
                [values[0]] if NON_DEFAULT in unsupported else [v for v in values if v not in unsupported]
            )
            text = (
                f"{keys[-1]} {value} is not supported yet by this runner; supported: [{', '.join(supported)}]"
            )
            problems.append(Problem(path, value, text))
    return problems


def _data_processing(dp: Mapping[str, Any] | None) -> DataProcessing:
    given = {k: v for k, v in (dp or {}).items() if v is not None}
    return DataProcessing(
        input_filter=given.get("InputFilter", "$"),
        output_filter=given.get("OutputFilter", "$"),
        join_source=JoinSource(given.get("JoinSource", JoinSource.NONE)),
    )


def _or(value: Any, default: Any) -> Any:
    """JSON null counts as absent (0 and "" do not)."""
    return default if value is None else value


def parse_transform_job(request: Mapping[str, Any]) -> TransformJobSpec:
    """Validate a CreateTransformJob request and build its spec; SpecError lists every problem."""
    problems = validate_request(OPERATION, request)
    problems += _extra_problems(request, {p.path for p in problems})
    if problems:
        raise SpecError(problems)
    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    tin, tout, res = request["TransformInput"], request["TransformOutput"], request["TransformResources"]
    client = request.get("ModelClientConfig") or {}
    strategy = request.get("BatchStrategy")
    return TransformJobSpec(
        name=request["TransformJobName"],
        model_name=request["ModelName"],
        max_concurrent_transforms=request.get("MaxConcurrentTransforms") or None,
        max_payload_mb=request.get("MaxPayloadInMB"),
        batch_strategy=BatchStrategy(strategy) if strategy is not None else None,
        model_client_config=ModelClientConfig(
            invocations_timeout_s=_or(
                client.get("InvocationsTimeoutInSeconds"), DEFAULT_INVOCATIONS_TIMEOUT_S
            ),
            invocations_max_retries=_or(client.get("InvocationsMaxRetries"), DEFAULT_INVOCATIONS_MAX_RETRIES),
        ),
        environment=request.get("Environment") or {},
        transform_input=TransformInput(
            data_type=S3DataType(source["S3DataType"]),
            s3_uri=source["S3Uri"],
            content_type=tin.get("ContentType"),
            compression_type=CompressionType(tin.get("CompressionType") or CompressionType.NONE),
            split_type=SplitType(tin.get("SplitType") or SplitType.NONE),
        ),
        transform_output=TransformOutput(
            s3_output_path=tout["S3OutputPath"],
            accept=tout.get("Accept"),
            assemble_with=AssembleWith(tout.get("AssembleWith") or AssembleWith.NONE),
            kms_key_id=tout.get("KmsKeyId"),
        ),
        transform_resources=TransformResources(
            instance_type=res["InstanceType"],
            instance_count=res["InstanceCount"],
            volume_kms_key_id=res.get("VolumeKmsKeyId"),
        ),
        data_processing=_data_processing(request.get("DataProcessing")),
        request=request,
    )


def setup_problem(
    content_type: str | None, accept: str | None, split_type: str | None, join_source: str | None
) -> tuple[str, object, str] | None:
    """(field path, value, constraint) when DataProcessing cannot apply to this input, else None.

    Called only when DataProcessing is not the default and both media types are supported ones.
    """
    split = split_type or "None"
    if split not in ("None", "Line"):
        return (
            "transformInput.splitType",
            split,
            "DataProcessing filters and joins text records: SplitType must be Line "
            "(or None with ContentType application/json)",
        )
    if split == "None" and content_type != JSON:
        return (
            "transformInput.splitType",
            split,
            f"with DataProcessing, SplitType None makes each object one record, which only "
            f"application/json can be; {content_type} records are lines: set SplitType to Line",
        )
    if join_source == "Input" and (content_type == CSV) != (accept == CSV):
        return (
            "transformOutput.accept",
            accept,
            f"JoinSource Input joins each result to its input record, so ContentType ({content_type}) and "
            "Accept must both be text/csv or both JSON (application/json, application/jsonlines)",
        )
    return None
