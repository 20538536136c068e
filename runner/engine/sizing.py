"""How a job is cut to fit the cluster: the CPUs and GPUs each worker of an instance gets, whether the
cluster can hold the instances at all, and how many objects one object task takes. Pure: no Ray, so
it is tested on plain resource dictionaries and object lists."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.contract.instances import InstanceSpec, advertised_types
from runner.errors import WorkerStartupError
from runner.records.plan import InputObject

# Objects of at most SMALL_OBJECT_BYTES go up to GROUP_OBJECTS to one task: a task, a process and a
# result for the driver per object is what small objects would otherwise cost.
SMALL_OBJECT_BYTES = 1024 * 1024
GROUP_OBJECTS = 32


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
    allow_cpu_for_gpu: bool = False,
) -> InstanceSizing:
    """Split an instance's vCPUs/GPUs over its workers; scale down only on a Ray this process started
    (``local``). A GPU instance type never runs on the CPU unless ``allow_cpu_for_gpu`` says so.

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
            if scaled == 0 and not allow_cpu_for_gpu:
                raise WorkerStartupError(
                    f"TransformResources.InstanceType {instance.instance_type} has {instance.gpus} GPU(s) "
                    "and this machine's Ray has none, so the model would run on the CPU. Choose a CPU "
                    "instance type, run on a Ray cluster with GPUs (--ray-address), or allow it "
                    "explicitly with --allow-cpu-for-gpu (RunnerConfig.allow_cpu_for_gpu)"
                )
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


@dataclass(frozen=True)
class NodeGroup:
    """One node type an autoscaler may start: what each node has, and at most how many (-1: no limit)."""

    name: str
    resources: Mapping[str, float]
    max_count: int


def never_fits(
    instance_type: str, count: int, sizing: InstanceSizing, groups: Sequence[NodeGroup]
) -> str | None:
    """Why no scale-up can ever hold ``count`` instances (each on one node), or None if one can: the
    autoscaler's node types, each at its largest count."""
    need = {k: v for k, v in sizing.per_instance().items() if v}
    room = 0
    for group in groups:
        if group.max_count == 0 or not all(group.resources.get(k, 0.0) + 1e-9 >= v for k, v in need.items()):
            continue
        if group.max_count < 0:
            return None
        per_node = min((int(group.resources.get(k, 0.0) / v + 1e-9) for k, v in need.items()), default=count)
        room += per_node * group.max_count
        if room >= count:
            return None
    shapes = "; ".join(f"{g.name}: {_shape(g.resources)}, at most {g.max_count}" for g in groups)
    return (
        f"TransformResources: {count} x {instance_type} needs {_shape(need)} on one node per instance, and "
        f"the node types this cluster's autoscaler can start hold {room} such instance(s) ({shapes}). "
        "Choose a smaller TransformResources.InstanceType, lower TransformResources.InstanceCount, or add a "
        "node type"
    )


def _shape(resources: Mapping[str, float]) -> str:
    shown = [(k, v) for k, v in sorted(resources.items()) if k in ("CPU", "GPU") or k.startswith("ml.")]
    return ", ".join(f"{v:g} {k}" for k, v in shown) or "nothing"


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


def take_batch(queue: deque[InputObject], slots: int) -> list[InputObject]:
    """The next task's objects: a large object alone, or up to GROUP_OBJECTS small ones in a row, few
    enough that each of the job's ``slots`` (object tasks in flight) still gets a share."""
    batch = [queue.popleft()]
    if batch[0].size > SMALL_OBJECT_BYTES:
        return batch
    size = min(GROUP_OBJECTS, -(-(len(queue) + 1) // max(1, slots)))
    while queue and len(batch) < size and queue[0].size <= SMALL_OBJECT_BYTES:
        batch.append(queue.popleft())
    return batch
