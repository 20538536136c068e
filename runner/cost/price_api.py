"""``batch-transform prices fetch``: prices asked of AWS's Price List Query API (boto3's ``pricing``
client, GetProducts), cached for ``report`` and ``benchmark``.

- SageMaker: the ``AmazonSageMaker`` products of productFamily ``ML Instance`` in the region, of which
  the Batch Transform rows are kept, with their on-demand hourly USD, as ``prices import`` keeps them
  from an offer file (``price_list.py``).
- EC2, for each ml type's twin (``ml.m5.xlarge`` -> ``m5.xlarge``): the ``AmazonEC2`` on-demand row
  for Linux, shared tenancy, no pre-installed software, no licence, capacity ``Used`` (the plain
  on-demand instance price).

A type whose rows give more than one hourly price is left without one, with a note, never guessed.
The API answers in three regions only (us-east-1, eu-central-1, ap-south-1) but prices every region:
the region asked about is a filter. The answer is cached with its publication date in
``<home>/prices/fetched.json``, the shape ``--prices`` reads; ``price_table`` puts it above any
``--prices`` file and the built-in table (prices.py).

No test can reach AWS: the request building and parsing are tested with botocore's Stubber on answers
in the service model's own shape (tests/unit/test_price_api.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.cost.price_list import BATCH_TRANSFORM, ML_INSTANCE, hourly_usd, transform_products
from runner.cost.prices import InstancePrice, PriceTable, PriceTableError, ec2_twin

PRICING_ENDPOINT_REGION = "us-east-1"  # the API's endpoints: us-east-1, eu-central-1, ap-south-1
PAGE_SIZE = 100  # GetProducts' MaxResults at most
FORMAT_VERSION = "aws_v1"
PRICE_LIST_API = "aws-price-list-api"
EC2_FILTERS = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
    "licenseModel": "No License required",
}


@dataclass(frozen=True)
class Fetched:
    """The table fetched, and each ml type it could not price fully, with why."""

    table: PriceTable
    unpriced: Mapping[str, str]


def pricing_client(endpoint_region: str = PRICING_ENDPOINT_REGION) -> Any:
    import boto3

    return boto3.session.Session().client("pricing", region_name=endpoint_region)


def _filters(**fields: str) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in fields.items()]


def _products(client: Any, service: str, filters: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Every GetProducts item (each a JSON text of product, terms, version, publicationDate)."""
    token: str | None = None
    while True:
        params: dict[str, Any] = {
            "ServiceCode": service,
            "Filters": filters,
            "FormatVersion": FORMAT_VERSION,
            "MaxResults": PAGE_SIZE,
        }
        if token:
            params["NextToken"] = token
        page = client.get_products(**params)
        for item in page.get("PriceList") or ():
            yield json.loads(item) if isinstance(item, str) else item
        token = page.get("NextToken")
        if not token:
            return


def _offers(items: Iterable[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """The items as an offer file's ``products`` and ``terms.OnDemand`` by SKU, and their dates."""
    products: dict[str, Any] = {}
    terms: dict[str, Any] = {}
    dates: set[str] = set()
    for item in items:
        product = item.get("product") or {}
        sku = str(product.get("sku") or "")
        if not sku:
            continue
        products[sku] = product
        terms[sku] = (item.get("terms") or {}).get("OnDemand") or {}
        if item.get("publicationDate"):
            dates.add(str(item["publicationDate"]))
    return products, terms, dates


def _one_price(values: set[float], what: str) -> tuple[float | None, str]:
    if len(values) == 1:
        return next(iter(values)), ""
    if not values:
        return None, f"{what}: no on-demand hourly price in the Price List API's answer"
    shown = ", ".join(f"{v:g}" for v in sorted(values))
    return None, f"{what}: the Price List API gives {len(values)} hourly prices ({shown})"


def fetch_prices(client: Any, region: str, types: Iterable[str] | None = None) -> Fetched:
    """SageMaker Batch Transform and EC2 on-demand prices for ``region`` (default: every ml type the
    SageMaker answer prices), from the Price List Query API through ``client``."""
    asked = sorted(set(types or ()))
    bad = [t for t in asked if not t.startswith("ml.")]
    if bad:
        raise PriceTableError(f"--types: {', '.join(bad)}: not ml.* instance types (e.g. ml.m5.xlarge)")
    products, terms, dates = _offers(
        _products(client, "AmazonSageMaker", _filters(regionCode=region, productFamily=ML_INSTANCE))
    )
    found: dict[str, set[float]] = {}
    for sku, (sku_region, instance_type) in transform_products(products).items():
        if sku_region == region:
            found.setdefault(instance_type, set()).update(hourly_usd(terms[sku]))
    wanted = asked or sorted(found)
    prices: dict[str, InstancePrice] = {}
    unpriced: dict[str, str] = {}
    for name in wanted:
        sagemaker, sagemaker_why = _one_price(found.get(name, set()), f"SageMaker {BATCH_TRANSFORM}")
        twin = ec2_twin(name)
        _, ec2_terms, ec2_dates = _offers(
            _products(client, "AmazonEC2", _filters(regionCode=region, instanceType=twin, **EC2_FILTERS))
        )
        dates |= ec2_dates
        ec2_values = {usd for offer in ec2_terms.values() for usd in hourly_usd(offer)}
        ec2, ec2_why = _one_price(ec2_values, f"EC2 {twin}")
        note = "; ".join(w for w in (sagemaker_why, ec2_why) if w)
        if note:
            unpriced[name] = note
        prices[name] = InstancePrice(
            sagemaker,
            ec2,
            note,
            PRICE_LIST_API if sagemaker is not None else "",
            PRICE_LIST_API if ec2 is not None else "",
        )
    published = max(dates) if dates else "undated"
    fetched_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    source = (
        f"{PRICE_LIST_API}: AWS Price List Query API (GetProducts), region {region}: AmazonSageMaker "
        f"{ML_INSTANCE} {BATCH_TRANSFORM} and AmazonEC2 Linux shared-tenancy on-demand, published "
        f"{published}, fetched {fetched_at}"
    )
    table = PriceTable(region, published[:10], (source,), MappingProxyType(prices), origin=source)
    return Fetched(table, MappingProxyType(unpriced))


def cache_path(data_dir: Path) -> Path:
    """Where ``prices fetch`` keeps its answer under the runner's home."""
    return data_dir / "prices" / "fetched.json"


def write_cache(table: PriceTable, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_json(), indent=1) + "\n")
    tmp.replace(path)  # a reader never sees half a table
    return path
