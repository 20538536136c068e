"""Job lifecycle and the job store.

A ``JobRecord`` is the DescribeTransformJob shape plus the runner's own counters (under ``x-runner``,
outside AWS's shape). Records and models live in one SQLite file shared by the CLI and the server.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from runner.errors import ResourceInUseError, ResourceNotFoundError
from runner.jobs.counters import JobCounters

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "000000000000"


class TransformJobStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    def is_terminal(self) -> bool:
        return self in (TransformJobStatus.COMPLETED, TransformJobStatus.FAILED, TransformJobStatus.STOPPED)


def failure_reason(text: str) -> str:
    """``text`` cut to the length DescribeTransformJob's FailureReason allows (botocore's model)."""
    from runner.contract.shapes import output_max_length  # botocore's model: only when a job fails

    return text[: output_max_length("DescribeTransformJob", "FailureReason")]


def job_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:transform-job/{name}"


def model_arn(name: str, region: str = DEFAULT_REGION, account: str = DEFAULT_ACCOUNT) -> str:
    return f"arn:aws:sagemaker:{region}:{account}:model/{name}"


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


@dataclass(frozen=True)
class JobRecord:
    """One transform job. Times are epoch seconds (AWS JSON 1.1 sends timestamps that way)."""

    name: str
    arn: str
    status: TransformJobStatus
    request: Mapping[str, Any]
    creation_time: float
    last_modified_time: float
    transform_start_time: float | None = None
    transform_end_time: float | None = None
    failure_reason: str | None = None
    # MaxConcurrentTransforms / MaxPayloadInMB / BatchStrategy as the job resolved them.
    resolved: Mapping[str, Any] = field(default_factory=dict)
    # The runner's counters (Describe's ``x-runner``); None until the job has counted anything.
    counters: JobCounters | None = None

    def __post_init__(self) -> None:
        if isinstance(self.counters, Mapping):  # as read back from JSON
            object.__setattr__(
                self, "counters", JobCounters.from_json(self.counters) if self.counters else None
            )

    def describe(self, epoch_times: bool = True) -> dict[str, Any]:
        """The DescribeTransformJob response; ``epoch_times=False`` gives ISO 8601 strings for people."""
        t = (lambda v: v) if epoch_times else _iso
        out: dict[str, Any] = {
            "TransformJobName": self.name,
            "TransformJobArn": self.arn,
            "TransformJobStatus": str(self.status),
        }
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason  # cut to its limit when stored
        for key in (
            "ModelName",
            "MaxConcurrentTransforms",
            "ModelClientConfig",
            "MaxPayloadInMB",
            "BatchStrategy",
            "Environment",
            "TransformInput",
            "TransformOutput",
            "DataCaptureConfig",
            "TransformResources",
            "DataProcessing",
            "ExperimentConfig",
        ):
            if key in self.resolved:
                out[key] = self.resolved[key]
            elif key in self.request:
                out[key] = self.request[key]
        out["CreationTime"] = t(self.creation_time)
        if self.transform_start_time is not None:
            out["TransformStartTime"] = t(self.transform_start_time)
        if self.transform_end_time is not None:
            out["TransformEndTime"] = t(self.transform_end_time)
        if self.counters is not None:
            out["x-runner"] = self.counters.to_json()
        return out

    def summary(self, epoch_times: bool = True) -> dict[str, Any]:
        """One ListTransformJobs entry."""
        t = (lambda v: v) if epoch_times else _iso
        out: dict[str, Any] = {
            "TransformJobName": self.name,
            "TransformJobArn": self.arn,
            "CreationTime": t(self.creation_time),
            "LastModifiedTime": t(self.last_modified_time),
            "TransformJobStatus": str(self.status),
        }
        if self.transform_end_time is not None:
            out["TransformEndTime"] = t(self.transform_end_time)
        if self.failure_reason:
            out["FailureReason"] = self.failure_reason  # cut to its limit when stored
        return out


def in_use_message(arn: str) -> str:
    return (
        "Transform job names must be unique within an AWS account and region, and a transform job with "
        f"this name already exists ({arn})"
    )


SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    creation_time REAL NOT NULL, last_modified_time REAL NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name_key TEXT PRIMARY KEY, name TEXT NOT NULL, creation_time REAL NOT NULL, request TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_owners (name_key TEXT PRIMARY KEY, owner TEXT NOT NULL);
"""


_WAL_ATTEMPTS = 20


