"""One input object end to end, as a Ray task next to the workers: streamed read -> gunzip ->
split -> pack -> dispatch to the instance's workers -> results in order -> multipart upload.

Payload and result bytes travel between this task and the workers through Ray's object store, never
through the driver. At most ``max_in_flight`` payloads of one object are outstanding, which bounds
memory by payload size, not object size.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from runner.contract.spec import AssembleWith, BatchStrategy, CompressionType, SplitType
from runner.engine.calls import cause_of
from runner.engine.dispatch import Bisection, Dispatcher, ObjectStopped, Outstanding
from runner.engine.replacer import current_workers
from runner.errors import RunnerError
from runner.jobs.counters import ObjectCounts, ProgressSink
from runner.records.assembly import OutputAssembler
from runner.records.batching import Payload, pack, pack_whole, pack_with_header
from runner.records.columnar import pack_columnar
from runner.records.dataprocessing import ObjectProcessor, RecordProcessing
from runner.records.knobs import InputKnobs, input_knobs
from runner.records.plan import InputObject
from runner.records.quarantine import Quarantine, write_quarantine
from runner.records.splitters import splitter_for
from runner.records.streams import BackgroundWriter, InlineWriter, gunzip, read_ahead
from runner.storage import storage_for

__all__ = ["FeedSettings", "InputKnobs", "ObjectResult", "input_knobs", "payloads_of", "run_objects"]

PROGRESS_EVERY_S = 0.5  # how often an object task sends its counts to the driver

READ_AHEAD_PAYLOADS = 2
# Objects of at most SMALL_OBJECT_BYTES go GROUP_OBJECTS to a task, GROUP_THREADS of them at a time.
SMALL_OBJECT_BYTES = 1024 * 1024
GROUP_OBJECTS = 32
GROUP_THREADS = 8
WAIT_STEP_S = 0.2  # how long the task's own thread blocks at a time (see run_objects)


@dataclass(frozen=True)
class FeedSettings:
    """What every object of a job shares (resolved values, after execution-parameters)."""

    split_type: SplitType
    compression: CompressionType
    strategy: BatchStrategy
    limit_bytes: int | None
    limit_mb: int
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
    # DataProcessing (docs/contract.md §6.4); None when the job leaves it at the default.
    processing: RecordProcessing | None = None
    # Opt-in input/output extensions (docs/contract.md §9); the default is SageMaker's behaviour.
    knobs: InputKnobs = InputKnobs()  # noqa: RUF009  (frozen: one shared value is safe)


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


def payloads_of(
    obj: InputObject,
    chunks: Iterable[bytes],
    settings: FeedSettings,
    processor: ObjectProcessor | None = None,
    on_header: Callable[[bytes], None] | None = None,
) -> Iterator[Payload]:
    """``on_header`` gets a text/csv object's header line under ``csv_header first-line``."""
    if settings.compression is CompressionType.GZIP:
        chunks = gunzip(chunks, obj.name)
    knobs = settings.knobs
    if knobs.split_columnar:
        return pack_columnar(
            chunks, knobs.content_type, settings.strategy, settings.limit_bytes, obj.name, settings.limit_mb
        )
    splitter = (
        splitter_for(settings.split_type, csv_quoted_newlines=knobs.csv_quoted_newlines)
        if settings.split_type is not SplitType.NONE
        else None
    )
    if knobs.csv_header and splitter is not None:
        # The header is taken off before DataProcessing sees the records; InputFilter applies to it too,
        # so the header sent names the columns sent.
        processing = settings.processing
        header_sent = None
        if processing is not None and processing.filters_input:

            def header_sent(header: bytes) -> bytes:
                return b"".join(ObjectProcessor(processing, obj.name).input_chunks([header]))

        return pack_with_header(
            chunks,
            splitter,
            settings.strategy,
            settings.limit_bytes,
            obj.name,
            settings.limit_mb,
            on_header=on_header,
            records=processor.input_chunks if processor is not None else None,
            header_sent=header_sent,
        )
    if processor is not None:
        # InputFilter per record before packing, so the payload limit counts the bytes sent.
        chunks = processor.input_chunks(chunks)
    if splitter is None:
        return pack_whole(chunks, settings.limit_bytes, obj.name, settings.limit_mb)
    return pack(
        chunks,
        splitter,
        settings.strategy,
        settings.limit_bytes,
        obj.name,
        settings.limit_mb,
    )


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
    knobs = settings.knobs
    splitter = (
        splitter_for(settings.split_type, csv_quoted_newlines=knobs.csv_quoted_newlines)
        if settings.split_type is not SplitType.NONE
        else None
    )
    return Bisection(splitter, knobs.csv_header)


