"""Replacing a dead model worker with an equal one, once per death, for every object task of a job.

The job's ``WorkerReplacer`` is a named, detached actor that the first object task to see a worker
die starts (``ReplacerHandle.get_or_start``); a job whose workers all live starts no process for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray

from runner.engine.worker import WorkerTemplate, start_worker

# Named (detached) actors need a namespace one can reach them in; each job's replacer has a unique name.
REPLACER_NAMESPACE = "batch-transform"


@dataclass(frozen=True)
class Replacement:
    """A worker started in a dead one's place; ``ready`` resolves once its model is loaded."""

    handle: Any
    ready: Any
    started: bool  # this request started it (False: an earlier report of the same death did)
    ready_timeout_s: float


class WorkerReplacer:
    """Replaces dead workers for every object task of a job. Started only when a worker first dies
    (``ReplacerHandle``): a job whose workers all live starts no process for it."""

    def __init__(self, template: WorkerTemplate, groups: list[Any], instances: list[list[Any]]) -> None:
        self._template = template
        self._groups = groups
        self._slots = [list(ws) for ws in instances]
        self._ready: dict[tuple[int, int], Any] = {}
        # Every handle ever in a slot (actor handles compare by actor id), so a late report of a
        # death that was already handled gets the replacement instead of starting another.
        self._where = {h: (i, s) for i, ws in enumerate(instances) for s, h in enumerate(ws)}

    def current(self, workers: list[Any]) -> list[Replacement | None]:
        """Each of ``workers`` as its slot holds it now: None, or the replacement it holds instead."""
        out: list[Replacement | None] = []
        for w in workers:
            where = self._where.get(w)
            now = None if where is None else self._slots[where[0]][where[1]]
            out.append(None if where is None or now == w else self._held(where, started=False))
        return out

    def _held(self, where: tuple[int, int], started: bool) -> Replacement:
        i, s = where
        return Replacement(self._slots[i][s], self._ready[where], started, self._template.ready_timeout_s)

    def replace(self, dead: Any) -> Replacement:
        """Start a worker in the slot of ``dead`` unless that was done already. Returns at once: the
        caller waits on ``ready`` (model download and model_fn), not this actor."""
        where = self._where.get(dead)
        if where is None:
            raise ValueError("replace() was given an actor that is not one of this job's workers")
        i, s = where
        if self._slots[i][s] == dead:
            handle, ready = start_worker(self._template, self._groups[i], s)
            self._slots[i][s], self._ready[where], self._where[handle] = handle, ready, where
            return self._held(where, started=True)
        return self._held(where, started=False)


@dataclass(frozen=True)
class ReplacerHandle:
    """How a job's object tasks reach its WorkerReplacer: a named actor that the first task to see a
    worker die starts (``get_if_exists``: once, however many report it). Detached, so that it
    outlives that task's process; ``WorkerPool.shutdown`` kills it with the job."""

    name: str
    template: WorkerTemplate
    groups: list[Any]
    instances: list[list[Any]]

    def existing(self) -> Any:
        """The replacer if a worker of this job has died, else None (no worker was replaced)."""
        try:
            return ray.get_actor(self.name, namespace=REPLACER_NAMESPACE)
        except ValueError:
            return None

    def get_or_start(self) -> Any:
        return RemoteWorkerReplacer.options(
            name=self.name, namespace=REPLACER_NAMESPACE, lifetime="detached", get_if_exists=True
        ).remote(self.template, self.groups, self.instances)

    def kill(self) -> None:
        actor = self.existing()
        if actor is not None:  # its replacement workers go with their placement groups
            ray.kill(actor)


def current_workers(replacer: ReplacerHandle | None, workers: list[Any]) -> Any:
    """The replacer's ``current(workers)`` answer, asked without waiting; None when no worker of the
    job has died (there is no replacer to ask)."""
    actor = replacer.existing() if replacer is not None else None
    return actor.current.remote(workers) if actor is not None else None


# No CPU: it only starts actors. Calls run one at a time, so one death starts one replacement.
RemoteWorkerReplacer = ray.remote(num_cpus=0, max_restarts=0)(WorkerReplacer)
