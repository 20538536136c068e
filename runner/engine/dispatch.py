"""Sending one object's payloads to its instance's workers, and what happens when a payload fails.

Two kinds of failure, two paths:

- **The worker dies** (``ray.kill``, a hard process exit, an OOM kill: ``RayActorError``). The
  payload is sent again to another worker, up to 1 + InvocationsMaxRetries tries in all, and the dead
  worker is replaced: the job's ``WorkerReplacer`` actor (started at the first death) starts a new
  ModelWorker in the same placement-group bundle with the same options and setup
  (``pool.start_worker``), once per death however many object tasks report it, so the instance
  keeps its worker count. Every other payload that was in flight on the dead worker is re-run the
  same way; results are still written once, in payload order, so no record is lost or duplicated.
- **The model fails on the payload** (a hook raises, the container answers 4xx/5xx). By default the
  error fails the object, as SageMaker's. With ``on_record_error=quarantine`` the payload is bisected:
  both halves are sent again, a failing half is halved again, down to single records; each failing
  record is kept as a ``BadRecord`` for ``runner/records/quarantine.py`` and the others' results are kept in
  record order. Each part that succeeds is one result body (``Piece``), written as its own result:
  with AssembleWith Line a newline follows each body unless it ends with one, so for a model that
  answers one line per record the ``.out`` is exactly what a job over only the good records writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray

from runner.engine.calls import cause_of
from runner.engine.replacer import Replacement, ReplacerHandle
from runner.engine.worker import RangeResult
from runner.errors import RunnerError, WorkerLostError
from runner.jobs.counters import ObjectCounts
from runner.records.batching import ByteRange, Payload, PayloadRecords
from runner.records.quarantine import BadRecord, error_text, is_record_error
from runner.records.splitters import Splitter
from runner.storage.s3 import S3Settings

STOP_POLL_S = 0.2  # how often a wait for a result looks whether the job was stopped


@dataclass(frozen=True)
class Piece:
    """A result body and the records it answers (the whole payload unless it was bisected)."""

    body: bytes
    first_record: int
    record_count: int


@dataclass
class Outstanding:
    """A payload sent to a worker and not yet written."""

    ref: Any
    payload: Payload
    worker: int  # the slot in the instance
    handle: Any  # the worker it was sent to (the slot may hold its replacement by now)
    tries: int = 1


@dataclass(frozen=True)
class Bisection:
    """How to split an object's payloads into records (``on_record_error=quarantine``)."""

    splitter: Splitter | None  # None: SplitType None, the payload is one record
    header: bool  # csv_header first-line: each payload starts with the header


class ObjectStopped(RunnerError):
    """The job was stopped while this object ran: its upload is aborted."""


