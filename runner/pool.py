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
import math
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from runner.container import RuntimeSettings
from runner.errors import WorkerStartupError
from runner.instances import InstanceSpec, advertised_types
from runner.model import ModelSpec
from runner.worker import RemoteModelWorker

log = logging.getLogger(__name__)

PLACEMENT_TIMEOUT_S = 60.0
PLACEMENT_POLL_S = 0.5


@dataclass(frozen=True)
class InstanceSizing:
    """What one instance gets on this cluster, and why it may be less than the instance type has."""

    cpus_per_worker: float
    gpus_per_worker: float
    workers: int
    notes: tuple[str, ...] = ()
    # The custom resource (an ml instance type) every bundle asks for; None: CPUs/GPUs only.
    node_resource: str | None = None

    @property
    def threads_per_worker(self) -> int:
        return max(1, math.floor(self.cpus_per_worker + 1e-9))

    @property
    def node_share(self) -> float:
        """Each worker's share of its node's ml-type resource: the shares of one instance sum to at
        most 1, so a node advertising ``{T: 1}`` holds exactly one instance of T."""
        return _ray_amount(1.0 / self.workers)

    def bundle(self) -> dict[str, float]:
        """One worker's placement-group bundle."""
        bundle = {"CPU": self.cpus_per_worker}
        if self.gpus_per_worker:
            bundle["GPU"] = self.gpus_per_worker
        if self.node_resource is not None:
            bundle[self.node_resource] = self.node_share
        return bundle

    def per_instance(self) -> dict[str, float]:
        """What one instance (all its bundles) needs from one node."""
        return {k: v * self.workers for k, v in self.bundle().items()}


def _ray_amount(x: float) -> float:
    """Ray accepts resource amounts to 4 decimals; round down so the parts never exceed the whole."""
    return max(math.floor(x * 1e4) / 1e4, 1e-4)


def size_instances(
    instance: InstanceSpec,
    count: int,
    workers: int,
    cluster: Mapping[str, float],
    local: bool,
) -> InstanceSizing:
    """Split an instance's vCPUs/GPUs over its workers; scale down only on a runner-started local Ray.

    On an existing cluster (``local`` False) whose ``cluster`` resources include ml instance types,
    the bundles also ask for the node resource named after the instance type."""
    cpus = float(instance.vcpus)
    gpus = float(instance.gpus)
    notes: list[str] = []
    have_cpu = float(cluster.get("CPU", 0.0))
    have_gpu = float(cluster.get("GPU", 0.0))
    if local:
        if cpus * count > have_cpu:
            scaled = have_cpu / count
            notes.append(
                f"{instance.instance_type} has {instance.vcpus} vCPUs; this machine has {have_cpu:g} CPUs "
                f"for "
                f"{count} instance(s), so each instance runs on {scaled:g} CPUs"
            )
            cpus = scaled
        if gpus * count > have_gpu:
            scaled = have_gpu / count
            notes.append(
                f"{instance.instance_type} has {instance.gpus} GPU(s); this machine has {have_gpu:g}, so "
                f"each instance runs on {scaled:g} GPU(s)"
                + (" (the model runs on the CPU)" if scaled == 0 else "")
            )
            gpus = scaled
    labelled = not local and bool(advertised_types(cluster))
    # Ray accepts resource amounts to 4 decimals.
    return InstanceSizing(
        cpus_per_worker=math.floor(cpus / workers * 1e4) / 1e4,
        gpus_per_worker=math.floor(gpus / workers * 1e4) / 1e4,
        workers=workers,
        notes=tuple(notes),
        node_resource=instance.instance_type if labelled else None,
    )


