"""Bad input, as a user meets it: one table of requests, models and data that must fail, each with the
exact text the user sees, and nothing partial left behind (no ``.out`` of a failed object, no open
multipart upload).

A case fails in one of four places:

* the request: ``batch-transform run`` exits 2 and lists the problem before anything is read (and
  ``batch-transform validate`` prints the same problem);
* the input listing or manifest: exit 2 (or 3 for storage errors) once S3 answers, before any worker;
* the model: the job ends Failed (exit 1) with the FailureReason printed;
* the data: one object fails, its ``.out`` is never written, the others go on.

Data cases share one job per framing (``group``), so the table costs a few Ray jobs, not one per
case: each failing object's message is the ERROR line the runner logs for it (what ``run`` prints on
stderr), and the job's FailureReason is one of them. Everything runs on the real embedded S3 and the
session's local Ray; single cases go through the CLI's ``main`` in this process.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import struct
import tarfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.config import RunnerConfig
from runner.engine.job import run_job
from runner.jobs.store import JobRecord, TransformJobStatus
from runner.model.handler import TK_CONFLICT
from runner.records.splitters.tfrecord import masked_crc
from tests.conftest import Bucket
from tests.integration.conftest import SUM_MODEL, job_request, model_request, write_model
from tests.unit.test_spec import DROP, Edit, put

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

Request = dict[str, Any]
S3_SOURCE = ("TransformInput", "DataSource", "S3DataSource")
ENUM = "Member must satisfy enum value set: "


# The input named by ``<prefix>/manifest.json`` instead of the ``<prefix>/in/`` listing.
MANIFEST = put(
    *S3_SOURCE, value={"S3DataType": "ManifestFile", "S3Uri": "s3://{bucket}/{prefix}/manifest.json"}
)
MANIFEST_URI = "'s3://{bucket}/{prefix}/manifest.json'"
MANIFEST_FORM = '[{"prefix": "s3://bucket/prefix/"}, "relative/key/1", ...]'


def manifest(*entries: Any, prefix: object = "s3://{bucket}/{prefix}/in/") -> dict[str, bytes]:
    """The case's objects: ``in/a.csv`` and a manifest ``[{"prefix": prefix}, *entries]``."""
    return {"in/a.csv": b"1,2\n", "manifest.json": json.dumps([{"prefix": prefix}, *entries]).encode()}


def problem(path: str, value: str, constraint: str) -> str:
    return f"  - Value {value} at '{path}' failed to satisfy constraint: {constraint}"