class Dispatcher:
    """Sends an object's payloads to its instance's workers and gets their results back (module doc).
    ``counts`` gets payloads_retried, workers_replaced and records_quarantined added to it."""

    def __init__(
        self,
        workers: list[Any],
        name: str,
        max_tries: int,
        counts: ObjectCounts,
        replacer: ReplacerHandle | None = None,
        bisection: Bisection | None = None,
        current: Any = None,
        stopped: Callable[[], bool] | None = None,
        s3: S3Settings | None = None,
    ) -> None:
        self.workers = list(workers)
        self.s3 = s3  # how the workers reach S3 for a ranged payload's bytes
        # The job was stopped: a wait for a payload's result then ends with ObjectStopped, however
        # long the model takes (the object's thread cannot be interrupted otherwise).
        self.stopped = stopped
        self.name = name
        self.max_tries = max(1, max_tries)
        self.counts = counts
        self.replacer = replacer
        self.bisection = bisection
        self.dead: set[int] = set()  # slots with no worker left (no replacer, or the replacement failed)
        self.starting: dict[int, tuple[Any, float]] = {}  # slot -> (replacement's setup ref, deadline)
        self.problems: list[str] = []  # why replacements failed, for the error message
        self.quarantined: list[BadRecord] = []
        self._next = 0
        # Which workers were replaced: ``current_workers``' answer, asked by the object task once for
        # all its objects (None: no worker of the job had died). Until it answers the handles given
        # are used (a dead one is found out and reported like any death).
        self._current = current

    # -- sending --

    def submit(
        self, payload: Payload, preferred: int, tries: int = 1, then: ByteRange | None = None
    ) -> Outstanding:
        """Send ``payload`` to the first usable worker from slot ``preferred`` on. ``then``: the range
        that slot is sent next (a ranged payload's worker reads it meanwhile)."""
        slot = self._pick(preferred)
        if slot is None:
            raise WorkerLostError(
                f"{self.name}: payload {payload.index}: no model worker of this instance is left to send it "
                f"to ({len(self.workers)} lost){self._why()}"
            )
        return self._send(payload, slot, tries, then)

    def _send(self, payload: Payload, slot: int, tries: int, then: ByteRange | None = None) -> Outstanding:
        handle = self.workers[slot]
        if payload.where is not None:  # the worker reads the bytes itself
            ref = handle.transform_range.remote(payload.where, self.s3, self.name, payload.index, then)
        else:
            ref = handle.transform.remote(payload.data, self.name, payload.index, payload.record_count)
        return Outstanding(ref, payload, slot, handle, tries)

    def _pick(self, preferred: int) -> int | None:
        """The first usable slot from ``preferred`` on; waits for a replacement when none is usable."""
        self._refresh(block=False)
        n = len(self.workers)
        while True:
            for i in range(preferred, preferred + n):
                if i % n not in self.dead and i % n not in self.starting:
                    return i % n
            if not self.starting:
                return None
            self._refresh(block=True)

    def _refresh(self, block: bool) -> None:
        """Take in what the replacer said and replacements that are ready (or failed to start)."""
        if self._current is not None and ray.wait([self._current], timeout=0)[0]:
            try:
                current: list[Replacement | None] = ray.get(self._current)
            except ray.exceptions.RayError:
                current = []
            self._current = None
            for slot, r in enumerate(current):
                if r is not None and slot not in self.dead and slot not in self.starting:
                    self._install(slot, r)
        if not self.starting:
            return
        refs = {ref: slot for slot, (ref, _) in self.starting.items()}
        deadline = min(d for _, d in self.starting.values())
        timeout = max(0.0, deadline - time.monotonic()) if block else 0.0
        ready, _ = ray.wait(list(refs), num_returns=1 if block else len(refs), timeout=timeout)
        for ref in ready:
            slot = refs[ref]
            del self.starting[slot]
            try:
                ray.get(ref)
            except ray.exceptions.RayError as e:
                self._lose(slot, f"its replacement failed to start: {cause_of(e)}")
        if block and not ready:  # the earliest deadline passed with nothing ready
            for slot, (_, d) in list(self.starting.items()):
                if d <= time.monotonic():
                    del self.starting[slot]
                    self._lose(slot, "its replacement was not ready within --worker-ready-timeout")

    def _lose(self, slot: int, why: str) -> None:
        self.dead.add(slot)
        self.problems.append(f"worker {slot}: {why}")

    def _died(self, item: Outstanding) -> None:
        """The worker ``item`` was sent to is dead: have it replaced, unless this is already known."""
        slot = item.worker
        if self.workers[slot] != item.handle or slot in self.dead or slot in self.starting:
            return
        if self.replacer is None:
            self.dead.add(slot)
            return
        try:
            r: Replacement = ray.get(self.replacer.get_or_start().replace.remote(item.handle))
        except ray.exceptions.RayError as e:
            self._lose(slot, f"it could not be replaced: {e}")
            return
        self._install(slot, r)
        if r.started:
            self.counts.workers_replaced += 1

    def _install(self, slot: int, r: Replacement) -> None:
        """Use ``r`` in ``slot`` once its model is loaded (a call sent earlier could run before setup)."""
        self.workers[slot] = r.handle
        self.starting[slot] = (r.ready, time.monotonic() + r.ready_timeout_s)

    def _why(self) -> str:
        return f"; {'; '.join(self.problems)}" if self.problems else ""

    # -- results --

    def _body(self, item: Outstanding) -> Piece:
        """The payload's response; a dead worker's payload is retried. A model error raises (a
        RayTaskError whose ``cause`` is the HandlerError / InvocationError)."""
        while True:
            try:
                got = ray.get(item.ref, timeout=None if self.stopped is None else STOP_POLL_S)
                p = item.payload
                if isinstance(got, RangeResult):  # the worker read the bytes and counted the records
                    return Piece(got.body, p.first_record, got.records)
                return Piece(got, p.first_record, p.record_count)
            except ray.exceptions.GetTimeoutError:
                if self.stopped is not None and self.stopped():
                    raise ObjectStopped(f"{self.name}: the job was stopped") from None
            except ray.exceptions.RayActorError as e:
                self._died(item)
                made = f"{item.tries} of at most {self.max_tries} tries made"
                budget = f"(1 + InvocationsMaxRetries={self.max_tries - 1})"
                if item.tries >= self.max_tries:
                    raise WorkerLostError(
                        f"{self.name}: payload {item.payload.index}: the model worker died while "
                        f"transforming it; {made} {budget}{self._why()}: {e}"
                    ) from None
                slot = self._pick(item.worker + 1)
                if slot is None:
                    raise WorkerLostError(
                        f"{self.name}: payload {item.payload.index}: the model worker died while "
                        f"transforming it and no worker is left to retry it on; {made} {budget}"
                        f"{self._why()}: {e}"
                    ) from None
                self.counts.payloads_retried += 1
                item = self._send(item.payload, slot, item.tries + 1)

    def result(self, item: Outstanding) -> list[Piece]:
        """The payload's result; bisected into the good records' results when the model fails on it
        and bad records are quarantined."""
        try:
            return [self._body(item)]
        except ray.exceptions.RayTaskError as e:
            if self.bisection is None or not is_record_error(e.cause):
                raise
            b = self.bisection
            records = PayloadRecords.of(item.payload, b.splitter, b.header, self.name)
            return self._bisect(records, 0, len(records), e.cause)

    def _bisect(self, records: PayloadRecords, first: int, stop: int, error: BaseException) -> list[Piece]:
        """Records ``first``..``stop - 1`` failed together with ``error``: their good ones' results."""
        if stop - first == 1:
            part = records.part(first, stop)
            self.quarantined.append(BadRecord(part.first_record, part.byte_offset, error_text(error)))
            self.counts.records_quarantined += 1
            return []
        middle = (first + stop) // 2
        halves: Sequence[tuple[int, int]] = ((first, middle), (middle, stop))
        sent = [(a, b, self._send_part(records.part(a, b))) for a, b in halves]  # both in flight at once
        pieces: list[Piece] = []
        for a, b, item in sent:
            try:
                pieces.append(self._body(item))
            except ray.exceptions.RayTaskError as e:
                if not is_record_error(e.cause):
                    raise
                pieces.extend(self._bisect(records, a, b, e.cause))
        return pieces

    def _send_part(self, part: Payload) -> Outstanding:
        self._next += 1
        return self.submit(part, self._next)
