"""Finishing a job without redoing its finished objects (beyond SageMaker; docs/contract.md §9).

SageMaker's promise is that an object's output is complete or absent; a job that fails or is
stopped half-way is rerun from the start. The runner keeps a ledger in the job store instead:

- when a job starts, its *plan*: every input object (URI, ETag, size) and a fingerprint of the model
  (the CreateModel request plus the ETags of its artifacts);
- as each object's ``.out`` is committed, one row: input URI, input ETag and size, output URI and
  the output's ETag.

``batch-transform resume NAME`` takes a Failed or Stopped job, or an InProgress one whose process
is gone (``kill -9``, a lost machine), checks that the input prefix lists exactly the planned
objects and that the model is unchanged -- refusing, with the first difference, otherwise -- and
runs the same job again over the objects without a valid output: an output is valid when the
ledger has it and the object at its URI still has the recorded ETag. The job keeps its name and ARN;
Describe's ``x-runner.objects_resumed`` says how many objects were kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.config import RunnerConfig
from runner.errors import ObjectNotFoundError, ResumeError
from runner.jobs.owner import owner_alive
from runner.jobs.store import JobRecord, JobStore, TransformJobStatus
from runner.model.artifacts import TARBALL_SUFFIXES, local_model_path, parse_create_model
from runner.records.plan import InputObject
from runner.storage import storage_for

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_plans (
    job_key TEXT PRIMARY KEY, model_fingerprint TEXT NOT NULL, objects TEXT NOT NULL, knobs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    job_key TEXT NOT NULL, input_uri TEXT NOT NULL, input_etag TEXT NOT NULL, input_size INTEGER NOT NULL,
    output_uri TEXT NOT NULL, output_etag TEXT NOT NULL, finished REAL NOT NULL,
    PRIMARY KEY (job_key, input_uri));
"""
RESUMABLE = (TransformJobStatus.FAILED, TransformJobStatus.STOPPED)
# RunnerConfig knobs that shape the output bytes (docs/contract.md §9): a resumed job runs with the
# first run's.
OUTPUT_KNOBS = (
    "csv_header",
    "csv_header_in_output",
    "csv_quoted_newlines",
    "split_parquet_row_groups",
    "on_record_error",
    "quarantine_path",
)


@dataclass(frozen=True)
class Finished:
    """One ledger row: an input object whose output was committed."""

    input_uri: str
    input_etag: str
    input_size: int
    output_uri: str
    output_etag: str


@dataclass(frozen=True)
class Plan:
    model_fingerprint: str
    objects: list[tuple[str, str, int]]  # (uri, etag, size) in plan order
    knobs: dict[str, Any]


