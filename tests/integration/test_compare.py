"""`batch-transform compare` on the real embedded S3: equal outputs, a changed record, a float that
differs in its last digit, a missing object, and bad usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import cli
from runner.cost.compare import Tolerance, compare_prefixes
from tests.integration.conftest import Bucket

CSV = b"".join(b"%d,0.%015d,label-%d\n" % (i, 123456789012345 + i, i) for i in range(200))
JSONL = b"".join(
    json.dumps({"id": i, "scores": [i / 7, 1.5], "label": f"l{i}"}).encode() + b"\n" for i in range(50)
)


def put_outputs(bucket: Bucket, prefix: str, objects: dict[str, bytes]) -> str:
    for key, body in objects.items():
        bucket.put(f"{prefix}/{key}", body)
    return f"s3://{bucket.name}/{prefix}/"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_equal_outputs(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    objects = {"a.csv.out": CSV, "sub/b.jsonl.out": JSONL}
    a = put_outputs(bucket, "run-a", objects)
    b = put_outputs(bucket, "run-b", {**objects, "ignored.txt": b"not an output"})
    code, text = run(capsys, a, b)
    assert code == 0, text
    assert "2 in both (2 equal, 0 different)" in text and "250 compared, 0 different" in text
    assert text.rstrip().endswith("EQUAL")


def test_a_changed_record(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    changed = CSV.replace(b"17,0.123456789012362,label-17", b"17,0.123456789012362,label-X")
    a = put_outputs(bucket, "run-a", {"a.csv.out": CSV})
    b = put_outputs(bucket, "run-b", {"a.csv.out": changed})
    code, text = run(capsys, a, b, "--rel-tol", "1e-6")
    assert code == 1
    assert "a.csv.out record 18 column 3: value differs: A 'label-17' B 'label-X'" in text
    assert "1 different" in text


def test_an_extra_record(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    a = put_outputs(bucket, "run-a", {"a.csv.out": CSV})
    b = put_outputs(bucket, "run-b", {"a.csv.out": CSV + b"200,0.5,label-200\n"})
    code, text = run(capsys, a, b)
    assert code == 1
    assert "a.csv.out record 201: record only in B: A (none) B '200,0.5,label-200'" in text


def test_a_float_differing_in_its_last_digit(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    last_digit = CSV.replace(b"0.123456789012345,", b"0.123456789012346,")
    jsonl = JSONL.replace(json.dumps(3 / 7).encode(), json.dumps(3 / 7 + 1e-16).encode())
    assert last_digit != CSV and jsonl != JSONL
    a = put_outputs(bucket, "run-a", {"a.csv.out": CSV, "b.jsonl.out": JSONL})
    b = put_outputs(bucket, "run-b", {"a.csv.out": last_digit, "b.jsonl.out": jsonl})

    code, text = run(capsys, a, b)
    assert code == 1
    assert "a.csv.out record 1 column 2: number differs: A '0.123456789012345' B '0.123456789012346'" in text
    assert "b.jsonl.out record 4 $.scores[0]: number differs" in text

    code, text = run(capsys, a, b, "--rel-tol", "1e-12")
    assert code == 0, text
    code, text = run(capsys, a, b, "--abs-tol", "1e-14")
    assert code == 0, text


def test_a_missing_object(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    a = put_outputs(bucket, "run-a", {"a.csv.out": CSV, "sub/b.jsonl.out": JSONL})
    b = put_outputs(bucket, "run-b", {"a.csv.out": CSV})
    code, text = run(capsys, a, b)
    assert code == 1
    assert "only in A: sub/b.jsonl.out" in text and "1 only in A, 0 only in B" in text


def test_json_differences_and_max_diffs(bucket: Bucket) -> None:
    changed = b"".join(
        json.dumps(
            {"id": i, "scores": [i / 7, 2.5], "label": f"l{i}", **({"extra": 1} if i == 3 else {})}
        ).encode()
        + b"\n"
        for i in range(50)
    )
    a = put_outputs(bucket, "run-a", {"b.jsonl.out": JSONL})
    b = put_outputs(bucket, "run-b", {"b.jsonl.out": changed})
    result = compare_prefixes(a, b, Tolerance(), max_diffs=3)
    assert result.total_differences == 51 and result.records_different == 50
    assert len(result.differences) == 3
    first = result.differences[0]
    assert (first.key, first.record, first.field, first.a, first.b) == (
        "b.jsonl.out",
        1,
        "$.scores[1]",
        "1.5",
        "2.5",
    )
    extra = compare_prefixes(a, b, Tolerance(), max_diffs=100).differences
    assert any(d.field == "$.extra" and d.what == "key only in B" for d in extra)


def test_s3_against_file(bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = put_outputs(bucket, "run-a", {"x/a.csv.out": CSV})
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.csv.out").write_bytes(CSV)
    code, text = run(capsys, a, f"file://{tmp_path}")
    assert code == 0, text
    code, text = run(capsys, "--json", a, f"file://{tmp_path}")
    assert code == 0 and json.loads(text)["equal"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://x/a", "s3://b/c"], "not an s3:// or file:// prefix"),
        (["s3://b/c", "s3://b/d", "--rel-tol", "-1"], "rel-tol must be a finite number >= 0"),
        (["s3://b/c", "s3://b/d", "--max-diffs", "-2"], "max-diffs must be >= 0"),
    ],
)
def test_bad_usage(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, *args)
    assert code == 2 and message in text


def test_nothing_to_compare(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(capsys, f"s3://{bucket.name}/none-a/", f"s3://{bucket.name}/none-b/")
    assert code == 2 and "no .out objects" in text
    code, text = run(capsys, "s3://no-such-bucket-xyz/a/", f"s3://{bucket.name}/none-b/")
    assert code == 2, text
