"""``batch-transform benchmark``: one request run on SageMaker and on Ray, both sides measured, priced
and their outputs compared. This module holds what is measured and how it is priced; the command
(``runner/cli/benchmark.py``) runs the two jobs.

Nothing is assumed about either side. For each:

- the timeline from DescribeTransformJob's own times: CreationTime -> TransformStartTime is
  provisioning (instances started, image pulled, model loaded: on SageMaker what it does before the
  data flows; on Ray the workers' start and ``model_fn``), TransformStartTime -> TransformEndTime the
  transform, CreationTime -> TransformEndTime the time to result;
- time to first output: the earliest LastModified of the side's ``.out`` objects, as S3 reports it
  (whole seconds on AWS), minus CreationTime; the same measure on both sides;
- records per second over the transform span. SageMaker does not report record counts; both sides
  split the same input by the same request, so the Ray side's count is used for both (and said);
- cost: SageMaker bills ``InstanceCount`` x (TransformEndTime - TransformStartTime) at the ``ml.*``
  Batch Transform price (docs/contract.md, billing); the Ray side holds its nodes from CreationTime
  to TransformEndTime, priced at the EC2 price of the instance type's twin (``ml.m5.xlarge`` ->
  ``m5.xlarge``), the node type a cluster sized for the request runs. Per job and per million records,
  each price naming its source.

The outputs go to two prefixes under the request's S3OutputPath (``sagemaker/`` and ``ray/``) and are
compared record for record (``compare.py``) with the given tolerances.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.cost.compare import OUTPUT_SUFFIX, Tolerance, compare_prefixes, comparison_json
from runner.cost.prices import InstancePrice, PriceTable, ec2_twin
from runner.cost.report import build_report
from runner.jobs.store import JobRecord, TransformJobStatus
from runner.storage import Storage, storage_for

MAX_NAME = 63
SIDES = ("sagemaker", "ray")


@dataclass(frozen=True)
class Outputs:
    """What a side's output prefix holds at the end: ``.out`` objects, their bytes, and when the first
    and last were written (S3 LastModified, epoch seconds)."""

    prefix: str
    objects: int
    bytes: int
    first_written: float | None
    last_written: float | None


def side_requests(request: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The request once per side: its own job name (``<name>-sagemaker`` / ``<name>-ray``, the name cut
    to fit 63 characters) and output prefix ``<S3OutputPath>/<side>/``; nothing else changes."""
    name = str(request.get("TransformJobName") or "benchmark")
    output = dict(request.get("TransformOutput") or {})
    base = str(output.get("S3OutputPath") or "").rstrip("/")
    out = {}
    for side in SIDES:
        suffix = f"-{side}"
        copy = dict(request)
        copy["TransformJobName"] = name[: MAX_NAME - len(suffix)].rstrip("-") + suffix
        copy["TransformOutput"] = {**output, "S3OutputPath": f"{base}/{side}/"}
        out[side] = copy
    return out


def list_outputs(storage: Storage, prefix: str) -> Outputs:
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    objects = [o for o in storage.list_objects(prefix) if o.uri.endswith(OUTPUT_SUFFIX)]
    times = [o.last_modified for o in objects if o.last_modified is not None]
    return Outputs(
        prefix,
        len(objects),
        sum(o.size for o in objects),
        min(times) if times else None,
        max(times) if times else None,
    )


