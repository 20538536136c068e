"""Placement-group bundles and the fit check: a cluster whose nodes advertise ml instance types gets
bundles that ask for the instance's type; any other cluster, and a local Ray, get CPUs/GPUs only."""

from __future__ import annotations

import pytest

from runner.contract.instances import instance_spec, node_resources
from runner.engine.sizing import InstanceSizing, NodeGroup, check_fits, never_fits, size_instances
from runner.errors import WorkerStartupError

M5 = node_resources("ml.m5.xlarge")  # {"CPU": 4, "ml.m5.xlarge": 1}
G5 = node_resources("ml.g5.xlarge")
UNLABELLED = {"CPU": 16.0, "memory": 64e9, "node:10.0.0.9": 1.0}


def total(*nodes: dict[str, float]) -> dict[str, float]:
    """What ray.cluster_resources() reports for these nodes."""
    out: dict[str, float] = {}
    for node in nodes:
        for k, v in node.items():
            out[k] = out.get(k, 0.0) + v
    return out


def sizing(instance_type: str, workers: int, *nodes: dict[str, float], local: bool = False) -> InstanceSizing:
    return size_instances(instance_spec(instance_type), 1, workers, total(*nodes), local=local)


def test_labelled_cluster_bundles_ask_for_the_instance_type() -> None:
    s = sizing("ml.m5.xlarge", 2, M5, M5, UNLABELLED)
    assert s.node_resource == "ml.m5.xlarge"
    assert s.bundle() == {"CPU": 2.0, "ml.m5.xlarge": 0.5}
    # One instance's bundles together take the whole of one node's label.
    assert s.per_instance() == {"CPU": 4.0, "ml.m5.xlarge": 1.0}


def test_gpu_bundles_carry_cpus_gpus_and_the_type() -> None:
    s = sizing("ml.g5.xlarge", 2, G5, M5)
    assert s.bundle() == {"CPU": 2.0, "GPU": 0.5, "ml.g5.xlarge": 0.5}


@pytest.mark.parametrize("workers", [1, 3, 6, 7])
def test_shares_of_one_instance_never_exceed_one_node(workers: int) -> None:
    s = sizing("ml.m5.xlarge", workers, M5)
    assert 0 < s.node_share <= 1 / workers
    assert round(s.node_share, 4) == s.node_share  # Ray's resource precision
    assert s.node_share * workers <= 1.0
    check_fits("ml.m5.xlarge", 1, s, [M5])  # and the node still holds the instance


def test_unlabelled_cluster_gets_cpu_gpu_bundles_as_before() -> None:
    s = sizing("ml.g5.xlarge", 2, UNLABELLED, {"CPU": 8.0, "GPU": 1.0})
    assert s.node_resource is None
    assert s.bundle() == {"CPU": 2.0, "GPU": 0.5}


def test_local_ray_ignores_labels() -> None:
    """The runner's own local Ray is never placed by label, whatever resources it has."""
    s = sizing("ml.m5.xlarge", 2, {"CPU": 8.0, "ml.m5.xlarge": 1.0}, local=True)
    assert s.node_resource is None
    assert s.bundle() == {"CPU": 2.0}


def test_labelled_instances_go_only_to_nodes_of_their_type() -> None:
    """A big unlabelled node has the CPUs, but an ml.m5.xlarge instance needs an ml.m5.xlarge node."""
    nodes = [M5, UNLABELLED]
    s = sizing("ml.m5.xlarge", 2, *nodes)
    check_fits("ml.m5.xlarge", 1, s, nodes)
    with pytest.raises(WorkerStartupError) as e:
        check_fits("ml.m5.xlarge", 2, s, nodes)
    message = str(e.value)
    assert "2 x ml.m5.xlarge needs 4 CPUs on one node advertising ml.m5.xlarge per instance" in message
    assert "can hold 1 such instance(s)" in message
    assert 'add nodes that advertise {"ml.m5.xlarge": 1}' in message


