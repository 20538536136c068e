"""``prices fetch``: the Price List Query API's requests and answers. No test can reach AWS, so the
calls go to botocore's Stubber, which checks each request's parameters and each answer against the
``pricing`` service model; the answers' items are in the Price List API's own product format."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from runner.cli.main import main
from runner.cost import price_api
from runner.cost.price_api import EC2_FILTERS, PRICE_LIST_API, cache_path, fetch_prices, write_cache
from runner.cost.prices import BUILT_IN, EC2_PRICE_LIST, PriceTableError, price_table

REGION = "eu-west-1"
PUBLISHED = "2026-11-20T18:04:11Z"


def on_demand(sku: str, usd: str, unit: str = "Hrs") -> dict[str, Any]:
    term = f"{sku}.JRTCKXETXF"
    return {
        term: {
            "priceDimensions": {
                f"{term}.6YS6EN2CT7": {
                    "unit": unit,
                    "pricePerUnit": {"USD": usd},
                    "description": f"${usd} per {unit}",
                    "rateCode": f"{term}.6YS6EN2CT7",
                }
            },
            "sku": sku,
            "effectiveDate": "2026-11-01T00:00:00Z",
            "offerTermCode": "JRTCKXETXF",
            "termAttributes": {},
        }
    }


def sagemaker_item(
    sku: str, instance: str, usd: str, component: str = "BatchTransform", region: str = REGION
) -> str:
    attributes = {
        "regionCode": region,
        "location": "EU (Ireland)",
        "locationType": "AWS Region",
        "instanceName": instance,
        "component": component,
        "platoinstancetype": component,
        "usagetype": f"EU-Tsform:{instance}",
        "servicecode": "AmazonSageMaker",
    }
    item = {
        "product": {"productFamily": "ML Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": on_demand(sku, usd)},
        "version": "20261120180411",
        "publicationDate": PUBLISHED,
    }
    return json.dumps(item)


def ec2_item(sku: str, instance: str, usd: str) -> str:
    attributes = {"regionCode": REGION, "instanceType": instance, **EC2_FILTERS, "servicecode": "AmazonEC2"}
    item = {
        "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": on_demand(sku, usd)},
        "version": "20261121000000",
        "publicationDate": "2026-11-21T00:00:00Z",
    }
    return json.dumps(item)


def request(service: str, token: str | None = None, **fields: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "ServiceCode": service,
        "Filters": [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    if token:
        params["NextToken"] = token
    return params


def sagemaker_request(token: str | None = None) -> dict[str, Any]:
    return request("AmazonSageMaker", token, regionCode=REGION, productFamily="ML Instance")


def ec2_request(instance: str) -> dict[str, Any]:
    return request("AmazonEC2", regionCode=REGION, instanceType=instance, **EC2_FILTERS)


def answer(*items: str, token: str | None = None) -> dict[str, Any]:
    return {"FormatVersion": "aws_v1", "PriceList": list(items), **({"NextToken": token} if token else {})}


@pytest.fixture
def pricing() -> Iterator[tuple[Any, Stubber]]:
    client = botocore.session.get_session().create_client(
        "pricing", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def stub_answers(stub: Stubber) -> None:
    """Two pages of SageMaker products (a training row among them, a type with two prices), then one
    EC2 query per type, in the types' order; g4dn has no EC2 row."""
    stub.add_response(
        "get_products",
        answer(
            sagemaker_item("SKU1", "ml.m5.xlarge", "0.2560000000"),
            sagemaker_item("SKU2", "ml.m5.xlarge", "0.2690000000", component="Training"),
            token="page-2",
        ),
        sagemaker_request(),
    )
    stub.add_response(
        "get_products",
        answer(
            sagemaker_item("SKU3", "ml.c5.xlarge", "0.2280000000"),
            sagemaker_item("SKU4", "ml.g4dn.xlarge", "0.8220000000"),
            sagemaker_item("SKU5", "ml.g4dn.xlarge", "0.8300000000"),
        ),
        sagemaker_request("page-2"),
    )
    stub.add_response(
        "get_products", answer(ec2_item("E1", "c5.xlarge", "0.1920000000")), ec2_request("c5.xlarge")
    )
    stub.add_response("get_products", answer(), ec2_request("g4dn.xlarge"))
    stub.add_response(
        "get_products", answer(ec2_item("E2", "m5.xlarge", "0.2140000000")), ec2_request("m5.xlarge")
    )


