"""``batch-transform benchmark`` end to end: the CLI (in this process, on the session's Ray) sends the
request through the unchanged boto3 client to a real ``batch-transform serve`` playing a slow SageMaker
(``--provisioning-delay``, ``--record-delay``), runs the same request on Ray, and reports both sides as
measured, priced and compared."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.cli.main import main
from runner.cost.prices import BUILT_IN
from runner.storage.embedded import EmbeddedS3Info

from .conftest import SUM_MODEL, job_request, model_request, write_model
from .test_api import Server, start_server

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("ray_local")]

PROVISIONING_S = 3.0
RECORD_DELAY_S = 0.02
INPUTS = {
    "in/a.csv": b"1,2,3\n4,5,6\n",
    "in/nested/b.csv": b"".join(b"%d,%d\n" % (i, i * i) for i in range(50)),
}
RECORDS = 52


@pytest.fixture(scope="module")
def slow_sagemaker(s3_server: EmbeddedS3Info, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import ray

    home = tmp_path_factory.mktemp("slow-sagemaker") / "home"
    server = start_server(
        home,
        s3_server,
        "--ray-address",
        ray.get_runtime_context().gcs_address,
        "--provisioning-delay",
        str(PROVISIONING_S),
        "--record-delay",
        str(RECORD_DELAY_S),
        # Real SageMaker holds no CPUs of the Ray cluster after a job: keep no workers warm on it.
        "--warm-pool-seconds",
        "0",
    )
    yield server
    server.stop()
    print(server.log.read_text(errors="replace")[-3000:])  # shown by pytest when a test failed


@pytest.fixture(scope="module")
def bucket(s3_client: Any) -> Iterator[str]:
    name = f"test-benchmark-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=name)
    for key, body in INPUTS.items():
        s3_client.put_object(Bucket=name, Key=key, Body=body)
    yield name
    s3_client.delete_bucket(Bucket=name)


def benchmark(
    tmp_path: Path, bucket: str, server: Server, monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("BATCH_TRANSFORM_HOME", str(tmp_path / "home"))
    name = f"bench-{uuid.uuid4().hex[:6]}"
    job = job_request(name, bucket, TransformOutput={"S3OutputPath": f"s3://{bucket}/{name}"})
    (tmp_path / "job.json").write_text(json.dumps(job))
    model_dir = write_model(tmp_path / "model", SUM_MODEL)
    (tmp_path / "model.json").write_text(json.dumps(model_request("sum", model_dir)))
    report = tmp_path / "report.json"
    argv = ["benchmark", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json")]
    code = main([*argv, "--sagemaker-endpoint", server.url, "--out", str(report), *args])
    return code, json.loads(report.read_text())


def outputs(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed
    }


@pytest.mark.parametrize("how", ["at once", "one after the other"])
def test_benchmark_measures_prices_and_compares_both_sides(
    how: str,
    tmp_path: Path,
    bucket: str,
    slow_sagemaker: Server,
    s3_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = ["--one-after-the-other"] if how == "one after the other" else []
    code, report = benchmark(tmp_path, bucket, slow_sagemaker, monkeypatch, *flags)
    sm, ray = report["sagemaker"], report["ray"]
    assert code == 0, report
    assert report["how"] == how
    assert (sm["TransformJobStatus"], ray["TransformJobStatus"]) == ("Completed", "Completed")
    name = sm["TransformJobName"].removesuffix("-sagemaker")
    assert ray["TransformJobName"] == f"{name}-ray"

    # Each side wrote its own prefix, and the outputs are the same records.
    written = {side: outputs(s3_client, bucket, f"{name}/{side}/") for side in ("sagemaker", "ray")}
    assert sorted(written["sagemaker"]) == ["a.csv.out", "nested/b.csv.out"]
    assert written["sagemaker"] == written["ray"]
    assert written["ray"]["a.csv.out"] == b"6\n15\n"
    assert report["outputs_equal"] is True
    assert report["compare"]["records_compared"] == RECORDS

    # SageMaker's provisioning and per-record time are measured from its own times, not assumed.
    assert sm["provisioning_s"] >= PROVISIONING_S
    assert ray["provisioning_s"] < sm["provisioning_s"]
    assert sm["transform_s"] >= RECORD_DELAY_S * RECORDS / 2  # two workers (MaxConcurrentTransforms unset)
    assert sm["time_to_result_s"] >= sm["provisioning_s"] + sm["transform_s"] - 0.01
    assert report["ratios"]["time_to_result"] > 1
    # First outputs, from S3's LastModified (whole seconds): SageMaker's after its provisioning.
    assert sm["first_output_s"] >= PROVISIONING_S - 1
    assert ray["first_output_s"] is not None and ray["first_output_s"] <= ray["time_to_result_s"] + 1
    assert sm["outputs"]["objects"] == ray["outputs"]["objects"] == 2

    # Records: the Ray side counted them; SageMaker's rate uses that count over its own span.
    assert ray["records"] == sm["records"] == RECORDS
    assert sm["records_per_s"] == pytest.approx(RECORDS / sm["transform_s"], rel=0.01)

    # Cost: SageMaker bills start -> end at the ml price, Ray holds its node created -> end at EC2's.
    price = BUILT_IN.price("ml.m5.large")
    assert sm["billed_instance_seconds"] == pytest.approx(sm["transform_s"], abs=0.002)
    assert sm["usd"] == pytest.approx(
        sm["billed_instance_seconds"] * price.sagemaker_usd_per_hour / 3600, rel=1e-3
    )
    assert ray["node_seconds"] == pytest.approx(ray["time_to_result_s"], abs=0.002)
    assert ray["usd"] == pytest.approx(ray["node_seconds"] * price.ec2_usd_per_hour / 3600, rel=1e-3)
    assert sm["usd_per_million_records"] == pytest.approx(sm["usd"] / RECORDS * 1e6)
    assert ray["node_type"] == "m5.large" and ray["nodes_used"]
    assert sm["price_source"] and ray["price_source"]

    # `report --sagemaker-job` puts the same two jobs side by side again, from their records alone.
    capsys.readouterr()
    argv = ["report", ray["TransformJobName"], "--sagemaker-job", sm["TransformJobName"], "--json"]
    assert main([*argv, "--sagemaker-endpoint", slow_sagemaker.url]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["how"] == "existing jobs" and again["outputs_equal"] is True
    for side in ("sagemaker", "ray"):
        for key in ("provisioning_s", "transform_s", "time_to_result_s", "first_output_s", "usd"):
            assert again[side][key] == report[side][key], (side, key)

    # The Ray side held one node of this Ray, whose type no label names: priced per instance at the
    # EC2 twin, and said so. With a price for it, the node itself is priced, for the job's share.
    (node,) = ray["nodes"]
    assert node["node_type"] is None and ray["nodes_used"] == [node["node_id"]]
    assert 0 < node["share"] <= 1
    assert "EC2 twin (m5.large)" in ray["pricing"] and "--node-price" in ray["pricing"]
    assert main([*argv, "--sagemaker-endpoint", slow_sagemaker.url, "--node-price", "*=0.5"]) == 0
    priced = json.loads(capsys.readouterr().out)["ray"]
    assert priced["pricing"].startswith("the 1 node(s) the job held")
    held = node["share"] * ray["time_to_result_s"]
    assert priced["node_seconds"] == pytest.approx(held, abs=0.002)
    assert priced["usd"] == pytest.approx(held * 0.5 / 3600, rel=1e-3)
    assert priced["price_source"] == "--node-price *"


def chromium() -> str:
    found = shutil.which("chromium-headless-shell") or shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):  # .ci/run installs Debian's chromium-headless-shell
            pytest.fail("no headless Chromium on this CI machine")
        pytest.skip("needs Debian's chromium-headless-shell (apt-get install chromium-headless-shell)")
    return found


def browse(browser: str, url: str, screenshot: Path | None = None) -> str:
    """The page's text as the browser rendered it (its DOM after loading, tags left out)."""
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1100,1000"]
    if screenshot is not None:
        subprocess.run(
            [*args, f"--screenshot={screenshot}", url], check=True, capture_output=True, timeout=60
        )
    dom = subprocess.run([*args, "--dump-dom", url], check=True, capture_output=True, timeout=60).stdout
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(dom.decode())).split())


