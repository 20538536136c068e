"""Output naming (docs/contract.md §6.1 and worked example 8)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from runner.contract.spec import TransformJobSpec, parse_transform_job
from runner.errors import ObjectNotFoundError, SpecError
from runner.records.plan import output_uri, plan_inputs, relative_key
from runner.storage import Storage


@pytest.mark.parametrize(
    ("prefix", "key", "expected"),
    [
        ("in/", "in/x/b.csv", "x/b.csv"),  # nested keys kept
        ("in/", "in/a.csv", "a.csv"),
        ("in", "in/a.csv", "a.csv"),  # prefix names a "directory"
        ("in/a.csv", "in/a.csv", "a.csv"),  # single object
        ("in/a", "in/a.csv", "a.csv"),  # prefix ends inside a segment
        ("in/data", "in/data1.csv", "data1.csv"),
        ("in/data", "in/data/x.csv", "x.csv"),
        ("", "top.csv", "top.csv"),  # whole bucket
        ("", "d/e.csv", "d/e.csv"),
        ("test_output", "test_output_pose/p.csv", "test_output_pose/p.csv"),  # raw prefix match
        ("in/c.csv.gz", "in/c.csv.gz", "c.csv.gz"),
    ],
)
def test_relative_key(prefix: str, key: str, expected: str) -> None:
    assert relative_key(prefix, key) == expected


@pytest.mark.parametrize("path", ["s3://b/out", "s3://b/out/"])
def test_output_uri_has_one_slash_and_out_suffix(path: str) -> None:
    assert output_uri(path, "x/b.csv") == "s3://b/out/x/b.csv.out"


# --- ManifestFile (docs/contract.md §4.1) --------------------------------------------------------


class ManifestStorage:
    """Just enough of ``Storage`` for planning: one manifest object, and no listing."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def read_bytes(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise ObjectNotFoundError(f"{uri}: NoSuchKey; the bucket or key does not exist", uri)
        return self.objects[uri]

    def list_objects(self, prefix_uri: str) -> Any:
        raise AssertionError("a manifest job lists nothing")


MANIFEST_URI = "s3://bucket/manifests/job.manifest"


def manifest_spec(output_path: str = "s3://bucket/out") -> TransformJobSpec:
    return parse_transform_job(
        {
            "TransformJobName": "m",
            "ModelName": "model",
            "TransformInput": {
                "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": MANIFEST_URI}},
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {"S3OutputPath": output_path},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        }
    )


def plan_manifest(manifest: Any, output_path: str = "s3://bucket/out") -> list[Any]:
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return plan_inputs(manifest_spec(output_path), cast(Storage, ManifestStorage({MANIFEST_URI: body})))


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            [{"prefix": "s3://other/data/"}, "a.csv", "x/y/b.csv", "x/c.csv.gz"],
            [
                ("s3://other/data/a.csv", "a.csv"),
                ("s3://other/data/x/y/b.csv", "x/y/b.csv"),
                ("s3://other/data/x/c.csv.gz", "x/c.csv.gz"),
            ],
        ),
        # Plain concatenation: a prefix without "/" continues into the entry's first segment.
        (
            [{"prefix": "s3://bucket/in/part-"}, "1.csv", "2.csv"],
            [("s3://bucket/in/part-1.csv", "1.csv"), ("s3://bucket/in/part-2.csv", "2.csv")],
        ),
        ([{"prefix": "s3://bucket/in"}, "/a.csv"], [("s3://bucket/in/a.csv", "a.csv")]),
    ],
)
def test_manifest_inputs_are_prefix_plus_entry_and_outputs_the_entry(
    manifest: list[Any], expected: list[tuple[str, str]]
) -> None:
    planned = plan_manifest(manifest)
    assert [(o.uri, o.relative_key) for o in planned] == expected
    assert [o.output_uri for o in planned] == [f"s3://bucket/out/{rel}.out" for _, rel in expected]


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b'[{"prefix": "s3://b/p/"}, "a.csv"', "the manifest is not valid JSON"),
        (b"\xff\xfe", "the manifest is not valid JSON"),
        ({"prefix": "s3://b/p/"}, 'the manifest must be [{"prefix": "s3://bucket/prefix/"}, '),
        ([], "the manifest must be"),
        (["a.csv", {"prefix": "s3://b/p/"}], "the manifest must be"),
        ([{"Prefix": "s3://b/p/"}, "a.csv"], "the manifest must be"),
        ([{"prefix": "https://b/p/"}, "a.csv"], "must be an s3://bucket/prefix URI"),
        ([{"prefix": "s3:///p/"}, "a.csv"], "must be an s3://bucket/prefix URI"),
        ([{"prefix": "s3://b/p/"}], "the manifest lists no objects"),
        ([{"prefix": "s3://b/p/"}, "a.csv", 3], "manifest entry 2 is 3; entries are non-empty strings"),
        ([{"prefix": "s3://b/p/"}, ""], 'manifest entry 1 is ""'),
        ([{"prefix": "s3://b/p/"}, "a.csv", "b.csv", "a.csv"], "manifest entries 1 and 3 are both 'a.csv'"),
    ],
)
def test_bad_manifest_is_refused_at_create(manifest: Any, message: str) -> None:
    with pytest.raises(SpecError) as info:
        plan_manifest(manifest)
    assert message in str(info.value)
    assert info.value.problems[0].path == "transformInput.dataSource.s3DataSource.s3Uri"
    assert info.value.problems[0].value == MANIFEST_URI


def test_missing_manifest_is_refused_at_create() -> None:
    with pytest.raises(SpecError, match=r"the manifest cannot be read: .*NoSuchKey"):
        plan_inputs(manifest_spec(), cast(Storage, ManifestStorage({})))


def test_manifest_entries_that_collide_after_the_leading_slash_are_refused() -> None:
    with pytest.raises(SpecError, match=r"would both write s3://bucket/out/a\.csv\.out"):
        plan_manifest([{"prefix": "s3://bucket/in/"}, "a.csv", "/a.csv"])
