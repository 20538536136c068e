"""On-demand hourly prices of every ``ml.*`` transform instance type and of its EC2 twin.

``report.py`` prices a run with them: the runner's instance-seconds at the EC2 price of the
instance type's twin (``ml.m5.xlarge`` -> ``m5.xlarge``) against what SageMaker would bill at the
``ml.*`` Batch Transform price. Nothing here reaches the network: the built-in table below was taken
by hand, and another one can be supplied as a JSON file (``--prices FILE`` or
``$BATCH_TRANSFORM_PRICES``) in the shape ``PriceTable.to_json()`` writes
(``python -m runner.cost.prices`` prints the built-in table in that shape).

Where a price could not be found it is ``None`` with a note, never a guess; a report then says that
it cannot price that side. ``batch-transform prices import`` (``price_list.py``) makes a table with
SageMaker's own Batch Transform prices from AWS's Price List offer file, which a user downloads.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.errors import RunnerError

PRICES_ENV = "BATCH_TRANSFORM_PRICES"
REGION = "us-east-1"
# The day the built-in prices were read from the sources below.
AS_OF = "2026-11-26"

# Each built-in price names its source by one of these labels; the table lists them in full.
EC2_PRICE_LIST = "ec2-price-list"
SAGEMAKER_QUOTES = "sagemaker-quotes"
SOURCES: Mapping[str, str] = MappingProxyType(
    {
        EC2_PRICE_LIST: (
            "Amazon EC2 On-Demand pricing, US East (N. Virginia), Linux, shared tenancy "
            "(aws.amazon.com/ec2/pricing/on-demand/) as the AWS Price List API gives it, from "
            "github.com/aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go "
            f"(generated 2026-01-19 for us-east-1), read {AS_OF}; it agrees with the public price "
            "tables found by search for every type both list"
        ),
        SAGEMAKER_QUOTES: (
            "Amazon SageMaker AI On-Demand pricing, Batch Transform, US East (N. Virginia) "
            "(aws.amazon.com/sagemaker/pricing/), as quoted by public price tables found by search on "
            f"{AS_OF}; kept only where a quote names us-east-1 and the quotes agree"
        ),
    }
)
NOT_FOUND = (
    f"no us-east-1 price found in the sources searched on {AS_OF}; supply one with --prices "
    "(`batch-transform prices import` makes one from AWS's Price List)"
)


class PriceTableError(RunnerError):
    """A price file that cannot be read or is not in the expected shape."""


@dataclass(frozen=True)
class InstancePrice:
    """USD per instance-hour; ``None`` where the table has no price (``note`` says why). Each price
    may name its source (in the built-in table: a key of ``SOURCES``)."""

    sagemaker_usd_per_hour: float | None
    ec2_usd_per_hour: float | None
    note: str = ""
    sagemaker_source: str = ""
    ec2_source: str = ""


@dataclass(frozen=True)
class PriceTable:
    region: str
    as_of: str
    sources: tuple[str, ...]
    prices: Mapping[str, InstancePrice]
    origin: str = "built-in"
    currency: str = "USD"

    def price(self, instance_type: str) -> InstancePrice:
        found = self.prices.get(instance_type)
        if found is not None:
            return found
        return InstancePrice(None, None, f"{instance_type} is not in the price table ({self.origin})")

    def to_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "as_of": self.as_of,
            "currency": self.currency,
            "sources": list(self.sources),
            "prices": {
                name: {
                    "sagemaker_usd_per_hour": p.sagemaker_usd_per_hour,
                    "ec2_usd_per_hour": p.ec2_usd_per_hour,
                    "note": p.note,
                    "sagemaker_source": p.sagemaker_source,
                    "ec2_source": p.ec2_source,
                }
                for name, p in self.prices.items()
            },
        }


def ec2_twin(instance_type: str) -> str:
    """``ml.m5.xlarge`` -> ``m5.xlarge``: the EC2 instance an ml instance type runs on."""
    return instance_type.removeprefix("ml.")


# ---- the built-in table ------------------------------------------------------------------------
# Per family: sizes; EC2 prices and their source; SageMaker Batch Transform prices and their source
# (prices in the order of the sizes, None = not found).
_N = None
_E = EC2_PRICE_LIST
_S = SAGEMAKER_QUOTES
_Family = tuple[str, list[float | None], str, list[float | None], str]
_FAMILIES: dict[str, _Family] = {
    "m4": ("xlarge 2xlarge 4xlarge 10xlarge 16xlarge", [0.2, 0.4, 0.8, 2.0, 3.2], _E, [_N] * 5, _S),
    "c4": ("xlarge 2xlarge 4xlarge 8xlarge", [0.199, 0.398, 0.796, 1.591], _E, [_N] * 4, _S),
    "c5": (
        "xlarge 2xlarge 4xlarge 9xlarge 18xlarge",
        [0.17, 0.34, 0.68, 1.53, 3.06],
        _E,
        [0.204, 0.408, 0.816, 1.836, 3.672],
        _S,
    ),
    "m5": (
        "large xlarge 2xlarge 4xlarge 12xlarge 24xlarge",
        [0.096, 0.192, 0.384, 0.768, 2.304, 4.608],
        _E,
        [0.115, 0.23, 0.461, 0.922, 2.765, 5.53],
        _S,
    ),
    "m6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.096, 0.192, 0.384, 0.768, 1.536, 2.304, 3.072, 4.608, 6.144],
        _E,
        [_N] * 9,
        _S,
    ),
    "c6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.085, 0.17, 0.34, 0.68, 1.36, 2.04, 2.72, 4.08, 5.44],
        _E,
        [_N] * 9,
        _S,
    ),
    "r6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.126, 0.252, 0.504, 1.008, 2.016, 3.024, 4.032, 6.048, 8.064],
        _E,
        [_N] * 9,
        _S,
    ),
    "m7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.1008, 0.2016, 0.4032, 0.8064, 1.6128, 2.4192, 3.2256, 4.8384, 9.6768],
        _E,
        [_N] * 9,
        _S,
    ),
    "c7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.08925, 0.1785, 0.357, 0.714, 1.428, 2.142, 2.856, 4.284, 8.568],
        _E,
        [_N] * 9,
        _S,
    ),
    "r7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.1323, 0.2646, 0.5292, 1.0584, 2.1168, 3.1752, 4.2336, 6.3504, 12.7008],
        _E,
        [_N] * 9,
        _S,
    ),
    "p2": ("xlarge 8xlarge 16xlarge", [0.9, 7.2, 14.4], _E, [_N] * 3, _S),
    "p3": ("2xlarge 8xlarge 16xlarge", [3.06, 12.24, 24.48], _E, [3.825, 14.688, 28.152], _S),
    "g4dn": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge",
        [0.526, 0.752, 1.204, 2.176, 3.912, 4.352],
        _E,
        [0.7364, 1.0528, 1.686, 3.045, 5.477, 6.09],
        _S,
    ),
    "g5": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [1.006, 1.212, 1.624, 2.448, 5.672, 4.096, 8.144, 16.288],
        _E,
        [1.408, 1.515, 2.03, _N, 7.09, _N, _N, _N],
        _S,
    ),
    "g6": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.8048, 0.9776, 1.3232, 2.0144, 4.6016, 3.3968, 6.6752, 13.3504],
        _E,
        [_N] * 8,
        _S,
    ),
    "g6e": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [1.861, 2.24208, 3.00424, 4.52856, 10.49264, 7.57719, 15.06559, 30.13118],
        _E,
        [_N] * 8,
        _S,
    ),
    "inf2": ("xlarge 8xlarge 24xlarge 48xlarge", [0.7582, 1.96786, 6.49063, 12.98127], _E, [_N] * 4, _S),
    "trn1": ("2xlarge 32xlarge", [1.34375, 21.5], _E, [_N] * 2, _S),
}

# Why a price is missing, where there is more to say than "not found" (by type, else by family).
_EC2_WHY: dict[str, str] = {}
_SAGEMAKER_WHY = {
    "ml.p2": "the quotes found disagree ($1.125, $1.26, $1.361 for ml.p2.xlarge)",
    "ml.g5": "quoted only for us-west-2 or with no region",
    "ml.g6": "the quotes found disagree or name no region ($0.97, $0.98, $1.127 for ml.g6.xlarge)",
    "ml.m6i": "the quotes found disagree or name another region ($0.226, $0.282 for ml.m6i.xlarge)",
    "ml.inf2": "the quotes found disagree ($0.7582, $0.99 for ml.inf2.xlarge)",
}


def _note(name: str, ec2: float | None, sagemaker: float | None) -> str:
    family = name.rsplit(".", 1)[0]
    missing = []
    for side, price, why in (("EC2", ec2, _EC2_WHY), ("SageMaker", sagemaker, _SAGEMAKER_WHY)):
        if price is None:
            missing.append(f"{side}: {why.get(name) or why.get(family) or 'no quote found'}")
    return "; ".join(missing) + f"; {NOT_FOUND}" if missing else ""


def _built_in() -> Mapping[str, InstancePrice]:
    out: dict[str, InstancePrice] = {}
    for family, (sizes, ec2, ec2_source, sagemaker, sagemaker_source) in _FAMILIES.items():
        for size, e, s in zip(sizes.split(), ec2, sagemaker, strict=True):
            name = f"ml.{family}.{size}"
            out[name] = InstancePrice(
                s,
                e,
                _note(name, e, s),
                sagemaker_source=sagemaker_source if s is not None else "",
                ec2_source=ec2_source if e is not None else "",
            )
    return MappingProxyType(out)


BUILT_IN = PriceTable(REGION, AS_OF, tuple(f"{k}: {v}" for k, v in SOURCES.items()), _built_in())


# ---- another table from a file -----------------------------------------------------------------


_ENTRY_KEYS = ("sagemaker_usd_per_hour", "ec2_usd_per_hour", "note", "sagemaker_source", "ec2_source")


def _number(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PriceTableError(f"{where} must be a non-negative number or null, not {value!r}")
    return float(value)


def parse_price_table(data: object, origin: str) -> PriceTable:
    """A table in ``PriceTable.to_json()``'s shape; types it does not list have no price."""
    if not isinstance(data, dict) or not isinstance(data.get("prices"), dict):
        raise PriceTableError(
            f"price file {origin} must hold a JSON object with a 'prices' object "
            '({"ml.m5.xlarge": {"sagemaker_usd_per_hour": 0.23, "ec2_usd_per_hour": 0.192}, ...})'
        )
    prices: dict[str, InstancePrice] = {}
    for name, entry in data["prices"].items():
        if not name.startswith("ml."):
            raise PriceTableError(f"price file {origin}: key {name!r} is not an ml.* instance type")
        if not isinstance(entry, dict):
            raise PriceTableError(f"price file {origin}: prices[{name!r}] must be an object")
        unknown = set(entry) - set(_ENTRY_KEYS)
        if unknown:
            raise PriceTableError(
                f"price file {origin}: prices[{name!r}] has unknown keys {sorted(unknown)}; allowed: "
                + ", ".join(_ENTRY_KEYS)
            )
        prices[name] = InstancePrice(
            _number(
                entry.get("sagemaker_usd_per_hour"), f"{origin}: prices[{name!r}].sagemaker_usd_per_hour"
            ),
            _number(entry.get("ec2_usd_per_hour"), f"{origin}: prices[{name!r}].ec2_usd_per_hour"),
            str(entry.get("note") or ""),
            sagemaker_source=str(entry.get("sagemaker_source") or ""),
            ec2_source=str(entry.get("ec2_source") or ""),
        )
    sources = data.get("sources") or [origin]
    return PriceTable(
        region=str(data.get("region") or "unknown region"),
        as_of=str(data.get("as_of") or "undated"),
        sources=tuple(str(s) for s in sources),
        prices=MappingProxyType(prices),
        origin=origin,
        currency=str(data.get("currency") or "USD"),
    )