def tfrecord(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def recordio(data: bytes, cflag: int = 0, magic: int = 0xCED7230A) -> bytes:
    return struct.pack("<II", magic, (cflag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def tarball(members: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    """One bad input and what the user sees for it.

    ``shows``: a whole line of ``run``'s output (a data case: its object's whole ERROR message); a
    trailing ``...`` makes it a prefix of the line. ``{bucket}``, ``{prefix}`` (the case's folder in
    the bucket), ``{tmp}`` (its local folder) and ``{object}`` (a data case's ``bucket/key``) are
    filled in, in ``shows``, request values, object bodies and the model URL alike.
    """

    id: str
    shows: str
    exit_code: int = 1
    edits: tuple[Edit, ...] = ()
    objects: Mapping[str, bytes] = field(default_factory=lambda: {"in/a.csv": b"1,2\n"})
    model_code: str = SUM_MODEL
    model_url: str = "{tmp}/model"  # the local folder holding model_code
    env: Mapping[str, str] = field(default_factory=dict)
    job_text: str | None = None  # the job file's text instead of the request
    static: bool = False  # a request problem: `validate` must find it too
    group: str = ""  # a data case: the job it shares
    body: bytes = b""  # a data case: its object's bytes
    writes: bytes | None = None  # a data case: the .out it leaves (None: none)


def request_case(id: str, shows: str, *edits: Edit) -> Case:
    return Case(id, shows, 2, edits, static=True)


def model_case(id: str, reason: str, **kw: Any) -> Case:
    return Case(id, f"FailureReason: ClientError: {reason}", 1, **kw)


def data_case(group: str, id: str, body: bytes, shows: str, writes: bytes | None = None) -> Case:
    return Case(id, shows, group=group, body=body, writes=writes)


REQUEST_CASES = [
    request_case(
        "name-pattern",
        problem(
            "transformJobName",
            "'bad_name!'",
            "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        put("TransformJobName", value="bad_name!"),
    ),
    request_case(
        "name-too-long",
        problem("transformJobName", repr("n" * 64), "Member must have length less than or equal to 63"),
        put("TransformJobName", value="n" * 64),
    ),
    request_case(
        "payload-over-100",
        problem("maxPayloadInMB", "'101'", "Member must have value less than or equal to 100"),
        put("MaxPayloadInMB", value=101),
    ),
    request_case(
        "concurrency-times-payload",
        problem(
            "maxConcurrentTransforms",
            "'20'",
            "MaxConcurrentTransforms x MaxPayloadInMB must be less than or equal to 100; got 20 x 6 = 120 "
            "(MaxPayloadInMB defaults to 6 when absent)",
        ),
        put("MaxConcurrentTransforms", value=20),
    ),
    request_case(
        "instance-count-zero",
        problem(
            "transformResources.instanceCount", "'0'", "Member must have value greater than or equal to 1"
        ),
        put("TransformResources", "InstanceCount", value=0),
    ),
    request_case(
        "split-type-enum",
        problem("transformInput.splitType", "'Lines'", ENUM + "[None, Line, RecordIO, TFRecord]"),
        put("TransformInput", "SplitType", value="Lines"),
    ),
    request_case(
        "compression-enum",
        problem("transformInput.compressionType", "'Zip'", ENUM + "[None, Gzip]"),
        put("TransformInput", "CompressionType", value="Zip"),
    ),
    request_case(
        "input-uri-https",
        problem(
            "transformInput.dataSource.s3DataSource.s3Uri",
            "'https://example.com/in/'",
            "Member must be an s3://bucket/prefix URI; https:// URIs are not supported",
        ),
        put(*S3_SOURCE, "S3Uri", value="https://example.com/in/"),
    ),
    request_case(
        "output-bucket-too-short",
        problem(
            "transformOutput.s3OutputPath",
            "'s3://ab/out'",
            "S3 bucket names have 3 to 63 characters; got 'ab'",
        ),
        put("TransformOutput", "S3OutputPath", value="s3://ab/out"),
    ),
    request_case(
        "output-path-missing",
        problem("transformOutput.s3OutputPath", "null", "Member must not be null"),
        put("TransformOutput", "S3OutputPath", value=DROP),
    ),
    request_case(
        "instance-type-unknown",
        problem(
            "transformResources.instanceType",
            "'ml.x9.huge'",
            ENUM + "[ml.m4.xlarge, ml.m4.2xlarge, ...",
        ),
        put("TransformResources", "InstanceType", value="ml.x9.huge"),
    ),
    request_case(
        "augmented-manifest",
        problem(
            "transformInput.dataSource.s3DataSource.s3DataType",
            "'AugmentedManifestFile'",
            "AugmentedManifestFile is not compatible with batch transform; "
            "supported: [S3Prefix, ManifestFile]",
        ),
        put(*S3_SOURCE, "S3DataType", value="AugmentedManifestFile"),
    ),
    request_case(
        "invocations-timeout-over-max",
        problem(
            "modelClientConfig.invocationsTimeoutInSeconds",
            "'3601'",
            "Member must have value less than or equal to 3600",
        ),
        put("ModelClientConfig", "InvocationsTimeoutInSeconds", value=3601),
    ),
    request_case(
        "environment-key-pattern",
        problem(
            "environment.1BAD",
            "'1BAD'",
            "Map keys must satisfy constraint: [Member must satisfy regular expression pattern: "
            "[a-zA-Z_][a-zA-Z0-9_]{0,1023}]",
        ),
        put("Environment", value={"1BAD": "x"}),
    ),
    request_case(
        "input-filter-character",
        problem(
            "dataProcessing.inputFilter",
            "'$[0]|x'",
            'Invalid InputFilter: "$[0]|x". Unexpected "|" in JsonPath. '
            + 'Supported operators for "text/csv" are '
            + "['$', '[', ']', '*', '.', ' ', ',', ':', '-', ''']",
        ),
        put("DataProcessing", "InputFilter", value="$[0]|x"),
    ),
    Case(
        "model-name-mismatch",
        problem("modelName", "'other'", "must name the model given with --model ('sum')"),
        2,
        (put("ModelName", value="other"),),
    ),
    Case(
        "job-file-not-json",
        "error: job file {tmp}/job.json is not valid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)",
        2,
        job_text="{not json",
    ),
    Case(
        "job-file-nested-too-deeply",
        "error: job file {tmp}/job.json is not valid JSON: nested too deeply",
        2,
        job_text="[" * 100_000,
    ),
]

WRONG_SECRET = "WRONG-SECRET-bad-input-0123456789abcdef"

PLAN_CASES = [
    Case(
        "missing-input-bucket",
        "error: S3 ListObjectsV2 s3://bi-no-such-bucket-7/in/ failed: NoSuchBucket (HTTP 404): The specified "
        "bucket does not exist; the bucket or key does not exist",
        3,
        (put(*S3_SOURCE, "S3Uri", value="s3://bi-no-such-bucket-7/in/"),),
    ),
    Case(
        "empty-input-prefix",
        problem(
            "transformInput.dataSource.s3DataSource.s3Uri",
            "'s3://{bucket}/{prefix}/in/'",
            'No S3 objects found under S3 URL "s3://{bucket}/{prefix}/in/" given in input data source. '
            "Please ensure that the bucket exists in the selected region (us-east-1), that objects exist "
            'under that S3 prefix, and that the role has "s3:ListBucket" permissions on bucket "{bucket}".',
        ),
        2,
        objects={},
    ),
    Case(
        "wrong-secret-key",
        "error: S3 ListObjectsV2 s3://{bucket}/{prefix}/in/ failed: SignatureDoesNotMatch (HTTP 403): The "
        "request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's permissions",
        3,
        env={"AWS_SECRET_ACCESS_KEY": WRONG_SECRET},
    ),
    Case(
        "wrong-access-key-id",
        "error: S3 ListObjectsV2 s3://{bucket}/{prefix}/in/ failed: InvalidAccessKeyId (HTTP 403): The "
        "access key ID you provided does not exist in our records.; check AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY and the bucket's permissions",
        3,
        env={"AWS_ACCESS_KEY_ID": "AKIABADINPUT00000000"},
    ),
]


def manifest_case(id: str, constraint: str, objects: Mapping[str, bytes]) -> Case:
    return Case(
        id,
        problem("transformInput.dataSource.s3DataSource.s3Uri", MANIFEST_URI, constraint),
        2,
        (MANIFEST,),
        objects,
    )


PLAN_CASES += [
    manifest_case(
        "manifest-not-json",
        "the manifest is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1)",
        {"manifest.json": b"{not json"},
    ),
    manifest_case(
        "manifest-missing",
        "the manifest cannot be read: S3 GetObject s3://{bucket}/{prefix}/manifest.json failed: NoSuchKey "
        "(HTTP 404): The specified key does not exist.; the bucket or key does not exist",
        {"in/a.csv": b"1,2\n"},
    ),
    manifest_case(
        "manifest-without-prefix",
        f"the manifest must be {MANIFEST_FORM}; it starts with '[\"a.csv\"]'",
        {"manifest.json": b'["a.csv"]'},
    ),
    manifest_case(
        "manifest-prefix-not-s3",
        "the manifest's prefix '/data/in/' must be an s3://bucket/prefix URI",
        manifest("a.csv", prefix="/data/in/"),
    ),
    manifest_case(
        "manifest-without-entries",
        f"the manifest lists no objects after its prefix; expected {MANIFEST_FORM}",
        manifest(),
    ),
    manifest_case(
        "manifest-entry-not-string",
        "manifest entry 2 is 7; entries are non-empty strings, keys relative to the prefix",
        manifest("a.csv", 7),
    ),
    manifest_case(
        "manifest-entry-twice",
        "manifest entries 1 and 2 are both 'a.csv'; each object may be listed once (its output is named "
        "after the entry)",
        manifest("a.csv", "a.csv"),
    ),
    manifest_case(
        "manifest-outputs-collide",
        "input objects s3://{bucket}/{prefix}/in/a.csv and s3://{bucket}/{prefix}/in//a.csv would both write "
        "s3://{bucket}/{prefix}/out/a.csv.out; each input object must map to its own output",
        manifest("a.csv", "/a.csv"),
    ),
]

GOOD_TAR = tarball({"code/inference.py": SUM_MODEL.encode()})
MODEL_TAR = "s3://{bucket}/{prefix}/model.tar.gz"
INFERENCE_PY = "{tmp}/model/code/inference.py"

MODEL_CASES = [
    model_case(
        "model-missing-local-file",
        "ModelDataUrl {tmp}/no-such/model.tar.gz: no such file or folder",
        model_url="{tmp}/no-such/model.tar.gz",
    ),
    model_case(
        "model-missing-s3-object",
        f"ModelDataUrl {MODEL_TAR}: S3 HeadObject {MODEL_TAR} failed: 404: Not Found; the bucket or key does "
        "not exist",
        model_url=MODEL_TAR,
    ),
    model_case(
        "model-empty-s3-prefix",
        "ModelDataUrl s3://{bucket}/{prefix}/model/: no object or prefix with that name",
        model_url="s3://{bucket}/{prefix}/model/",
    ),
    model_case(
        "model-tar-not-an-archive",
        f"ModelDataUrl {MODEL_TAR}: cannot extract the model archive: the file is not a tar archive "
        "(plain, or compressed with gzip, bzip2 or xz); a model archive is a tar.gz of the model folder",
        model_url=MODEL_TAR,
        objects={"in/a.csv": b"1,2\n", "model.tar.gz": b"<html>Not Found</html>\n"},
    ),
    model_case(
        "model-tar-gzip-not-tar",
        f"ModelDataUrl {MODEL_TAR}: cannot extract the model archive: the file starts like gzip but is not a "
        "valid tar.gz: truncated header",
        model_url=MODEL_TAR,
        objects={"in/a.csv": b"1,2\n", "model.tar.gz": gzip.compress(b"print('not a tarball')\n")},
    ),
    model_case(
        "model-tar-truncated",
        f"ModelDataUrl {MODEL_TAR}: cannot extract the model archive: the file is truncated (Compressed file "
        "ended before the end-of-stream marker was reached)",
        model_url=MODEL_TAR,
        objects={"in/a.csv": b"1,2\n", "model.tar.gz": GOOD_TAR[: len(GOOD_TAR) // 2]},
    ),
    model_case(
        "model-tar-empty",
        f"ModelDataUrl {MODEL_TAR}: cannot extract the model archive: the file is empty; a model archive "
        "is a tar.gz of the model folder",
        model_url=MODEL_TAR,
        objects={"in/a.csv": b"1,2\n", "model.tar.gz": b""},
    ),
    model_case(
        "inference-syntax-error",
        f"import of {INFERENCE_PY} raised SyntaxError: '(' was never closed (inference.py, line 2)",
        model_code="def model_fn(model_dir):\n    return (\n",
    ),
    model_case(
        "inference-import-error",
        f"import of {INFERENCE_PY} raised ModuleNotFoundError: No module named 'no_such_module_xyz'",
        model_code="import no_such_module_xyz\n",
    ),
    model_case(
        "inference-without-hooks",
        "model_fn raised NotImplementedError: Please provide a model_fn implementation.",
        model_code="# no hooks at all\n",
    ),
    model_case(
        "model-fn-raises",
        "model_fn raised FileNotFoundError: weights.bin is missing",
        model_code="def model_fn(model_dir):\n    raise FileNotFoundError('weights.bin is missing')\n",
    ),
    model_case(
        "hook-not-callable",
        f"predict_fn in {INFERENCE_PY} is a int, not a function",
        model_code="def model_fn(model_dir):\n    return None\n\npredict_fn = 3\n",
    ),
    model_case(
        "hook-arity",
        "input_fn takes 4 arguments but 2 were given.",
        model_code="def model_fn(d):\n    return None\n\ndef input_fn(a, b, c, d):\n    return a\n",
    ),
    model_case(
        "transform-fn-with-input-fn",
        TK_CONFLICT,
        model_code=(
            "def model_fn(d):\n    return None\n\ndef input_fn(b, c):\n    return b\n\n"
            "def transform_fn(m, d, c, a):\n    return d\n"
        ),
    ),
    model_case(
        "hook-returns-wrong-type",
        "{bucket}/{prefix}/in/a.csv: payload 0: transform_fn returned object, which is not a response body; "
        "return bytes or str (the model server answers 'Unsupported model output data type.')",
        model_code="def model_fn(d):\n    return None\n\n"
        "def transform_fn(m, d, c, a):\n    return object()\n",
    ),
    model_case(
        "output-fn-returns-short-tuple",
        "{bucket}/{prefix}/in/a.csv: payload 0: output_fn returned a tuple of 1; "
        "expected (data, content_type)",
        model_code=SUM_MODEL + "\ndef output_fn(prediction, accept):\n    return (b'x',)\n",
    ),
]


@dataclass(frozen=True)
class Group:
    """The job a group of data cases shares, and its good object, which must still be written."""

    ext: str
    edits: tuple[Edit, ...]
    ok_body: bytes
    ok_out: bytes = b"3\n"


GROUPS = {
    "line": Group(".csv", (put("MaxPayloadInMB", value=1),), b"1,2\n"),
    "gzip": Group(
        ".csv.gz", (put("TransformInput", "CompressionType", value="Gzip"),), gzip.compress(b"1,2\n")
    ),
    "recordio": Group(
        ".rec",
        (put("TransformInput", "SplitType", value="RecordIO"), put("BatchStrategy", value="SingleRecord")),
        recordio(b"1,2\n"),
    ),
    "none": Group(
        ".csv", (put("TransformInput", "SplitType", value="None"), put("MaxPayloadInMB", value=1)), b"1,2\n"
    ),
    "tfrecord": Group(
        ".tfr",
        (put("TransformInput", "SplitType", value="TFRecord"), put("BatchStrategy", value="SingleRecord")),
        tfrecord(b"1,2\n"),
    ),
}
AT_0 = "{object}: record 0 at byte 0: "

DATA_CASES = [
    data_case(
        "line",
        "csv-not-utf8",
        b"1,2\n\xff\xfe,3\n",
        "{object}: payload 0: the text/csv request body is not UTF-8 text: 'utf-8' codec can't decode byte "
        "0xff in position 4: invalid start byte",
    ),
    data_case(
        "line",
        "record-over-payload-limit",
        b"1,2\n" + b"1," * 550_000 + b"1\n",
        "{object}: record 1 at byte 4 is 1100002 bytes, larger than MaxPayloadInMB=1 (1048576 bytes); raise "
        "MaxPayloadInMB (at most 100) or split the record",
    ),
    # docs/contract.md §4.2: an empty object has no records; it gets an empty .out and is no error.
    data_case("line", "empty-object", b"", "", writes=b""),
    data_case(
        "none",
        "whole-object-over-payload-limit",
        b"1,2\n" * 300_000,
        "{object}: the object is larger than MaxPayloadInMB=1 (1048576 bytes) and SplitType is None, so it "
        "must fit one request; set SplitType to split it into records or raise MaxPayloadInMB",
    ),
    # docs/contract.md §4.2: with SplitType None an empty object is one request with an empty body
    # (the sum is 0).
    data_case("none", "empty-object-whole", b"", "", writes=b"0.0\n"),
    data_case(
        "gzip",
        "gzip-garbage",
        b"this is not gzip\n",
        "{object}: corrupt gzip stream: Error -3 while decompressing data: incorrect header check",
    ),
    data_case(
        "gzip",
        "gzip-truncated",
        gzip.compress(b"1,2\n" * 1000)[:-20],
        "{object}: truncated gzip stream (the last member has no end)",
    ),
    data_case(
        "gzip",
        "gzip-trailing-garbage",
        gzip.compress(b"1,2\n") + b"junk after the member",
        "{object}: corrupt gzip stream: Error -3 while decompressing data: incorrect header check",
    ),
    data_case(
        "recordio",
        "recordio-old-magic",
        recordio(b"1,2\n", magic=0x3ED7230A),
        AT_0 + "bad RecordIO magic 0x3ed7230a, expected 0xced7230a (0x3ed7230a is the magic of an older "
        "recordio framing, which this runner does not read; write the object with MXNet's recordio)",
    ),
    data_case(
        "recordio",
        "recordio-truncated-frame",
        recordio(b"1,2\n")[:-2],
        AT_0 + "truncated RecordIO frame: its header says 4 data bytes (12 bytes framed) but the object ends "
        "10 bytes after the frame's start",
    ),
    data_case(
        "recordio",
        "recordio-part-without-start",
        recordio(b"1,2\n", cflag=2),
        AT_0
        + "RecordIO frame with cflag 2 (middle part) where a record must start (cflag 0 or 1): its first "
        "part is missing",
    ),
    data_case(
        "recordio",
        "recordio-invalid-cflag",
        recordio(b"1,2\n", cflag=5),
        AT_0 + "RecordIO frame with invalid cflag 5 (lrecord 0xa0000004); cflag is 0-3",
    ),
    data_case(
        "recordio",
        "recordio-unfinished-record",
        recordio(b"1,2\n") + recordio(b"3,", cflag=1),
        "{object}: record 1 at byte 24: RecordIO record split into parts ends with the object, without its "
        "last part (cflag 3)",
    ),
    data_case(
        "tfrecord",
        "tfrecord-length-crc",
        tfrecord(b"1,2\n")[:8] + b"\0\0\0\0" + tfrecord(b"1,2\n")[12:],
        AT_0 + "TFRecord length CRC mismatch: stored 0x00000000, computed 0x04524542 over the length field "
        "(which reads 4); the object is corrupt or not TFRecord",
    ),
    data_case(
        "tfrecord",
        "tfrecord-data-crc",
        tfrecord(b"1,2\n")[:-4] + b"\0\0\0\0",
        AT_0 + "TFRecord data CRC mismatch: stored 0x00000000, computed 0x0132ab5a over its 4 data bytes",
    ),
    data_case(
        "tfrecord",
        "tfrecord-truncated",
        tfrecord(b"1,2\n") + tfrecord(b"3,4\n")[:-3],
        "{object}: record 1 at byte 20: truncated TFRecord: its header says 4 data bytes (20 bytes framed) "
        "but the object ends 17 bytes after the record's start",
    ),
]

# --- running the cases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """What every case shares: one bucket, a local folder, one runner home (job store)."""

    bucket: Bucket
    tmp: Path
    home: Path


@pytest.fixture(scope="module")
def world(s3_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    bucket = Bucket(f"test-bad-input-{uuid.uuid4().hex[:12]}", s3_client)
    s3_client.create_bucket(Bucket=bucket.name)
    tmp = tmp_path_factory.mktemp("bad-input")
    yield World(bucket, tmp, tmp / "home")
    s3_client.delete_bucket(Bucket=bucket.name)  # SeaweedFS drops the objects with it


def fill(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def filled(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return fill(value, values)
    if isinstance(value, dict):
        return {k: filled(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, values) for v in value]
    return value


def base_request(name: str, bucket: str, prefix: str, edits: tuple[Edit, ...]) -> Request:
    request = job_request(name, bucket)
    request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = "s3://{bucket}/{prefix}/in/"
    request["TransformOutput"]["S3OutputPath"] = "s3://{bucket}/{prefix}/out"
    for edit in edits:
        edit(request)
    return filled(request, {"bucket": bucket, "prefix": prefix})


def cli_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """``batch-transform <args>`` in this process: the exit status and every line it printed."""
    extra = []
    try:
        code = cli.main(args)
    except SystemExit as e:  # a str code: the interpreter prints it on stderr and exits 1
        code = e.code if isinstance(e.code, int) else 1
        extra = [str(e.code)] if isinstance(e.code, str) else []
    captured = capsys.readouterr()
    return code, [*captured.out.splitlines(), *captured.err.splitlines(), *extra]


def shown(lines: list[str], expected: str) -> bool:
    if expected.endswith("..."):
        return any(line.startswith(expected[:-3]) for line in lines)
    return expected in lines


SINGLE_CASES = REQUEST_CASES + PLAN_CASES + MODEL_CASES


@pytest.mark.parametrize("case", SINGLE_CASES, ids=[c.id for c in SINGLE_CASES])
def test_bad_request_or_model(
    case: Case, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, prefix, tmp = world.bucket, f"cases/{case.id}", world.tmp / case.id
    values = {"bucket": bucket.name, "prefix": prefix, "tmp": str(tmp)}
    secret = monkeypatch_env(monkeypatch, world, case)
    for key, body in case.objects.items():
        bucket.put(f"{prefix}/{key}", fill(body.decode("latin-1"), values).encode("latin-1"))
    write_model(tmp / "model", case.model_code)
    job, model = tmp / "job.json", tmp / "model.json"
    request = base_request(f"bi-{case.id}", bucket.name, prefix, case.edits)
    job.write_text(case.job_text or json.dumps(request))
    model.write_text(json.dumps(model_request("sum", fill(case.model_url, values))))

    code, lines = cli_main(["run", str(job), "--model", str(model), "--no-progress"], capsys)
    expected = fill(case.shows, values)
    assert shown(lines, expected), "\n".join(lines)
    assert code == case.exit_code, "\n".join(lines)
    assert all(s not in "\n".join(lines) for s in secret)
    # Nothing partial: no output object, no multipart upload left open.
    assert bucket.keys(f"{prefix}/out") == []
    assert bucket.open_uploads() == []
    if case.static:  # `validate` finds a request problem without reading anything
        code, lines = cli_main(["validate", str(job), "--model", str(model)], capsys)
        assert code == 2 and shown(lines, f"{job}: {expected.removeprefix('  - ')}"), "\n".join(lines)


def monkeypatch_env(monkeypatch: pytest.MonkeyPatch, world: World, case: Case) -> list[str]:
    """The case's environment (restored after the test); returns the secrets that must never show."""
    monkeypatch.setenv("BATCH_TRANSFORM_HOME", str(world.home))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    return [os.environ["AWS_SECRET_ACCESS_KEY"], WRONG_SECRET]


@dataclass(frozen=True)
class GroupRun:
    record: JobRecord
    errors: list[str]  # the ERROR lines the runner logged, one per failed object


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def group_runs(world: World) -> Callable[[str], GroupRun]:
    """Each group's job, run once, the first time one of its cases asks."""
    runs: dict[str, GroupRun] = {}
    model = model_request("sum", str(write_model(world.tmp / "group-model", SUM_MODEL)))

    def run(name: str) -> GroupRun:
        if name not in runs:
            group, prefix = GROUPS[name], f"groups/{name}"
            for case in DATA_CASES:
                if case.group == name:
                    world.bucket.put(f"{prefix}/in/{case.id}{group.ext}", case.body)
            world.bucket.put(f"{prefix}/in/ok{group.ext}", group.ok_body)
            request = base_request(f"bi-group-{name}", world.bucket.name, prefix, group.edits)
            errors = Errors()
            logging.getLogger("runner").addHandler(errors)
            try:
                record = run_job(request, RunnerConfig(home=world.home), model_request=model)
            finally:
                logging.getLogger("runner").removeHandler(errors)
            runs[name] = GroupRun(record, errors.messages)
        return runs[name]

    return run


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data(case: Case, world: World, group_runs: Callable[[str], GroupRun]) -> None:
    run, group, bucket = group_runs(case.group), GROUPS[case.group], world.bucket
    prefix = f"groups/{case.group}"
    name = f"{bucket.name}/{prefix}/in/{case.id}{group.ext}"
    mine = [e for e in run.errors if e.startswith(name + ":")]
    assert mine == ([fill(case.shows, {"object": name})] if case.shows else []), run.errors
    # The job fails with one of its objects' errors, as SageMaker reports the first failure.
    assert run.record.status is TransformJobStatus.FAILED
    assert run.record.failure_reason in {f"ClientError: {e}" for e in run.errors}
    out = f"{prefix}/out/{case.id}{group.ext}.out"
    if case.writes is None:
        assert out not in bucket.keys(f"{prefix}/out/")
    else:
        assert bucket.get(out) == case.writes
    assert bucket.get(f"{prefix}/out/ok{group.ext}.out") == group.ok_out  # the other objects go on
    assert bucket.open_uploads() == []


def test_the_table_is_big_enough() -> None:
    assert len(SINGLE_CASES) + len(DATA_CASES) >= 30
    assert len({c.id for c in SINGLE_CASES + DATA_CASES}) == len(SINGLE_CASES) + len(DATA_CASES)
