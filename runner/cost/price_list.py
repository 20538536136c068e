"""A price table from AWS's own Price List offer file: ``batch-transform prices import``.

The built-in table (``prices.py``) lacks SageMaker Batch Transform prices for most ml types: no copy
of AWS's price data could be found to cite. AWS publishes them in the Price List bulk API, one file
per service and region, which a user downloads and turns into a table for ``--prices``::

    curl -o sagemaker-offer.json https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonSageMaker/current/us-east-1/index.json
    batch-transform prices import sagemaker-offer.json --out prices.json
    batch-transform report NAME --prices prices.json

An offer file holds ``products`` (SKU -> productFamily and attributes) and ``terms.OnDemand`` (SKU
-> terms -> priceDimensions with ``unit`` and ``pricePerUnit.USD``). Batch Transform's rows are
productFamily ``ML Instance`` whose ``platoinstancetype`` (or ``component``) is ``BatchTransform``
(usage type ``<region>-Tsform:ml.<type>``). Only prices the file states are taken; a type with two
different hourly prices is left out with a note, not guessed. EC2 twins keep the built-in table's
prices when the region is the built-in one's; otherwise they are left empty.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.cost.prices import BUILT_IN, EC2_PRICE_LIST, InstancePrice, PriceTable, PriceTableError

OFFER_CODE = "AmazonSageMaker"
ML_INSTANCE = "ML Instance"
BATCH_TRANSFORM = "BatchTransform"
PRICE_LIST = "aws-price-list"


def import_offer_file(path: str | Path, region: str | None = None) -> PriceTable:
    """The Batch Transform on-demand prices of ``region`` (default: the file's only region) in
    ``path``, merged over the built-in EC2 prices where the regions agree."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PriceTableError(f"offer file {path} does not exist") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PriceTableError(f"offer file {path} cannot be read as JSON: {e}") from None
    if not isinstance(data, Mapping) or data.get("offerCode") != OFFER_CODE:
        code = data.get("offerCode") if isinstance(data, Mapping) else type(data).__name__
        raise PriceTableError(
            f"offer file {path}: offerCode is {code!r}, expected {OFFER_CODE!r} (the Price List file of "
            f".../offers/v1.0/aws/{OFFER_CODE}/current/<region>/index.json)"
        )
    products, terms = data.get("products"), (data.get("terms") or {}).get("OnDemand")
    if not isinstance(products, Mapping) or not isinstance(terms, Mapping):
        raise PriceTableError(f"offer file {path}: no 'products' and 'terms.OnDemand' objects")
    rows = transform_products(products)
    regions = sorted({r for r, _ in rows.values()})
    if not regions:
        raise PriceTableError(
            f"offer file {path} has no Batch Transform instance prices (products of productFamily "
            f"{ML_INSTANCE!r} whose platoinstancetype is {BATCH_TRANSFORM!r})"
        )
    if region is None:
        if len(regions) != 1:
            raise PriceTableError(
                f"offer file {path} has Batch Transform prices for {len(regions)} regions "
                f"({', '.join(regions)}); choose one with --region"
            )
        region = regions[0]
    found: dict[str, set[float]] = {}
    for sku, (sku_region, instance_type) in rows.items():
        if sku_region == region:
            for usd in hourly_usd(terms.get(sku)):
                found.setdefault(instance_type, set()).add(usd)
    if not found:
        raise PriceTableError(
            f"offer file {path}: no Batch Transform on-demand hourly prices for region {region!r}"
            + (f"; it has them for {', '.join(regions)}" if regions else "")
        )
    source = (
        f"AWS Price List API, offer {OFFER_CODE} version {data.get('version', '?')}, published "
        f"{data.get('publicationDate', '?')}, region {region}, on-demand Batch Transform (read from {path})"
    )
    return _merge(region, str(data.get("publicationDate") or "undated")[:10], source, found)


def transform_products(products: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """SKU -> (region, ml instance type) for every Batch Transform instance product."""
    out = {}
    for sku, product in products.items():
        if not isinstance(product, Mapping) or product.get("productFamily") != ML_INSTANCE:
            continue
        a = product.get("attributes") or {}
        if BATCH_TRANSFORM not in (a.get("platoinstancetype"), a.get("component")):
            continue
        if "locationType" in a and a["locationType"] != "AWS Region":  # Outposts, Local Zones
            continue
        instance_type = _instance_type(a)
        if a.get("regionCode") and instance_type:
            out[str(sku)] = (str(a["regionCode"]), instance_type)
    return out


def _instance_type(attributes: Mapping[str, Any]) -> str | None:
    for value in (attributes.get("instanceName"), attributes.get("instanceType")):
        if isinstance(value, str) and value.startswith("ml."):
            return value.split("-", 1)[0]  # some SKUs carry a suffix, e.g. "ml.m5.xlarge-Transform"
    usage = str(attributes.get("usagetype") or "")
    after = usage.split(":", 1)[1] if ":" in usage else ""
    return after if after.startswith("ml.") else None


def hourly_usd(offers: Any) -> list[float]:
    out = []
    for term in (offers or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            if dimension.get("unit") not in ("Hrs", "Hours", "Hour"):
                continue
            try:
                usd = float((dimension.get("pricePerUnit") or {})["USD"])
            except (KeyError, TypeError, ValueError):
                continue
            if usd > 0:
                out.append(usd)
    return out


def _merge(region: str, as_of: str, source: str, found: Mapping[str, set[float]]) -> PriceTable:
    same_region = region == BUILT_IN.region
    names = sorted(set(found) | (set(BUILT_IN.prices) if same_region else set()))
    prices = {}
    for name in names:
        base = BUILT_IN.price(name)
        ec2, ec2_source = (base.ec2_usd_per_hour, base.ec2_source) if same_region else (None, "")
        values = sorted(found.get(name, ()))
        why = []
        if len(values) != 1:
            why.append(
                f"the offer file gives {len(values)} hourly prices ({', '.join(f'{v:g}' for v in values)})"
                if values
                else "SageMaker: not in the offer file"
            )
        if ec2 is None:
            why.append(
                f"EC2: no built-in price for {region} (the built-in EC2 prices are {BUILT_IN.region}'s)"
                if not same_region
                else "EC2: no built-in price"
            )
        sagemaker = values[0] if len(values) == 1 else None
        prices[name] = InstancePrice(
            sagemaker, ec2, "; ".join(why), PRICE_LIST if sagemaker is not None else "", ec2_source
        )
    sources = [f"{PRICE_LIST}: {source}"]
    if same_region:
        sources += [s for s in BUILT_IN.sources if s.startswith(EC2_PRICE_LIST)]
    return PriceTable(region, as_of, tuple(sources), MappingProxyType(prices), origin=source)