def epoch(value: Any) -> float | None:
    """A DescribeTransformJob time (boto3's datetime, JSON's epoch number or ISO text) in epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def _per_million(usd: float | None, records: int | None) -> float | None:
    return None if usd is None or not records else usd / records * 1e6


def _since(t: float | None, created: float | None) -> float | None:
    return None if t is None or created is None else max(t - created, 0.0)


def _timeline(described: Mapping[str, Any], outputs: Outputs) -> dict[str, Any]:
    created = epoch(described.get("CreationTime"))
    start = epoch(described.get("TransformStartTime"))
    end = epoch(described.get("TransformEndTime"))
    return {
        "provisioning_s": _r(_since(start, created)),
        "transform_s": _r(_since(end, start)),
        "time_to_result_s": _r(_since(end, created)),
        "first_output_s": _r(_since(outputs.first_written, created)),
        "_created": created,
        "_start": start,
        "_end": end,
    }


def _side(
    described: Mapping[str, Any], outputs: Outputs, records: int | None, usd_per_hour: float | None
) -> dict[str, Any]:
    t = _timeline(described, outputs)
    resources = described.get("TransformResources") or {}
    count = int(resources.get("InstanceCount", 1))
    return {
        "TransformJobName": described.get("TransformJobName"),
        "TransformJobStatus": described.get("TransformJobStatus"),
        "FailureReason": described.get("FailureReason"),
        "instance_type": resources.get("InstanceType"),
        "instance_count": count,
        "created": None if t["_created"] is None else datetime.fromtimestamp(t["_created"]).isoformat(),
        **{k: v for k, v in t.items() if not k.startswith("_")},
        "records": records,
        "records_per_s": _r(records / t["transform_s"] if records and t["transform_s"] else None, 2),
        "outputs": {"prefix": outputs.prefix, "objects": outputs.objects, "bytes": outputs.bytes},
        "usd_per_hour": usd_per_hour,
    }


def sagemaker_side(
    described: Mapping[str, Any], outputs: Outputs, records: int | None, price: InstancePrice
) -> dict[str, Any]:
    """The SageMaker job as SageMaker reported it, billed over TransformStartTime -> TransformEndTime."""
    side = _side(described, outputs, records, price.sagemaker_usd_per_hour)
    billed = None if side["transform_s"] is None else side["instance_count"] * side["transform_s"]
    usd = (
        None
        if billed is None or price.sagemaker_usd_per_hour is None
        else billed * price.sagemaker_usd_per_hour / 3600
    )
    return {
        **side,
        "billed_instance_seconds": _r(billed),
        "billed_span": "TransformStartTime -> TransformEndTime",
        "usd": usd,
        "usd_per_million_records": _per_million(usd, records),
        "price_source": price.sagemaker_source or price.note or "no price",
        "records_source": "the Ray side's count (SageMaker reports none; both split the same input)",
    }


def ray_side(
    record: JobRecord, outputs: Outputs, prices: PriceTable, node_prices: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """The Ray job as the runner recorded it, its nodes held over CreationTime -> TransformEndTime:
    priced per node at its own type where every node's type and price are known (``report.py``),
    else per instance at the ml type's EC2 twin; ``pricing`` says which."""
    report = build_report(record, prices, node_prices=node_prices)
    described = record.describe()
    records = report["throughput"]["records"]
    cost = report["cost"]
    by_node = cost["runner_node_seconds"] is not None
    nodes = cost["runner_nodes"]
    if by_node:
        usd_per_hour = sum(n["usd_per_hour"] * n["share"] for n in nodes)
        node_type = ", ".join(sorted({str(n["node_type"] or "type unknown") for n in nodes}))
        sources = sorted({str(n["price_source"]) for n in nodes})
        source = "; ".join(sources)
    else:
        price = prices.price(str(cost["instance_type"]))
        usd_per_hour = (
            None if price.ec2_usd_per_hour is None else price.ec2_usd_per_hour * cost["instance_count"]
        )
        node_type = ec2_twin(str(cost["instance_type"]))
        source = price.ec2_source or price.note or "no price"
    side = _side(described, outputs, records, usd_per_hour)
    used = [n["node_id"] for n in nodes] or sorted(
        {str(w["node_id"]) for w in report["workers"] if w["node_id"]}
    )
    return {
        **side,
        "node_type": node_type,
        "nodes_used": used,
        "workers": len(report["workers"]),
        "node_seconds": cost["runner_node_seconds"] if by_node else cost["runner_instance_seconds"],
        "held_span": "CreationTime -> TransformEndTime",
        "pricing": cost["runner_pricing"],
        "nodes": nodes,
        "usd": cost["runner_usd"],
        "usd_per_million_records": _per_million(cost["runner_usd"], records),
        "price_source": source,
    }


def measure(
    described: Mapping[str, Any],
    record: JobRecord,
    prices: PriceTable,
    tolerance: Tolerance,
    how: str,
    node_prices: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The report of a SageMaker job (its DescribeTransformJob answer) beside a Ray job of the same
    request: each side's outputs listed, both priced, the outputs compared when both completed."""
    sm_out = str(described["TransformOutput"]["S3OutputPath"])
    ray_out = str(record.describe()["TransformOutput"]["S3OutputPath"])
    ray = ray_side(record, list_outputs(storage_for(ray_out), ray_out), prices, node_prices)
    price = prices.price(str(described["TransformResources"]["InstanceType"]))
    sagemaker = sagemaker_side(described, list_outputs(storage_for(sm_out), sm_out), ray["records"], price)
    both = (
        described.get("TransformJobStatus") == "Completed" and record.status is TransformJobStatus.COMPLETED
    )
    comparison = comparison_json(compare_prefixes(sm_out, ray_out, tolerance)) if both else None
    return benchmark_report(sagemaker, ray, comparison, prices, how)


def benchmark_report(
    sagemaker: Mapping[str, Any],
    ray: Mapping[str, Any],
    comparison: Mapping[str, Any] | None,
    prices: PriceTable,
    how: str,
) -> dict[str, Any]:
    """Both sides, their ratios, the compare verdict and where the prices came from."""

    def ratio(key: str) -> float | None:
        a, b = sagemaker.get(key), ray.get(key)
        return None if a is None or not b else round(a / b, 3)

    return {
        "how": how,
        "sagemaker": dict(sagemaker),
        "ray": dict(ray),
        "ratios": {  # SageMaker's over Ray's: above 1, Ray is faster or cheaper
            "time_to_result": ratio("time_to_result_s"),
            "transform": ratio("transform_s"),
            "first_output": ratio("first_output_s"),
            "usd": ratio("usd"),
        },
        "outputs_equal": None if comparison is None else bool(comparison.get("equal")),
        "compare": comparison,
        "prices": {
            "region": prices.region,
            "as_of": prices.as_of,
            "table": prices.origin,
            "sources": list(prices.sources),
        },
    }


def _s(v: float | None, unit: str = "s") -> str:
    return "—" if v is None else f"{v:,.2f} {unit}"


def usd_text(v: float | None) -> str:
    return "no price" if v is None else f"${v:,.6f}"


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:,.2f}x"


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.1f}"


