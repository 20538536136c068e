"""What the CLI prints: its two consoles and the live progress of a running job (a bar
on a terminal, plain lines in logs and pipes), which also keeps ``--metrics-file`` up to date."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from runner.errors import JobError
from runner.jobs.counters import JobCounters
from runner.jobs.store import JobStore

METRICS_EVERY_S = 2.0
PLAIN_PROGRESS_EVERY_S = 5.0

# soft_wrap: long lines (URIs, failure reasons) stay whole in logs and pipes.
# No markup: keys, FailureReasons and notes may hold "[...]" that rich would eat or choke on.
err = Console(stderr=True, soft_wrap=True, markup=False)
out = Console(soft_wrap=True, markup=False)


class ProgressView:
    """A live bar on a terminal, plain lines otherwise (CI logs, pipes); and the --metrics-file."""

    def __init__(self, args: argparse.Namespace, job_name: str, store_path: Path) -> None:
        self.show = not getattr(args, "no_progress", False)
        self.metrics_file: str | None = getattr(args, "metrics_file", None)
        self.job_name = job_name
        self.store_path = store_path
        self._store: JobStore | None = None
        self._last_metrics = 0.0
        self.start = time.monotonic()
        self.live = err.is_terminal
        self._last_line = 0.0
        self._bar: Progress | None = None
        self._task: Any = None

    def callback(self) -> Callable[[JobCounters], None] | None:
        return self.update if self.show or self.metrics_file else None

    def update(self, c: JobCounters) -> None:
        self.write_metrics()
        if not self.show:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = c.records / elapsed
        mb = c.bytes_in / 1e6
        text = f"records {c.records:,} · {mb:,.1f} MB in · {rate:,.0f} records/s · {c.objects_failed} failed"
        if self.live:
            if self._bar is None:
                self._bar = Progress(
                    TextColumn("objects"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.description}"),
                    TimeElapsedColumn(),
                    console=err,
                )
                self._bar.start()
                self._task = self._bar.add_task(text, total=c.objects_total)
            self._bar.update(self._task, completed=c.objects_done + c.objects_failed, description=text)
        elif time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = time.monotonic()
            done = c.objects_done + c.objects_failed
            err.print(f"[{elapsed:6.1f}s] objects {done}/{c.objects_total} · {text}", highlight=False)

    def write_metrics(self, force: bool = False) -> None:
        """The job as the store has it (counters every few seconds), in Prometheus' text format."""
        now = time.monotonic()
        if not self.metrics_file or (not force and now - self._last_metrics < METRICS_EVERY_S):
            return
        self._last_metrics = now
        from runner.jobs.metrics import write_file

        if self._store is None:
            self._store = JobStore(self.store_path)
        with contextlib.suppress(JobError):  # not created yet (an invalid request)
            write_file(self.metrics_file, [self._store.get_job(self.job_name)])

    def close(self) -> None:
        self.write_metrics(force=True)
        if self._bar is not None:
            self._bar.stop()