class Ledger:
    """The ledger's two tables, in the job store's SQLite file."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        with store.connect() as db:
            db.executescript(LEDGER_SCHEMA)

    def begin(
        self, job: str, model_fingerprint: str, objects: Iterable[InputObject], config: RunnerConfig
    ) -> None:
        """Record the plan the first time a job runs (a resumed job keeps its first plan)."""
        listed = [(o.uri, o.etag, o.size) for o in objects]
        knobs = {k: getattr(config, k) for k in OUTPUT_KNOBS if hasattr(config, k)}
        with self.store.connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO ledger_plans VALUES (?, ?, ?, ?)",
                (job.lower(), model_fingerprint, json.dumps(listed), json.dumps(knobs)),
            )

    def plan(self, job: str) -> Plan | None:
        with self.store.connect() as db:
            row = db.execute(
                "SELECT model_fingerprint, objects, knobs FROM ledger_plans WHERE job_key = ?", (job.lower(),)
            ).fetchone()
        if row is None:
            return None
        return Plan(row[0], [(u, e, int(s)) for u, e, s in json.loads(row[1])], json.loads(row[2]))

    def record(self, job: str, finished: Iterable[tuple[InputObject, str]]) -> None:
        """Objects whose ``.out`` (with this ETag) was committed, in one transaction: the driver
        writes them every few seconds, not one connection per object (20k small objects)."""
        rows = [(job.lower(), o.uri, o.etag, o.size, o.output_uri, etag, time.time()) for o, etag in finished]
        if not rows:
            return
        with self.store.connect() as db:
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")

    def finished(self, job: str) -> dict[str, Finished]:
        with self.store.connect() as db:
            rows = db.execute(
                "SELECT input_uri, input_etag, input_size, output_uri, output_etag FROM ledger "
                "WHERE job_key = ?",
                (job.lower(),),
            ).fetchall()
        return {r[0]: Finished(r[0], r[1], int(r[2]), r[3], r[4]) for r in rows}


def model_fingerprint(model_request: Mapping[str, Any]) -> str:
    """The CreateModel request and the ETags of the artifacts it names: any change shows."""
    model = parse_create_model(model_request)
    parts = [json.dumps(model_request, sort_keys=True, default=str)]
    url = model.model_data_url
    if url and ("://" not in url or url.startswith("file://")):
        path = local_model_path(str(url))  # a folder or tarball on this machine: size and mtime of each file
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        parts += [f"{f}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in files if f.exists()]
    elif url:
        storage = storage_for(url)
        try:
            if url.endswith(TARBALL_SUFFIXES):
                parts.append(storage.head(url).etag)
            else:
                parts += sorted(f"{o.uri}|{o.etag}" for o in storage.list_objects(url))
        except ObjectNotFoundError:
            parts.append("<missing>")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def check_resumable(store: JobStore, record: JobRecord) -> None:
    """A job may be resumed when it ended without completing, or its process is gone."""
    name, status = record.name, record.status
    if status is TransformJobStatus.COMPLETED:
        raise ResumeError(f"transform job {name!r} is Completed: every output exists, nothing to resume")
    if status in RESUMABLE:
        return
    owner = store.owner_of(name)
    if owner is None:
        raise ResumeError(
            f"transform job {name!r} is {status} and no process is recorded as running it, so the runner "
            "cannot tell whether it still runs; stop it first (batch-transform stop)"
        )
    if owner_alive(owner):
        raise ResumeError(
            f"transform job {name!r} is {status} and still running (process {owner}); "
            "only a Failed or Stopped job, or one whose process is gone, can be resumed"
        )


def check_unchanged(name: str, plan: Plan, objects: list[InputObject], fingerprint: str) -> None:
    """Refuse, naming the first difference, when the input or the model changed since the plan."""
    if fingerprint != plan.model_fingerprint:
        raise ResumeError(
            f"cannot resume transform job {name!r}: its model changed since the job started (the "
            "CreateModel request or the ETag of a model artifact differs); run a new job instead"
        )
    before = {uri: (etag, size) for uri, etag, size in plan.objects}
    now = {o.uri: (o.etag, o.size) for o in objects}
    for uri, (etag, size) in before.items():
        if uri not in now:
            raise ResumeError(
                f"cannot resume transform job {name!r}: input object {uri} is gone since the job started"
            )
        if now[uri] != (etag, size):
            raise ResumeError(
                f"cannot resume transform job {name!r}: input object {uri} changed since the job started "
                f"(ETag {etag}, {size} bytes then; ETag {now[uri][0]}, {now[uri][1]} bytes now)"
            )
    for uri in now:
        if uri not in before:
            raise ResumeError(
                f"cannot resume transform job {name!r}: input object {uri} is new since the job started"
            )


def still_valid(objects: list[InputObject], finished: Mapping[str, Finished]) -> set[str]:
    """The input URIs whose output is in the ledger and still at its URI with the recorded ETag."""
    valid = set()
    for obj in objects:
        entry = finished.get(obj.uri)
        if entry is None or entry.input_etag != obj.etag or entry.output_uri != obj.output_uri:
            continue
        try:
            if storage_for(entry.output_uri).head(entry.output_uri).etag == entry.output_etag:
                valid.add(obj.uri)
        except ObjectNotFoundError:
            continue
    return valid
