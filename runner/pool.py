"""Model workers per instance: sizing from TransformResources, placement, start-up and shutdown.

An "instance" is a Ray placement group of ``workers`` bundles packed on one node (STRICT_PACK), so
an instance never straddles nodes, as a SageMaker instance would not. On a local Ray that the runner
started, an instance bigger than the machine is scaled down to fit (and the job says so); on an
existing cluster, instances that cannot be placed fail fast with the setting to change.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from runner.container import RuntimeSettings
from runner.errors import WorkerStartupError
from runner.instances import InstanceSpec
from runner.model import ModelSpec
from runner.worker import RemoteModelWorker

log = logging.getLogger(__name__)

PLACEMENT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class InstanceSizing:
    """What one instance gets on this cluster, and why it may be less than the instance type has."""

    cpus_per_worker: float
    gpus_per_worker: float
    workers: int
    notes: tuple[str, ...] = ()

    @property
    def threads_per_worker(self) -> int:
        return max(1, math.floor(self.cpus_per_worker + 1e-9))


def size_instances(
    instance: InstanceSpec,
    count: int,
    workers: int,
    cluster: Mapping[str, float],
    local: bool,
) -> InstanceSizing:
    """Split an instance's vCPUs/GPUs over its workers; scale down only on a runner-started local Ray."""
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
    # Ray accepts resource amounts to 4 decimals.
    return InstanceSizing(
        cpus_per_worker=math.floor(cpus / workers * 1e4) / 1e4,
        gpus_per_worker=math.floor(gpus / workers * 1e4) / 1e4,
        workers=workers,
        notes=tuple(notes),
    )


def check_fits(
    instance_type: str, count: int, sizing: InstanceSizing, nodes: list[Mapping[str, float]]
) -> None:
    """Fail before placing anything when the cluster's nodes cannot hold the instances at all.

    Each instance must fit one node (first fit over the nodes' total resources); what other jobs
    hold right now is left to the placement timeout.
    """
    need = {"CPU": sizing.cpus_per_worker * sizing.workers, "GPU": sizing.gpus_per_worker * sizing.workers}
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
        biggest = max(((n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in nodes), default=(0.0, 0.0))
        raise WorkerStartupError(
            f"TransformResources: {count} x {instance_type} needs {need['CPU']:g} CPUs"
            + (f" and {need['GPU']:g} GPUs" if need["GPU"] else "")
            + f" on one node per instance; this Ray cluster can hold {placed} such instance(s) (its largest "
            f"node has {biggest[0]:g} CPUs, {biggest[1]:g} GPUs). Choose a smaller "
            "TransformResources.InstanceType, lower TransformResources.InstanceCount, or add nodes"
        )


@dataclass
class WorkerPool:
    """The started workers, grouped by instance."""

    instances: list[list[Any]]
    groups: list[PlacementGroup]
    infos: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        model: ModelSpec,
        environment: Mapping[str, str],
        sizing: InstanceSizing,
        count: int,
        cache_dir: str,
        content_type: str | None,
        accept: str | None,
        ready_timeout_s: float,
        runtime: RuntimeSettings | None = None,
    ) -> WorkerPool:
        """Place ``count`` instances and start their workers (model fetch and model_fn included)."""
        bundle = {"CPU": sizing.cpus_per_worker}
        if sizing.gpus_per_worker:
            bundle["GPU"] = sizing.gpus_per_worker
        groups = [placement_group([bundle] * sizing.workers, strategy="STRICT_PACK") for _ in range(count)]
        pool = cls([], groups)
        try:
            ready, _ = ray.wait([g.ready() for g in groups], num_returns=count, timeout=PLACEMENT_TIMEOUT_S)
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
                    actor: Any = RemoteModelWorker.options(
                        num_cpus=sizing.cpus_per_worker,
                        num_gpus=sizing.gpus_per_worker,
                        scheduling_strategy=PlacementGroupSchedulingStrategy(
                            group, placement_group_bundle_index=b
                        ),
                    ).remote()
                    pending.append(
                        actor.setup.remote(
                            model,
                            environment,
                            cache_dir,
                            sizing.threads_per_worker,
                            content_type,
                            accept,
                            runtime,
                        )
                    )
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
        return [{**info, **s} for info, s in zip(self.infos, stats, strict=True)]

    def shutdown(self) -> None:
        for workers in self.instances:
            for w in workers:
                ray.kill(w)
        for g in self.groups:
            remove_placement_group(g)
        self.instances, self.groups = [], []


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