def run_objects(
    objects: list[InputObject],
    settings: FeedSettings,
    workers: list[Any],
    aws_env: Mapping[str, str],
    first_worker: int = 0,
) -> Iterator[ObjectCounts | list[ObjectResult]]:
    """One object task: a large object alone, or several small ones (``scheduler.take_batch``),
    ``GROUP_THREADS`` at a time: one task, one process and one result for the driver instead of one
    each per object, which is what small objects cost. Object k starts at worker
    ``first_worker + k``. Each object is still read, split, sent and written alone (payloads never
    cross objects), so its output is the same however it was grouped.

    A generator task (``num_returns="streaming"``): it yields the counts of what its objects did
    since the last yield, every PROGRESS_EVERY_S, for the driver's live counters, then the results."""
    os.environ.update(aws_env)
    sink = ProgressSink()
    stop = threading.Event()
    # Which workers were replaced (only asked where one has died), once for all the objects.
    current = current_workers(settings.replacer, workers)
    pool = ThreadPoolExecutor(min(len(objects), GROUP_THREADS), thread_name_prefix="object")
    try:
        futures = [
            pool.submit(transform_object, obj, settings, workers, sink, first_worker + k, stop, current)
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
) -> ObjectResult:
    """Transform one object; never raises for a failure of the object itself (it is reported).
    Payload i goes to ``workers[(first_worker + i) % len(workers)]``: the scheduler rotates
    ``first_worker`` so objects of one payload each still use every worker. Once ``stop`` is set the
    object ends before its commit (ObjectStopped), so a stopped job writes no more outputs."""
    t0 = time.perf_counter()
    counts = ObjectCounts()
    reported = ObjectCounts()
    first_output_s: float | None = None
    timings = {"read_split_s": 0.0, "wait_result_s": 0.0, "write_s": 0.0}

    def report() -> None:
        nonlocal reported
        sink.add(counts.minus(reported))
        reported = counts.copy()

    def check_stop() -> None:
        if stop is not None and stop.is_set():
            raise ObjectStopped(f"{obj.name}: the job was stopped")

    try:
        source = storage_for(obj.uri)
        writer = storage_for(obj.output_uri).open_writer(
            obj.output_uri, content_type=settings.output_content_type, kms_key_id=settings.kms_key_id
        )
        processor = (
            ObjectProcessor(settings.processing, obj.name, settings.strategy is BatchStrategy.SINGLE_RECORD)
            if settings.processing is not None
            else None
        )
        with OutputAssembler(writer, settings.assemble_with) as out:
            window: deque[Outstanding] = deque()
            dispatcher = Dispatcher(
                workers,
                obj.name,
                1 + settings.max_retries,
                counts,
                settings.replacer,
                bisection_for(settings),
                current,
                stop.is_set if stop is not None else None,
            )
            # csv_header_in_output: the header, once read, until it is written atop the output.
            header: list[bytes] = []
            # Per outstanding payload: (its original records, first record, index) for DataProcessing.
            pending: deque[tuple[list[bytes], int, int]] = deque()
            # A small object is one GET and one PUT: no read-ahead or writer thread.
            small = obj.size <= SMALL_OBJECT_BYTES
            background = InlineWriter(out) if small else BackgroundWriter(out, READ_AHEAD_PAYLOADS)

            def write_head() -> None:
                """Write the oldest outstanding result (results are written in payload order)."""
                nonlocal first_output_s
                t1 = time.perf_counter()
                pieces = dispatcher.result(window.popleft())
                t2 = time.perf_counter()
                records, first, index = pending.popleft()
                if header:
                    background.add(header.pop())
                # One piece, unless bad records were quarantined: then each run of good records' result
                # is written as its own result body, in record order (runner/engine/dispatch.py).
                for piece in pieces:
                    body = piece.body
                    if processor is not None:
                        at = piece.first_record - first
                        body = processor.output(
                            body, records[at : at + piece.record_count], piece.first_record, index
                        )
                    background.add(body)
                t3 = time.perf_counter()
                timings["wait_result_s"] += t2 - t1
                timings["write_s"] += t3 - t2
                if first_output_s is None:
                    first_output_s = t3 - t0

            start = first_worker % len(workers)
            on_header = header.append if settings.knobs.csv_header_in_output else None
            produced = payloads_of(obj, source.iter_chunks(obj.uri), settings, processor, on_header)
            payloads = (p for p in produced) if small else read_ahead(produced, READ_AHEAD_PAYLOADS)
            try:
                while True:
                    t1 = time.perf_counter()
                    p = next(payloads, None)
                    timings["read_split_s"] += time.perf_counter() - t1
                    if p is None:
                        break
                    while len(window) >= settings.max_in_flight:
                        write_head()
                    window.append(dispatcher.submit(p, start + p.index))
                    originals = processor.take(p.record_count) if processor is not None else []
                    pending.append((originals, p.first_record, p.index))
                    counts.records += p.record_count
                    counts.payloads += 1
                    counts.bytes_in += len(p.data)
                    check_stop()
                    # Write what is already done, so output starts early and memory stays low.
                    while window and ray.wait([window[0].ref], timeout=0)[0]:
                        write_head()
                    report()
                while window:
                    write_head()
                if header:  # a header-only object: its output is the header alone
                    background.add(header.pop())
                t1 = time.perf_counter()
                background.flush()
            finally:
                # Stop both threads before the upload is committed or aborted.
                payloads.close()
                background.close()
            if dispatcher.quarantined:  # before the commit: a record must not vanish silently
                assert settings.quarantine is not None
                write_quarantine(settings.quarantine, obj, dispatcher.quarantined)
            check_stop()
            committed = out.commit()
            timings["write_s"] += time.perf_counter() - t1
        report()
        return ObjectResult(
            obj.uri,
            obj.output_uri,
            True,
            counts=counts,
            bytes_out=out.bytes_out,
            first_output_s=first_output_s,
            timings={**timings, "total_s": time.perf_counter() - t0},
            node_id=ray.get_runtime_context().get_node_id(),
            output_etag=committed.etag,
        )
    except Exception as e:  # the object fails; the job goes on with the others
        report()
        message, kind = failure(obj, e)
        return ObjectResult(
            obj.uri,
            obj.output_uri,
            False,
            error=message,
            error_kind=kind,
            # A failed object writes no quarantine file: its records are not counted as quarantined.
            counts=replace(counts, records_quarantined=0),
            node_id=ray.get_runtime_context().get_node_id(),
        )


def warm() -> None:
    """Nothing: submitted while the workers start, so the first object's task finds a worker process
    with this module already imported instead of starting one (about 2 s here)."""


remote_warm = ray.remote(num_cpus=0, max_retries=0)(warm)
remote_run_objects = ray.remote(num_cpus=0, max_retries=0, num_returns="streaming")(run_objects)
