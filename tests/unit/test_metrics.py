"""The Prometheus text that `serve` answers at /metrics and `run --metrics-file` writes."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from runner.jobs.metrics import render, write_file
from runner.jobs.store import JobRecord, TransformJobStatus, job_arn


def record(name: str, status: TransformJobStatus, **counters: int) -> JobRecord:
    return JobRecord(
        name,
        job_arn(name),
        status,
        {},
        creation_time=100.0,
        last_modified_time=130.0,
        transform_start_time=110.0,
        transform_end_time=130.0 if status.is_terminal() else None,
        counters=counters,
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_series_per_job_with_its_counters_status_and_duration() -> None:
    done = record(
        "done", TransformJobStatus.COMPLETED, objects_total=3, objects_done=3, records=30, bytes_in=900
    )
    broken = record('we"ird\\name', TransformJobStatus.FAILED, objects_total=2, objects_failed=1, payloads=4)
    got = samples(render([done, broken]).decode())
    assert got[("batch_transform_job_records_total", (("job", "done"),))] == 30
    assert got[("batch_transform_job_input_bytes_total", (("job", "done"),))] == 900
    assert got[("batch_transform_job_objects", (("job", "done"),))] == 3
    assert got[("batch_transform_job_duration_seconds", (("job", "done"),))] == 20
    assert got[("batch_transform_job_status", (("job", "done"), ("status", "Completed")))] == 1
    assert got[("batch_transform_job_status", (("job", "done"), ("status", "Failed")))] == 0
    # A label value with quotes and backslashes comes back intact (the format escapes them).
    weird = (("job", 'we"ird\\name'),)
    assert got[("batch_transform_job_objects_failed_total", weird)] == 1
    assert got[("batch_transform_job_payloads_total", weird)] == 4
    assert got[("batch_transform_job_records_total", weird)] == 0  # counters are typed: all are counted
    # A job that has not counted anything yet (just created) has no counter series: not counted is not 0.
    fresh = record("fresh", TransformJobStatus.IN_PROGRESS)
    assert not any(name.endswith("_total") for name, _ in samples(render([fresh]).decode()))


def test_a_running_job_counts_its_duration_to_now_and_the_file_is_written_whole(tmp_path: Path) -> None:
    running = record("running", TransformJobStatus.IN_PROGRESS, records=5)
    path = tmp_path / "job.prom"
    write_file(path, [running])
    got = samples(path.read_text())
    assert got[("batch_transform_job_duration_seconds", (("job", "running"),))] > 1_000_000  # since t=110
    assert got[("batch_transform_job_status", (("job", "running"), ("status", "InProgress")))] == 1
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
