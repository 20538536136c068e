"""Model workers per instance: sizing from TransformResources, placement, start-up and shutdown.

An "instance" is a Ray placement group of ``workers`` bundles packed on one node (STRICT_PACK), so
an instance never straddles nodes, as a SageMaker instance would not. On a local Ray that the runner
started, an instance bigger than the machine is scaled down to fit (and the job says so); on an
existing cluster, instances that cannot be placed fail fast with the setting to change.

Node labels: on an existing cluster (``--ray-address``) whose nodes advertise ml instance types as
custom resources (``{"ml.m5.xlarge": 1}``, see ``instances.node_resources`` and docs/deploy.md),
every bundle of an instance of type T also asks for ``1 / workers`` of resource T, so the instance
lands on a node that stands for a T and such a node holds one instance. A cluster whose nodes
advertise no ml type, and a local Ray, are placed on CPUs/GPUs alone.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group

from runner.engine.calls import ray_get
from runner.engine.replacer import ReplacerHandle
from runner.engine.worker import WorkerTemplate, start_worker
from runner.errors import WorkerStartupError
from runner.jobs.counters import NodeUse, WorkerInfo, node_type_of

log = logging.getLogger(__name__)

PLACEMENT_TIMEOUT_S = 60.0
PLACEMENT_POLL_S = 0.5


@dataclass
class WorkerPool:
    """The started workers, grouped by instance."""

    instances: list[list[Any]]
    groups: list[PlacementGroup]
    infos: list[WorkerInfo] = field(default_factory=list)
    template: WorkerTemplate | None = None
    _replacer: Any = field(default=None, repr=False)
    # Kept warm from an earlier job (runner/engine/warm.py): its workers' counts when this job began.
    _baseline: list[WorkerInfo] | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls, template: WorkerTemplate, count: int, on_wait: Callable[[], None] | None = None
    ) -> WorkerPool:
        """Place ``count`` instances and start their workers (model fetch and model_fn included).
        ``on_wait`` is called every PLACEMENT_POLL_S while the instances cannot be placed yet."""
        sizing, ready_timeout_s = template.sizing, template.ready_timeout_s
        bundle = sizing.bundle()
        groups = [placement_group([bundle] * sizing.workers, strategy="STRICT_PACK") for _ in range(count)]
        pool = cls([], groups, template=template)
        try:
            placed = [g.ready() for g in groups]
            deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
            while True:
                left = deadline - time.monotonic()
                ready, _ = ray.wait(placed, num_returns=count, timeout=max(0.0, min(PLACEMENT_POLL_S, left)))
                if len(ready) == count or left <= PLACEMENT_POLL_S:
                    break
                if on_wait is not None:  # e.g. free workers kept warm since this job began waiting
                    on_wait()
            if len(ready) < count:
                raise WorkerStartupError(
                    f"only {len(ready)} of {count} instances of {sizing.workers} worker(s) "
                    f"with {bundle} each "
                    f"could be placed on this Ray cluster ({ray.cluster_resources()}) within "
                    f"{PLACEMENT_TIMEOUT_S:g}s; lower TransformResources.InstanceCount, choose a smaller "
                    "TransformResources.InstanceType, set --workers-per-instance, or add nodes"
                )
            pending = []
            for group in groups:
                workers = []
                for b in range(sizing.workers):
                    actor, ready = start_worker(template, group, b)
                    pending.append(ready)
                    workers.append(actor)
                pool.instances.append(workers)
            pool.infos = wait_ready(pending, ready_timeout_s)
        except BaseException:
            pool.shutdown()
            raise
        return pool

    def nodes_held(self) -> tuple[NodeUse, ...]:
        """The nodes this pool's instances hold, each with its type (labels, ``ml.*`` resource), size
        and the CPUs/GPUs the instances reserve on it, for pricing what a job occupied."""
        from ray.util.placement_group import placement_group_table

        held: dict[str, dict[str, float]] = {}
        for group in self.groups:
            table = placement_group_table(group)
            for index, node_id in (table.get("bundles_to_node_id") or {}).items():
                bundle = (table.get("bundles") or {}).get(index) or {}
                use = held.setdefault(str(node_id), {"CPU": 0.0, "GPU": 0.0})
                for resource in use:
                    use[resource] += float(bundle.get(resource, 0.0))
        nodes = {n["NodeID"]: n for n in ray.nodes()}
        out = []
        for node_id, use in sorted(held.items()):
            node = nodes.get(node_id) or {}
            resources = node.get("Resources") or {}
            node_type, source = node_type_of(node.get("Labels") or {}, resources)
            out.append(
                NodeUse(
                    node_id,
                    node_type,
                    source,
                    resources.get("CPU"),
                    resources.get("GPU"),
                    use["CPU"],
                    use["GPU"],
                )
            )
        return tuple(out)

    def stats(self) -> list[WorkerInfo]:
        """Per worker: where it ran, its model load time, payloads done, seconds busy in the hooks."""
        workers = [w for ws in self.instances for w in ws]
        stats: list[WorkerInfo | None] = []
        for ref in [w.stats.remote() for w in workers]:
            try:
                stats.append(ray.get(ref))
            except ray.exceptions.RayActorError:  # a worker that died during the job
                stats.append(None)
        out = []
        for i, (info, s) in enumerate(zip(self.infos, stats, strict=True)):
            if s is None:
                out.append(replace(info, lost=True))
                continue
            worked = replace(
                info,
                payloads=s.payloads,
                busy_s=s.busy_s,
                payloads_read_ahead=s.payloads_read_ahead,
                server_restarts=s.server_restarts,
            )
            if self._baseline is not None:
                # A warm pool: this job's share of the counts; its model was loaded by an earlier job.
                base = self._baseline[i]
                worked = replace(
                    worked,
                    payloads=(s.payloads or 0) - (base.payloads or 0),
                    busy_s=round((s.busy_s or 0.0) - (base.busy_s or 0.0), 3),
                    payloads_read_ahead=(s.payloads_read_ahead or 0) - (base.payloads_read_ahead or 0),
                    model_load_s=0.0,
                    warm=True,
                )
            out.append(worked)
        return out

    def begin_job(self) -> None:
        """A parked pool starts another job: its workers' counts from here."""
        workers = [w for ws in self.instances for w in ws]
        self._baseline = ray.get([w.stats.remote() for w in workers])

    def end_job(self) -> None:
        """Parked: the job's replacer, if a worker died, goes (the next job gets its own name)."""
        if self._replacer is not None:
            self._replacer.kill()
            self._replacer = None

    def replacer(self) -> Any:
        """The job's ReplacerHandle (runner/engine/dispatch.py): the object tasks start its WorkerReplacer,
        which puts a new worker in a dead one's place, when they first see a worker die."""
        if self._replacer is None:
            assert self.template is not None, "a started pool has its template"
            name = f"batch-transform-replacer-{uuid.uuid4().hex}"
            self._replacer = ReplacerHandle(name, self.template, self.groups, self.instances)
        return self._replacer

    def shutdown(self) -> None:
        if self._replacer is not None:
            self._replacer.kill()
            self._replacer = None
        for workers in self.instances:
            for w in workers:
                ray.kill(w)
        for g in self.groups:
            remove_placement_group(g)
        self.instances, self.groups = [], []


def wait_ready(pending: list[Any], timeout_s: float) -> list[WorkerInfo]:
    deadline = time.monotonic() + timeout_s
    _, rest = ray.wait(pending, num_returns=len(pending), timeout=timeout_s)
    if rest:
        raise WorkerStartupError(
            f"{len(rest)} of {len(pending)} model workers were not ready within {timeout_s:g}s "
            "(model download and model_fn included); raise --worker-ready-timeout or check the model"
        )
    infos = []
    for ref in pending:  # in start order, so infos line up with the workers
        infos.append(ray_get(ref, timeout=max(0.0, deadline - time.monotonic()) + 1))
    return infos
