"""Benchmarks reuse the test suite's embedded S3 fixture and add a local Ray and a memory sampler."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import s3_server  # noqa: F401  (a fixture, used by name)


@pytest.fixture(scope="session")
def ray_bench(s3_server: Any) -> Iterator[None]:  # noqa: F811
    import ray

    ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


RAY_SERVICES = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _is_ray_worker(cmdline: list[str]) -> bool:
    """A Ray worker process (its title is ``ray::<task or actor>`` or ``ray::IDLE``), not a service."""
    title = cmdline[0] if cmdline else ""
    return title.startswith("ray::") and not title.startswith(RAY_SERVICES)


class PeakRss:
    """Samples the RSS of this process and all its descendants (Ray's raylet and workers included),
    leaving out the embedded S3 server, which stands in for S3 and is not part of either side.

    With ``pss`` it also sums PSS (shared pages, e.g. Ray's object store mapped by several processes,
    divided among them rather than counted in each) and keeps, per process, its RSS at the RSS peak.
    ``peak_job`` is the RSS sum of the driver and Ray's worker processes alone (the job's object
    tasks, model workers and actors, and the idle workers that object tasks run in), without Ray's
    own services (GCS, raylet, dashboard, monitors, agents), which run whether a job does or not.
    """

    def __init__(self, every_s: float = 0.05, pss: bool = False) -> None:
        self.every_s = every_s
        self.pss = pss
        self.peak = 0
        self.peak_pss = 0
        self.at_peak: dict[str, int] = {}  # "pid command" -> RSS bytes, at the RSS peak (pss only)
        self.peak_job = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process(os.getpid())
        while not self._stop.is_set():
            total = total_pss = job = 0
            sizes: dict[str, int] = {}
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a process may end while we look
                    if p.name() != "weed":
                        rss = p.memory_info().rss
                        total += rss
                        if p.pid == me.pid or _is_ray_worker(p.cmdline()):
                            job += rss
                        if self.pss:
                            total_pss += p.memory_full_info().pss
                            sizes[f"{p.pid} {' '.join(p.cmdline())[:60]}"] = rss
            if total > self.peak:
                self.peak, self.at_peak = total, sizes
            self.peak_pss = max(self.peak_pss, total_pss)
            self.peak_job = max(self.peak_job, job)
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_bars_png(path: Path, bars: Mapping[str, float], title: str, ylabel: str = "rows/s") -> None:
    """A bar chart of one number per contestant (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels, values = list(bars), list(bars.values())
    ax.bar(labels, values, color=["grey", *["tab:blue"] * (len(values) - 1)])
    for x, v in enumerate(values):
        ax.annotate(f"{v:,.0f}", (x, v), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