@pytest.mark.slow
def test_the_report_pages_render_in_a_browser(
    tmp_path: Path,
    bucket: str,
    slow_sagemaker: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    browser = chromium()
    page = tmp_path / "benchmark.html"
    code, report = benchmark(tmp_path, bucket, slow_sagemaker, monkeypatch, "--html", str(page))
    assert code == 0
    sm, ray = report["sagemaker"], report["ray"]
    shot = tmp_path / "benchmark.png"
    text = browse(browser, page.as_uri(), shot)
    assert shot.stat().st_size > 10_000
    assert f"Outputs equal: {RECORDS} records in 2 objects compared, 0 differ" in text
    for key in ("provisioning_s", "transform_s", "time_to_result_s"):
        assert f"{sm[key]:,.2f} s" in text and f"{ray[key]:,.2f} s" in text, key
    assert f"${sm['usd']:,.6f}" in text and f"${ray['usd']:,.6f}" in text
    assert f"{report['ratios']['time_to_result']:,.2f}x" in text

    # serve shows the SageMaker side's jobs too: the list, and each job's report.
    listing = browse(browser, f"{slow_sagemaker.url}/")
    assert f"{sm['TransformJobName']} Completed 2 of 2 objects {RECORDS}" in listing
    job_page = browse(browser, f"{slow_sagemaker.url}/jobs/{sm['TransformJobName']}")
    assert f"Transform job {sm['TransformJobName']}" in job_page
    assert f"records {RECORDS}" in job_page and "objects 2 of 2 written, 0 failed" in job_page


def test_report_names_a_sagemaker_job_it_cannot_find(
    tmp_path: Path,
    bucket: str,
    slow_sagemaker: Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = benchmark(tmp_path, bucket, slow_sagemaker, monkeypatch, "--one-after-the-other")
    assert code == 0
    capsys.readouterr()
    argv = ["report", report["ray"]["TransformJobName"], "--sagemaker-job", "no-such-job"]
    assert main([*argv, "--sagemaker-endpoint", slow_sagemaker.url]) == 2
    assert capsys.readouterr().err == (
        "ValidationException: SageMaker DescribeTransformJob: Requested resource not found. "
        "(transform job 'no-such-job')\n"
    )
    # The same request again: its Ray-side name is taken, and nothing is sent to SageMaker.
    before = slow_sagemaker.client().list_transform_jobs()["TransformJobSummaries"]
    again = ["benchmark", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json")]
    assert main([*again, "--sagemaker-endpoint", slow_sagemaker.url]) == 2
    assert "a transform job with this name already exists" in capsys.readouterr().err
    assert slow_sagemaker.client().list_transform_jobs()["TransformJobSummaries"] == before


def test_benchmark_says_when_sagemaker_cannot_run_it(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("BATCH_TRANSFORM_HOME", str(tmp_path / "home"))
    job = job_request("bench-closed", bucket, TransformOutput={"S3OutputPath": f"s3://{bucket}/closed"})
    (tmp_path / "job.json").write_text(json.dumps(job))
    model_dir = write_model(tmp_path / "model", SUM_MODEL)
    (tmp_path / "model.json").write_text(json.dumps(model_request("sum", model_dir)))
    argv = ["benchmark", str(tmp_path / "job.json"), "--model", str(tmp_path / "model.json")]
    code = main([*argv, "--sagemaker-endpoint", closed, "--one-after-the-other"])
    err = capsys.readouterr().err
    assert code == 3  # an error, not a job outcome: nothing to compare
    assert "SageMaker could not run bench-closed-sagemaker (CreateModel: Could not connect" in err
    assert "the Ray side ran as bench-closed-ray (Completed)" in err
