"""The driver's loop over a job's input objects: which instance's workers each object goes to, how
many run at once, small objects grouped several to a task, live counters, the resume ledger, and
stopping. Bytes never pass through here: each object's task reads, sends and writes them
(runner/engine/feeder.py).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from runner.config import ObjectParallelism, RunnerConfig
from runner.engine.credentials import AwsEnvironment
from runner.engine.feeder import (
    FeedSettings,
    ObjectResult,
    remote_run_objects,
    remote_run_objects_at_once,
)
from runner.engine.pool import WorkerPool
from runner.engine.sizing import take_batch
from runner.jobs.counters import JobCounters, ObjectCounts
from runner.jobs.ledger import Ledger
from runner.jobs.store import JobStore
from runner.records.plan import InputObject

POLL_S = 0.5
STORE_EVERY_S = 2.0
STOP_GRACE_S = 30.0  # for cancelled object tasks to abort their uploads before they are killed

ProgressCallback = Callable[[JobCounters], None]


# What running objects' tasks have reported so far may be ahead of the finished objects' sums.
LIVE_COUNTS = (
    "records",
    "payloads",
    "bytes_in",
    "payloads_retried",
    "workers_replaced",
    "objects_ranged",
)


class ResultTally:
    """``counters_of``'s sums, kept up as results arrive, so that a progress update costs the same
    however many objects are done (summing every result again at each update made the driver's CPU
    grow with the square of the objects: 4.3 ms an object at 20,000, benchmarks/test_scale.py)."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.total = ObjectCounts()
        self.bytes_out = 0
        self.by_node: dict[str, int] = {}
        self.first_output_s: float | None = None
        self.feeder_s: dict[str, float] = {}

    def add(self, r: ObjectResult) -> None:
        if r.ok:
            self.done += 1
        else:
            self.failed += 1
        self.total.add(r.counts)
        self.bytes_out += r.bytes_out
        if r.node_id:
            self.by_node[r.node_id] = self.by_node.get(r.node_id, 0) + 1
        if r.first_output_s is not None and (
            self.first_output_s is None or r.first_output_s < self.first_output_s
        ):
            self.first_output_s = r.first_output_s
        # Where the feeders' time went, summed over objects (they overlap with the workers' time).
        for k, v in r.timings.items():
            self.feeder_s[k] = self.feeder_s.get(k, 0.0) + v

    def counters(self, job: Any, live: ObjectCounts | None = None, reads: str | None = None) -> JobCounters:
        total = self.total.copy()
        if live is not None:
            for name in LIVE_COUNTS:
                setattr(total, name, max(getattr(total, name), getattr(live, name)))
        return JobCounters(
            objects_total=len(job.objects) + job.resumed,
            objects_done=self.done + job.resumed,
            objects_failed=self.failed,
            records=total.records,
            payloads=total.payloads,
            bytes_in=total.bytes_in,
            bytes_out=self.bytes_out,
            payloads_retried=total.payloads_retried,
            workers_replaced=total.workers_replaced,
            records_quarantined=total.records_quarantined,
            objects_resumed=job.resumed or None,
            objects_by_node=dict(self.by_node) or None,
            first_output_s=self.first_output_s,
            feeder_s={k: round(v, 3) for k, v in self.feeder_s.items()} or None,
            payload_reads=reads,
            objects_ranged=total.objects_ranged if reads is not None else None,
        )


def counters_of(
    job: Any, results: list[ObjectResult], live: ObjectCounts | None = None, reads: str | None = None
) -> JobCounters:
    tally = ResultTally()
    for r in results:
        tally.add(r)
    return tally.counters(job, live, reads)


def _cancel_gracefully(running: dict[Any, int]) -> None:
    """A KeyboardInterrupt in each object task: its multipart upload is aborted on the way out.
    Waits, up to STOP_GRACE_S, for each task to end (its generator to be exhausted); the tasks that
    ended leave ``running``, so only the others are force-cancelled (force-cancelling a generator
    task that has ended can abort the driver inside Ray)."""
    for generator in running:
        ray.cancel(generator)
    deadline = time.monotonic() + STOP_GRACE_S
    while running and time.monotonic() < deadline:
        ready: list[Any] = ray.wait(
            list(running), num_returns=1, timeout=max(0.0, deadline - time.monotonic())
        )[0]
        for task in ready:
            try:
                if _take(task) is END:
                    running.pop(task)
            except ray.exceptions.RayError:  # cancelled: its end
                running.pop(task)


END = object()  # what _take returns for an exhausted object task


_taken: set[Any] = set()  # plain (Ray Client) object tasks whose results were taken: next is END


def _take(task: Any) -> Any:
    """The next thing an object task yielded, once ray.wait says it is there: the counts since its
    last yield, its results (a list), or END. A task counts as done only once END is taken: until the
    driver has seen a generator's end, Ray does not hand its process to the next task (measured:
    20,000 small objects started 47 processes instead of 5). A plain task (Ray Client's) gives its
    results, then END."""
    if isinstance(task, ray.ObjectRef):
        if task in _taken:
            _taken.discard(task)
            return END
        results = ray.get(task)
        _taken.add(task)
        return results
    try:
        return ray.get(next(task))
    except StopIteration:
        return END