class JobStore:
    """SQLite-backed; safe to use from several processes (each call opens its own connection)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Switching a new database to WAL takes an exclusive lock without SQLite's busy handler, so two
        # processes opening a fresh store at once can get "database is locked": retry that briefly.
        for attempt in range(_WAL_ATTEMPTS):
            try:
                with self.connect() as db:
                    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        db.execute("PRAGMA journal_mode=WAL")
                    db.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """An autocommit connection (other modules keep tables here too, e.g. the resume ledger)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    # Names compare case-insensitively, as SageMaker's do (docs/contract.md §2).
    def create_job(self, record: JobRecord) -> None:
        with self.connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE name_key = ?", (record.name.lower(),)).fetchone()
            if row is not None:
                raise ResourceInUseError(in_use_message(json.loads(row[0])["arn"]))
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.name.lower(),
                    record.name,
                    str(record.status),
                    record.creation_time,
                    record.last_modified_time,
                    _dump(record),
                ),
            )

    def get_job(self, name: str) -> JobRecord:
        with self.connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE name_key = ?", (name.lower(),)).fetchone()
        if row is None:
            raise ResourceNotFoundError(f"Requested resource not found. (no transform job named {name!r})")
        return _load(row[0])

    def update_job(self, name: str, **changes: Any) -> JobRecord:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT record FROM jobs WHERE name_key = ?", (name.lower(),)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise ResourceNotFoundError(
                    f"Requested resource not found. (no transform job named {name!r})"
                )
            record = replace(_load(row[0]), last_modified_time=time.time(), **changes)
            db.execute(
                "UPDATE jobs SET status = ?, last_modified_time = ?, record = ? WHERE name_key = ?",
                (str(record.status), record.last_modified_time, _dump(record), name.lower()),
            )
            db.execute("COMMIT")
        return record

    def list_jobs(self) -> list[JobRecord]:
        with self.connect() as db:
            rows = db.execute("SELECT record FROM jobs ORDER BY creation_time DESC").fetchall()
        return [_load(r[0]) for r in rows]

    def put_model(self, name: str, request: Mapping[str, Any]) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?)",
                (name.lower(), name, time.time(), json.dumps(request)),
            )

    def get_model(self, name: str) -> dict[str, Any] | None:
        with self.connect() as db:
            row = db.execute("SELECT request FROM models WHERE name_key = ?", (name.lower(),)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    # The control plane's additions: models as resources, filtered listings, job ownership.

    def create_model(self, name: str, request: Mapping[str, Any]) -> ModelEntry:
        """CreateModel: a name taken already (in any case) raises ResourceInUseError."""
        now = time.time()
        with self.connect() as db:
            try:
                db.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?)", (name.lower(), name, now, json.dumps(request))
                )
            except sqlite3.IntegrityError:
                raise ResourceInUseError(
                    f'Cannot create already existing model "{model_arn(name)}".'
                ) from None
        return ModelEntry(name, dict(request), now)

    def model_entry(self, name: str) -> ModelEntry | None:
        with self.connect() as db:
            row = db.execute(
                "SELECT name, request, creation_time FROM models WHERE name_key = ?", (name.lower(),)
            ).fetchone()
        return None if row is None else ModelEntry(row[0], dict(json.loads(row[1])), row[2])

    def delete_model(self, name: str) -> bool:
        with self.connect() as db:
            return db.execute("DELETE FROM models WHERE name_key = ?", (name.lower(),)).rowcount > 0

    def query_jobs(self, query: ListQuery) -> tuple[list[JobRecord], SortPosition | None]:
        """One page of jobs; the position to pass as ``query.after`` for the next page, if any."""
        rows, after = self._page("jobs", "record", query)
        return [_load(r) for r in rows], after

    def query_models(self, query: ListQuery) -> tuple[list[ModelEntry], SortPosition | None]:
        if query.status_equals or query.last_modified_time_after or query.last_modified_time_before:
            raise ValueError("models have no status or last-modified time to filter on")
        rows, after = self._page("models", "json_array(name, request, creation_time)", query)
        entries = []
        for text in rows:
            name, request, created = json.loads(text)
            entries.append(ModelEntry(name, dict(json.loads(request)), created))
        return entries, after

    def _page(self, table: str, payload: str, q: ListQuery) -> tuple[list[str], SortPosition | None]:
        column = SORT_COLUMNS[q.sort_by]
        where, args = ["1"], list[Any]()
        if q.name_contains:
            where.append("instr(name_key, ?) > 0")
            args.append(q.name_contains.lower())
        if q.status_equals:
            where.append("status = ?")
            args.append(q.status_equals)
        for sql_column, op, value in (
            ("creation_time", ">", q.creation_time_after),
            ("creation_time", "<", q.creation_time_before),
            ("last_modified_time", ">", q.last_modified_time_after),
            ("last_modified_time", "<", q.last_modified_time_before),
        ):
            if value is not None:
                where.append(f"{sql_column} {op} ?")
                args.append(value)
        order = "DESC" if q.descending else "ASC"
        if q.after is not None:
            where.append(f"({column}, name_key) {'<' if q.descending else '>'} (?, ?)")
            args += [q.after[0], q.after[1]]
        sql = (
            f"SELECT {column}, name_key, {payload} FROM {table} WHERE {' AND '.join(where)} "
            f"ORDER BY {column} {order}, name_key {order} LIMIT ?"
        )
        with self.connect() as db:
            rows = db.execute(sql, [*args, q.limit + 1]).fetchall()
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        return [r[2] for r in rows], ((rows[-1][0], rows[-1][1]) if more else None)

    def update_job_if(self, name: str, statuses: tuple[TransformJobStatus, ...], **changes: Any) -> JobRecord:
        """Apply ``changes`` only while the job is in one of ``statuses``; returns the job as it is after."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT record FROM jobs WHERE name_key = ?", (name.lower(),)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                raise ResourceNotFoundError(
                    f"Requested resource not found. (no transform job named {name!r})"
                )
            record = _load(row[0])
            if record.status in statuses:
                record = replace(record, last_modified_time=time.time(), **changes)
                db.execute(
                    "UPDATE jobs SET status = ?, last_modified_time = ?, record = ? WHERE name_key = ?",
                    (str(record.status), record.last_modified_time, _dump(record), name.lower()),
                )
            db.execute("COMMIT")
        return record

    def claim_job(self, name: str, owner: str) -> None:
        """Record which server process runs the job (see ``unfinished_owned_jobs``)."""
        with self.connect() as db:
            db.execute("INSERT OR REPLACE INTO job_owners VALUES (?, ?)", (name.lower(), owner))

    def owner_of(self, name: str) -> str | None:
        with self.connect() as db:
            row = db.execute("SELECT owner FROM job_owners WHERE name_key = ?", (name.lower(),)).fetchone()
        return None if row is None else str(row[0])

    def unfinished_owned_jobs(self) -> list[tuple[JobRecord, str]]:
        """InProgress / Stopping jobs that a process claimed (a server, or the CLI's ``run``), with
        their owner."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT j.record, o.owner FROM jobs j JOIN job_owners o ON o.name_key = j.name_key "
                "WHERE j.status IN (?, ?)",
                (str(TransformJobStatus.IN_PROGRESS), str(TransformJobStatus.STOPPING)),
            ).fetchall()
        return [(_load(r[0]), r[1]) for r in rows]


