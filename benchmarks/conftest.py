"""Benchmarks reuse the test suite's embedded S3 fixture and add a local Ray and a memory sampler."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.config import RunnerConfig
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus
from tests.cluster import run_cli_with
from tests.conftest import s3_server  # noqa: F401  (a fixture, used by name)

ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 600.0


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


# The samplers' threads (PeakRss, TreeMeter): their CPU is the measurement's, not either side's, so
# TreeMeter takes it out of this process's figure and reports it apart.
SAMPLER_THREADS: list[threading.Thread] = []


def _thread_cpu_s(thread: threading.Thread) -> float:
    """CPU seconds a thread of this process has used (0 once it has ended or before it starts)."""
    if thread.ident is None or not thread.is_alive():
        return 0.0
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except OSError:  # it ended meanwhile
        return 0.0


def _sampler_thread(target: Any) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    SAMPLER_THREADS[:] = [t for t in SAMPLER_THREADS if t.is_alive()] + [thread]
    return thread


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
        self._thread = _sampler_thread(self._run)

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


def _title(p: psutil.Process) -> str:
    """A process's title: Ray's workers rename themselves ray::<task or actor> once started."""
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return "?"
    title = cmd[0] if cmd else p.name()
    return title.split(" ")[0] if title.startswith("ray::") else os.path.basename(title)[:40]


class TreeMeter:
    """CPU seconds spent while the block runs by this process and its descendants (Ray's processes
    included; a process that ends counts with its last sampled CPU time) and by the S3 server
    (``weed``) apart; and the processes started meanwhile (Ray's worker processes, in a job):
    Ray keeps at most num_cpus idle workers and kills the others after 1 s idle, so zero-CPU tasks
    beyond that can start processes over and over."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.s3_cpu_s = 0.0
        self.started: set[int] = set()
        self._me = psutil.Process()
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._s3: set[int] = set()
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._sample(initial=True)
        self._thread = _sampler_thread(self._run)
        self.samplers_cpu_s = 0.0  # this meter's and PeakRss's sampling, left out of ``cpu_s``
        self._samplers0 = {t: _thread_cpu_s(t) for t in SAMPLER_THREADS}

    def _sample(self, initial: bool = False) -> None:
        for p in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                cpu = sum(p.cpu_times()[:2])
                if p.pid not in self._last:
                    if p.name() == "weed":
                        self._s3.add(p.pid)
                    elif not initial:  # a new Ray worker is named ray::... only once it has started
                        self.started.add(p.pid)
                    self._first[p.pid] = cpu if initial else 0.0
                title = _title(p)  # the last thing it ran: idle workers are retitled ray::IDLE
                if p.pid not in self._names or (title.startswith("ray::") and title != "ray::IDLE"):
                    self._names[p.pid] = title
                self._last[p.pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()

    def __enter__(self) -> TreeMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        own = _thread_cpu_s(self._thread)  # read before the thread ends
        self._thread.join()
        self._sample()
        others = sum(_thread_cpu_s(t) - c0 for t, c0 in self._samplers0.items() if t is not self._thread)
        self.samplers_cpu_s = own + max(0.0, others)
        used = {pid: self._last[pid] - self._first[pid] for pid in self._last}
        used[self._me.pid] = max(0.0, used.get(self._me.pid, 0.0) - self.samplers_cpu_s)
        self.s3_cpu_s = sum(v for pid, v in used.items() if pid in self._s3)
        self.cpu_s = sum(v for pid, v in used.items() if pid not in self._s3)
        self.by_process: dict[str, float] = {}  # process title -> CPU s, the busiest first
        for pid, v in sorted(used.items(), key=lambda kv: -kv[1]):
            if v >= 0.05:
                name = self._names.get(pid, "?") + (" (started meanwhile)" if pid in self.started else "")
                self.by_process[name] = round(self.by_process.get(name, 0.0) + v, 2)


def cli_job(
    request: Mapping[str, Any],
    model: Mapping[str, Any],
    work: Path,
    home: Path,
    env: Mapping[str, str],
    *flags: str,
) -> tuple[float, float, JobRecord]:
    """One ``batch-transform run`` process, as a user types it (``tests/cluster.py`` ``run_cli_with``):
    (seconds from its start to its exit, the wall clock at its start, the job's record, Completed)."""
    wall0 = time.time()
    done = run_cli_with(request, model, work, home, env, *flags, timeout_s=CLI_TIMEOUT_S)
    assert done.returncode == 0, done.output
    record = JobStore(RunnerConfig(home=home).store_path).get_job(str(request["TransformJobName"]))
    assert record.status is TransformJobStatus.COMPLETED, record.failure_reason
    return done.seconds, wall0, record


@contextlib.contextmanager
def machine_ray(home: Path, env: Mapping[str, str]) -> Iterator[None]:
    """``batch-transform ray up`` for the block, then ``ray down``."""
    cli = [sys.executable, "-m", "runner.cli", "--home", str(home), "ray"]
    subprocess.run([*cli, "up"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    try:
        yield
    finally:
        subprocess.run([*cli, "down"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