def test_fetch_asks_the_price_list_api_and_keeps_only_what_it_states(pricing: tuple[Any, Stubber]) -> None:
    client, stub = pricing
    stub_answers(stub)
    fetched = fetch_prices(client, REGION)
    table = fetched.table
    assert (table.region, table.as_of) == (REGION, "2026-11-21")
    assert sorted(table.prices) == ["ml.c5.xlarge", "ml.g4dn.xlarge", "ml.m5.xlarge"]
    m5 = table.price("ml.m5.xlarge")  # the Training row's price is not Batch Transform's
    assert (m5.sagemaker_usd_per_hour, m5.ec2_usd_per_hour, m5.note) == (0.256, 0.214, "")
    assert m5.sagemaker_source == m5.ec2_source == PRICE_LIST_API
    c5 = table.price("ml.c5.xlarge")
    assert (c5.sagemaker_usd_per_hour, c5.ec2_usd_per_hour) == (0.228, 0.192)
    g4dn = table.price("ml.g4dn.xlarge")  # two SageMaker prices and no EC2 row: neither is guessed
    assert (g4dn.sagemaker_usd_per_hour, g4dn.ec2_usd_per_hour) == (None, None)
    assert dict(fetched.unpriced) == {
        "ml.g4dn.xlarge": "SageMaker BatchTransform: the Price List API gives 2 hourly prices (0.822, 0.83); "
        "EC2 g4dn.xlarge: no on-demand hourly price in the Price List API's answer"
    }
    (source,) = table.sources
    assert source.startswith(f"{PRICE_LIST_API}: AWS Price List Query API (GetProducts), region {REGION}")
    assert "published 2026-11-21T00:00:00Z" in source


def test_fetch_of_named_types_asks_ec2_for_their_twins_only(pricing: tuple[Any, Stubber]) -> None:
    client, stub = pricing
    stub.add_response(
        "get_products", answer(sagemaker_item("SKU1", "ml.m5.xlarge", "0.2560000000")), sagemaker_request()
    )
    stub.add_response("get_products", answer(), ec2_request("p3.2xlarge"))
    fetched = fetch_prices(client, REGION, ["ml.p3.2xlarge"])
    assert list(fetched.table.prices) == ["ml.p3.2xlarge"]
    assert "SageMaker BatchTransform: no on-demand hourly price" in fetched.unpriced["ml.p3.2xlarge"]


def test_types_that_are_not_ml_types_are_refused_before_any_call(pricing: tuple[Any, Stubber]) -> None:
    client, _ = pricing
    with pytest.raises(PriceTableError, match=r"--types: m5.xlarge: not ml\.\* instance types"):
        fetch_prices(client, REGION, ["m5.xlarge", "ml.m5.xlarge"])


def test_the_cache_comes_first_then_the_file_then_the_built_in_table(
    pricing: tuple[Any, Stubber], tmp_path: Path
) -> None:
    client, stub = pricing
    stub.add_response(
        "get_products",
        answer(sagemaker_item("SKU1", "ml.m5.xlarge", "0.2560000000", region="us-east-1")),
        request("AmazonSageMaker", regionCode="us-east-1", productFamily="ML Instance"),
    )
    stub.add_response(
        "get_products",
        answer(),
        request("AmazonEC2", regionCode="us-east-1", instanceType="m5.xlarge", **EC2_FILTERS),
    )
    cache = write_cache(fetch_prices(client, "us-east-1").table, cache_path(tmp_path))
    mine = tmp_path / "mine.json"
    mine.write_text(
        json.dumps(
            {
                "region": "us-east-1",
                "prices": {"ml.m5.xlarge": {"sagemaker_usd_per_hour": 9.0, "ec2_usd_per_hour": 0.3}},
            }
        )
    )
    table = price_table(str(mine), {}, cache)
    m5 = table.price("ml.m5.xlarge")
    # SageMaker's price from the fetched answer; EC2's (which it lacks) from the file, then built-in.
    assert (m5.sagemaker_usd_per_hour, m5.sagemaker_source) == (0.256, PRICE_LIST_API)
    assert (m5.ec2_usd_per_hour, m5.ec2_source) == (0.3, "")
    c5 = table.price("ml.c5.xlarge")  # in the built-in table only
    assert c5 == BUILT_IN.price("ml.c5.xlarge") and c5.ec2_source == EC2_PRICE_LIST
    assert table.origin == f"{cache}, then {mine}, then built-in"
    assert table.sources[0].startswith(f"{PRICE_LIST_API}: AWS Price List Query API")
    # A cache of another region keeps the built-in (us-east-1) prices out.
    other = fetch_prices_for_region(tmp_path, "eu-west-1")
    assert price_table(None, {}, other).price("ml.c5.xlarge").ec2_usd_per_hour is None


def fetch_prices_for_region(tmp_path: Path, region: str) -> Path:
    path = tmp_path / region / "fetched.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"region": region, "prices": {}}))
    return path


def test_prices_fetch_command_caches_the_answer_for_report(
    pricing: tuple[Any, Stubber],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, stub = pricing
    stub_answers(stub)
    monkeypatch.setattr(price_api, "pricing_client", lambda region: client)
    home = tmp_path / "home"
    assert main(["--home", str(home), "prices", "fetch", "--region", REGION]) == 0
    err = capsys.readouterr().err
    assert "not priced: ml.g4dn.xlarge: SageMaker BatchTransform: the Price List API gives 2" in err
    assert f"2 of 3 ml types priced on both sides for {REGION} (published 2026-11-21)" in err
    assert main(["--home", str(home), "prices", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["region"] == REGION
    assert shown["prices"]["ml.m5.xlarge"]["sagemaker_usd_per_hour"] == 0.256
    assert shown["prices"]["ml.m5.xlarge"]["sagemaker_source"] == PRICE_LIST_API
