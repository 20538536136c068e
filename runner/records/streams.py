"""The byte streams of one object task: gunzip on the way in, a read-ahead thread between the reader
and the dispatcher, and a writer thread between the results and the upload."""

from __future__ import annotations

import queue
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from runner.errors import RecordFormatError
from runner.records.assembly import OutputAssembler

GZIP_WBITS = 31
GUNZIP_OUT_BYTES = 8 * 1024 * 1024

T = TypeVar("T")


def gunzip(chunks: Iterable[bytes], name: str) -> Iterator[bytes]:
    """Streamed gzip decoding; multi-member files are read to the end (docs/contract.md §4.1)."""
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


_END = object()


def read_ahead(items: Iterator[T], depth: int) -> Generator[T, None, None]:
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


class InlineWriter:
    """BackgroundWriter's interface, writing in the caller's thread: for a small object, whose output
    is one PutObject at the commit, a thread would cost more than it overlaps."""

    def __init__(self, out: OutputAssembler) -> None:
        self._out = out

    def add(self, body: bytes) -> None:
        self._out.add(body)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
