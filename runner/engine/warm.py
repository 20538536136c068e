"""Model workers kept warm between the jobs of one process (``batch-transform serve``, or a program
that calls ``run_job`` in a loop), so a repeated job skips placing instances, starting workers and
loading the model.

A finished job's WorkerPool is parked for ``RunnerConfig.warm_pool_s`` seconds under a key of
everything its workers were started with: the model's fingerprint (the CreateModel request and the
ETags of its artifacts, ``resume.model_fingerprint``: a new model.tar.gz at the same URL is a new
key), the environment the model sees, the instance sizing and count, ContentType / Accept and the
runtime settings. Only a job with an equal key takes it; any other job that starts workers first
shuts every parked pool down, so idle workers never hold a cluster's CPUs from a job that needs
them. Parked are only pools that ran in-process hooks, lost no worker and whose job completed. The
workers keep what ``model_fn`` loaded, as a SageMaker container does between the mini-batches of one
job, now across jobs of the same model: a model whose hooks keep state between requests should run
with ``warm_pool_s`` 0 (``--warm-pool-seconds 0``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import ray

from runner.engine.pool import WorkerPool
from runner.engine.worker import WorkerTemplate

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PoolKey:
    """What a pool's workers were started with; equal keys start equal workers."""

    model_fingerprint: str
    environment: tuple[tuple[str, str], ...]
    template: WorkerTemplate  # its environment and ModelSpec hold dicts: compared, never hashed
    count: int

    def __hash__(self) -> int:
        return hash((self.model_fingerprint, self.environment, self.count))


def pool_key(model_fingerprint: str, template: WorkerTemplate, count: int) -> PoolKey:
    runtime = template.runtime
    # The per-job log folder is where a model server would log; parked pools run hooks, which do not.
    settings = replace(runtime, log_dir=None) if runtime is not None else None
    return PoolKey(
        model_fingerprint,
        tuple(sorted(template.environment.items())),
        replace(template, runtime=settings, ready_timeout_s=0.0),
        count,
    )


class WarmPools:
    """The parked pools of this process (module doc). Thread-safe: ``serve`` runs jobs in threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parked: dict[PoolKey, tuple[WorkerPool, float]] = {}
        self._wake = threading.Event()
        self._reaper: threading.Thread | None = None
        # The execution parameters a model answered, by fingerprint and environment: asked once.
        self._params: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any] | None] = {}

    def take(self, key: PoolKey) -> WorkerPool | None:
        """The parked pool for ``key`` if there is one and all its workers still answer; else None."""
        with self._lock:
            entry = self._parked.pop(key, None)
        if entry is None:
            return None
        pool = entry[0]
        try:
            if _healthy(pool):
                pool.begin_job()
                return pool
        except ray.exceptions.RayError:  # a worker died between the check and the baseline
            log.debug("parked pool lost a worker", exc_info=True)
        pool.shutdown()
        return None

    def release_all(self) -> None:
        """Shut every parked pool down (a job is about to place its own instances)."""
        with self._lock:
            parked, self._parked = list(self._parked.values()), {}
        for pool, _ in parked:
            pool.shutdown()

    def park(self, key: PoolKey, pool: WorkerPool, keep_s: float) -> None:
        """Keep ``pool`` for ``keep_s`` seconds for the next job with ``key``; shut it down if 0."""
        if keep_s <= 0:
            pool.shutdown()
            return
        pool.end_job()
        with self._lock:
            old = self._parked.pop(key, None)
            self._parked[key] = (pool, time.monotonic() + keep_s)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="warm-pools", daemon=True)
                self._reaper.start()
        if old is not None:  # two jobs of one key ended: keep the newer pool
            old[0].shutdown()
        self._wake.set()

    def execution_parameters(self, key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[bool, Any]:
        with self._lock:
            return (key in self._params, self._params.get(key))

    def remember_parameters(
        self, key: tuple[str, tuple[tuple[str, str], ...]], params: dict[str, Any] | None
    ) -> None:
        with self._lock:
            self._params[key] = params

    def _reap(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [k for k, (_, at) in self._parked.items() if at <= now]
                expired = [self._parked.pop(k)[0] for k in due]
                wait = min((at for _, at in self._parked.values()), default=now + 3600) - now
            for pool in expired:
                try:
                    pool.shutdown()
                except Exception:  # Ray already gone (process exit): nothing left to free
                    log.debug("parked pool shutdown failed", exc_info=True)
            self._wake.wait(timeout=max(0.05, wait))
            self._wake.clear()


def _healthy(pool: WorkerPool) -> bool:
    """Every worker answers (a worker can die while parked: OOM, a node lost)."""
    refs = [w.stats.remote() for ws in pool.instances for w in ws]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=HEALTH_TIMEOUT_S)
    if len(ready) < len(refs):
        return False
    try:
        ray.get(ready)
    except ray.exceptions.RayError:
        return False
    return True


WARM_POOLS = WarmPools()


@atexit.register
def _release_at_exit() -> None:
    if ray.is_initialized():
        WARM_POOLS.release_all()
