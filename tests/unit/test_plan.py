"""Output naming (CONTRACT 6.1 and worked example 8)."""

from __future__ import annotations

import pytest

from runner.plan import output_uri, relative_key


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