def test_no_node_of_the_requested_type_names_the_types_there_are() -> None:
    nodes = [M5, M5, G5, UNLABELLED]
    s = sizing("ml.c5.xlarge", 1, *nodes)
    assert s.node_resource == "ml.c5.xlarge"
    with pytest.raises(WorkerStartupError) as e:
        check_fits("ml.c5.xlarge", 1, s, nodes)
    message = str(e.value)
    assert message.startswith("TransformResources.InstanceType ml.c5.xlarge: no alive node")
    assert "advertises the custom resource ml.c5.xlarge" in message
    assert "ml.g5.xlarge (1 node), ml.m5.xlarge (2 nodes)" in message
    assert """--resources='{"ml.c5.xlarge": 1}'""" in message and "docs/deploy.md" in message


def test_unlabelled_cluster_message_is_unchanged() -> None:
    nodes = [{"CPU": 2.0}]
    s = sizing("ml.m5.24xlarge", 1, *nodes)
    with pytest.raises(WorkerStartupError) as e:
        check_fits("ml.m5.24xlarge", 1, s, nodes)
    assert "1 x ml.m5.24xlarge needs 96 CPUs on one node per instance" in str(e.value)
    assert "advertis" not in str(e.value)


def test_a_gpu_type_on_a_ray_without_gpus_is_refused_unless_allowed() -> None:
    """A GPU instance type never runs on the CPU silently: without the explicit setting the job fails
    before any worker starts, naming the type, the missing GPU and the flag."""
    with pytest.raises(WorkerStartupError) as refused:
        sizing("ml.g4dn.xlarge", 1, {"CPU": 2.0}, local=True)
    message = str(refused.value)
    assert "ml.g4dn.xlarge has 1 GPU(s) and this machine's Ray has none" in message
    assert "--allow-cpu-for-gpu" in message
    allowed = size_instances(
        instance_spec("ml.g4dn.xlarge"), 1, 1, {"CPU": 2.0}, local=True, allow_cpu_for_gpu=True
    )
    assert allowed.gpus_per_worker == 0.0
    assert any("the model runs on the CPU" in note for note in allowed.notes)
    # A machine with fewer GPUs than the type still runs on GPUs: a share, said in a note.
    shared = size_instances(instance_spec("ml.g4dn.12xlarge"), 1, 4, {"CPU": 48.0, "GPU": 2.0}, local=True)
    assert shared.gpus_per_worker == 0.5 and "each instance runs on 2 GPU(s)" in shared.notes[0]


def _sizing(cpus: float, gpus: float = 0.0, workers: int = 1) -> InstanceSizing:
    return InstanceSizing(cpus_per_worker=cpus / workers, gpus_per_worker=gpus / workers, workers=workers)


def test_an_autoscaler_that_can_grow_enough_is_waited_for() -> None:
    groups = [NodeGroup("head", {"CPU": 0.0}, 1), NodeGroup("cpu-4", {"CPU": 4.0}, 2)]
    # 2 vCPUs each: two per 4-CPU node, two such nodes at most: up to 4 instances.
    assert never_fits("ml.m5.large", 4, _sizing(2), groups) is None
    assert never_fits("ml.m5.large", 9, _sizing(2), [NodeGroup("any", {"CPU": 2.0}, -1)]) is None


def test_a_shape_no_node_type_can_hold_fails_at_once() -> None:
    groups = [NodeGroup("head", {"CPU": 0.0}, 1), NodeGroup("cpu-4", {"CPU": 4.0}, 2)]
    too_many = never_fits("ml.m5.large", 5, _sizing(2), groups)
    assert too_many is not None
    assert "5 x ml.m5.large needs 2 CPU on one node per instance" in too_many
    assert "hold 4 such instance(s) (head: 0 CPU, at most 1; cpu-4: 4 CPU, at most 2)" in too_many
    gpu = never_fits("ml.g4dn.xlarge", 1, _sizing(4, 1), groups)
    assert gpu is not None and "needs 4 CPU, 1 GPU on one node per instance" in gpu
    # A group scaled to zero at most never counts.
    assert never_fits("ml.m5.large", 1, _sizing(2), [NodeGroup("off", {"CPU": 8.0}, 0)]) is not None
