"""What a finished job took: its timeline, throughput, how busy each worker was, and what it cost
against what SageMaker would have billed for the same work.

Everything comes from the job record (``JobRecord``: the DescribeTransformJob times plus the
``x-runner`` counters) and a price table (``prices.py``); nothing is measured again. ``build_report``
returns plain data (the ``--json`` output); ``print_report`` and ``plot_report`` show it.

Cost model:

- this run: ``InstanceCount`` x (TransformEndTime - CreationTime) instance-seconds at the EC2 price
  of the instance type's twin (``ml.m5.xlarge`` -> ``m5.xlarge``): the runner's instances are held
  from the moment workers start loading the model until the last output is written;
- SageMaker: ``InstanceCount`` x (TransformEndTime - TransformStartTime) at the ``ml.*`` Batch
  Transform price, the span SageMaker bills (docs/contract.md §7), assuming SageMaker's instances process the
  data as fast as this run did. SageMaker also spends time starting instances before
  TransformStartTime; ``SAGEMAKER_STARTUP_ASSUMED_S`` is that time (an assumption, see its note), shown
  as time to result and, separately, as what it would cost if it were billed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.cost.prices import PriceTable, ec2_twin
from runner.extras import require
from runner.jobs.counters import NODE_TYPE_LABELS, JobCounters, NodeUse
from runner.jobs.store import JobRecord

MB = 1e6
SAGEMAKER_STARTUP_ASSUMED_S = 300.0
SAGEMAKER_STARTUP_NOTE = (
    "our assumption: AWS documents no typical start-up time for Batch Transform. Public reports put "
    "instance provisioning plus container image pull at several minutes (about 8 min blamed on pulling "
    "the image from ECR in fourTheorem/podwhisperer#9; a 1,000-record canary job taking 23 min in "
    "aws/amazon-sagemaker-operator-for-k8s#73), so 5 min is taken as typical for a small image"
)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


ANY_NODE = "*"


def parse_node_prices(items: list[str] | None) -> dict[str, float]:
    """``--node-price TYPE=USD_PER_HOUR`` (``*`` for any node whose type has no price)."""
    out: dict[str, float] = {}
    for item in items or ():
        node_type, _, usd = item.partition("=")
        try:
            value = float(usd)
        except ValueError:
            value = -1.0
        if not node_type or value < 0:
            raise ValueError(
                f"--node-price {item!r}: expected TYPE=USD_PER_HOUR, e.g. m5.xlarge=0.192 "
                "(or '*=0.10' for any node)"
            )
        out[node_type] = value
    return out


def node_costs(
    nodes: tuple[NodeUse, ...] | None,
    held_s: float,
    prices: PriceTable,
    node_prices: Mapping[str, float],
) -> tuple[list[dict[str, Any]], str | None]:
    """Each node the job held, priced at its own type for the job's share of it over ``held_s``; and
    why that is not possible (no node known, a node without a type or a price), else None."""
    if not nodes:
        return [], "the job recorded no nodes"
    out, missing = [], []
    for node in nodes:
        usd, source = None, None
        if node.node_type is not None and node.node_type in node_prices:
            usd, source = node_prices[node.node_type], "--node-price"
        elif node.node_type is not None and prices.price(f"ml.{node.node_type}").ec2_usd_per_hour is not None:
            price = prices.price(f"ml.{node.node_type}")
            usd, source = price.ec2_usd_per_hour, price.ec2_source or prices.origin
        elif ANY_NODE in node_prices:
            usd, source = node_prices[ANY_NODE], "--node-price *"
        if usd is None:
            missing.append(f"node {node.node_id[:12]} ({node.node_type or 'type unknown'})")
        out.append(
            {
                "node_id": node.node_id,
                "node_type": node.node_type,
                "node_type_source": node.node_type_source,
                "share": round(node.share, 4),
                "node_seconds": _r(node.share * held_s),
                "usd_per_hour": usd,
                "price_source": source,
                "usd": None if usd is None else node.share * held_s * usd / 3600,
            }
        )
    if missing:
        return out, (
            f"no price for {', '.join(missing)}: name its type with a node label "
            f"({', '.join(NODE_TYPE_LABELS)}) or give --node-price TYPE=USD/h ('*' for any node)"
        )
    return out, None


def build_report(
    record: JobRecord,
    prices: PriceTable,
    now: float | None = None,
    startup_s: float | None = None,
    node_prices: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The report as plain data. Seconds in ``timeline`` count from CreationTime."""
    d = record.describe()
    c = record.counters if record.counters is not None else JobCounters()
    resources = d.get("TransformResources") or {}
    instance_type = str(resources.get("InstanceType", "?"))
    count = int(resources.get("InstanceCount", 1))
    notes: list[str] = []

    created = record.creation_time
    start = record.transform_start_time
    end = record.transform_end_time
    if end is None:
        end = now if now is not None else time.time()
        notes.append(f"the job is {record.status} (not finished): figures are up to {_iso(end)}")
    run_s = None if start is None else max(end - start, 0.0)
    first_output = c.first_output_s

    timeline = {
        "created": _iso(created),
        "workers_ready_s": _r(None if start is None else start - created),
        "first_output_s": _r(
            None if start is None or first_output is None else start - created + first_output
        ),
        "end_s": _r(end - created),
        "transform_s": _r(run_s),
        "total_s": _r(end - created),
    }
    if first_output is not None:
        notes.append(
            "first output = workers ready + the earliest object's first write, timed from its object task's "
            "start (objects start right after the workers are ready)"
        )

    workers = []
    for w in c.workers or ():
        busy = w.busy_s or 0.0
        workers.append(
            {
                "pid": w.pid,
                "node_id": w.node_id,
                "family": w.family,
                "model_load_s": _r(w.model_load_s),
                "payloads": w.payloads or 0,
                "busy_s": _r(busy),
                "busy_share": _r(busy / run_s if run_s else None, 4),
            }
        )

    records, bytes_in, bytes_out = c.records, c.bytes_in, c.bytes_out
    throughput = {
        "objects_total": c.objects_total,
        "objects_done": c.objects_done,
        "objects_failed": c.objects_failed,
        "records": records,
        "payloads": c.payloads,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "records_per_s": _r(records / run_s if run_s else None, 2),
        "mb_in_per_s": _r(bytes_in / MB / run_s if run_s else None),
        "mb_out_per_s": _r(bytes_out / MB / run_s if run_s else None),
    }

    price = prices.price(instance_type)
    startup = SAGEMAKER_STARTUP_ASSUMED_S if startup_s is None else startup_s
    runner_seconds = count * (end - created)
    sagemaker_seconds = None if run_s is None else count * run_s
    nodes, why_not = node_costs(c.nodes, end - created, prices, node_prices or {})
    if why_not is None:
        runner_usd: float | None = sum(n["usd"] for n in nodes)
        runner_pricing = (
            f"the {len(nodes)} node(s) the job held, each at its own type's price for the job's share "
            "of it (CPUs or GPUs reserved), created -> end"
        )
    else:
        runner_usd = (
            None if price.ec2_usd_per_hour is None else runner_seconds * price.ec2_usd_per_hour / 3600
        )
        runner_pricing = (
            f"InstanceCount x the EC2 twin ({ec2_twin(instance_type)}) of the ml type, created -> end, "
            f"since the nodes cannot be priced: {why_not}"
        )
    sagemaker_usd = (
        None
        if price.sagemaker_usd_per_hour is None or sagemaker_seconds is None
        else sagemaker_seconds * price.sagemaker_usd_per_hour / 3600
    )
    startup_usd = (
        None
        if price.sagemaker_usd_per_hour is None
        else count * startup * price.sagemaker_usd_per_hour / 3600
    )
    if price.note:
        notes.append(f"prices for {instance_type}: {price.note}")
    cost = {
        "instance_type": instance_type,
        "instance_count": count,
        "ec2_instance_type": ec2_twin(instance_type),
        "region": prices.region,
        "prices_as_of": prices.as_of,
        "price_sources": list(prices.sources),
        "price_table": prices.origin,
        "ec2_usd_per_hour": price.ec2_usd_per_hour,
        "sagemaker_usd_per_hour": price.sagemaker_usd_per_hour,
        "runner_instance_seconds": _r(runner_seconds),
        "runner_pricing": runner_pricing,
        "runner_nodes": nodes,
        "runner_node_seconds": _r(sum(n["node_seconds"] or 0.0 for n in nodes)) if why_not is None else None,
        "runner_usd": runner_usd,
        "sagemaker_billed_seconds": _r(sagemaker_seconds),
        "sagemaker_usd": sagemaker_usd,
        "sagemaker_startup_assumed_s": startup,
        "sagemaker_startup_source": SAGEMAKER_STARTUP_NOTE,
        "sagemaker_usd_with_startup": (
            None if sagemaker_usd is None or startup_usd is None else sagemaker_usd + startup_usd
        ),
        "sagemaker_time_to_result_s": _r(None if run_s is None else startup + run_s),
        "runner_time_to_result_s": _r(end - created),
        "savings_usd": (None if runner_usd is None or sagemaker_usd is None else sagemaker_usd - runner_usd),
    }
    return {
        "TransformJobName": record.name,
        "TransformJobStatus": str(record.status),
        "FailureReason": record.failure_reason,
        "timeline": timeline,
        "throughput": throughput,
        "workers": workers,
        "cost": cost,
        "notes": notes,
    }