def comparison_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """The side-by-side table, as text: (figure, SageMaker, Ray, SageMaker / Ray). The terminal and
    the HTML page show the same rows."""
    sm, ray, ratios = report["sagemaker"], report["ray"], report["ratios"]
    return [
        ("job", str(sm["TransformJobName"]), str(ray["TransformJobName"]), ""),
        ("status", str(sm["TransformJobStatus"]), str(ray["TransformJobStatus"]), ""),
        (
            "instances",
            f"{sm['instance_count']} x {sm['instance_type']}",
            f"{ray['instance_count']} x {ray['node_type']} on {len(ray['nodes_used'])} node(s)",
            "",
        ),
        ("provisioning", _s(sm["provisioning_s"]), _s(ray["provisioning_s"]), ""),
        ("transform", _s(sm["transform_s"]), _s(ray["transform_s"]), _x(ratios["transform"])),
        ("first output", _s(sm["first_output_s"]), _s(ray["first_output_s"]), _x(ratios["first_output"])),
        (
            "time to result",
            _s(sm["time_to_result_s"]),
            _s(ray["time_to_result_s"]),
            _x(ratios["time_to_result"]),
        ),
        ("records per second", _rate(sm["records_per_s"]), _rate(ray["records_per_s"]), ""),
        (
            "billed / held",
            _s(sm["billed_instance_seconds"], "instance-s"),
            _s(ray["node_seconds"], "node-s"),
            "",
        ),
        ("USD per hour", usd_text(sm["usd_per_hour"]), usd_text(ray["usd_per_hour"]), ""),
        ("cost per job", usd_text(sm["usd"]), usd_text(ray["usd"]), _x(ratios["usd"])),
        (
            "cost per million records",
            usd_text(sm["usd_per_million_records"]),
            usd_text(ray["usd_per_million_records"]),
            "",
        ),
    ]


def verdict_text(report: Mapping[str, Any]) -> str:
    """What compare found, in one sentence."""
    verdict, compare = report["outputs_equal"], report.get("compare") or {}
    if verdict is None:
        return "Outputs not compared: a side did not complete."
    return (
        f"Outputs {'equal' if verdict else 'DIFFERENT'}: {compare.get('records_compared', 0):,} records in "
        f"{compare.get('objects_compared', 0)} objects compared, {compare.get('records_different', 0)} "
        f"differ (rel_tol {compare.get('rel_tol', 0)}, abs_tol {compare.get('abs_tol', 0)})."
    )


def measured_notes(report: Mapping[str, Any]) -> list[str]:
    """How the figures were had: prices and their sources, spans, Ray's node pricing."""
    sm, ray, prices = report["sagemaker"], report["ray"], report.get("prices") or {}
    return [
        f"SageMaker price: {sm['price_source']}; billed {sm['billed_span']}.",
        f"Ray node price: {ray['price_source']}; held {ray['held_span']}.",
        f"Ray cost: {ray['pricing']}.",
        f"Records: {sm['records_source']}.",
        "First output: the earliest LastModified of the side's .out objects (whole seconds on S3).",
        f"Prices: {prices.get('table', '?')}, region {prices.get('region', '?')}, "
        f"as of {prices.get('as_of', '?')}.",
    ]


def print_benchmark(report: Mapping[str, Any], console: Console) -> None:
    sm, ray = report["sagemaker"], report["ray"]
    table = Table("", "SageMaker", "Ray", "SageMaker / Ray", title=f"benchmark ({report['how']})")
    for row in comparison_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(verdict_text(report), highlight=False, markup=False)
    for side in (sm, ray):
        if side.get("FailureReason"):
            console.print(
                f"{side['TransformJobName']}: FailureReason: {side['FailureReason']}",
                highlight=False,
                markup=False,
            )
    for note in measured_notes(report):
        console.print(note, highlight=False, markup=False)
