"""The job report: every number follows from the job record and the price table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner import cli
from runner.cost.prices import BUILT_IN, InstancePrice, PriceTable
from runner.cost.report import (
    SAGEMAKER_STARTUP_ASSUMED_S,
    build_report,
    parse_node_prices,
    plot_report,
    print_report,
)
from runner.jobs.counters import NodeUse, node_type_of
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus, job_arn

T0 = 1_700_000_000.0


def record(
    instance_type: str = "ml.m5.xlarge",
    count: int = 2,
    status: TransformJobStatus = TransformJobStatus.COMPLETED,
    start: float | None = T0 + 20.0,
    end: float | None = T0 + 120.0,
    **counters: Any,
) -> JobRecord:
    base: dict[str, Any] = {
        "objects_total": 4,
        "objects_done": 4,
        "objects_failed": 0,
        "records": 50_000,
        "payloads": 25,
        "bytes_in": 200_000_000,
        "bytes_out": 50_000_000,
        "first_output_s": 1.5,
        "workers": [
            {
                "pid": 11,
                "node_id": "n1",
                "model_load_s": 4.0,
                "family": "base",
                "payloads": 15,
                "busy_s": 80.0,
            },
            {
                "pid": 12,
                "node_id": "n2",
                "model_load_s": 6.0,
                "family": "base",
                "payloads": 10,
                "busy_s": 25.0,
            },
        ],
    }
    base.update(counters)
    return JobRecord(
        name="report-job",
        arn=job_arn("report-job"),
        status=status,
        request={
            "TransformJobName": "report-job",
            "ModelName": "m",
            "TransformResources": {"InstanceType": instance_type, "InstanceCount": count},
        },
        creation_time=T0,
        last_modified_time=end or T0 + 60.0,
        transform_start_time=start,
        transform_end_time=end,
        counters=base,
    )


def test_timeline_from_the_record() -> None:
    t = build_report(record(), BUILT_IN)["timeline"]
    assert t == {
        "created": "2023-11-14T22:13:20+00:00",
        "workers_ready_s": 20.0,
        "first_output_s": 21.5,
        "end_s": 120.0,
        "transform_s": 100.0,
        "total_s": 120.0,
    }


def test_throughput_over_the_transform_span() -> None:
    tp = build_report(record(), BUILT_IN)["throughput"]
    assert tp["records"] == 50_000 and tp["bytes_in"] == 200_000_000
    assert tp["records_per_s"] == 500.0  # 50,000 records / (120 - 20) s
    assert tp["mb_in_per_s"] == 2.0
    assert tp["mb_out_per_s"] == 0.5
    assert (tp["objects_done"], tp["objects_total"], tp["objects_failed"]) == (4, 4, 0)


def test_busy_share_per_worker() -> None:
    workers = build_report(record(), BUILT_IN)["workers"]
    assert [w["busy_share"] for w in workers] == [0.8, 0.25]
    assert [w["model_load_s"] for w in workers] == [4.0, 6.0]
    assert [w["pid"] for w in workers] == [11, 12]


def test_cost_against_sagemaker() -> None:
    c = build_report(record(), BUILT_IN)["cost"]
    assert (c["instance_type"], c["ec2_instance_type"], c["instance_count"]) == (
        "ml.m5.xlarge",
        "m5.xlarge",
        2,
    )
    assert (c["ec2_usd_per_hour"], c["sagemaker_usd_per_hour"]) == (0.192, 0.23)
    # this run: 2 instances x (end - created) = 240 s at $0.192/h
    assert c["runner_instance_seconds"] == 240.0
    assert c["runner_usd"] == pytest.approx(240 * 0.192 / 3600)
    # SageMaker bills 2 x (end - start) = 200 s at $0.23/h
    assert c["sagemaker_billed_seconds"] == 200.0
    assert c["sagemaker_usd"] == pytest.approx(200 * 0.23 / 3600)
    assert c["savings_usd"] == pytest.approx(200 * 0.23 / 3600 - 240 * 0.192 / 3600)
    startup = SAGEMAKER_STARTUP_ASSUMED_S
    assert c["sagemaker_startup_assumed_s"] == startup
    assert c["sagemaker_time_to_result_s"] == startup + 100.0
    assert c["sagemaker_usd_with_startup"] == pytest.approx((200 + 2 * startup) * 0.23 / 3600)
    assert "assumption" in c["sagemaker_startup_source"]
    assert c["prices_as_of"] == BUILT_IN.as_of and c["price_sources"] == list(BUILT_IN.sources)


NODES = [
    # Two c5.4xlarge nodes (16 CPUs) named by a Kubernetes label; each holds one 4-CPU instance.
    {
        "node_id": "n1",
        "node_type": "c5.4xlarge",
        "node_type_source": "label x",
        "cpus": 16.0,
        "cpus_held": 4.0,
    },
    {
        "node_id": "n2",
        "node_type": "c5.4xlarge",
        "node_type_source": "label x",
        "cpus": 16.0,
        "cpus_held": 4.0,
    },
]


def test_the_nodes_held_are_priced_at_their_own_type_for_the_job_share() -> None:
    c = build_report(record(nodes=NODES), BUILT_IN)["cost"]
    # Each node: a quarter of a c5.4xlarge ($0.68/h, the table's EC2 price) over created -> end (120 s).
    assert [(n["share"], n["usd_per_hour"], n["node_seconds"]) for n in c["runner_nodes"]] == [
        (0.25, 0.68, 30.0)
    ] * 2
    assert c["runner_node_seconds"] == 60.0
    assert c["runner_usd"] == pytest.approx(2 * 30 * 0.68 / 3600)
    assert c["runner_pricing"].startswith("the 2 node(s) the job held")
    assert c["runner_nodes"][0]["price_source"] == "ec2-price-list"


def test_node_price_flags_override_and_fill_in() -> None:
    nodes = [NODES[0], {**NODES[1], "node_type": None, "node_type_source": None}]
    c = build_report(record(nodes=nodes), BUILT_IN, node_prices={"c5.4xlarge": 0.5, "*": 0.1})["cost"]
    assert [(n["usd_per_hour"], n["price_source"]) for n in c["runner_nodes"]] == [
        (0.5, "--node-price"),
        (0.1, "--node-price *"),
    ]
    assert c["runner_usd"] == pytest.approx(30 * (0.5 + 0.1) / 3600)


def test_an_unpriceable_node_falls_back_to_the_twin_and_says_why() -> None:
    nodes = [NODES[0], {**NODES[1], "node_type": None, "node_type_source": None}]
    c = build_report(record(nodes=nodes), BUILT_IN)["cost"]
    assert c["runner_usd"] == pytest.approx(240 * 0.192 / 3600)  # 2 x m5.xlarge, created -> end
    assert c["runner_node_seconds"] is None
    assert "EC2 twin (m5.xlarge)" in c["runner_pricing"]
    assert "no price for node n2 (type unknown)" in c["runner_pricing"]
    assert "node.kubernetes.io/instance-type" in c["runner_pricing"]


def test_node_types_come_from_labels_then_an_ml_resource() -> None:
    assert node_type_of({"node.kubernetes.io/instance-type": "m6i.large", "ray.io/node-group": "g"}, {}) == (
        "m6i.large",
        "label node.kubernetes.io/instance-type",
    )
    assert node_type_of({"ray.io/node-group": "cpu-group"}, {}) == ("cpu-group", "label ray.io/node-group")
    assert node_type_of({}, {"CPU": 4.0, "ml.m5.xlarge": 1.0}) == ("m5.xlarge", "resource ml.m5.xlarge")
    assert node_type_of({}, {"CPU": 4.0}) == (None, None)
    gpu = NodeUse("n", cpus=8.0, gpus=1.0, cpus_held=2.0, gpus_held=1.0)
    assert gpu.share == 1.0  # the node's only GPU is held: the whole node is the job's


@pytest.mark.parametrize("bad", ["m5.large", "=0.1", "m5.large=-1", "m5.large=cheap"])
def test_node_price_flags_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="expected TYPE=USD_PER_HOUR"):
        parse_node_prices([bad])


def test_a_missing_price_is_reported_not_guessed() -> None:
    report = build_report(record(instance_type="ml.m6i.xlarge"), BUILT_IN)
    c = report["cost"]
    assert c["ec2_usd_per_hour"] == 0.192 and c["runner_usd"] is not None
    assert c["sagemaker_usd_per_hour"] is None
    assert c["sagemaker_usd"] is None and c["savings_usd"] is None and c["sagemaker_usd_with_startup"] is None
    assert any("ml.m6i.xlarge" in n and "--prices" in n for n in report["notes"])


def test_another_price_table() -> None:
    table = PriceTable(
        "eu-west-1", "2030-01-01", ("mine",), {"ml.m5.xlarge": InstancePrice(1.0, 0.5)}, "p.json"
    )
    c = build_report(record(count=1), table)["cost"]
    assert c["runner_usd"] == pytest.approx(120 * 0.5 / 3600)
    assert c["sagemaker_usd"] == pytest.approx(100 * 1.0 / 3600)
    assert (c["region"], c["prices_as_of"], c["price_table"]) == ("eu-west-1", "2030-01-01", "p.json")


def test_job_that_failed_before_workers_were_ready() -> None:
    r = record(status=TransformJobStatus.FAILED, start=None, end=T0 + 30.0, records=0, workers=[])
    report = build_report(r, BUILT_IN)
    assert report["timeline"]["workers_ready_s"] is None and report["timeline"]["transform_s"] is None
    assert report["throughput"]["records_per_s"] is None
    assert report["cost"]["sagemaker_usd"] is None  # SageMaker bills nothing before TransformStartTime
    assert report["cost"]["runner_instance_seconds"] == 60.0


def test_a_running_job_is_reported_up_to_now() -> None:
    r = record(status=TransformJobStatus.IN_PROGRESS, end=None)
    report = build_report(r, BUILT_IN, now=T0 + 70.0)
    assert report["timeline"]["transform_s"] == 50.0
    assert any("not finished" in n for n in report["notes"])


def test_terminal_table_shows_the_numbers() -> None:
    console = Console(record=True, width=200)
    print_report(build_report(record(), BUILT_IN), console)
    text = console.export_text()
    for expected in (
        "report-job: Completed",
        "500.00 records/s",
        "80.0%",
        "25.0%",
        "m5.xlarge",
        "$0.0128",
        "$0.0128",
    ):
        assert expected in text
    assert "assumption" in text and "aws.amazon.com/sagemaker/pricing" in text


def test_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot_report(build_report(record(), BUILT_IN), tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCH_TRANSFORM_PRICES", raising=False)
    JobStore(tmp_path / "jobs.sqlite").create_job(record())
    assert cli.main(["--home", str(tmp_path), "report", "report-job", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cost"]["sagemaker_billed_seconds"] == 200.0
    prices = tmp_path / "p.json"
    prices.write_text(json.dumps({"prices": {"ml.m5.xlarge": {"ec2_usd_per_hour": 3.6}}}))
    assert cli.main(["--home", str(tmp_path), "report", "report-job", "--json", "--prices", str(prices)]) == 0
    assert json.loads(capsys.readouterr().out)["cost"]["runner_usd"] == pytest.approx(0.24)
    prices.write_text("[]")
    assert cli.main(["--home", str(tmp_path), "report", "report-job", "--prices", str(prices)]) == 2
    assert cli.main(["--home", str(tmp_path), "report", "no-such-job"]) == 2


def test_cli_report_html_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATCH_TRANSFORM_PRICES", raising=False)
    JobStore(tmp_path / "jobs.sqlite").create_job(record(nodes=NODES))
    page = tmp_path / "report.html"
    argv = [
        "--home",
        str(tmp_path),
        "report",
        "report-job",
        "--html",
        str(page),
        "--node-price",
        "c5.4xlarge=0.5",
    ]
    assert cli.main(argv) == 0
    text = page.read_text()
    assert (
        text.startswith("<!doctype html>") and "<script" not in text and "http" not in text
    )  # nothing fetched
    assert "<h1>Transform job report-job</h1>" in text
    assert f"${2 * 30 * 0.5 / 3600:,.6f}" in text  # two quarter-nodes, 120 s, at $0.5/h
    assert "50,000" in text and "the 2 node(s) the job held" in text
    assert cli.main([*argv[:-2], "--node-price", "c5.4xlarge"]) == 2
