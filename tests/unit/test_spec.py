"""CreateTransformJob validation and parsing (docs/contract.md §1, §2): shapes from botocore, cross-field
rules, not-yet-supported values, and the error text a user sees."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from runner.contract.spec import (
    NOT_SUPPORTED_YET,
    AssembleWith,
    BatchStrategy,
    CompressionType,
    DataProcessing,
    JoinSource,
    S3DataType,
    SplitType,
    TransformJobSpec,
    camel_path,
    parse_transform_job,
    validate_request,
)
from runner.errors import Problem, SpecError, aws_value

SEED: dict[str, Any] = {
    "TransformJobName": "job-1",
    "ModelName": "my-model",
    "MaxPayloadInMB": 6,
    "BatchStrategy": "MultiRecord",
    "MaxConcurrentTransforms": 2,
    "Environment": {"LOG_LEVEL": "debug", "_X1": ""},
    "TransformInput": {
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bucket/in/"}},
        "ContentType": "text/csv",
        "SplitType": "Line",
        "CompressionType": "None",
    },
    "TransformOutput": {"S3OutputPath": "s3://bucket/out", "Accept": "text/csv", "AssembleWith": "Line"},
    "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
}

Edit = Callable[[dict[str, Any]], None]


def seed(edit: Edit | None = None) -> dict[str, Any]:
    request = copy.deepcopy(SEED)
    if edit:
        edit(request)
    return request


def put(*keys: str, value: Any) -> Edit:
    """An edit that sets (or, with value=DROP, removes) the member at ``keys``."""

    def edit(request: dict[str, Any]) -> None:
        target = request
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        if value is DROP:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return edit


DROP = object()
S3_SOURCE = ("TransformInput", "DataSource", "S3DataSource")


def problems_of(request: dict[str, Any]) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        parse_transform_job(request)
    return info.value.problems


# --- the valid seed --------------------------------------------------------------------------------


def test_seed_parses_into_dataclasses() -> None:
    spec = parse_transform_job(seed())
    assert spec.name == "job-1"
    assert spec.model_name == "my-model"
    assert spec.max_payload_mb == 6
    assert spec.max_concurrent_transforms == 2
    assert spec.batch_strategy is BatchStrategy.MULTI_RECORD
    assert dict(spec.environment) == {"LOG_LEVEL": "debug", "_X1": ""}
    tin = spec.transform_input
    assert tin.data_type is S3DataType.S3_PREFIX
    assert tin.s3_uri == "s3://bucket/in/"
    assert tin.content_type == "text/csv"
    assert tin.split_type is SplitType.LINE
    assert tin.compression_type is CompressionType.NONE
    tout = spec.transform_output
    assert (tout.s3_output_path, tout.accept, tout.assemble_with, tout.kms_key_id) == (
        "s3://bucket/out",
        "text/csv",
        AssembleWith.LINE,
        None,
    )
    res = spec.transform_resources
    assert (res.instance_type, res.instance_count, res.volume_kms_key_id) == ("ml.m5.xlarge", 1, None)
    assert spec.model_client_config.invocations_timeout_s == 600
    assert spec.model_client_config.invocations_max_retries == 3
    assert spec.data_processing == DataProcessing()
    assert spec.data_processing.is_default
    assert spec.payload_limit_bytes == 6 * 1_048_576


def test_defaults_when_optional_members_are_absent() -> None:
    def strip(r: dict[str, Any]) -> None:
        for key in ("MaxPayloadInMB", "BatchStrategy", "MaxConcurrentTransforms", "Environment"):
            del r[key]
        for key in ("ContentType", "SplitType", "CompressionType"):
            del r["TransformInput"][key]
        r["TransformOutput"] = {"S3OutputPath": "s3://bucket/out"}

    spec = parse_transform_job(seed(strip))
    assert (spec.max_payload_mb, spec.batch_strategy, spec.max_concurrent_transforms) == (None, None, None)
    assert spec.resolved_max_payload_mb == 6
    assert spec.resolved_batch_strategy is BatchStrategy.MULTI_RECORD
    assert spec.resolved_max_concurrent_transforms == 1
    assert spec.payload_limit_bytes == 6 * 1_048_576
    assert dict(spec.environment) == {}
    assert spec.transform_input.content_type is None
    assert spec.transform_input.split_type is SplitType.NONE
    assert spec.transform_input.compression_type is CompressionType.NONE
    assert spec.transform_output.accept is None
    assert spec.transform_output.assemble_with is AssembleWith.NONE


def test_zero_values() -> None:
    spec = parse_transform_job(seed(lambda r: r.update(MaxConcurrentTransforms=0, MaxPayloadInMB=0)))
    assert spec.max_concurrent_transforms is None  # 0 means unset
    assert spec.resolved_max_concurrent_transforms == 1
    assert spec.max_payload_mb == 0  # 0 is a real value: no cap
    assert spec.payload_limit_bytes is None


@pytest.mark.parametrize(
    "edit",
    [
        put("TransformInput", "CompressionType", value="Gzip"),
        put("BatchStrategy", value="SingleRecord"),
        put("TransformInput", "SplitType", value="None"),  # BatchStrategy with SplitType None: rule 4
        put("MaxConcurrentTransforms", value=16),  # 16 x 6 = 96
        lambda r: r.update(MaxPayloadInMB=100, MaxConcurrentTransforms=1),
        put("TransformResources", "InstanceCount", value=100),
        put("TransformResources", "InstanceType", value="ml.g4dn.xlarge"),
        put("ModelClientConfig", value={"InvocationsTimeoutInSeconds": 3600, "InvocationsMaxRetries": 0}),
        put("DataProcessing", value={"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"}),
        put("Tags", value=[{"Key": "team", "Value": "ml é 1"}]),
        put("TransformOutput", "S3OutputPath", value="s3://bucket"),
        put("TransformOutput", "KmsKeyId", value="arn:aws:kms:us-east-1:123456789012:key/abc-1"),
        put(
            "DataCaptureConfig",
            value={"DestinationS3Uri": "s3://bucket/capture", "GenerateInferenceId": True},
        ),
        put("ExperimentConfig", value={"ExperimentName": "exp-1", "TrialName": "t1"}),
    ],
)
def test_valid_variants(edit: Edit) -> None:
    parse_transform_job(seed(edit))


@pytest.mark.parametrize("split_type", [SplitType.RECORDIO, SplitType.TFRECORD])
def test_recordio_and_tfrecord_are_accepted(split_type: SplitType) -> None:
    spec = parse_transform_job(seed(put("TransformInput", "SplitType", value=str(split_type))))
    assert spec.transform_input.split_type is split_type


@pytest.mark.parametrize(
    "edit",
    [
        put(*S3_SOURCE, "S3DataType", value="ManifestFile"),
        put("DataProcessing", value={"InputFilter": "$[1:]"}),
        put("DataProcessing", value={"OutputFilter": "$[0,-1]"}),
        put("DataProcessing", value={"JoinSource": "Input"}),
        put(
            "DataProcessing", value={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,5:]"}
        ),
        lambda r: r.update(
            DataProcessing={
                "InputFilter": "$.features",
                "JoinSource": "Input",
                "OutputFilter": "$['id', 'x']",
            },
            TransformInput={**r["TransformInput"], "ContentType": "application/jsonlines"},
            TransformOutput={**r["TransformOutput"], "Accept": "application/json"},
        ),
        lambda r: r.update(  # SplitType None: each application/json object is one record
            DataProcessing={"JoinSource": "Input"},
            TransformInput={**r["TransformInput"], "ContentType": "application/json", "SplitType": "None"},
            TransformOutput={**r["TransformOutput"], "Accept": "application/json"},
        ),
    ],
)
def test_manifest_and_data_processing_are_accepted(edit: Edit) -> None:
    request = seed(edit)
    spec = parse_transform_job(request)
    dp = request.get("DataProcessing", {})
    assert spec.data_processing == DataProcessing(
        dp.get("InputFilter", "$"), dp.get("OutputFilter", "$"), JoinSource(dp.get("JoinSource", "None"))
    )
    assert (
        spec.transform_input.data_type
        == request["TransformInput"]["DataSource"]["S3DataSource"]["S3DataType"]
    )


def test_model_client_config_and_gzip_values() -> None:
    def edit(r: dict[str, Any]) -> None:
        r["ModelClientConfig"] = {"InvocationsTimeoutInSeconds": 30, "InvocationsMaxRetries": 0}
        r["TransformInput"]["CompressionType"] = "Gzip"
        r["BatchStrategy"] = "SingleRecord"

    spec = parse_transform_job(seed(edit))
    assert spec.model_client_config.invocations_timeout_s == 30
    assert spec.model_client_config.invocations_max_retries == 0
    assert spec.transform_input.compression_type is CompressionType.GZIP
    assert spec.batch_strategy is BatchStrategy.SINGLE_RECORD


# --- invalid requests: path, value and what is allowed in the message --------------------------------

INVALID: list[tuple[str, Edit, str, str]] = [
    # (id, edit, field path, text that must appear in the message besides path and value)
    (
        "name-pattern",
        put("TransformJobName", value="bad_name"),
        "transformJobName",
        "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
    ),
    (
        "name-too-long",
        put("TransformJobName", value="a" * 64),
        "transformJobName",
        "less than or equal to 63",
    ),
    ("name-missing", put("TransformJobName", value=DROP), "transformJobName", "Member must not be null"),
    ("model-name-pattern", put("ModelName", value="-m"), "modelName", "regular expression pattern"),
    (
        "nested-required",
        put(*S3_SOURCE, "S3Uri", value=DROP),
        "transformInput.dataSource.s3DataSource.s3Uri",
        "Member must not be null",
    ),
    (
        "output-required",
        put("TransformOutput", "S3OutputPath", value=DROP),
        "transformOutput.s3OutputPath",
        "null",
    ),
    (
        "batch-strategy-enum",
        put("BatchStrategy", value="Multi"),
        "batchStrategy",
        "[MultiRecord, SingleRecord]",
    ),
    (
        "split-type-enum",
        put("TransformInput", "SplitType", value="line"),
        "transformInput.splitType",
        "[None, Line, RecordIO, TFRecord]",
    ),
    (
        "compression-enum",
        put("TransformInput", "CompressionType", value="Zip"),
        "transformInput.compressionType",
        "[None, Gzip]",
    ),
    (
        "assemble-enum",
        put("TransformOutput", "AssembleWith", value="Newline"),
        "transformOutput.assembleWith",
        "[None, Line]",
    ),
    (
        "data-type-enum",
        put(*S3_SOURCE, "S3DataType", value="Prefix"),
        "transformInput.dataSource.s3DataSource.s3DataType",
        "[ManifestFile, S3Prefix, AugmentedManifestFile, Converse]",
    ),
    (
        "join-source-enum",
        put("DataProcessing", "JoinSource", value="Output"),
        "dataProcessing.joinSource",
        "[Input, None]",
    ),
    ("payload-101", put("MaxPayloadInMB", value=101), "maxPayloadInMB", "less than or equal to 100"),
    ("payload-negative", put("MaxPayloadInMB", value=-1), "maxPayloadInMB", "greater than or equal to 0"),
    (
        "mct-negative",
        put("MaxConcurrentTransforms", value=-2),
        "maxConcurrentTransforms",
        "greater than or equal to 0",
    ),
    ("mct-x-payload", put("MaxConcurrentTransforms", value=20), "maxConcurrentTransforms", "20 x 6 = 120"),
    (
        "mct-x-explicit-payload",
        lambda r: r.update(MaxConcurrentTransforms=11, MaxPayloadInMB=10),
        "maxConcurrentTransforms",
        "11 x 10 = 110",
    ),
    (
        "mct-x-default-payload",
        lambda r: r.update(MaxConcurrentTransforms=17, MaxPayloadInMB=None),
        "maxConcurrentTransforms",
        "17 x 6 = 102",
    ),
    (
        "instance-count-0",
        put("TransformResources", "InstanceCount", value=0),
        "transformResources.instanceCount",
        ">= 1",
    ),
    (
        "instance-count-101",
        put("TransformResources", "InstanceCount", value=101),
        "transformResources.instanceCount",
        "less than or equal to 100",
    ),
    (
        "instance-type-unknown",
        put("TransformResources", "InstanceType", value="ml.m5.huge"),
        "transformResources.instanceType",
        "ml.m5.xlarge",
    ),
    (
        "https-input",
        put(*S3_SOURCE, "S3Uri", value="https://bucket/in/"),
        "transformInput.dataSource.s3DataSource.s3Uri",
        "s3://",
    ),
    (
        "https-output",
        put("TransformOutput", "S3OutputPath", value="https://bucket/out"),
        "transformOutput.s3OutputPath",
        "s3://",
    ),
    (
        "ftp-input",
        put(*S3_SOURCE, "S3Uri", value="ftp://bucket/in/"),
        "transformInput.dataSource.s3DataSource.s3Uri",
        "(https|s3)",
    ),
    (
        "short-bucket",
        put("TransformOutput", "S3OutputPath", value="s3://ab/out"),
        "transformOutput.s3OutputPath",
        "3 to 63",
    ),
    ("unknown-top-level", put("Priority", value=1), "priority", "TransformJobName, ModelName"),
    (
        "unknown-nested",
        put("TransformInput", "Splitter", value="Line"),
        "transformInput.splitter",
        "DataSource, ContentType",
    ),
    (
        "env-key-pattern",
        put("Environment", value={"1BAD": "x"}),
        "environment.1BAD",
        "[a-zA-Z_][a-zA-Z0-9_]{0,1023}",
    ),
    (
        "env-too-many",
        put("Environment", value={f"K{i}": "v" for i in range(17)}),
        "environment",
        "less than or equal to 16",
    ),
    (
        "env-value-too-long",
        put("Environment", value={"K": "v" * 10241}),
        "environment.K",
        "less than or equal to 10240",
    ),
    ("env-value-type", put("Environment", value={"K": 1}), "environment.K", "string"),
    (
        "timeout-0",
        put("ModelClientConfig", "InvocationsTimeoutInSeconds", value=0),
        "modelClientConfig.invocationsTimeoutInSeconds",
        "greater than or equal to 1",
    ),
    (
        "timeout-3601",
        put("ModelClientConfig", "InvocationsTimeoutInSeconds", value=3601),
        "modelClientConfig.invocationsTimeoutInSeconds",
        "less than or equal to 3600",
    ),
    (
        "retries-4",
        put("ModelClientConfig", "InvocationsMaxRetries", value=4),
        "modelClientConfig.invocationsMaxRetries",
        "less than or equal to 3",
    ),
    ("string-for-int", put("MaxPayloadInMB", value="6"), "maxPayloadInMB", "integer"),
    (
        "bool-for-int",
        put("TransformResources", "InstanceCount", value=True),
        "transformResources.instanceCount",
        "integer",
    ),
    ("float-for-int", put("MaxConcurrentTransforms", value=2.0), "maxConcurrentTransforms", "integer"),
    ("list-for-structure", put("TransformInput", value=["x"]), "transformInput", "structure"),
    (
        "jsonpath-two-ranges",
        put("DataProcessing", value={"InputFilter": "$[0:2,246:]"}),
        "dataProcessing.inputFilter",
        "Invalid JsonPath: $[0:2,246:]: only single range filters of format (eg: [1:5]) are supported. "
        "Format [0:2,246:] is not supported",
    ),
    (
        "jsonpath-nested-multi-select",
        lambda r: r.update(
            DataProcessing={"OutputFilter": "$['a','b.c']"},
            TransformOutput={**r["TransformOutput"], "Accept": "application/json"},
        ),
        "dataProcessing.outputFilter",
        "Invalid OutputFilter: \"$['a','b.c']\". nested paths inside a multi-select are not supported",
    ),
    (
        "jsonpath-csv-needs-indexes",
        put("DataProcessing", value={"InputFilter": "$.features"}),
        "dataProcessing.inputFilter",
        "A text/csv record is an array of fields",
    ),
    (
        "data-processing-split-none-csv",
        lambda r: r.update(
            DataProcessing={"InputFilter": "$[1:]"},
            TransformInput={**r["TransformInput"], "SplitType": "None"},
        ),
        "transformInput.splitType",
        "SplitType None makes each object one record, which only application/json can be",
    ),
    (
        "data-processing-join-mixed-types",
        lambda r: r.update(
            DataProcessing={"JoinSource": "Input"},
            TransformOutput={**r["TransformOutput"], "Accept": "application/json"},
        ),
        "transformOutput.accept",
        "ContentType (text/csv) and Accept must both be text/csv or both JSON",
    ),
    (
        "jsonpath-characters",
        put("DataProcessing", value={"OutputFilter": "$.a_b"}),
        "dataProcessing.outputFilter",
        'Unexpected "_" in JsonPath',
    ),
    (
        "data-processing-content-type",
        lambda r: r.update(
            DataProcessing={"JoinSource": "Input"},
            TransformInput={**r["TransformInput"], "ContentType": "application/x-npy"},
        ),
        "transformInput.contentType",
        "[text/csv, application/json, application/jsonlines]",
    ),
    (
        "augmented-manifest",
        put(*S3_SOURCE, "S3DataType", value="AugmentedManifestFile"),
        "transformInput.dataSource.s3DataSource.s3DataType",
        "not compatible with batch transform; supported: [S3Prefix, ManifestFile]",
    ),
    (
        "converse",
        put(*S3_SOURCE, "S3DataType", value="Converse"),
        "transformInput.dataSource.s3DataSource.s3DataType",
        "not compatible with batch transform",
    ),
    (
        "tag-missing-value",
        put("Tags", value=[{"Key": "a", "Value": "b"}, {"Key": "k"}]),
        "tags.2.value",
        "null",
    ),
    ("tag-key-pattern", put("Tags", value=[{"Key": "a\tb", "Value": "v"}]), "tags.1.key", r"\p{L}"),
    ("too-many-tags", put("Tags", value=[{"Key": f"k{i}", "Value": ""} for i in range(51)]), "tags", "50"),
    (
        "ami-version-pattern",
        put("TransformResources", "TransformAmiVersion", value="al2-"),
        "transformResources.transformAmiVersion",
        "pattern",
    ),
]


def _given(request: dict[str, Any], path: str) -> Any:
    """The value at ``path`` in the request (None when absent), found by camelCase path."""
    value: Any = request
    for part in path.split("."):
        if isinstance(value, list):
            value = value[int(part) - 1]
            continue
        if not isinstance(value, dict):
            return None
        match = [k for k in value if camel_path(k) == part or k == part]
        if not match:
            return None
        value = value[match[0]]
    return value


@pytest.mark.parametrize(
    ("edit", "path", "allowed"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_request(edit: Edit, path: str, allowed: str) -> None:
    request = seed(edit)
    problems = problems_of(request)
    mine = [p for p in problems if p.path == path]
    assert mine, f"no problem at {path}: {problems}"
    # A bad map key is reported with the key as the value, as AWS does.
    key_problem = any(p.constraint.startswith("Map keys") for p in mine)
    given = path.rsplit(".", 1)[1] if key_problem else _given(request, path)
    message = str(SpecError(problems))
    # ">= 1" is shorthand for botocore's min text.
    allowed = allowed.replace(">= ", "greater than or equal to ")
    assert any(allowed in str(p) for p in mine), f"{allowed!r} not in {[str(p) for p in mine]}"
    assert f"at '{path}'" in message
    assert any(p.value == given for p in mine), (given, mine)
    assert f"Value {aws_value(given)} at '{path}' failed to satisfy constraint: " in message


def test_message_form_matches_aws() -> None:
    problems = problems_of(seed(put("BatchStrategy", value="Multi")))
    assert str(SpecError(problems)) == (
        "1 validation error detected: Value 'Multi' at 'batchStrategy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [MultiRecord, SingleRecord]"
    )


@pytest.mark.parametrize(
    ("member", "value", "text"),
    [
        (
            "InvocationsTimeoutInSeconds",
            3601,
            "1 validation error detected: Value '3601' at 'modelClientConfig.invocationsTimeoutInSeconds' "
            "failed to satisfy constraint: Member must have value less than or equal to 3600",
        ),
        (
            "InvocationsMaxRetries",
            4,
            "1 validation error detected: Value '4' at 'modelClientConfig.invocationsMaxRetries' "
            "failed to satisfy constraint: Member must have value less than or equal to 3",
        ),
        (
            "InvocationsTimeoutInSeconds",
            0,
            "1 validation error detected: Value '0' at 'modelClientConfig.invocationsTimeoutInSeconds' "
            "failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
    ],
)
def test_model_client_config_out_of_range_in_sagemaker_words(member: str, value: int, text: str) -> None:
    # AWS quotes every value as Java's toString in single quotes, numbers included.
    problems = problems_of(seed(put("ModelClientConfig", member, value=value)))
    assert str(SpecError(problems)) == text


def test_values_are_quoted_as_aws_quotes_them() -> None:
    assert [aws_value(v) for v in (None, 7, True, "x", ["a", 1], {"k": None})] == [
        "null",
        "'7'",
        "'true'",
        "'x'",
        "'[a, 1]'",
        "'{k=null}'",
    ]


def test_every_problem_reported_at_once() -> None:
    def edit(r: dict[str, Any]) -> None:
        r["TransformJobName"] = "bad name"
        del r["ModelName"]
        r["MaxPayloadInMB"] = 101
        r["BatchStrategy"] = "Single"
        r["TransformInput"]["SplitType"] = "Recordio"
        r["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = "https://bucket/in"
        r["TransformResources"]["InstanceCount"] = 0
        r["Environment"] = {"bad-key": "v"}
        r["Extra"] = True

    paths = {p.path for p in problems_of(seed(edit))}
    assert paths >= {
        "transformJobName",
        "modelName",
        "maxPayloadInMB",
        "batchStrategy",
        "transformInput.splitType",
        "transformInput.dataSource.s3DataSource.s3Uri",
        "transformResources.instanceCount",
        "environment.bad-key",
        "extra",
    }


def test_no_double_report_for_one_bad_value() -> None:
    # 101 MB breaks the 100 MB cap; the product rule must not report it again.
    problems = problems_of(seed(lambda r: r.update(MaxPayloadInMB=101, MaxConcurrentTransforms=1)))
    assert [p.path for p in problems] == ["maxPayloadInMB"]
    # An unknown instance type is reported once (enum), not also by the instance table.
    problems = problems_of(seed(put("TransformResources", "InstanceType", value="ml.x")))
    assert [p.path for p in problems] == ["transformResources.instanceType"]


def test_request_echo_is_a_deep_copy() -> None:
    request = seed()
    spec = parse_transform_job(request)
    request["TransformInput"]["ContentType"] = "application/json"
    request["Environment"]["NEW"] = "1"
    request["TransformJobName"] = "other"
    assert spec.request == SEED
    assert dict(spec.environment) == SEED["Environment"]
    with pytest.raises(TypeError):
        spec.environment["X"] = "1"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.request["X"] = 1  # type: ignore[index]


def test_spec_pickles() -> None:
    spec = parse_transform_job(seed())
    again = pickle.loads(pickle.dumps(spec))
    assert isinstance(again, TransformJobSpec)
    assert again == spec


def test_not_supported_yet_is_one_table() -> None:
    assert not NOT_SUPPORTED_YET.get("transformInput.splitType")  # every SplitType runs
    assert "dataProcessing.joinSource" not in NOT_SUPPORTED_YET
    assert CompressionType.GZIP not in NOT_SUPPORTED_YET.get("transformInput.compressionType", set())


def test_enum_values_are_the_aws_strings() -> None:
    from runner.contract.shapes import _input_shape

    shape = _input_shape("CreateTransformJob")
    tin = shape.members["TransformInput"]
    assert {*SplitType} == set(tin.members["SplitType"].enum)
    assert {*CompressionType} == set(tin.members["CompressionType"].enum)
    assert {*S3DataType} == set(tin.members["DataSource"].members["S3DataSource"].members["S3DataType"].enum)
    assert {*BatchStrategy} == set(shape.members["BatchStrategy"].enum)
    assert {*AssembleWith} == set(shape.members["TransformOutput"].members["AssembleWith"].enum)
    assert {*JoinSource} == set(shape.members["DataProcessing"].members["JoinSource"].enum)


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        (("TransformJobName",), "transformJobName"),
        (
            ("TransformInput", "DataSource", "S3DataSource", "S3Uri"),
            "transformInput.dataSource.s3DataSource.s3Uri",
        ),
        (("MaxPayloadInMB",), "maxPayloadInMB"),
        (("Tags", 1, "Key"), "tags.1.key"),
    ],
)
def test_camel_path(parts: tuple[str | int, ...], path: str) -> None:
    assert camel_path(*parts) == path


def test_validate_request_other_operations() -> None:
    good = {"ModelName": "m", "PrimaryContainer": {"Image": "img:1", "Environment": {"A": "b"}}}
    assert validate_request("CreateModel", good) == []
    bad = {"PrimaryContainer": {"Image": "has space", "Mode": "Multi"}}
    paths = {p.path for p in validate_request("CreateModel", bad)}
    assert paths == {"modelName", "primaryContainer.image", "primaryContainer.mode"}
    with pytest.raises(ValueError, match="NoSuchOperation"):
        validate_request("NoSuchOperation", {})


def test_every_pattern_of_the_service_model_translates() -> None:
    # Patterns are Java regexes; one Python cannot compile would silently go unchecked.
    from runner.contract.shapes import _compile, _service_model

    model = _service_model()
    patterns = {model.shape_for(n).metadata.get("pattern") for n in model.shape_names} - {None}
    assert patterns
    assert [p for p in patterns if _compile(p) is None] == []


def test_minor_unicode_categories_translate() -> None:
    # Newer botocore models exclude control and format characters with \p{Cc} and \p{Cf}.
    from runner.contract.shapes import _compile

    pattern = _compile(r"s3://[a-z0-9]+(/[^\s\p{Cc}\p{Cf}]*)?")
    assert pattern is not None
    assert pattern.fullmatch("s3://bucket/k\u00e9y/x.csv")
    assert not pattern.fullmatch("s3://bucket/a\x07b")
    assert not pattern.fullmatch("s3://bucket/a\u200bb")  # ZERO WIDTH SPACE is Cf


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("plain", True),
        ("ünïcode 42", True),
        ("a:b/c=d+e-f@g_h.i", True),
        ("tab\there", False),
        ("a#b", False),
    ],
)
def test_unicode_class_patterns(value: str, ok: bool) -> None:
    problems = validate_request(
        "AddTags", {"ResourceArn": "arn:aws:sagemaker:x", "Tags": [{"Key": value, "Value": ""}]}
    )
    assert (not [p for p in problems if p.path == "tags.1.key"]) == ok