def _s(v: float | None, unit: str = "s") -> str:
    return "—" if v is None else f"{v:,.2f} {unit}"


def _usd(v: float | None) -> str:
    return "no price" if v is None else f"${v:,.4f}"


def print_report(report: Mapping[str, Any], console: Console) -> None:
    """The report as rich tables."""
    t, tp, cost = report["timeline"], report["throughput"], report["cost"]
    head = f"Transform job {report['TransformJobName']}: {report['TransformJobStatus']}"
    console.print(head, highlight=False, markup=False)
    if report.get("FailureReason"):
        console.print(f"FailureReason: {report['FailureReason']}", highlight=False, markup=False)

    timeline = Table("Timeline", "since creation", title=f"created {t['created']}")
    timeline.add_row("workers ready (TransformStartTime)", _s(t["workers_ready_s"]))
    for i, w in enumerate(report["workers"]):
        timeline.add_row(f"  worker {i} model load (pid {w['pid']})", _s(w["model_load_s"]))
    timeline.add_row("first output written", _s(t["first_output_s"]))
    timeline.add_row("end (TransformEndTime)", _s(t["end_s"]))
    timeline.add_row("transform (ready -> end)", _s(t["transform_s"]))
    console.print(timeline)

    thr = Table("Throughput", "value")
    thr.add_row(
        "objects", f"{tp['objects_done']} of {tp['objects_total']} written, {tp['objects_failed']} failed"
    )
    thr.add_row("records", f"{tp['records']:,} ({_s(tp['records_per_s'], 'records/s')})")
    thr.add_row("in", f"{tp['bytes_in'] / MB:,.2f} MB ({_s(tp['mb_in_per_s'], 'MB/s')})")
    thr.add_row("out", f"{tp['bytes_out'] / MB:,.2f} MB ({_s(tp['mb_out_per_s'], 'MB/s')})")
    console.print(thr)

    if report["workers"]:
        wt = Table("worker", "node", "model load", "payloads", "busy", "busy share")
        for i, w in enumerate(report["workers"]):
            share = "—" if w["busy_share"] is None else f"{w['busy_share']:.1%}"
            node = str(w["node_id"] or "")[:12]
            wt.add_row(str(i), node, _s(w["model_load_s"]), str(w["payloads"]), _s(w["busy_s"]), share)
        console.print(wt)

    ct = Table(
        "Cost",
        "this run (EC2 prices)",
        "SageMaker (estimate)",
        title=f"{cost['instance_count']} x {cost['instance_type']}, {cost['region']} on-demand, "
        f"prices as of {cost['prices_as_of']}",
    )
    ct.add_row("instance type", cost["ec2_instance_type"], cost["instance_type"])
    ct.add_row("USD per instance-hour", _usd(cost["ec2_usd_per_hour"]), _usd(cost["sagemaker_usd_per_hour"]))
    ct.add_row(
        "instance-seconds",
        _s(cost["runner_instance_seconds"]) + " (created -> end)",
        _s(cost["sagemaker_billed_seconds"]) + " (start -> end, billed)",
    )
    ct.add_row("cost", _usd(cost["runner_usd"]), _usd(cost["sagemaker_usd"]))
    ct.add_row(
        "time to result",
        _s(cost["runner_time_to_result_s"]),
        _s(cost["sagemaker_time_to_result_s"])
        + f" (incl. {cost['sagemaker_startup_assumed_s']:g} s assumed start-up)",
    )
    ct.add_row("cost if start-up were billed", "", _usd(cost["sagemaker_usd_with_startup"]))
    console.print(ct)
    console.print(f"This run's cost: {cost['runner_pricing']}", highlight=False, markup=False)
    for n in cost["runner_nodes"]:
        console.print(
            f"  node {n['node_id'][:12]}: {n['node_type'] or 'type unknown'}"
            + (f" ({n['node_type_source']})" if n["node_type_source"] else "")
            + f", share {n['share']:.0%}, {_usd(n['usd_per_hour'])}/h ({n['price_source'] or 'no price'}), "
            f"{_usd(n['usd'])}",
            highlight=False,
            markup=False,
        )
    console.print(f"SageMaker start-up: {cost['sagemaker_startup_source']}", highlight=False, markup=False)
    for source in cost["price_sources"]:
        console.print(f"Prices: {source}", highlight=False, markup=False)
    for note in report["notes"]:
        console.print(f"note: {note}", highlight=False, markup=False)


