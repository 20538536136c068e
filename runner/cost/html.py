"""Reports as one self-contained HTML page each (``report --html``, ``benchmark --html``, and the pages
``serve`` shows): the numbers in a table, the timeline and the costs drawn as inline SVG, no script,
stylesheet or font fetched from anywhere. Every number on the page is in the report's JSON too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1040px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px}
table{border-collapse:collapse;width:100%}
td,th{padding:5px 10px;border-bottom:1px solid #e3e6ec;text-align:left}
th{background:#f4f6fa;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1b7f3b;font-weight:600} .bad{color:#b3261e;font-weight:600} .muted{color:#667085;font-size:12px}
.verdict{padding:10px 14px;border-radius:6px;margin:12px 0;background:#eef7f0}
.verdict.bad{background:#fdecea} svg{display:block;margin:6px 0}
"""
SAGEMAKER_COLOR = "#c04030"
RAY_COLOR = "#3070c0"
PROVISIONING_COLOR = "#e8b04a"


def _n(v: Any, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def _usd(v: Any) -> str:
    return "no price" if v is None else f"${v:,.6f}"


def _row(cells: Iterable[str], head: bool = False, numeric: Sequence[int] = ()) -> str:
    tag = "th" if head else "td"
    out = []
    for i, cell in enumerate(cells):
        cls = ' class="n"' if i in numeric and not head else ""
        out.append(f"<{tag}{cls}>{escape(cell)}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def _timeline_svg(lanes: Sequence[tuple[str, float | None, float | None, str]], width: int = 960) -> str:
    """One lane per side: provisioning (created -> start) then the transform (start -> end), to scale."""
    total = max([(p or 0.0) + (t or 0.0) for _, p, t, _ in lanes] + [1e-9])
    left, lane_h = 110, 34
    scale = (width - left - 80) / total  # room for the end label
    height = lane_h * len(lanes) + 30
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="timeline">']
    for i, (label, provisioning, transform, color) in enumerate(lanes):
        y = 8 + i * lane_h
        p, t = provisioning or 0.0, transform or 0.0
        parts.append(f'<text x="0" y="{y + 17}" font-size="13">{escape(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{p * scale:.1f}" height="22" fill="{PROVISIONING_COLOR}">'
            f"<title>provisioning {p:.2f} s</title></rect>"
        )
        parts.append(
            f'<rect x="{left + p * scale:.1f}" y="{y}" width="{max(t * scale, 1):.1f}" height="22" '
            f'fill="{color}"><title>transform {t:.2f} s</title></rect>'
        )
        parts.append(
            f'<text x="{left + (p + t) * scale + 6:.1f}" y="{y + 16}" font-size="12">{p + t:,.2f} s</text>'
        )
    axis_y = height - 8
    parts.append(
        f'<text x="{left}" y="{axis_y}" font-size="11" fill="#667085">0 s: CreationTime; amber: '
        "provisioning (to TransformStartTime); then the transform (to TransformEndTime)</text>"
    )
    return "".join(parts) + "</svg>"


def _bars_svg(bars: Sequence[tuple[str, float | None, str]], unit: str, width: int = 460) -> str:
    """Horizontal bars, one per (label, value, colour); a missing value is shown as such."""
    top = max([v for _, v, _ in bars if v is not None] + [1e-12])
    left, bar_h = 150, 30
    parts = [
        f'<svg width="{width}" height="{bar_h * len(bars) + 10}" role="img" aria-label="{escape(unit)}">'
    ]
    for i, (label, value, color) in enumerate(bars):
        y = 4 + i * bar_h
        parts.append(f'<text x="0" y="{y + 16}" font-size="13">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{left}" y="{y + 16}" font-size="12" fill="#667085">no price</text>')
            continue
        w = max((width - left - 110) * value / top, 1)
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="20" fill="{color}"></rect>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{escape(_usd(value))}</text>')
    return "".join(parts) + "</svg>"


def benchmark_html(report: Mapping[str, Any]) -> str:
    """The benchmark (or ``report --sagemaker-job``) page: both sides, to scale, and the verdict."""
    sm, ray, ratios = report["sagemaker"], report["ray"], report["ratios"]
    rows = [
        ("job", sm["TransformJobName"], ray["TransformJobName"], ""),
        ("status", sm["TransformJobStatus"], ray["TransformJobStatus"], ""),
        (
            "instances",
            f"{sm['instance_count']} x {sm['instance_type']}",
            f"{ray['instance_count']} x {ray['node_type']} on {len(ray['nodes_used'])} node(s)",
            "",
        ),
        ("provisioning", _n(sm["provisioning_s"], " s"), _n(ray["provisioning_s"], " s"), ""),
        (
            "transform",
            _n(sm["transform_s"], " s"),
            _n(ray["transform_s"], " s"),
            _n(ratios["transform"], "x"),
        ),
        (
            "first output",
            _n(sm["first_output_s"], " s"),
            _n(ray["first_output_s"], " s"),
            _n(ratios["first_output"], "x"),
        ),
        (
            "time to result",
            _n(sm["time_to_result_s"], " s"),
            _n(ray["time_to_result_s"], " s"),
            _n(ratios["time_to_result"], "x"),
        ),
        ("records per second", _n(sm["records_per_s"], digits=1), _n(ray["records_per_s"], digits=1), ""),
        (
            "billed / held",
            _n(sm["billed_instance_seconds"], " instance-s"),
            _n(ray["node_seconds"], " node-s"),
            "",
        ),
        ("cost per job", _usd(sm["usd"]), _usd(ray["usd"]), _n(ratios["usd"], "x")),
        (
            "cost per million records",
            _usd(sm["usd_per_million_records"]),
            _usd(ray["usd_per_million_records"]),
            "",
        ),
    ]
    table = (
        "<table>"
        + _row(("", "SageMaker", "Ray", "SageMaker / Ray"), head=True)
        + "".join(_row(r, numeric=(1, 2, 3)) for r in rows)
        + "</table>"
    )
    verdict = report.get("outputs_equal")
    compare = report.get("compare") or {}
    if verdict is None:
        verdict_html = '<div class="verdict bad">Outputs not compared: a side did not complete.</div>'
    else:
        word = "equal" if verdict else "DIFFERENT"
        verdict_html = (
            f'<div class="verdict{"" if verdict else " bad"}"><span class="{"ok" if verdict else "bad"}">'
            f"Outputs {word}</span>: {compare.get('records_compared', 0):,} records in "
            f"{compare.get('objects_compared', 0)} objects compared, {compare.get('records_different', 0)} "
            f"differ (rel_tol {compare.get('rel_tol', 0)}, abs_tol {compare.get('abs_tol', 0)}).</div>"
        )
    timeline = _timeline_svg(
        [
            ("SageMaker", sm["provisioning_s"], sm["transform_s"], SAGEMAKER_COLOR),
            ("Ray", ray["provisioning_s"], ray["transform_s"], RAY_COLOR),
        ]
    )
    costs = _bars_svg(
        [("SageMaker", sm["usd"], SAGEMAKER_COLOR), ("Ray", ray["usd"], RAY_COLOR)], "cost per job"
    )
    prices = report.get("prices") or {}
    notes = [
        f"SageMaker price: {sm['price_source']}; billed {sm['billed_span']}.",
        f"Ray cost: {ray['pricing']}.",
        f"Records: {sm['records_source']}.",
        "First output: the earliest LastModified of the side's .out objects (whole seconds on S3).",
        f"Prices: {prices.get('table', '?')}, region {prices.get('region', '?')}, "
        f"as of {prices.get('as_of', '?')}.",
    ]
    body = (
        f"<h1>Benchmark: {escape(str(sm['TransformJobName']))} against "
        f"{escape(str(ray['TransformJobName']))}</h1>"
        f'<div class="muted">run {escape(str(report["how"]))}</div>'
        + verdict_html
        + table
        + "<h2>Timeline</h2>"
        + timeline
        + "<h2>Cost per job</h2>"
        + costs
        + "<h2>How these were measured</h2><ul>"
        + "".join(f"<li>{escape(n)}</li>" for n in notes)
        + "</ul>"
    )
    return _page(f"benchmark {sm['TransformJobName']}", body)


def job_html(report: Mapping[str, Any]) -> str:
    """One job's page (``report --html``, ``serve``'s ``/jobs/<name>``): timeline, throughput, cost."""
    t, tp, cost = report["timeline"], report["throughput"], report["cost"]
    status = str(report["TransformJobStatus"])
    rows = [
        ("status", status),
        ("workers ready (since creation)", _n(t["workers_ready_s"], " s")),
        ("first output", _n(t["first_output_s"], " s")),
        ("transform", _n(t["transform_s"], " s")),
        ("time to result", _n(t["total_s"], " s")),
        ("objects", f"{tp['objects_done']} of {tp['objects_total']} written, {tp['objects_failed']} failed"),
        ("records", f"{tp['records']:,}"),
        ("records per second", _n(tp["records_per_s"], digits=1)),
        ("this run's cost", _usd(cost["runner_usd"])),
        ("SageMaker's estimate (billed span)", _usd(cost["sagemaker_usd"])),
    ]
    if report.get("FailureReason"):
        rows.insert(1, ("FailureReason", str(report["FailureReason"])))
    table = "<table>" + "".join(_row(r, numeric=(1,)) for r in rows) + "</table>"
    ready = t["workers_ready_s"]
    timeline = _timeline_svg([("this run", ready, t["transform_s"], RAY_COLOR)])
    costs = _bars_svg(
        [
            ("this run", cost["runner_usd"], RAY_COLOR),
            ("SageMaker (est.)", cost["sagemaker_usd"], SAGEMAKER_COLOR),
        ],
        "cost",
    )
    notes = [f"This run's cost: {cost['runner_pricing']}."] + [
        f"note: {n}" for n in report.get("notes") or ()
    ]
    body = (
        f"<h1>Transform job {escape(str(report['TransformJobName']))}</h1>"
        f'<div class="muted">{cost["instance_count"]} x {escape(str(cost["instance_type"]))}, prices '
        f"{escape(str(cost['price_table']))} as of {escape(str(cost['prices_as_of']))}</div>"
        + table
        + "<h2>Timeline</h2>"
        + timeline
        + "<h2>Cost</h2>"
        + costs
        + "<ul>"
        + "".join(f"<li>{escape(n)}</li>" for n in notes)
        + "</ul>"
    )
    return _page(f"transform job {report['TransformJobName']}", body)


def jobs_html(jobs: Sequence[Mapping[str, Any]]) -> str:
    """``serve``'s job list: status, progress, records per second and cost so far, newest first."""
    rows = [_row(("job", "status", "progress", "records", "records per second", "cost so far"), head=True)]
    for job in jobs:
        name = escape(str(job["name"]))
        rows.append(
            f'<tr><td><a href="/jobs/{name}">{name}</a></td><td>{escape(str(job["status"]))}</td>'
            f'<td class="n">{escape(str(job["progress"]))}</td><td class="n">{job["records"]:,}</td>'
            f'<td class="n">{escape(_n(job["records_per_s"], digits=1))}</td>'
            f'<td class="n">{escape(_usd(job["usd"]))}</td></tr>'
        )
    body = f'<h1>Transform jobs</h1><div class="muted">{len(jobs)} job(s)</div><table>{"".join(rows)}</table>'
    return _page("transform jobs", body)
