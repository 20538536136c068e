"""One input object end to end, as a Ray task next to the workers: streamed read -> gunzip ->
split -> pack -> dispatch to the instance's workers -> results in order -> multipart upload.

Payload and result bytes travel between this task and the workers through Ray's object store, never
through the driver. At most ``max_in_flight`` payloads of one object are outstanding, which bounds
memory by payload size, not object size.

Ranged objects (runner/records/ranges.py, where the job allows it) skip the streamed read: this task
only finds the payloads' boundaries, with a small ranged read each, and the workers read their own
bytes; their results still come back here, in order, to the upload.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from runner.config import PayloadReads
from runner.contract.spec import AssembleWith, BatchStrategy, SplitType
from runner.engine.calls import cause_of
from runner.engine.credentials import AwsEnvironment
from runner.engine.dispatch import Bisection, Dispatcher, ObjectStopped, Outstanding
from runner.engine.replacer import current_workers
from runner.engine.sizing import SMALL_OBJECT_BYTES
from runner.errors import RecordFormatError, RunnerError
from runner.jobs.counters import ObjectCounts, ProgressSink
from runner.records.assembly import OutputAssembler
from runner.records.batching import MIB, ByteRange, Payload, oversize_message
from runner.records.dataprocessing import ObjectProcessor
from runner.records.payloads import Packing, payloads_of
from runner.records.plan import InputObject
from runner.records.quarantine import Quarantine, write_quarantine
from runner.records.ranges import Oversize, payload_ranges, why_streamed
from runner.records.streams import BackgroundWriter, InlineWriter, read_ahead
from runner.storage import ObjectInfo, storage_for
from runner.storage.s3 import S3Settings

__all__ = ["FeedSettings", "ObjectResult", "run_objects"]

PROGRESS_EVERY_S = 0.5  # how often an object task sends its counts to the driver

READ_AHEAD_PAYLOADS = 2
# Boundaries of a ranged object found ahead of the payloads sent: a probe is one small GET (~5 ms on
# the embedded S3), a payload tens of milliseconds of model time, so this many keeps well ahead.
RANGES_AHEAD = 8
# The small objects of one task (engine/sizing.py ``take_batch``) run this many at a time.
GROUP_THREADS = 8
WAIT_STEP_S = 0.2  # how long the task's own thread blocks at a time (see run_objects)


@dataclass(frozen=True)
class FeedSettings:
    """What every object of a job shares (resolved values, after execution-parameters)."""

    packing: Packing
    assemble_with: AssembleWith
    output_content_type: str
    kms_key_id: str | None
    max_in_flight: int
    # ModelClientConfig.InvocationsMaxRetries: retries of a payload whose worker died.
    max_retries: int = 3
    # The job's ReplacerHandle (WorkerPool.replacer): dead workers are replaced; None: they are not.
    replacer: Any = None
    # on_record_error quarantine (docs/contract.md §9, runner/records/quarantine.py); None: a model error
    # fails the object.
    quarantine: Quarantine | None = None
    # Objects larger than this many bytes are ranged (the workers read their payloads' bytes,
    # runner/records/ranges.py); None: every object is streamed through its task.
    ranged_over_bytes: int | None = None


def payload_reads(packing: Packing, quarantine: bool, mode: PayloadReads) -> tuple[int | None, str]:
    """(``FeedSettings.ranged_over_bytes``, what Describe's ``x-runner.payload_reads`` says of it)."""
    if mode is PayloadReads.STREAM:
        return None, "streamed: --payload-reads stream"
    why = why_streamed(packing, quarantine)
    if why is not None:
        return None, f"streamed: {why}"
    return SMALL_OBJECT_BYTES, (
        f"ranged: the workers read their payloads' bytes for objects over {SMALL_OBJECT_BYTES // MIB} MiB "
        "(a smaller object is one GET in its task)"
    )


@dataclass(frozen=True)
class ObjectResult:
    uri: str
    output_uri: str
    ok: bool
    error: str = ""
    error_kind: str = ""
    counts: ObjectCounts = field(default_factory=ObjectCounts)
    bytes_out: int = 0
    first_output_s: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    node_id: str = ""  # where this object's task (read, split, upload) ran
    output_etag: str = ""  # the committed .out's ETag, for the resume ledger


def failure(obj: InputObject, e: BaseException) -> tuple[str, str]:
    """(message, kind) for an object that failed; user-side faults are ClientErrors, as SageMaker's."""
    cause = cause_of(e)
    if isinstance(cause, RunnerError):
        text = str(cause)
        return (text if obj.name in text else f"{obj.name}: {text}"), "ClientError"
    if isinstance(cause, ray.exceptions.RayActorError):
        return f"{obj.name}: the model worker died while transforming this object: {cause}", "ClientError"
    return f"{obj.name}: {type(cause).__name__}: {cause}", "InternalServerError"


def bisection_for(settings: FeedSettings) -> Bisection | None:
    """How a failing payload is split into records, under on_record_error quarantine."""
    if settings.quarantine is None:
        return None
    return Bisection(settings.packing.splitter(), settings.packing.knobs.csv_header)


def run_objects(
    objects: list[InputObject],
    settings: FeedSettings,
    workers: list[Any],
    aws: AwsEnvironment,
    first_worker: int = 0,
) -> Iterator[ObjectCounts | list[ObjectResult]]:
    """One object task: a large object alone, or several small ones (``sizing.take_batch``),
    ``GROUP_THREADS`` at a time: one task, one process and one result for the driver instead of one
    each per object, which is what small objects cost. Object k starts at worker
    ``first_worker + k``. Each object is still read, split, sent and written alone (payloads never
    cross objects), so its output is the same however it was grouped.

    A generator task (``num_returns="streaming"``): it yields the counts of what its objects did
    since the last yield, every PROGRESS_EVERY_S, for the driver's live counters, then the results."""
    # The S3 settings that travelled (engine/credentials.py), passed to this task's storage rather
    # than set in its environment.
    s3 = aws.s3()
    sink = ProgressSink()
    stop = threading.Event()
    # Which workers were replaced (only asked where one has died), once for all the objects.
    current = current_workers(settings.replacer, workers)
    pool = ThreadPoolExecutor(min(len(objects), GROUP_THREADS), thread_name_prefix="object")
    try:
        futures = [
            pool.submit(transform_object, obj, settings, workers, sink, first_worker + k, stop, current, s3)
            for k, obj in enumerate(objects)
        ]
        next_report = time.monotonic() + PROGRESS_EVERY_S
        while not all(f.done() for f in futures):
            # Short waits: ray.cancel's KeyboardInterrupt reaches this thread only between bytecodes;
            # the objects then see ``stop`` and abort their uploads.
            wait(futures, timeout=WAIT_STEP_S)
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + PROGRESS_EVERY_S
                delta = sink.take()
                if delta:
                    yield delta
        yield [f.result() for f in futures]
    except BaseException:  # ray.cancel (StopTransformJob): the running objects abort their uploads
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def transform_object(
    obj: InputObject,
    settings: FeedSettings,
    workers: list[Any],
    sink: ProgressSink,
    first_worker: int = 0,
    stop: threading.Event | None = None,
    current: Any = None,
    s3: S3Settings | None = None,
) -> ObjectResult:
    """Transform one object; never raises for a failure of the object itself (it is reported).
    Payload i goes to ``workers[(first_worker + i) % len(workers)]``: the scheduler rotates
    ``first_worker`` so objects of one payload each still use every worker. Once ``stop`` is set the
    object ends before its commit (ObjectStopped), so a stopped job writes no more outputs."""
    return ObjectTransform(obj, settings, workers, sink, first_worker, stop, current, s3).run()


class ObjectTransform:
    """One object's run: its payloads out to the workers, their results back in payload order through
    DataProcessing's output side, the output committed (or aborted), and what it did counted."""

    def __init__(
        self,
        obj: InputObject,
        settings: FeedSettings,
        workers: list[Any],
        sink: ProgressSink,
        first_worker: int,
        stop: threading.Event | None,
        current: Any,
        s3: S3Settings | None,
    ) -> None:
        self.obj, self.settings, self.sink, self.stop, self.s3 = obj, settings, sink, stop, s3
        self.t0 = time.perf_counter()
        self.start = first_worker % len(workers)
        self.counts = ObjectCounts()
        self._reported = ObjectCounts()
        self.first_output_s: float | None = None
        self.timings = {"read_split_s": 0.0, "wait_result_s": 0.0, "write_s": 0.0}
        packing = settings.packing
        self.processor = (
            ObjectProcessor(packing.processing, obj.name, packing.strategy is BatchStrategy.SINGLE_RECORD)
            if packing.processing is not None
            else None
        )
        self.dispatcher = Dispatcher(
            workers,
            obj.name,
            1 + settings.max_retries,
            self.counts,
            settings.replacer,
            bisection_for(settings),
            current,
            stop.is_set if stop is not None else None,
            s3,
        )
        self.window: deque[Outstanding] = deque()
        # Per outstanding payload: (its original records, first record, index) for DataProcessing.
        self.pending: deque[tuple[list[bytes], int, int]] = deque()
        # csv_header_in_output: the header, once read, until it is written atop the output.
        self.header: list[bytes] = []

    def run(self) -> ObjectResult:
        obj = self.obj
        try:
            committed, bytes_out = self._transform()
        except Exception as e:  # the object fails; the job goes on with the others
            self._report()
            message, kind = failure(obj, e)
            return ObjectResult(
                obj.uri,
                obj.output_uri,
                False,
                error=message,
                error_kind=kind,
                # A failed object writes no quarantine file: its records are not counted as quarantined.
                counts=replace(self.counts, records_quarantined=0),
                node_id=ray.get_runtime_context().get_node_id(),
            )
        self._report()
        return ObjectResult(
            obj.uri,
            obj.output_uri,
            True,
            counts=self.counts,
            bytes_out=bytes_out,
            first_output_s=self.first_output_s,
            timings={**self.timings, "total_s": time.perf_counter() - self.t0},
            node_id=ray.get_runtime_context().get_node_id(),
            output_etag=committed.etag,
        )

    def _transform(self) -> tuple[ObjectInfo, int]:
        """Read, send, write and commit; the upload is aborted if anything raises."""
        obj, settings = self.obj, self.settings
        source = storage_for(obj.uri, self.s3)
        writer = storage_for(obj.output_uri, self.s3).open_writer(
            obj.output_uri, content_type=settings.output_content_type, kms_key_id=settings.kms_key_id
        )
        with OutputAssembler(writer, settings.assemble_with) as out:
            # A small object is one GET and one PUT: no read-ahead or writer thread.
            small = obj.size <= SMALL_OBJECT_BYTES
            background = InlineWriter(out) if small else BackgroundWriter(out, READ_AHEAD_PAYLOADS)
            payloads: Iterator[Payload | Oversize]
            ranged = settings.ranged_over_bytes is not None and obj.size > settings.ranged_over_bytes
            if ranged:
                self.counts.objects_ranged += 1
                payloads = read_ahead(self._ranged_payloads(), RANGES_AHEAD)
            else:
                on_header = self.header.append if settings.packing.knobs.csv_header_in_output else None
                produced = payloads_of(
                    obj, source.iter_chunks(obj.uri), settings.packing, self.processor, on_header
                )
                payloads = (p for p in produced) if small else read_ahead(produced, READ_AHEAD_PAYLOADS)
            try:
                self._send_all(payloads, background)
                t1 = time.perf_counter()
                background.flush()
            finally:
                # Stop both threads before the upload is committed or aborted.
                payloads.close()
                background.close()
            if self.dispatcher.quarantined:  # before the commit: a record must not vanish silently
                assert settings.quarantine is not None
                write_quarantine(settings.quarantine, obj, self.dispatcher.quarantined, self.s3)
            self._check_stop()
            committed = out.commit()
            self.timings["write_s"] += time.perf_counter() - t1
        return committed, out.bytes_out

    def _ranged_payloads(self) -> Iterator[Payload | Oversize]:
        """The object's payloads as ranges of the version there now (its ETag pins every read)."""
        obj, packing = self.obj, self.settings.packing
        source = storage_for(obj.uri, self.s3)
        now = source.head(obj.uri)

        def fetch(start: int, end: int) -> bytes:
            return source.read_range(obj.uri, start, end, now.etag)

        lines = packing.split_type is not SplitType.NONE
        found = payload_ranges(
            obj.uri, now.etag, now.size, lines, packing.limit_bytes, packing.limit_mb, fetch, obj.name
        )
        for index, where in enumerate(found):
            if isinstance(where, ByteRange):
                yield Payload(index, b"", 0, 0, where.start, where)
            else:
                yield where

    def _oversize(self, where: Oversize, background: InlineWriter | BackgroundWriter) -> RecordFormatError:
        """The streamed path's error for a record no payload can hold, once the payloads before it are
        back (their workers counted the records that come before it)."""
        while self.window:
            self._write_head(background)
        record, limit_mb = self.counts.records, self.settings.packing.limit_mb
        return RecordFormatError(
            oversize_message(self.obj.name, record, where.offset, where.size, limit_mb),
            uri=self.obj.name,
            record_index=record,
            byte_offset=where.offset,
        )

    def _send_all(
        self, payloads: Iterator[Payload | Oversize], background: InlineWriter | BackgroundWriter
    ) -> None:
        """Every payload to a worker, at most ``max_in_flight`` outstanding; results written as they
        come back, so output starts early and memory stays bounded by payloads, not the object."""
        upcoming: deque[Payload | Oversize] = deque()  # looked at for a ranged payload's ``then``
        while True:
            t1 = time.perf_counter()
            p = upcoming.popleft() if upcoming else next(payloads, None)
            then = self._range_after(p, upcoming, payloads)
            self.timings["read_split_s"] += time.perf_counter() - t1
            if p is None:
                break
            if isinstance(p, Oversize):
                raise self._oversize(p, background)
            while len(self.window) >= self.settings.max_in_flight:
                self._write_head(background)
            self.window.append(self.dispatcher.submit(p, self.start + p.index, then=then))
            originals = self.processor.take(p.record_count) if self.processor is not None else []
            self.pending.append((originals, p.first_record, p.index))
            self.counts.records += p.record_count  # a ranged payload's are counted as it comes back
            self.counts.payloads += 1
            self.counts.bytes_in += p.where.length if p.where is not None else len(p.data)
            self._check_stop()
            while self.window and ray.wait([self.window[0].ref], timeout=0)[0]:
                self._write_head(background)
            self._report()
        while self.window:
            self._write_head(background)
        if self.header:  # a header-only object: its output is the header alone
            background.add(self.header.pop())

    def _range_after(
        self,
        p: Payload | Oversize | None,
        upcoming: deque[Payload | Oversize],
        payloads: Iterator[Payload | Oversize],
    ) -> ByteRange | None:
        """For a ranged payload, the range its worker is sent next: payloads go round the instance's
        workers, so that is the one a worker count further on (None at the object's end)."""
        if not isinstance(p, Payload) or p.where is None:
            return None
        n = len(self.dispatcher.workers)
        while len(upcoming) < n and (q := next(payloads, None)) is not None:
            upcoming.append(q)
        q = upcoming[n - 1] if len(upcoming) >= n else None
        return q.where if isinstance(q, Payload) else None

    def _write_head(self, background: InlineWriter | BackgroundWriter) -> None:
        """Write the oldest outstanding result (results are written in payload order)."""
        t1 = time.perf_counter()
        item = self.window.popleft()
        pieces = self.dispatcher.result(item)
        t2 = time.perf_counter()
        if item.payload.where is not None:
            self.counts.records += sum(piece.record_count for piece in pieces)
        records, first, index = self.pending.popleft()
        if self.header:
            background.add(self.header.pop())
        # One piece, unless bad records were quarantined: then each run of good records' result is
        # written as its own result body, in record order (runner/engine/dispatch.py).
        for piece in pieces:
            body = piece.body
            if self.processor is not None:
                at = piece.first_record - first
                body = self.processor.output(
                    body, records[at : at + piece.record_count], piece.first_record, index
                )
            background.add(body)
        t3 = time.perf_counter()
        self.timings["wait_result_s"] += t2 - t1
        self.timings["write_s"] += t3 - t2
        if self.first_output_s is None:
            self.first_output_s = t3 - self.t0

    def _report(self) -> None:
        """What this object did since it last reported, to its task's sink (the live counters)."""
        self.sink.add(self.counts.minus(self._reported))
        self._reported = self.counts.copy()

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise ObjectStopped(f"{self.obj.name}: the job was stopped")


def warm() -> None:
    """Nothing: submitted while the workers start, so the first object's task finds a worker process
    with this module already imported instead of starting one (about 2 s here)."""


def run_objects_at_once(
    objects: list[InputObject],
    settings: FeedSettings,
    workers: list[Any],
    aws: AwsEnvironment,
    first_worker: int = 0,
) -> list[ObjectResult]:
    """``run_objects`` as a plain task that returns its results at its end: for a driver on Ray
    Client, which refuses streaming generator tasks (its live counters then move per task)."""
    results: list[ObjectResult] = []
    for item in run_objects(objects, settings, workers, aws, first_worker):
        if isinstance(item, list):
            results = item
    return results


remote_warm = ray.remote(num_cpus=0, max_retries=0)(warm)
remote_run_objects = ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")(run_objects)
remote_run_objects_at_once = ray.remote(num_cpus=0, max_retries=0)(run_objects_at_once)