def plot_report(report: Mapping[str, Any], path: str | Path) -> Path:
    """A PNG: the timeline (model loads, ready, first output, end, each worker's busy share) and the
    two costs. Needs matplotlib (the ``plots`` extra)."""
    require("matplotlib", "plots", "report --png").use("Agg")
    import matplotlib.pyplot as plt

    t, cost, workers = report["timeline"], report["cost"], report["workers"]
    ready = t["workers_ready_s"] or 0.0
    end = t["end_s"] or 0.0
    fig, (ax, bx) = plt.subplots(
        1, 2, figsize=(12, 2.2 + 0.45 * max(len(workers), 2)), gridspec_kw={"width_ratios": [3, 1.3]}
    )
    for i, w in enumerate(workers):
        load = w["model_load_s"] or 0.0
        ax.barh(i, load, left=max(ready - load, 0.0), color="#f0a030", label="model load" if i == 0 else None)
        share = w["busy_share"] or 0.0
        ax.barh(
            i,
            (end - ready) * share,
            left=ready,
            color="#3070c0",
            label="busy (share of run)" if i == 0 else None,
        )
        ax.barh(i, end - ready, left=ready, color="none", edgecolor="#3070c0")
    marks = ((ready, "ready", "--"), (t["first_output_s"], "first output", ":"), (end, "end", "-"))
    for k, (x, label, style) in enumerate(marks):
        if x is not None:
            ax.axvline(x, color="black", linestyle=style, linewidth=1)
            ax.text(x, len(workers) - 0.45 + 0.35 * k, f" {label}", fontsize=8, va="bottom")
    ax.set_xlim(0, max(end, 1e-9) * 1.02)
    ax.set_yticks(range(len(workers)), [f"worker {i}" for i in range(len(workers))])
    ax.set_xlabel("seconds since CreationTime")
    ax.set_title(f"{report['TransformJobName']} ({report['TransformJobStatus']})", fontsize=10)
    if workers:
        ax.legend(fontsize=8, loc="lower right")

    labels = ["this run\n(EC2)", "SageMaker\n(billed span)", "SageMaker\n+ start-up"]
    values = [cost["runner_usd"], cost["sagemaker_usd"], cost["sagemaker_usd_with_startup"]]
    bars = bx.bar(labels, [v or 0.0 for v in values], color=["#3070c0", "#c04030", "#e08070"])
    for bar, v in zip(bars, values, strict=True):
        bx.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height(),
            "no price" if v is None else f"${v:.4f}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    bx.set_ylabel("USD")
    bx.set_title(f"{cost['instance_count']} x {cost['instance_type']}", fontsize=10)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
