"""Draw the plots of benchmarks/RESULTS.md from the recorded figures in benchmarks/results.json.

    .venv/bin/python benchmarks/plot_results.py      # writes benchmarks/plots/*.png

It runs no benchmark: edit results.json with a new run's figures, then run this again. matplotlib
draws on its Agg canvas, so no display is needed.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

HERE = Path(__file__).resolve().parent
DATA = HERE / "results.json"
OUT = HERE / "plots"
DPI = 100
MET, MISSED, BASELINE = "tab:green", "tab:orange", "tab:gray"


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, name: str) -> Path:
    fig.tight_layout()
    path = OUT / name
    fig.savefig(path, dpi=DPI)
    return path


def _subtitle(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"measured {data['measured']}; {m['cpu']}, {m['memory']}, no GPU; {m['s3']}; {m['ray']}"


def plot_targets(data: dict[str, Any]) -> Path:
    """Throughput against each workload's baseline: one bar per target (the median of its runs),
    each run a dot, the goal a dashed line over its bar."""
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    targets = data["targets"]
    for x, t in enumerate(targets):
        runs: list[float] = t["runs"]
        value = statistics.median(runs)
        ax.bar(x, value, width=0.6, color=MET if t["met"] else MISSED, alpha=0.8)
        if len(runs) > 1:
            ax.plot([x] * len(runs), runs, "o", color="black", markersize=4, zorder=3)
        ax.hlines(t["goal"], x - 0.4, x + 0.4, colors="tab:red", linestyles="--", linewidth=2)
        label = "–".join(f"{r:.2f}" for r in (min(runs), max(runs))) if len(runs) > 1 else f"{value:.2f}"
        ax.annotate(
            f"{label}×",
            (x, value / 2),
            ha="center",
            va="center",
            fontsize=9,
            color="white",
            fontweight="bold",
        )
    ax.axhline(1.0, color="black", linewidth=0.8)
    labels = [
        f"{t['name'].replace(' vs ', chr(10) + 'vs ')}\ngoal ≥ {t['goal']:g}× (red dashes)" for t in targets
    ]
    ax.set_xticks(range(len(targets)), labels, fontsize=8)
    ax.set_ylabel("runner / baseline (× throughput)")
    ax.set_ylim(0, max(t["goal"] for t in targets) * 1.15)
    ax.set_title(
        "Throughput against the baseline (bar: median, dots: each run; green: goal met, orange: missed)",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.suptitle(_subtitle(data), fontsize=7, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = OUT / "targets.png"
    fig.savefig(path, dpi=DPI)
    return path


def plot_workload_t_cpu(data: dict[str, Any]) -> Path:
    """CPU seconds per process for one baseline run and one runner job of workload T, stacked, with
    what 2 cores can give in each side's wall time."""
    t = data["workload_t"]
    fig = _figure(9.5, 4.6)
    ax = fig.add_subplot()
    sides = ["baseline", "runner"]
    colours = {
        "S3 server (SeaweedFS)": "lightgray",
        "the one process (read, parse, predict, format, upload)": BASELINE,
        "model worker 1 (parse, predict, format)": "tab:blue",
        "model worker 2 (parse, predict, format)": "cornflowerblue",
        "object task (read, split, send, upload)": "tab:purple",
        "driver (pytest)": "tab:brown",
        "raylet + GCS": "tab:olive",
        "other processes": "tab:pink",
    }
    for x, side in enumerate(sides):
        parts: dict[str, float] = dict(t["cpu_s"][side])
        listed = sum(v for k, v in parts.items() if not k.startswith("S3 server"))
        other = round(t["cpu_s_total_without_s3"][side] - listed, 2)
        if other > 0:
            parts["other processes"] = other
        bottom = 0.0
        for name, value in parts.items():
            ax.bar(
                x,
                value,
                bottom=bottom,
                width=0.5,
                color=colours[name],
                edgecolor="white",
                label=name if name not in ax.get_legend_handles_labels()[1] else None,
            )
            if value >= 0.5:
                ax.annotate(f"{value:.2f}", (x, bottom + value / 2), ha="center", va="center", fontsize=8)
            bottom += value
        ax.annotate(
            f"{bottom:.1f} CPU-s", (x, bottom), ha="center", va="bottom", fontsize=9, fontweight="bold"
        )
        capacity = 2 * t["wall_s"][side]
        ax.hlines(capacity, x - 0.35, x + 0.35, colors="tab:red", linestyles="--")
        ax.annotate(
            f"2 cores × {t['wall_s'][side]:.2f} s wall = {capacity:.1f} CPU-s",
            (x, capacity),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color="tab:red",
        )
    ax.set_xticks(range(len(sides)), ["baseline (one process)", "runner (2 model workers)"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(0, 18.5)
    ax.set_ylabel("CPU seconds")
    ax.set_title(f"Workload T, run {t['cpu_account_run']}: CPU seconds per process", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, "workload-t-cpu.png")


def plot_ray_data(data: dict[str, Any]) -> Path:
    """Rows/s of each Ray Data setting and of the runner's job on the same object in the same run."""
    rd = data["ray_data"]
    names = [*rd["rows_per_s"], "runner (bundled request)"]
    values = [*rd["rows_per_s"].values(), rd["runner_rows_per_s"]]
    best = max(rd["rows_per_s"].values())
    fig = _figure(7.5, 3.6)
    ax = fig.add_subplot()
    y = list(range(len(names)))
    ax.barh(y, values, color=[BASELINE] * (len(names) - 1) + ["tab:blue"])
    for i, v in zip(y, values, strict=True):
        ax.annotate(
            f"{v:,.0f}", (v, i), va="center", ha="left", fontsize=8, xytext=(3, 0), textcoords="offset points"
        )
    ax.axvline(3 * best, color="tab:red", linestyle="--")
    ax.annotate(
        "goal: 3 × best Ray Data",
        (3 * best, len(names) - 0.6),
        ha="right",
        fontsize=8,
        color="tab:red",
        xytext=(-3, 0),
        textcoords="offset points",
    )
    ax.set_yticks(y, [f"Ray Data: {n}" for n in names[:-1]] + [names[-1]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 3 * best * 1.08)
    ax.set_xlabel("rows/s")
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_title(f"Workload T: runner / best Ray Data = {rd['ratio_vs_best']:.2f}×", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, "ray-data.png")


def plot_big_object(data: dict[str, Any]) -> Path:
    """RSS per process at the 8 GB job's peak, the job's own processes and Ray's services stacked,
    against the 2 GB goal; and the whole tree's PSS."""
    b = data["big_object"]
    rss: dict[str, float] = {k: v / 1000 for k, v in b["rss_mb_at_peak"].items()}
    job = [k for k in rss if k in b["job_processes"]]
    services = [k for k in rss if k not in b["job_processes"]]
    fig = _figure(9.5, 3.4)
    ax = fig.add_subplot()
    rows = ["RSS: driver + workers", "RSS: whole tree", "PSS: whole tree"]
    job_colours = ["tab:purple", "tab:blue", "cornflowerblue", "tab:brown"]
    for row, names in ((0, job), (1, job + services)):
        left = 0.0
        for name in names:
            colour = job_colours[job.index(name)] if name in job else "lightgray"
            ax.barh(
                row,
                rss[name],
                left=left,
                color=colour,
                edgecolor="white",
                label=name if row == 1 and name in job else None,
            )
            left += rss[name]
        ax.annotate(
            f"{left:.2f} GB",
            (left, row),
            va="center",
            xytext=(3, 0),
            textcoords="offset points",
            fontsize=9,
            fontweight="bold",
        )
    ax.barh(1, 0, color="lightgray", label="Ray's services (GCS, raylet, dashboard, monitors, agents)")
    ax.barh(2, b["peak_pss_whole_tree_gb"], color=BASELINE)
    ax.annotate(
        f"{b['peak_pss_whole_tree_gb']:.2f} GB",
        (b["peak_pss_whole_tree_gb"], 2),
        va="center",
        xytext=(3, 0),
        textcoords="offset points",
        fontsize=9,
        fontweight="bold",
    )
    ax.axvline(b["goal_gb"], color="tab:red", linestyle="--")
    ax.annotate(
        f"goal ≤ {b['goal_gb']:g} GB (driver + workers)",
        (b["goal_gb"], 2),
        va="center",
        color="tab:red",
        fontsize=8,
        xytext=(3, 0),
        textcoords="offset points",
    )
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 2.6)
    ax.set_xlabel("GB at the peak")
    ax.set_title(
        f"One {b['object_gb']:g} GB object: peak memory ({b['rows']:,} rows in {b['job_s']} s)", fontsize=10
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, "big-object-memory.png")


def plot_first_output(data: dict[str, Any]) -> Path:
    """Seconds from starting a job to its first output object, each run a dot, against the goal."""
    f = data["first_output"]
    modes: dict[str, list[float]] = f["first_out_s"]
    fig = _figure(7.5, 3.2)
    ax = fig.add_subplot()
    for y, runs in enumerate(modes.values()):
        colours = [MET if r < f["goal_s"] else MISSED for r in runs]
        ax.scatter(runs, [y] * len(runs), c=colours, s=45, zorder=3, edgecolors="black", linewidths=0.5)
        ax.annotate(
            ", ".join(f"{r:.2f}" for r in runs) + " s",
            (max(runs), y),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.axvline(f["goal_s"], color="tab:red", linestyle="--")
    ax.annotate(
        f"goal < {f['goal_s']:g} s (warm machine)",
        (f["goal_s"], len(modes) - 0.55),
        fontsize=8,
        color="tab:red",
        xytext=(3, 0),
        textcoords="offset points",
    )
    ax.set_yticks(range(len(modes)), list(modes), fontsize=8)
    ax.set_ylim(len(modes) - 0.4, -0.6)
    ax.set_xlim(0, max(max(r) for r in modes.values()) * 1.25)
    ax.set_xlabel("seconds from start to the first .out in S3")
    ax.set_title("First output, 1,000 small objects (each dot one job)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, "first-output.png")


def plot_scaling(data: dict[str, Any]) -> Path:
    """Records/s after the workers are ready, and the same relative to InstanceCount 1."""
    s = data["scaling"]
    counts: list[int] = s["instance_counts"]
    fig = _figure(9.0, 3.8)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for model, values in s["records_per_s_after_ready"].items():
        left.plot(counts, values, "o-", label=model)
        right.plot(counts, [v / values[0] for v in values], "o-", label=model)
    right.plot(counts, counts, ":", color="gray", label="linear")
    right.axhline(
        s["real_cores"], color="gray", linestyle="--", linewidth=0.8, label=f"{s['real_cores']} real cores"
    )
    axes: list[Axes] = [left, right]
    for ax in axes:
        ax.set_xticks(counts)
        ax.set_xlabel("InstanceCount (one worker per node)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    left.set_ylabel("records/s after the workers are ready")
    left.set_ylim(bottom=0)
    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    right.set_ylabel("× records/s at InstanceCount 1")
    right.set_ylim(bottom=0)
    fig.suptitle("40 × 50,000-row CSV objects over 4 Ray nodes on one 2-core machine", fontsize=10)
    return _save(fig, "scaling.png")


PLOTS: list[Callable[[dict[str, Any]], Path]] = [
    plot_targets,
    plot_workload_t_cpu,
    plot_ray_data,
    plot_big_object,
    plot_first_output,
    plot_scaling,
]


def main() -> int:
    data: dict[str, Any] = json.loads(DATA.read_text())
    OUT.mkdir(exist_ok=True)
    for plot in PLOTS:
        path = plot(data)
        print(f"{path.relative_to(HERE.parent)}  {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
