"""A job's counters: what object tasks count, what the driver sums, what the store keeps and Describe
shows under ``x-runner`` (outside AWS's shape; botocore drops members it does not model).

``to_json`` writes the ``x-runner`` members with the names and shape Describe has always had;
``from_json`` reads them back, ignoring members it does not know (a store written by another version).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Self


@dataclass
class ObjectCounts:
    """What one object (or the sum of several) has done so far. Mutable: an object's task adds to it
    as payloads go out, and the driver sums what the tasks report."""

    records: int = 0
    payloads: int = 0
    bytes_in: int = 0
    payloads_retried: int = 0
    workers_replaced: int = 0
    records_quarantined: int = 0
    objects_ranged: int = 0  # objects whose workers read their own payload bytes (records/ranges.py)

    def add(self, other: ObjectCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def minus(self, other: ObjectCounts) -> ObjectCounts:
        return ObjectCounts(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def copy(self) -> ObjectCounts:
        return replace(self)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


class ProgressSink:
    """What an object task's objects have done since the task last told the driver (``take``, which
    ``engine/feeder.py``'s ``run_objects`` yields every few tenths of a second). Thread-safe: grouped
    objects share one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta = ObjectCounts()

    def add(self, delta: ObjectCounts) -> None:
        with self._lock:
            self._delta.add(delta)

    def take(self) -> ObjectCounts:
        with self._lock:
            delta, self._delta = self._delta, ObjectCounts()
        return delta


def _json(obj: Any) -> dict[str, Any]:
    """A dataclass's members that are set: None is left out, and a flag only when it is on."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None or value is False:
            continue
        out[f.name] = value
    return out


def _known(cls: type[Any], data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class WorkerInfo:
    """One model worker: where it ran, how it runs the model, and what it did in this job."""

    pid: int | None = None
    node_id: str | None = None
    runtime: str | None = None  # "hooks" (in process) or "container" (a serving container)
    runtime_reason: str | None = None
    model_load_s: float | None = None
    family: str | None = None  # in-process hooks: the image family whose defaults apply
    # In-process hooks: the image's frameworks as installed, e.g. "xgboost 1.7.6 (the image's 1.7)".
    frameworks: str | None = None
    # A serving container: process or docker, its port, log, command or image.
    server: str | None = None
    port: int | None = None
    server_log: str | None = None
    serve_command: str | None = None
    image: str | None = None
    docker: str | None = None
    # This job's share of the worker's work (a warm worker's earlier jobs are not counted).
    payloads: int | None = None
    busy_s: float | None = None
    # Ranged payloads whose bytes the worker had read ahead while the one before ran.
    payloads_read_ahead: int | None = None
    server_restarts: int | None = None
    lost: bool = False  # died during the job
    warm: bool = False  # kept from an earlier job: no start, no model_fn

    def to_json(self) -> dict[str, Any]:
        return _json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_known(cls, data))


# Node labels that name a node's machine type, in the order they are believed: Kubernetes' well-known
# label (KubeRay passes pod labels on when asked), a plain one users set, the autoscaler's node group.
NODE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "instance-type", "ray.io/node-group")


@dataclass(frozen=True)
class NodeUse:
    """A Ray node the job's instances held: its type (where a label or an ``ml.*`` resource names
    one), its size and the job's share of it, for pricing what the job really occupied."""

    node_id: str
    node_type: str | None = None
    node_type_source: str | None = None  # the label or resource it was read from
    cpus: float | None = None  # the node's
    gpus: float | None = None
    cpus_held: float = 0.0  # by the job's instances
    gpus_held: float = 0.0

    @property
    def share(self) -> float:
        """The part of the node the job kept from other work: its larger share of CPUs or GPUs."""
        parts = [
            held / total
            for held, total in ((self.cpus_held, self.cpus), (self.gpus_held, self.gpus))
            if total
        ]
        return min(1.0, max(parts)) if parts else 1.0

    def to_json(self) -> dict[str, Any]:
        return _json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(**_known(cls, data))


def node_type_of(labels: Mapping[str, str], resources: Mapping[str, float]) -> tuple[str | None, str | None]:
    """A node's machine type and where it was read: a label of ``NODE_TYPE_LABELS``, else the ``ml.*``
    custom resource the node advertises (docs/deploy.md), as its EC2 type."""
    for key in NODE_TYPE_LABELS:
        if labels.get(key):
            return str(labels[key]), f"label {key}"
    ml = sorted(k for k in resources if k.startswith("ml."))
    if len(ml) == 1:
        return ml[0].removeprefix("ml."), f"resource {ml[0]}"
    return None, None


@dataclass(frozen=True)
class JobCounters:
    """The ``x-runner`` member of Describe: the job's progress and, once it ends, its workers."""

    objects_total: int = 0
    objects_done: int = 0
    objects_failed: int = 0
    records: int = 0
    payloads: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    payloads_retried: int = 0
    workers_replaced: int = 0
    records_quarantined: int = 0
    objects_resumed: int | None = None  # a resumed job: objects whose earlier output was kept
    objects_by_node: Mapping[str, int] | None = None  # where the object tasks ran
    first_output_s: float | None = None  # from workers ready to the earliest first write
    feeder_s: Mapping[str, float] | None = None  # the object tasks' time, by step, summed
    workers: tuple[WorkerInfo, ...] | None = None  # set when the job ends
    nodes: tuple[NodeUse, ...] | None = None  # set when the job ends: the nodes its instances held
    model_runtime: str | None = None  # set when the job ends: "hooks" or "container"
    # Set when the job ends: members of the model's execution parameters that were ignored, and why.
    execution_parameters_ignored: tuple[str, ...] | None = None
    waiting_for_nodes: str | None = None  # while the instances wait for a cluster to grow: for what
    # Who reads the payloads' bytes: "ranged: ..." (the workers) or "streamed: <why>" (the object task),
    # and how many objects were ranged.
    payload_reads: str | None = None
    objects_ranged: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # members this version does not know

    def to_json(self) -> dict[str, Any]:
        out = _json(self)
        out.pop("extra", None)
        if self.workers is not None:
            out["workers"] = [w.to_json() for w in self.workers]
        if self.nodes is not None:
            out["nodes"] = [n.to_json() for n in self.nodes]
        if self.execution_parameters_ignored is not None:
            out["execution_parameters_ignored"] = list(self.execution_parameters_ignored)
        for key in ("objects_by_node", "feeder_s"):
            if key in out:
                out[key] = dict(out[key])
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        known = _known(cls, data)
        known.pop("extra", None)
        if "workers" in known:
            known["workers"] = tuple(WorkerInfo.from_json(w) for w in known["workers"])
        if "nodes" in known:
            known["nodes"] = tuple(NodeUse.from_json(n) for n in known["nodes"])
        if "execution_parameters_ignored" in known:
            known["execution_parameters_ignored"] = tuple(known["execution_parameters_ignored"])
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**known, extra=extra)
