"""The price table: one entry per ml.* type, dated and sourced, prices or an honest None, and a
replacement table from a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.contract.instances import INSTANCE_TYPES
from runner.cost.prices import (
    AS_OF,
    BUILT_IN,
    PRICES_ENV,
    SOURCES,
    PriceTableError,
    ec2_twin,
    load_price_table,
    parse_price_table,
    price_table,
)


def test_every_instance_type_has_an_entry() -> None:
    assert set(BUILT_IN.prices) == set(INSTANCE_TYPES)


def test_table_is_dated_and_sourced() -> None:
    assert BUILT_IN.region == "us-east-1"
    assert BUILT_IN.as_of == AS_OF
    assert any("aws.amazon.com/sagemaker/pricing" in s for s in BUILT_IN.sources)
    assert any("aws.amazon.com/ec2/pricing" in s for s in BUILT_IN.sources)


def test_every_price_names_its_source() -> None:
    for name, p in BUILT_IN.prices.items():
        for price, source in (
            (p.sagemaker_usd_per_hour, p.sagemaker_source),
            (p.ec2_usd_per_hour, p.ec2_source),
        ):
            if price is None:
                assert source == "", name
            else:
                assert source in SOURCES, (name, source)
                assert f"{source}: {SOURCES[source]}" in BUILT_IN.sources
    # The sources say where the numbers were read, for which region and on which day.
    for text in SOURCES.values():
        assert "US East (N. Virginia)" in text and AS_OF in text


def test_every_type_has_an_ec2_price() -> None:
    """The EC2 side comes from the AWS Price List (via Karpenter's generated table) for every twin."""
    missing = [n for n, p in BUILT_IN.prices.items() if p.ec2_usd_per_hour is None]
    assert missing == []


def test_a_missing_price_says_why() -> None:
    for name, p in BUILT_IN.prices.items():
        missing = p.sagemaker_usd_per_hour is None or p.ec2_usd_per_hour is None
        assert bool(p.note) == missing, name
        if p.sagemaker_usd_per_hour is None:
            assert "SageMaker:" in p.note and "--prices" in p.note
        if p.ec2_usd_per_hour is None:
            assert "EC2:" in p.note


@pytest.mark.parametrize(
    ("instance_type", "sagemaker", "ec2"),
    [
        ("ml.m5.large", 0.115, 0.096),
        ("ml.m5.xlarge", 0.23, 0.192),
        ("ml.c5.xlarge", 0.204, 0.17),
        ("ml.p3.2xlarge", 3.825, 3.06),
        ("ml.g4dn.xlarge", 0.7364, 0.526),
        ("ml.g5.xlarge", 1.408, 1.006),
        ("ml.m6i.32xlarge", None, 6.144),
        ("ml.g6e.48xlarge", None, 30.13118),
        ("ml.m4.xlarge", None, 0.2),
        ("ml.m4.16xlarge", None, 3.2),
        ("ml.c7i.large", None, 0.08925),
        ("ml.r7i.large", None, 0.1323),
        ("ml.trn1.32xlarge", None, 21.5),
    ],
)
def test_known_prices(instance_type: str, sagemaker: float | None, ec2: float | None) -> None:
    p = BUILT_IN.price(instance_type)
    assert (p.sagemaker_usd_per_hour, p.ec2_usd_per_hour) == (sagemaker, ec2)


def test_sagemaker_costs_more_than_its_ec2_twin() -> None:
    for name, p in BUILT_IN.prices.items():
        if p.sagemaker_usd_per_hour is not None and p.ec2_usd_per_hour is not None:
            assert 1.0 < p.sagemaker_usd_per_hour / p.ec2_usd_per_hour < 1.5, name


def test_prices_grow_with_size_in_cpu_families() -> None:
    for family in ("m4", "c4", "c5", "m5", "m6i", "c6i", "r6i", "m7i", "c7i", "r7i"):
        entries = sorted(
            (INSTANCE_TYPES[n].vcpus, p.ec2_usd_per_hour or 0.0)
            for n, p in BUILT_IN.prices.items()
            if n.split(".")[1] == family
        )
        prices = [e for _, e in entries]
        assert 0.0 not in prices and prices == sorted(prices), family


def test_ec2_twin() -> None:
    assert ec2_twin("ml.m5.xlarge") == "m5.xlarge"
    assert ec2_twin("ml.g6e.48xlarge") == "g6e.48xlarge"


def test_unknown_type_has_no_price() -> None:
    p = BUILT_IN.price("ml.z9.huge")
    assert p.sagemaker_usd_per_hour is None and p.ec2_usd_per_hour is None
    assert "not in the price table" in p.note


def test_round_trip_through_json(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(BUILT_IN.to_json()))
    loaded = load_price_table(path)
    assert dict(loaded.prices) == dict(BUILT_IN.prices)
    assert (loaded.region, loaded.as_of, loaded.sources) == (
        BUILT_IN.region,
        BUILT_IN.as_of,
        BUILT_IN.sources,
    )


def test_a_price_file_may_name_sources(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    entry = {"ec2_usd_per_hour": 0.214, "ec2_source": "my bill, 2030-01", "note": "EC2 only"}
    path.write_text(json.dumps({"sources": ["my bill"], "prices": {"ml.m5.xlarge": entry}}))
    p = load_price_table(path).price("ml.m5.xlarge")
    assert (p.ec2_usd_per_hour, p.ec2_source, p.sagemaker_source, p.note) == (
        0.214,
        "my bill, 2030-01",
        "",
        "EC2 only",
    )


def test_file_then_env_then_built_in(tmp_path: Path) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text(
        json.dumps({"region": "eu-west-1", "prices": {"ml.m5.xlarge": {"ec2_usd_per_hour": 0.214}}})
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"prices": {}}))
    assert price_table(None, {}) is BUILT_IN
    from_env = price_table(None, {PRICES_ENV: str(mine)})
    assert from_env.region == "eu-west-1" and from_env.origin == str(mine)
    assert from_env.price("ml.m5.xlarge").ec2_usd_per_hour == 0.214
    assert from_env.price("ml.m5.xlarge").sagemaker_usd_per_hour is None
    # A table replaces the built-in one whole: types it does not list have no price.
    assert from_env.price("ml.c5.xlarge").ec2_usd_per_hour is None
    assert price_table(str(other), {PRICES_ENV: str(mine)}).origin == str(other)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "'prices' object"),
        ({"prices": {"m5.xlarge": {}}}, "not an ml.* instance type"),
        ({"prices": {"ml.m5.xlarge": 0.2}}, "must be an object"),
        ({"prices": {"ml.m5.xlarge": {"ec2": 0.2}}}, "unknown keys ['ec2']"),
        ({"prices": {"ml.m5.xlarge": {"ec2_usd_per_hour": -1}}}, "non-negative number"),
        ({"prices": {"ml.m5.xlarge": {"ec2_usd_per_hour": "0.2"}}}, "non-negative number"),
    ],
)
def test_bad_price_files(data: object, message: str) -> None:
    with pytest.raises(PriceTableError, match=r"p\.json") as e:
        parse_price_table(data, "p.json")
    assert message in str(e.value)


def test_unreadable_price_file(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="does not exist"):
        load_price_table(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(PriceTableError, match="cannot be read as JSON"):
        load_price_table(bad)