def load_price_table(path: str | Path) -> PriceTable:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PriceTableError(f"price file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise PriceTableError(f"price file {path} cannot be read as JSON: {e}") from None
    return parse_price_table(data, str(path))


def price_table(
    path: str | None = None, environ: Mapping[str, str] | None = None, cache: Path | None = None
) -> PriceTable:
    """The prices ``report`` and ``benchmark`` use, layered: the Price List API's answer cached by
    ``prices fetch`` (``cache``, where it exists), then ``path`` (else ``$BATCH_TRANSFORM_PRICES``),
    then the built-in table. Each price comes from the highest layer that has it and keeps its source.
    A lower layer of another region is left out (its prices are not this region's)."""
    chosen = path or (environ or {}).get(PRICES_ENV)
    layers = [load_price_table(cache)] if cache is not None and cache.is_file() else []
    if chosen:
        layers.append(load_price_table(chosen))
    layers.append(BUILT_IN)
    table = layers[0]
    for lower in layers[1:]:
        if lower.region == table.region:
            table = overlay(table, lower)
    return table


def _fill(a: InstancePrice, b: InstancePrice | None) -> InstancePrice:
    """``a``, each side it has no price for taken from ``b`` with ``b``'s source."""
    if b is None:
        return a
    sagemaker = (a.sagemaker_usd_per_hour, a.sagemaker_source)
    if sagemaker[0] is None:
        sagemaker = (b.sagemaker_usd_per_hour, b.sagemaker_source)
    ec2 = (a.ec2_usd_per_hour, a.ec2_source)
    if ec2[0] is None:
        ec2 = (b.ec2_usd_per_hour, b.ec2_source)
    note = "" if sagemaker[0] is not None and ec2[0] is not None else (a.note or b.note)
    return InstancePrice(sagemaker[0], ec2[0], note, sagemaker[1], ec2[1])


def overlay(upper: PriceTable, lower: PriceTable) -> PriceTable:
    """``upper``'s prices, each side it lacks taken from ``lower`` with ``lower``'s source."""
    merged = {**lower.prices, **{name: _fill(a, lower.prices.get(name)) for name, a in upper.prices.items()}}
    prices = dict(sorted(merged.items()))
    sources = tuple(dict.fromkeys((*upper.sources, *lower.sources)))
    return PriceTable(
        upper.region,
        upper.as_of,
        sources,
        MappingProxyType(prices),
        origin=f"{upper.origin}, then {lower.origin}",
        currency=upper.currency,
    )


if __name__ == "__main__":
    json.dump(BUILT_IN.to_json(), sys.stdout, indent=1)
    sys.stdout.write("\n")