# ListTransformJobs / ListModels SortBy -> column; ties are broken by the (unique) name.
SORT_COLUMNS = {"Name": "name_key", "CreationTime": "creation_time", "Status": "status"}
SortPosition = tuple[Any, str]


@dataclass(frozen=True)
class ListQuery:
    """Filters, order and page of a List call (times in epoch seconds, filters strict as AWS's)."""

    name_contains: str | None = None
    status_equals: str | None = None
    creation_time_after: float | None = None
    creation_time_before: float | None = None
    last_modified_time_after: float | None = None
    last_modified_time_before: float | None = None
    sort_by: str = "CreationTime"
    descending: bool = True
    limit: int = 10
    after: SortPosition | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One stored CreateModel request."""

    name: str
    request: Mapping[str, Any]
    creation_time: float

    @property
    def arn(self) -> str:
        return model_arn(self.name)


def _dump(record: JobRecord) -> str:
    d = {k: getattr(record, k) for k in record.__dataclass_fields__}
    d["status"] = str(record.status)
    d["request"] = dict(record.request)
    d["resolved"] = dict(record.resolved)
    d["counters"] = record.counters.to_json() if record.counters is not None else None
    return json.dumps(d)


def _load(text: str) -> JobRecord:
    d = json.loads(text)
    d["status"] = TransformJobStatus(d["status"])
    return JobRecord(**d)
