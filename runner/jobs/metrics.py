"""Job counters in the Prometheus text format: ``GET /metrics`` on ``serve``, or a file for
node_exporter's textfile collector.

The same numbers Describe returns under ``x-runner`` (objects, records, bytes, payloads, retries,
replacements, quarantined records), one series per job, plus each job's status and duration. They
are served at ``GET /metrics`` by `batch-transform serve` and written by `run --metrics-file PATH`
(the node_exporter textfile-collector form, replaced atomically). Counts are cumulative per job, so
they are Prometheus counters; ``prometheus_client`` (a Ray dependency) does the exposition format.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runner.jobs.store import JobRecord, TransformJobStatus

PREFIX = "batch_transform_job"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# x-runner counter -> (metric name without prefix and _total, help)
COUNTERS = {
    "objects_done": ("objects_done", "Input objects whose .out was written (resumed ones included)"),
    "objects_failed": ("objects_failed", "Input objects that failed"),
    "objects_resumed": ("objects_resumed", "Objects a resumed job kept from its earlier run"),
    "records": ("records", "Records read from the input"),
    "payloads": ("payloads", "Mini-batches sent to the model"),
    "bytes_in": ("input_bytes", "Bytes read from the input objects"),
    "bytes_out": ("output_bytes", "Bytes written to the .out objects"),
    "payloads_retried": ("payloads_retried", "Payloads sent again after their model worker died"),
    "workers_replaced": ("workers_replaced", "Model workers started in place of dead ones"),
    "records_quarantined": ("records_quarantined", "Records left out under on_record_error=quarantine"),
}


class JobsCollector(Collector):
    """Reads the jobs afresh at every scrape."""

    def __init__(self, jobs: Callable[[], Iterable[JobRecord]]) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        records = list(self.jobs())
        status = GaugeMetricFamily(
            f"{PREFIX}_status", "1 for the job's TransformJobStatus", labels=["job", "status"]
        )
        total = GaugeMetricFamily(f"{PREFIX}_objects", "Input objects the job planned", labels=["job"])
        seconds = GaugeMetricFamily(
            f"{PREFIX}_duration_seconds",
            "TransformStartTime to TransformEndTime (to now while it runs)",
            labels=["job"],
        )
        counters = {
            key: CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["job"])
            for key, (name, text) in COUNTERS.items()
        }
        now = time.time()
        for r in records:
            for s in TransformJobStatus:
                status.add_metric([r.name, str(s)], 1.0 if r.status is s else 0.0)
            if r.counters is not None:
                total.add_metric([r.name], float(r.counters.objects_total))
            if r.transform_start_time is not None:
                end = r.transform_end_time if r.transform_end_time is not None else now
                seconds.add_metric([r.name], max(0.0, end - r.transform_start_time))
            for key, family in counters.items():
                value = getattr(r.counters, key, None)
                if isinstance(value, int | float):
                    family.add_metric([r.name], float(value))
        yield status
        yield total
        yield seconds
        yield from counters.values()


def registry(jobs: Callable[[], Iterable[JobRecord]]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(JobsCollector(jobs))
    return reg


def render(jobs: Iterable[JobRecord]) -> bytes:
    """The exposition text for these jobs."""
    listed = list(jobs)
    return bytes(generate_latest(registry(lambda: listed)))


def write_file(path: str | Path, jobs: Iterable[JobRecord]) -> None:
    """For node_exporter's textfile collector: written to a temporary file, then renamed."""
    listed = list(jobs)
    write_to_textfile(str(path), registry(lambda: listed))