def check_fits(
    instance_type: str, count: int, sizing: InstanceSizing, nodes: Sequence[Mapping[str, float]]
) -> None:
    """Fail before placing anything when the cluster's nodes cannot hold the instances at all.

    Each instance must fit one node (first fit over the nodes' total resources); what other jobs
    hold right now is left to the placement timeout.
    """
    label = sizing.node_resource
    if label is not None and not any(n.get(label, 0.0) > 0 for n in nodes):
        raise WorkerStartupError(_no_node_of_type(label, nodes))
    need = sizing.per_instance()
    free = [dict(n) for n in nodes]
    placed = 0
    for _ in range(count):
        for node in free:
            if all(node.get(k, 0.0) + 1e-9 >= v for k, v in need.items() if v):
                for k, v in need.items():
                    node[k] = node.get(k, 0.0) - v
                placed += 1
                break
    if placed < count:
        candidates = [n for n in nodes if label is None or n.get(label, 0.0) > 0]
        biggest = max(((n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in candidates), default=(0.0, 0.0))
        where = "one node per instance" if label is None else f"one node advertising {label} per instance"
        which = "its largest node" if label is None else f"its largest {label} node"
        raise WorkerStartupError(
            f"TransformResources: {count} x {instance_type} needs {need['CPU']:g} CPUs"
            + (f" and {need['GPU']:g} GPUs" if need.get("GPU") else "")
            + f" on {where}; this Ray cluster can hold {placed} such instance(s) ({which} has "
            f"{biggest[0]:g} CPUs, {biggest[1]:g} GPUs). Choose a smaller "
            "TransformResources.InstanceType, lower TransformResources.InstanceCount, or add nodes"
            + ("" if label is None else f' that advertise {{"{label}": 1}}')
        )


def _no_node_of_type(instance_type: str, nodes: Sequence[Mapping[str, float]]) -> str:
    """Nodes advertise ml instance types (docs/deploy.md), but none the requested one."""
    per_type: dict[str, int] = {}
    for node in nodes:
        for name in advertised_types(node):
            per_type[name] = per_type.get(name, 0) + 1
    advertised = ", ".join(f"{name} ({n} node{'s' if n > 1 else ''})" for name, n in sorted(per_type.items()))
    return (
        f"TransformResources.InstanceType {instance_type}: no alive node of this Ray cluster advertises "
        f"the custom resource {instance_type}; its nodes stand for these ml instance types: {advertised}. "
        f"Choose one of them as TransformResources.InstanceType, or add nodes started with "
        f"--resources='{{\"{instance_type}\": 1}}' (a KubeRay worker group or cluster launcher node type for "
        f"{instance_type}, scaled above zero; see docs/deploy.md)"
    )


@dataclass
class WorkerPool:
    """The started workers, grouped by instance."""

    instances: list[list[Any]]
    groups: list[PlacementGroup]
    infos: list[dict[str, Any]] = field(default_factory=list)
    template: WorkerTemplate | None = None
    _replacer: Any = field(default=None, repr=False)
    # Kept warm from an earlier job (runner/warm.py): its workers' counts when this job began.
    _baseline: list[dict[str, Any]] | None = field(default=None, repr=False)

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

    def stats(self) -> list[dict[str, Any]]:
        """Per worker: pid, node, model load time, payloads done, seconds busy in the hooks."""
        workers = [w for ws in self.instances for w in ws]
        stats = []
        for ref in [w.stats.remote() for w in workers]:
            try:
                stats.append(ray.get(ref))
            except ray.exceptions.RayActorError:  # a worker that died during the job
                stats.append({"lost": True})
        if self._baseline is None:
            return [{**info, **s} for info, s in zip(self.infos, stats, strict=True)]
        # A warm pool: this job's share of the counts; its model was loaded by an earlier job.
        out = []
        for info, s, base in zip(self.infos, stats, self._baseline, strict=True):
            if "payloads" in s and "payloads" in base:
                s = {
                    **s,
                    "payloads": s["payloads"] - base["payloads"],
                    "busy_s": round(s["busy_s"] - base["busy_s"], 3),
                }
            out.append({**info, **s, "model_load_s": 0.0, "warm": True})
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
        """The job's ReplacerHandle (runner/dispatch.py): the object tasks start its WorkerReplacer,
        which puts a new worker in a dead one's place, when they first see a worker die."""
        if self._replacer is None:
            from runner.dispatch import ReplacerHandle

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


@dataclass(frozen=True)
class WorkerTemplate:
    """What every worker of a job starts with, so that a dead one can be replaced by an equal one."""

    model: ModelSpec
    environment: Mapping[str, str]
    sizing: InstanceSizing
    cache_dir: str
    content_type: str | None
    accept: str | None
    ready_timeout_s: float
    runtime: RuntimeSettings | None = None


def start_worker(template: WorkerTemplate, group: PlacementGroup, bundle_index: int) -> tuple[Any, Any]:
    """Start one worker in bundle ``bundle_index`` of ``group``: (the actor, its setup's ObjectRef).
    WorkerPool.start and the replacement of a dead worker (runner/dispatch.py) both start workers here."""
    sizing = template.sizing
    actor: Any = RemoteModelWorker.options(
        num_cpus=sizing.cpus_per_worker,
        num_gpus=sizing.gpus_per_worker,
        scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=bundle_index
        ),
    ).remote()
    ready = actor.setup.remote(
        template.model,
        template.environment,
        template.cache_dir,
        sizing.threads_per_worker,
        template.content_type,
        template.accept,
        template.runtime,
    )
    return actor, ready


def wait_ready(pending: list[Any], timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    _, rest = ray.wait(pending, num_returns=len(pending), timeout=timeout_s)
    if rest:
        raise WorkerStartupError(
            f"{len(rest)} of {len(pending)} model workers were not ready within {timeout_s:g}s "
            "(model download and model_fn included); raise --worker-ready-timeout or check the model"
        )
    infos = []
    for ref in pending:  # in start order, so infos line up with the workers
        try:
            infos.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic()) + 1))
        except ray.exceptions.RayTaskError as e:
            raise (e.cause if e.cause is not None else e) from None
    return infos
