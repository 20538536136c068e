"""Each job's log, kept as CloudWatch Logs keeps a SageMaker transform job's.

SageMaker writes what each instance's container prints to the log group ``/aws/sagemaker/TransformJobs``,
one stream per instance, named ``<job name>/<instance id>``; the SageMaker Python SDK's
``transform(wait=True, logs=True)`` tails those streams (``DescribeLogStreams``, ``GetLogEvents``).
The runner keeps the same streams in the job store, and ``serve`` answers those two operations from
them (runner/server/logs.py).

What a stream holds: what the job said as it ran (the Ray it runs on, sizing, the model runtime, waits),
its instance's workers' start (node, pid, image family, model load time), each object's outcome (records,
payloads, the error of one that failed) and the job's end. Lines about the whole job go to every
instance's stream; an instance's workers' lines to its own. Instance ids are fixed by the job's name
and the instance's index, in EC2's ``i-`` + 17 hex digits form, so every stream exists from the job's
first line.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runner.jobs.store import JobStore

log = logging.getLogger(__name__)

LOG_GROUP = "/aws/sagemaker/TransformJobs"
JOBLOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, timestamp INTEGER NOT NULL,
    ingestion INTEGER NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS log_events_by_stream ON log_events (stream, seq);
"""


def instance_id(job_name: str, index: int) -> str:
    """A stable EC2-style id for the job's ``index``-th instance (0-based)."""
    return "i-" + hashlib.sha256(f"{job_name}\n{index}".encode()).hexdigest()[:17]


def stream_names(job_name: str, instance_count: int) -> list[str]:
    return [f"{job_name}/{instance_id(job_name, i)}" for i in range(instance_count)]


@dataclass(frozen=True)
class LogEvent:
    seq: int
    timestamp: int  # ms since the epoch, as CloudWatch's
    ingestion: int
    message: str


@dataclass(frozen=True)
class LogStream:
    name: str
    first_event: int
    last_event: int
    last_ingestion: int
    stored_bytes: int


class JobLog:
    """The ``log_events`` table of the job store."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        with store.connect() as db:
            db.executescript(JOBLOG_SCHEMA)

    def append(self, streams: Sequence[str], messages: Iterable[str]) -> None:
        """Each message, at this moment, onto each of ``streams``; one transaction."""
        self.append_each([(s, m) for m in messages for s in streams])

    def append_each(self, lines: Sequence[tuple[str, str]]) -> None:
        """Each (stream, message), at this moment; one transaction."""
        now = int(time.time() * 1000)
        if not lines:
            return
        with self.store.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO log_events (stream, timestamp, ingestion, message) VALUES (?, ?, ?, ?)",
                [(s, now, now, m) for s, m in lines],
            )
            db.execute("COMMIT")

    def has_events(self) -> bool:
        with self.store.connect() as db:
            return db.execute("SELECT 1 FROM log_events LIMIT 1").fetchone() is not None

    def streams(self, prefix: str = "") -> list[LogStream]:
        """Every stream whose name starts with ``prefix`` (case-sensitive, as CloudWatch's), by name."""
        with self.store.connect() as db:
            rows = db.execute(
                "SELECT stream, MIN(timestamp), MAX(timestamp), MAX(ingestion), "
                "SUM(LENGTH(CAST(message AS BLOB))) FROM log_events "
                "WHERE substr(stream, 1, ?) = ? GROUP BY stream ORDER BY stream",
                (len(prefix), prefix),
            ).fetchall()
        return [LogStream(*row) for row in rows]

    def events(
        self,
        stream: str,
        *,
        after: int | None = None,
        before: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int,
        from_head: bool,
    ) -> list[LogEvent]:
        """Up to ``limit`` events of ``stream`` with ``after < seq < before`` and ``start_ms <= timestamp
        < end_ms``, in order: the first ones when ``from_head``, else the last ones."""
        where: list[str] = ["stream = ?"]
        args: list[object] = [stream]
        for clause, value in (
            ("seq > ?", after),
            ("seq < ?", before),
            ("timestamp >= ?", start_ms),
            ("timestamp < ?", end_ms),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        order = "ASC" if from_head else "DESC"
        with self.store.connect() as db:
            rows = db.execute(
                f"SELECT seq, timestamp, ingestion, message FROM log_events WHERE {' AND '.join(where)} "
                f"ORDER BY seq {order} LIMIT ?",
                (*args, limit),
            ).fetchall()
        events = [LogEvent(*row) for row in rows]
        return events if from_head else events[::-1]


class JobLogWriter:
    """One job's streams: lines about the whole job go to every instance's stream, an instance's
    own lines to its stream only. Writing never fails the job: a log line is not worth a record."""

    def __init__(self, store: JobStore, job_name: str, instance_count: int) -> None:
        self.log = JobLog(store)
        self.streams = stream_names(job_name, max(1, instance_count))

    def job(self, *messages: str) -> None:
        self._write(self.streams, messages)

    def instance(self, index: int, *messages: str) -> None:
        self._write([self.streams[index % len(self.streams)]], messages)

    def spread(self, messages: Sequence[str]) -> None:
        """Many lines (one an object), each on one stream in turn: a line an object, not one an object
        and instance, so a job's log grows with its objects alone."""
        n = len(self.streams)
        try:
            self.log.append_each([(self.streams[i % n], m) for i, m in enumerate(messages)])
        except sqlite3.Error as e:
            log.warning("could not write the job's log lines: %s", e)

    def _write(self, streams: Sequence[str], messages: Iterable[str]) -> None:
        try:
            self.log.append(streams, messages)
        except sqlite3.Error as e:
            log.warning("could not write the job's log lines: %s", e)
