"""One input object end to end, as a Ray task next to the workers: streamed read -> gunzip ->
split -> pack -> dispatch to the instance's workers -> results in order -> multipart upload.

Payload and result bytes travel between this task and the workers through Ray's object store, never
through the driver. At most ``max_in_flight`` payloads of one object are outstanding, which bounds
memory by payload size, not object size.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import ray

from runner.assembly import OutputAssembler
from runner.batching import Payload, pack, pack_whole
from runner.columnar import is_columnar, media_type, pack_columnar
from runner.config import RunnerConfig
from runner.dataprocessing import ObjectProcessor, RecordProcessing
from runner.dispatch import Bisection, Dispatcher, Outstanding
from runner.errors import Problem, RecordFormatError, RunnerError, SpecError
from runner.plan import InputObject
from runner.quarantine import Quarantine, write_quarantine
from runner.spec import AssembleWith, BatchStrategy, CompressionType, SplitType
from runner.splitters import splitter_for
from runner.splitters.csv import pack_with_header
from runner.storage import storage_for

GZIP_WBITS = 31
GUNZIP_OUT_BYTES = 8 * 1024 * 1024
PROGRESS_EVERY_S = 0.5
READ_AHEAD_PAYLOADS = 2
# What an object task counts (progress, and its ObjectResult).
COUNTS = ("records", "payloads", "bytes_in", "payloads_retried", "workers_replaced", "records_quarantined")


@dataclass(frozen=True)
class InputKnobs:
    """The input/output extensions in force for a job (CONTRACT 9); all off is SageMaker's behaviour."""

    content_type: str = ""  # the job's ContentType, media type only
    csv_header: bool = False  # line 1 of each object is a header, sent atop every payload
    csv_header_in_output: bool = False  # ... and written once atop the .out
    csv_quoted_newlines: bool = False  # Line records end at newlines outside RFC 4180 quotes
    split_columnar: bool = False  # Parquet / Arrow IPC objects split by row group / record batch


def input_knobs(
    config: RunnerConfig,
    content_type: str | None,
    split_type: SplitType,
    processing: RecordProcessing | None,
) -> tuple[InputKnobs, list[str]]:
    """The RunnerConfig knobs that apply to a job's input, and notes on those that do not. A knob that
    cannot work with the request raises SpecError (naming the knob) before anything runs."""
    media = media_type(content_type)
    csv_lines = media == "text/csv" and split_type is SplitType.LINE
    header = config.csv_header == "first-line"
    notes: list[str] = []
    problems: list[Problem] = []
    where = f"ContentType {content_type or '(unset)'} with SplitType {split_type}"
    if header and not csv_lines:
        notes.append(f"csv_header first-line applies to text/csv split by Line, not to {where}: ignored")
    if config.csv_header_in_output and not header:
        problems.append(
            Problem(
                "RunnerConfig.csv_header_in_output",
                True,
                "needs csv_header first-line (the header it writes)",
            )
        )
    if config.csv_quoted_newlines and not csv_lines:
        notes.append(f"csv_quoted_newlines applies to text/csv split by Line, not to {where}: ignored")
    if config.csv_quoted_newlines and csv_lines and processing is not None:
        problems.append(
            Problem(
                "RunnerConfig.csv_quoted_newlines",
                True,
                "DataProcessing (InputFilter, JoinSource, OutputFilter) reads text/csv records line by line, "
                "so it cannot be combined with csv_quoted_newlines: turn one of them off",
            )
        )
    columnar = config.split_parquet_row_groups and is_columnar(media)
    if config.split_parquet_row_groups and not columnar:
        notes.append(
            "split_parquet_row_groups applies to application/x-parquet and application/vnd.apache.arrow."
            f"file / .stream objects, not to ContentType {content_type or '(unset)'}: ignored"
        )
    if columnar and split_type is not SplitType.NONE:
        problems.append(
            Problem(
                "RunnerConfig.split_parquet_row_groups",
                True,
                f"splits {media} objects by row group itself, so SplitType must be None (SplitType "
                f"{split_type} would cut the binary object at byte patterns)",
            )
        )
    if problems:
        raise SpecError(problems)
    knobs = InputKnobs(
        content_type=media,
        csv_header=header and csv_lines,
        csv_header_in_output=config.csv_header_in_output and csv_lines,
        csv_quoted_newlines=config.csv_quoted_newlines and csv_lines,
        split_columnar=columnar,
    )
    return knobs, notes


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
    # The job's WorkerReplacer actor (WorkerPool.replacer): dead workers are replaced; None: they are not.
    replacer: Any = None
    # on_record_error quarantine (CONTRACT 9, runner/quarantine.py); None: a model error fails the object.
    quarantine: Quarantine | None = None
    # DataProcessing (CONTRACT 6.4); None when the job leaves it at the default.
    processing: RecordProcessing | None = None
    # Opt-in input/output extensions (CONTRACT 9); the default is SageMaker's behaviour.
    knobs: InputKnobs = InputKnobs()


@dataclass(frozen=True)
class ObjectResult:
    uri: str
    output_uri: str
    ok: bool
    error: str = ""
    error_kind: str = ""
    records: int = 0
    payloads: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    first_output_s: float | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    payloads_retried: int = 0
    workers_replaced: int = 0
    records_quarantined: int = 0
    node_id: str = ""  # where this object's task (read, split, upload) ran
    output_etag: str = ""  # the committed .out's ETag, for the resume ledger


def gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Streamed gzip decoding; multi-member files are read to the end (CONTRACT 4.1)."""
    decoder: Any = None
    for chunk in chunks:
        data = chunk
        while data:
            if decoder is None:
                decoder = zlib.decompressobj(GZIP_WBITS)
            try:
                out = decoder.decompress(data, GUNZIP_OUT_BYTES)
            except zlib.error as e:
                raise RecordFormatError(f"{name}: corrupt gzip stream: {e}", uri=name) from e
            if out:
                yield out
            if decoder.eof:
                data, decoder = decoder.unused_data, None
            else:
                data = decoder.unconsumed_tail
    if decoder is not None:
        raise RecordFormatError(f"{name}: truncated gzip stream (the last member has no end)", uri=name)


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


_END = object()


def read_ahead(items: Iterator[Payload], depth: int) -> Generator[Payload, None, None]:
    """Produce payloads in a thread, ``depth`` ahead, so reading and splitting the object overlap with
    dispatching payloads and writing results (socket reads and gunzip release the GIL)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


class BackgroundWriter:
    """Adds results to the output in a single thread, in order, so uploads overlap with the rest.
    At most ``depth`` results wait, which bounds memory."""

    def __init__(self, out: OutputAssembler, depth: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._pending: deque[Future[None]] = deque()
        self._out = out
        self._depth = depth

    def add(self, body: bytes) -> None:
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._out.add, body))

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def failure(obj: InputObject, e: BaseException) -> tuple[str, str]:
    """(message, kind) for an object that failed; user-side faults are ClientErrors, as SageMaker's."""
    cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) and e.cause is not None else e
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


def run_object(
    obj: InputObject,
    settings: FeedSettings,
    workers: list[Any],
    progress: Any,
    aws_env: Mapping[str, str],
    first_worker: int = 0,
) -> ObjectResult:
    """Transform one object; never raises for a failure of the object itself (it is reported).
    Payload i goes to ``workers[(first_worker + i) % len(workers)]``: the scheduler rotates
    ``first_worker`` so objects of one payload each still use every worker."""
    os.environ.update(aws_env)
    t0 = time.perf_counter()
    counts = dict.fromkeys(COUNTS, 0)
    reported = dict.fromkeys(counts, 0)
    first_output_s: float | None = None
    timings = {"read_split_s": 0.0, "wait_result_s": 0.0, "write_s": 0.0}
    last_report = t0

    def report(force: bool = False) -> None:
        nonlocal last_report
        now = time.perf_counter()
        if progress is not None and (force or now - last_report >= PROGRESS_EVERY_S):
            progress.add.remote({k: counts[k] - reported[k] for k in counts})
            reported.update(counts)
            last_report = now

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
            )
            # csv_header_in_output: the header, once read, until it is written atop the output.
            header: list[bytes] = []
            # Per outstanding payload: (its original records, first record, index) for DataProcessing.
            pending: deque[tuple[list[bytes], int, int]] = deque()
            background = BackgroundWriter(out, READ_AHEAD_PAYLOADS)

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
                # is written as its own result body, in record order (runner/dispatch.py).
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
            payloads = read_ahead(
                payloads_of(obj, source.iter_chunks(obj.uri), settings, processor, on_header),
                READ_AHEAD_PAYLOADS,
            )
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
                    counts["records"] += p.record_count
                    counts["payloads"] += 1
                    counts["bytes_in"] += len(p.data)
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
            committed = out.commit()
            timings["write_s"] += time.perf_counter() - t1
        report(force=True)
        return ObjectResult(
            obj.uri,
            obj.output_uri,
            True,
            records=counts["records"],
            payloads=counts["payloads"],
            bytes_in=counts["bytes_in"],
            payloads_retried=counts["payloads_retried"],
            workers_replaced=counts["workers_replaced"],
            records_quarantined=counts["records_quarantined"],
            bytes_out=out.bytes_out,
            first_output_s=first_output_s,
            timings={**timings, "total_s": time.perf_counter() - t0},
            node_id=ray.get_runtime_context().get_node_id(),
            output_etag=committed.etag,
        )
    except Exception as e:  # the object fails; the job goes on with the others
        report(force=True)
        message, kind = failure(obj, e)
        return ObjectResult(
            obj.uri,
            obj.output_uri,
            False,
            error=message,
            error_kind=kind,
            records=counts["records"],
            payloads=counts["payloads"],
            bytes_in=counts["bytes_in"],
            payloads_retried=counts["payloads_retried"],
            workers_replaced=counts["workers_replaced"],
            node_id=ray.get_runtime_context().get_node_id(),
        )


class ProgressCounter:
    """Job-wide counters the object tasks add to and the driver polls."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, delta: Mapping[str, int]) -> None:
        for k, v in delta.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)


def warm() -> None:
    """Nothing: submitted while the workers start, so the first object's task finds a worker process
    with this module already imported instead of starting one (about 2 s here)."""


RemoteProgressCounter = ray.remote(num_cpus=0)(ProgressCounter)
remote_warm = ray.remote(num_cpus=0, max_retries=0)(warm)
remote_run_object = ray.remote(num_cpus=0, max_retries=0)(run_object)
