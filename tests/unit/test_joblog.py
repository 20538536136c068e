"""A job's log streams in the job store: lines about the whole job on every instance's stream, one
line an object on one stream each, so the log grows with the objects, not objects x instances."""

from __future__ import annotations

from pathlib import Path

from runner.jobs.joblog import JobLog, JobLogWriter, stream_names
from runner.jobs.store import JobStore


def messages(log: JobLog, stream: str) -> list[str]:
    return [e.message for e in log.events(stream, limit=100, from_head=True)]


def test_object_lines_go_once_each_and_job_lines_to_every_stream(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    writer = JobLogWriter(store, "j", 3)
    writer.job("started")
    writer.spread([f"object {i}" for i in range(7)])
    writer.job("Completed")
    log = JobLog(store)
    streams = stream_names("j", 3)
    seen = [messages(log, s) for s in streams]
    assert all(m[0] == "started" and m[-1] == "Completed" for m in seen)
    objects = [line for m in seen for line in m if line.startswith("object")]
    assert sorted(objects) == sorted(f"object {i}" for i in range(7))  # each once
    assert [len(m) - 2 for m in seen] == [3, 2, 2]  # in turn