def on_ray_client() -> bool:
    """Whether this driver reaches its cluster through Ray Client (``ray://``)."""
    from ray.util.client import ray as client

    return bool(client.is_connected())


def feed_groups(pool: WorkerPool, config: RunnerConfig) -> list[list[Any]]:
    """The workers an object's payloads may go to: its instance's (SageMaker's way), or with
    object_parallelism=cluster every worker of the job, so one big object can use the whole cluster."""
    if config.object_parallelism is ObjectParallelism.CLUSTER:
        return [[w for workers in pool.instances for w in workers]]
    return [list(workers) for workers in pool.instances]


def instance_nodes(pool: WorkerPool) -> list[str | None]:
    """The node each instance's placement group landed on (from its first worker's info)."""
    nodes, at = [], 0
    for workers in pool.instances:
        nodes.append(pool.infos[at].node_id if at < len(pool.infos) else None)
        at += len(workers)
    return nodes


def feed_all(
    job: Any,
    pool: WorkerPool,
    settings: FeedSettings,
    store: JobStore,
    config: RunnerConfig,
    on_progress: ProgressCallback | None,
    aws: AwsEnvironment,
    should_stop: Callable[[], bool] | None = None,
    reads: str | None = None,
) -> list[ObjectResult]:
    """Objects go to instances as instances free up, a few at a time per instance. ``aws``: the S3
    settings the object tasks use (engine/credentials.py); ``reads``: who reads the payloads' bytes,
    for Describe."""
    ledger = Ledger(store)
    by_uri = {o.uri: o for o in job.objects}
    finished: list[tuple[InputObject, str]] = []  # for the ledger, written every STORE_EVERY_S
    live = ObjectCounts()  # what the running tasks yielded: counts for the live view
    queue = deque(job.objects)
    running: dict[Any, int] = {}
    groups = feed_groups(pool, config)
    nodes = instance_nodes(pool)
    objects_per_group = config.objects_in_flight_per_instance * len(pool.instances) // len(groups)
    per_instance = [0] * len(groups)
    started = [0] * len(groups)  # objects started per group: rotates their first worker
    tasks = [0] * len(groups)  # tasks started per group: rotates their node in cluster mode
    results: list[ObjectResult] = []
    tally = ResultTally()
    last_store = time.monotonic()
    client = on_ray_client()
    try:
        while queue or running:
            if should_stop is not None and should_stop():
                _cancel_gracefully(running)
                break
            for i, workers in enumerate(groups):
                while queue and per_instance[i] < objects_per_group:
                    # The object's task (S3 read, split, upload) runs beside its workers, not on the
                    # driver's node: its instance's node, or in cluster mode each instance's in turn.
                    home = nodes[i] if len(groups) == len(nodes) else nodes[tasks[i] % len(nodes)]
                    batch = take_batch(queue, len(groups) * objects_per_group)
                    function = remote_run_objects_at_once if client else remote_run_objects
                    task = (
                        function.options(scheduling_strategy=NodeAffinitySchedulingStrategy(home, soft=True))
                        if home
                        else function
                    )
                    generator = task.remote(batch, settings, workers, aws, started[i])
                    started[i] += len(batch)
                    tasks[i] += 1
                    running[generator] = i
                    per_instance[i] += 1
            ready = ray.wait(list(running), num_returns=1, timeout=POLL_S)[0]
            while ready:  # everything the tasks have yielded by now, not one item per loop
                for generator in ready:
                    item = _take(generator)
                    if item is END:
                        per_instance[running.pop(generator)] -= 1
                    elif isinstance(item, ObjectCounts):
                        live.add(item)
                    else:
                        for result in item:
                            results.append(result)
                            tally.add(result)
                            if result.ok:  # the ledger `resume` reads; the output's ETag proves it is ours
                                finished.append((by_uri[result.uri], result.output_etag))
                ready = ray.wait(list(running), num_returns=len(running), timeout=0)[0] if running else []
            if on_progress is not None or time.monotonic() - last_store >= STORE_EVERY_S:
                counters = tally.counters(job, live, reads)
                if on_progress is not None:
                    on_progress(counters)
                if time.monotonic() - last_store >= STORE_EVERY_S:
                    store.update_job(job.spec.name, counters=counters)
                    ledger.record(job.spec.name, finished)
                    finished.clear()
                    last_store = time.monotonic()
    except KeyboardInterrupt:  # Ctrl-C: stop like StopTransformJob, then let it propagate
        _cancel_gracefully(running)
        raise
    finally:
        ledger.record(job.spec.name, finished)  # a killed driver loses at most STORE_EVERY_S of them
        for generator in running:
            ray.cancel(generator, force=True)
    return results
