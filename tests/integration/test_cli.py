"""The CLI as a user runs it: a real process, the bundled example, the embedded S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Bucket

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "models" / "mlp-onnx"


def cli(*args: str, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BATCH_TRANSFORM_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def test_bundled_example_end_to_end(bucket: Bucket, tmp_path: Path) -> None:
    """The seed request, unchanged but for its buckets, with the example model from S3."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mlp_build", EXAMPLE / "build.py")
    assert spec and spec.loader
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    build.build(tmp_path / "model")
    build.make_csv(tmp_path / "data.csv", 5000, 7)

    home = tmp_path / "home"
    cli(
        "s3",
        "put",
        str(tmp_path / "model" / "model.tar.gz"),
        f"s3://{bucket.name}/model/model.tar.gz",
        home=home,
    )
    cli("s3", "put", str(tmp_path / "data.csv"), f"s3://{bucket.name}/in/nested/data.csv", home=home)

    job: dict[str, Any] = json.loads((EXAMPLE / "job.json").read_text())
    job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{bucket.name}/in/"
    job["TransformOutput"]["S3OutputPath"] = f"s3://{bucket.name}/out"
    job["MaxPayloadInMB"] = 1  # several payloads, so record order across workers is exercised
    model: dict[str, Any] = json.loads((EXAMPLE / "model.json").read_text())
    model["PrimaryContainer"]["ModelDataUrl"] = f"s3://{bucket.name}/model/model.tar.gz"
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "model.json").write_text(json.dumps(model))

    assert (
        cli(
            "validate", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"), home=home
        ).stdout.strip()
        == "valid"
    )
    metrics = tmp_path / "metrics.prom"
    run = cli(
        "run",
        str(tmp_path / "job.json"),
        "--model",
        str(tmp_path / "model.json"),
        "--metrics-file",
        str(metrics),
        home=home,
    )
    assert "Transform job mlp-onnx-demo: Completed" in run.stdout
    samples = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families(metrics.read_text())
        for s in family.samples
    }
    assert samples[("batch_transform_job_records_total", None)] == 5000
    assert samples[("batch_transform_job_status", "Completed")] == 1
    assert samples[("batch_transform_job_status", "InProgress")] == 0
    assert samples[("batch_transform_job_objects_done_total", None)] == 1
    assert f"s3://{bucket.name}/out/<input key>.out" in run.stdout

    out = bucket.get("out/nested/data.csv.out").decode().splitlines()
    assert len(out) == 5000
    first = out[0].split(",")
    assert first[0] in {"0", "1", "2"} and abs(sum(float(p) for p in first[1:]) - 1) < 1e-5

    described = json.loads(cli("describe", "mlp-onnx-demo", home=home).stdout)
    assert described["TransformJobStatus"] == "Completed"
    assert described["x-runner"]["records"] == 5000 and described["x-runner"]["payloads"] >= 2
    listed = json.loads(cli("list", "--json", home=home).stdout)
    assert [s["TransformJobName"] for s in listed["TransformJobSummaries"]] == ["mlp-onnx-demo"]

    again = cli(
        "run", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json"), home=home, check=False
    )
    assert again.returncode == 2
    assert "ResourceInUse" in again.stderr and "already exists" in again.stderr


def test_validate_prints_every_problem_and_exits_non_zero(tmp_path: Path) -> None:
    job = json.loads((EXAMPLE / "job.json").read_text())
    job["MaxPayloadInMB"] = 101
    job["TransformInput"]["SplitType"] = "Lines"
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = cli("validate", str(tmp_path / "job.json"), home=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Value '101' at 'maxPayloadInMB'" in proc.stdout
    assert "Value 'Lines' at 'transformInput.splitType'" in proc.stdout
    assert "[None, Line, RecordIO, TFRecord]" in proc.stdout


def test_describe_unknown_job(tmp_path: Path) -> None:
    proc = cli("describe", "no-such-job", home=tmp_path, check=False)
    assert proc.returncode == 2
    assert "Requested resource not found" in proc.stderr


def test_validate_json_lists_each_problem_with_its_path_value_and_constraint(tmp_path: Path) -> None:
    job = json.loads((EXAMPLE / "job.json").read_text())
    job["MaxPayloadInMB"] = 101
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = cli("validate", str(tmp_path / "job.json"), "--json", home=tmp_path, check=False)
    assert proc.returncode == 2
    answer = json.loads(proc.stdout)
    assert answer["valid"] is False
    (problem,) = [p for p in answer["problems"] if p["path"] == "maxPayloadInMB"]
    assert problem["value"] == 101 and problem["file"] == str(tmp_path / "job.json")
    assert problem["message"].startswith("Value '101' at 'maxPayloadInMB' failed to satisfy constraint")
    ok = cli("validate", str(EXAMPLE / "job.json"), "--json", home=tmp_path)
    assert json.loads(ok.stdout) == {"valid": True, "problems": []}
