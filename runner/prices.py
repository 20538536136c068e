"""On-demand hourly prices of every ``ml.*`` transform instance type and of its EC2 twin.

``report.py`` prices a run with them: the runner's instance-seconds at the EC2 price of the
instance type's twin (``ml.m5.xlarge`` -> ``m5.xlarge``) against what SageMaker would bill at the
``ml.*`` Batch Transform price. Nothing here reaches the network: the built-in table below was taken
by hand, and another one can be supplied as a JSON file (``--prices FILE`` or
``$BATCH_TRANSFORM_PRICES``) in the shape ``PriceTable.to_json()`` writes
(``python -m runner.prices`` prints the built-in table in that shape).

Where a price could not be found it is ``None`` with a note, never a guess; a report then says that
it cannot price that side.
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
EC2_SOURCE = (
    "Amazon EC2 On-Demand pricing, US East (N. Virginia), Linux, shared tenancy "
    "(aws.amazon.com/ec2/pricing/on-demand/), as quoted by public price tables found by search on "
    f"{AS_OF}; a price is kept when the quotes agree"
)
SAGEMAKER_SOURCE = (
    "Amazon SageMaker AI On-Demand pricing, Batch Transform, US East (N. Virginia) "
    "(aws.amazon.com/sagemaker/pricing/), as quoted by public price tables found by search on "
    f"{AS_OF}; kept only where a quote names us-east-1 and the quotes agree"
)
NOT_FOUND = f"no us-east-1 price found in the sources searched on {AS_OF}; supply one with --prices"


class PriceTableError(RunnerError):
    """A price file that cannot be read or is not in the expected shape."""


@dataclass(frozen=True)
class InstancePrice:
    """USD per instance-hour; ``None`` where the table has no price (``note`` says why)."""

    sagemaker_usd_per_hour: float | None
    ec2_usd_per_hour: float | None
    note: str = ""


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
                }
                for name, p in self.prices.items()
            },
        }


def ec2_twin(instance_type: str) -> str:
    """``ml.m5.xlarge`` -> ``m5.xlarge``: the EC2 instance an ml instance type runs on."""
    return instance_type.removeprefix("ml.")


# ---- the built-in table ------------------------------------------------------------------------
# Per family: sizes, then EC2 and SageMaker Batch Transform prices in the same order (None = not found).
_N = None
_FAMILIES: dict[str, tuple[str, list[float | None], list[float | None]]] = {
    "m4": ("xlarge 2xlarge 4xlarge 10xlarge 16xlarge", [_N] * 5, [_N] * 5),
    "c4": ("xlarge 2xlarge 4xlarge 8xlarge", [0.199, 0.398, 0.796, 1.591], [_N] * 4),
    "c5": (
        "xlarge 2xlarge 4xlarge 9xlarge 18xlarge",
        [0.17, 0.34, 0.68, 1.53, 3.06],
        [0.204, 0.408, 0.816, 1.836, 3.672],
    ),
    "m5": (
        "large xlarge 2xlarge 4xlarge 12xlarge 24xlarge",
        [0.096, 0.192, 0.384, 0.768, 2.304, 4.608],
        [0.115, 0.23, 0.461, 0.922, 2.765, 5.53],
    ),
    "m6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.096, 0.192, 0.384, 0.768, 1.536, 2.304, 3.072, 4.608, 6.144],
        [_N] * 9,
    ),
    "c6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.085, 0.17, 0.34, 0.68, 1.36, 2.04, 2.72, 4.08, 5.44],
        [_N] * 9,
    ),
    "r6i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge",
        [0.126, 0.252, 0.504, 1.008, 2.016, 3.024, 4.032, 6.048, 8.064],
        [_N] * 9,
    ),
    "m7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.1008, 0.2016, 0.4032, 0.8064, 1.6128, 2.4192, 3.2256, 4.8384, 9.6768],
        [_N] * 9,
    ),
    "c7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [_N, 0.1785, 0.357, 0.714, 1.428, 2.142, 2.856, 4.284, 8.568],
        [_N] * 9,
    ),
    "r7i": (
        "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [_N, 0.2646, 0.5292, 1.0584, 2.1168, 3.1752, 4.2336, 6.3504, 12.7008],
        [_N] * 9,
    ),
    "p2": ("xlarge 8xlarge 16xlarge", [0.9, 7.2, 14.4], [_N] * 3),
    "p3": ("2xlarge 8xlarge 16xlarge", [3.06, 12.24, 24.48], [3.825, 14.688, 28.152]),
    "g4dn": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge",
        [0.526, 0.752, 1.204, 2.176, 3.912, 4.352],
        [0.7364, 1.0528, 1.686, 3.045, 5.477, 6.09],
    ),
    "g5": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [1.006, 1.212, 1.624, 2.448, 5.672, 4.096, 8.144, 16.288],
        [1.408, 1.515, 2.03, _N, 7.09, _N, _N, _N],
    ),
    "g6": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [0.8048, 0.9776, 1.3232, 2.0144, 4.6016, 3.3968, 6.6752, 13.3504],
        [_N] * 8,
    ),
    "g6e": (
        "xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge",
        [1.861, 2.24208, 3.00424, 4.52856, 10.49264, 7.57719, 15.06559, 30.13118],
        [_N] * 8,
    ),
    "inf2": ("xlarge 8xlarge 24xlarge 48xlarge", [0.7582, 1.96786, 6.49063, 12.98127], [_N] * 4),
    "trn1": ("2xlarge 32xlarge", [1.34375, 21.5], [_N] * 2),
}

# Why a price is missing, where there is more to say than "not found" (by type, else by family).
_EC2_WHY = {
    "ml.c7i.large": "the quotes found disagree ($0.085, $0.1071)",
    "ml.r7i.large": "no quote found",
    "ml.m4": "only pre-2017 quotes found",
}
_SAGEMAKER_WHY = {
    "ml.p2": "the quotes found disagree ($1.125, $1.26, $1.361 for ml.p2.xlarge)",
    "ml.g5": "quoted only for us-west-2 or with no region",
    "ml.g6": "quoted only for us-west-2 or with no region",
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
    for family, (sizes, ec2, sagemaker) in _FAMILIES.items():
        for size, e, s in zip(sizes.split(), ec2, sagemaker, strict=True):
            name = f"ml.{family}.{size}"
            out[name] = InstancePrice(s, e, _note(name, e, s))
    return MappingProxyType(out)


BUILT_IN = PriceTable(REGION, AS_OF, (SAGEMAKER_SOURCE, EC2_SOURCE), _built_in())


# ---- another table from a file -----------------------------------------------------------------


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
        unknown = set(entry) - {"sagemaker_usd_per_hour", "ec2_usd_per_hour", "note"}
        if unknown:
            raise PriceTableError(
                f"price file {origin}: prices[{name!r}] has unknown keys {sorted(unknown)}; allowed: "
                "sagemaker_usd_per_hour, ec2_usd_per_hour, note"
            )
        prices[name] = InstancePrice(
            _number(
                entry.get("sagemaker_usd_per_hour"), f"{origin}: prices[{name!r}].sagemaker_usd_per_hour"
            ),
            _number(entry.get("ec2_usd_per_hour"), f"{origin}: prices[{name!r}].ec2_usd_per_hour"),
            str(entry.get("note") or ""),
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


def price_table(path: str | None = None, environ: Mapping[str, str] | None = None) -> PriceTable:
    """``path`` if given, else ``$BATCH_TRANSFORM_PRICES`` if set, else the built-in table."""
    chosen = path or (environ or {}).get(PRICES_ENV)
    return load_price_table(chosen) if chosen else BUILT_IN


if __name__ == "__main__":
    json.dump(BUILT_IN.to_json(), sys.stdout, indent=1)
    sys.stdout.write("\n")
