"""Reports as one self-contained HTML page each (``report --html``, ``benchmark --html``, and the pages
``serve`` shows): the numbers in a table, the timeline and the costs drawn as inline SVG, no script,
stylesheet or font fetched from anywhere. Every number on the page is in the report's JSON too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from runner.cost.benchmark import comparison_rows, measured_notes, usd_text, verdict_text

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
        parts.append(
            f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{escape(usd_text(value))}</text>'
        )
    return "".join(parts) + "</svg>"


def _sections(title: str, subtitle: str, *parts: tuple[str, str], notes: Sequence[str] = ()) -> str:
    """A page's body: its title, then (heading, HTML) sections, then the notes as a list."""
    body = f'<h1>{escape(title)}</h1><div class="muted">{escape(subtitle)}</div>'
    for heading, content in parts:
        body += (f"<h2>{escape(heading)}</h2>" if heading else "") + content
    return body + "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>"


def benchmark_html(report: Mapping[str, Any]) -> str:
    """The benchmark (or ``report --sagemaker-job``) page: both sides, to scale, and the verdict."""
    sm, ray = report["sagemaker"], report["ray"]
    table = (
        "<table>"
        + _row(("", "SageMaker", "Ray", "SageMaker / Ray"), head=True)
        + "".join(_row(r, numeric=(1, 2, 3)) for r in comparison_rows(report))
        + "</table>"
    )
    good = bool(report.get("outputs_equal"))
    verdict = f'<div class="verdict{"" if good else " bad"}">{escape(verdict_text(report))}</div>'
    timeline = _timeline_svg(
        [
            ("SageMaker", sm["provisioning_s"], sm["transform_s"], SAGEMAKER_COLOR),
            ("Ray", ray["provisioning_s"], ray["transform_s"], RAY_COLOR),
        ]
    )
    costs = _bars_svg(
        [("SageMaker", sm["usd"], SAGEMAKER_COLOR), ("Ray", ray["usd"], RAY_COLOR)], "cost per job"
    )
    body = _sections(
        f"Benchmark: {sm['TransformJobName']} against {ray['TransformJobName']}",
        f"run {report['how']}",
        ("", verdict + table),
        ("Timeline", timeline),
        ("Cost per job", costs),
        ("How these were measured", ""),
        notes=measured_notes(report),
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
        ("this run's cost", usd_text(cost["runner_usd"])),
        ("SageMaker's estimate (billed span)", usd_text(cost["sagemaker_usd"])),
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
    body = _sections(
        f"Transform job {report['TransformJobName']}",
        f"{cost['instance_count']} x {cost['instance_type']}, prices {cost['price_table']} as of "
        f"{cost['prices_as_of']}",
        ("", table),
        ("Timeline", timeline),
        ("Cost", costs),
        notes=notes,
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
            f'<td class="n">{escape(usd_text(job["usd"]))}</td></tr>'
        )
    body = f'<h1>Transform jobs</h1><div class="muted">{len(jobs)} job(s)</div><table>{"".join(rows)}</table>'
    return _page("transform jobs", body)
