"""``batch-transform prices import``: a price table from AWS's Price List offer file for
AmazonSageMaker. The offer file below has the Price List's shape (products by SKU with productFamily
and attributes; terms.OnDemand by SKU with priceDimensions), with rows of several components,
regions and location types, so only Batch Transform's own on-demand hourly prices may be taken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner import cli
from runner.cost.price_list import import_offer_file
from runner.cost.prices import BUILT_IN, PriceTableError, load_price_table
from runner.cost.report import build_report
from runner.jobs.store import JobStore
from tests.unit.test_report import record


def product(
    instance: str, component: str = "BatchTransform", region: str = "us-east-1", **extra: str
) -> dict[str, Any]:
    prefix = {"us-east-1": "USE1", "us-west-2": "USW2"}[region]
    usage = {"BatchTransform": "Tsform", "Hosting": "Host"}[component]
    return {
        "productFamily": "ML Instance",
        "attributes": {
            "servicecode": "AmazonSageMaker",
            "regionCode": region,
            "locationType": "AWS Region",
            "instanceName": instance,
            "instanceType": instance,
            "usagetype": f"{prefix}-{usage}:{instance}",
            "platoinstancetype": component,
            "component": component,
            "operation": "RunInstance",
            **extra,
        },
    }


def on_demand(*prices: tuple[str, str]) -> dict[str, Any]:
    return {
        "T1.JRTCKXETXF": {
            "offerTermCode": "JRTCKXETXF",
            "priceDimensions": {
                f"T1.JRTCKXETXF.{i}": {"unit": unit, "pricePerUnit": {"USD": usd}, "description": "x"}
                for i, (usd, unit) in enumerate(prices)
            },
        }
    }


def offer(products: dict[str, Any], terms: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "formatVersion": "v1.0",
        "offerCode": "AmazonSageMaker",
        "version": "20261120180000",
        "publicationDate": "2026-11-20T18:00:00Z",
        "products": products,
        "terms": {"OnDemand": terms},
        **top,
    }


PRODUCTS = {
    "SKU1": product("ml.m5.xlarge"),
    "SKU2": product("ml.m5.xlarge", component="Hosting"),
    "SKU3": product("ml.m4.xlarge"),
    "SKU4": product("ml.m4.xlarge", locationType="AWS Outposts"),
    "SKU5": product("ml.c5.xlarge"),
    "SKU6": product("ml.c5.xlarge"),
    "SKU7": {"productFamily": "Storage", "attributes": {"regionCode": "us-east-1"}},
}
TERMS = {
    "SKU1": on_demand(("0.2300000000", "Hrs")),
    "SKU2": on_demand(("0.2400000000", "Hrs")),
    "SKU3": on_demand(("0.2800000000", "Hrs"), ("0.0100000000", "GB-Mo")),
    "SKU4": on_demand(("9.9900000000", "Hrs")),
    "SKU5": on_demand(("0.2040000000", "Hrs")),
    "SKU6": on_demand(("0.2100000000", "Hrs")),
    "SKU7": on_demand(("0.1000000000", "GB-Mo")),
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(data))
    return path


def test_only_batch_transform_on_demand_hourly_prices_are_taken(tmp_path: Path) -> None:
    table = import_offer_file(write(tmp_path, offer(PRODUCTS, TERMS)))
    assert (table.region, table.as_of) == ("us-east-1", "2026-11-20")
    m5 = table.price("ml.m5.xlarge")
    assert m5.sagemaker_usd_per_hour == 0.23 and m5.sagemaker_source == "aws-price-list"  # not Hosting's
    assert m5.ec2_usd_per_hour == BUILT_IN.price("ml.m5.xlarge").ec2_usd_per_hour  # the built-in twin
    assert table.price("ml.m4.xlarge").sagemaker_usd_per_hour == 0.28  # not the Outposts row, not GB-Mo
    c5 = table.price("ml.c5.xlarge")  # two SKUs disagree: no guess, and the note says so
    assert c5.sagemaker_usd_per_hour is None and "0.204, 0.21" in c5.note
    # types the file does not price keep no SageMaker price (the built-in quotes are not mixed in)
    p3 = table.price("ml.p3.2xlarge")
    assert p3.sagemaker_usd_per_hour is None and "not in the offer file" in p3.note
    assert p3.ec2_usd_per_hour == BUILT_IN.price("ml.p3.2xlarge").ec2_usd_per_hour
    assert any("20261120180000" in s and "2026-11-20T18:00:00Z" in s for s in table.sources)
    assert any(s.startswith("ec2-price-list") for s in table.sources)


def test_the_region_is_chosen_when_the_file_has_several(tmp_path: Path) -> None:
    products = {**PRODUCTS, "W1": product("ml.m5.xlarge", region="us-west-2")}
    terms = {**TERMS, "W1": on_demand(("0.2500000000", "Hrs"))}
    path = write(tmp_path, offer(products, terms))
    with pytest.raises(
        PriceTableError, match=r"2 regions \(us-east-1, us-west-2\); choose one with --region"
    ):
        import_offer_file(path)
    west = import_offer_file(path, region="us-west-2")
    m5 = west.price("ml.m5.xlarge")
    assert (m5.sagemaker_usd_per_hour, m5.ec2_usd_per_hour) == (0.25, None)  # no built-in EC2 price there
    assert "us-west-2" in m5.note
    with pytest.raises(PriceTableError, match="for region 'eu-west-1'; it has them for us-east-1, us-west-2"):
        import_offer_file(path, region="eu-west-1")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot be read as JSON"),
        (json.dumps({"offerCode": "AmazonEC2", "products": {}}), "offerCode is 'AmazonEC2', expected"),
        (json.dumps([1]), "offerCode is 'list'"),
        (json.dumps({"offerCode": "AmazonSageMaker"}), "no 'products' and 'terms.OnDemand'"),
        (
            json.dumps(offer({"SKU2": PRODUCTS["SKU2"]}, TERMS)),
            "has no Batch Transform instance prices",
        ),
    ],
)
def test_files_that_are_not_a_sagemaker_offer_are_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "offer.json"
    path.write_text(content)
    with pytest.raises(PriceTableError, match=message):
        import_offer_file(path)
    with pytest.raises(PriceTableError, match="does not exist"):
        import_offer_file(tmp_path / "missing.json")


def test_cli_import_then_report_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BATCH_TRANSFORM_PRICES", raising=False)
    path = write(tmp_path, offer(PRODUCTS, TERMS))
    table = tmp_path / "prices.json"
    assert cli.main(["prices", "import", str(path), "--out", str(table)]) == 0
    assert "2 of " in capsys.readouterr().err  # m5 and m4 priced; c5 refused
    assert load_price_table(table).price("ml.m4.xlarge").sagemaker_usd_per_hour == 0.28
    # the built-in table has no Batch Transform price for ml.m4.xlarge; the imported one does
    JobStore(tmp_path / "jobs.sqlite").create_job(record(instance_type="ml.m4.xlarge", count=1))
    assert build_report(record(instance_type="ml.m4.xlarge"), BUILT_IN)["cost"]["sagemaker_usd"] is None
    assert cli.main(["--home", str(tmp_path), "report", "report-job", "--json", "--prices", str(table)]) == 0
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert cost["sagemaker_usd"] == pytest.approx(100 * 0.28 / 3600)
    assert cli.main(["prices", "show", "--prices", str(table)]) == 0
    assert json.loads(capsys.readouterr().out)["prices"]["ml.m5.xlarge"]["sagemaker_usd_per_hour"] == 0.23
    assert cli.main(["prices", "import", str(tmp_path / "nope.json")]) == 2
