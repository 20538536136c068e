"""The ml.* instance table: every type is one SageMaker accepts, with the published sizes."""

from __future__ import annotations

import botocore.session
import pytest

from runner.contract.instances import (
    INSTANCE_TYPES,
    InstanceSpec,
    advertised_types,
    instance_spec,
    node_resources,
)
from runner.errors import SpecError


def transform_instance_types() -> list[str]:
    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for("TransformInstanceType").enum)


def test_every_type_is_a_transform_instance_type() -> None:
    assert set(INSTANCE_TYPES) <= set(transform_instance_types())


def test_table_covers_the_families_we_promise() -> None:
    families = {name.split(".")[1] for name in INSTANCE_TYPES}
    assert families >= {"m4", "c4", "m5", "c5", "g4dn", "p2", "p3", "g5"}


def test_keys_match_entries() -> None:
    for name, spec in INSTANCE_TYPES.items():
        assert spec.instance_type == name
        assert spec.vcpus > 0 and spec.memory_gib > 0
        assert (spec.gpus > 0) == (spec.gpu_model is not None)


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "memory_gib", "gpus", "gpu_model"),
    [
        ("ml.m4.xlarge", 4, 16, 0, None),
        ("ml.m4.10xlarge", 40, 160, 0, None),
        ("ml.c4.xlarge", 4, 7.5, 0, None),
        ("ml.c4.8xlarge", 36, 60, 0, None),
        ("ml.m5.large", 2, 8, 0, None),
        ("ml.m5.xlarge", 4, 16, 0, None),
        ("ml.m5.24xlarge", 96, 384, 0, None),
        ("ml.c5.xlarge", 4, 8, 0, None),
        ("ml.c5.9xlarge", 36, 72, 0, None),
        ("ml.c5.18xlarge", 72, 144, 0, None),
        ("ml.m6i.32xlarge", 128, 512, 0, None),
        ("ml.c6i.large", 2, 4, 0, None),
        ("ml.r6i.xlarge", 4, 32, 0, None),
        ("ml.m7i.48xlarge", 192, 768, 0, None),
        ("ml.c7i.2xlarge", 8, 16, 0, None),
        ("ml.r7i.48xlarge", 192, 1536, 0, None),
        ("ml.g4dn.xlarge", 4, 16, 1, "NVIDIA T4"),
        ("ml.g4dn.12xlarge", 48, 192, 4, "NVIDIA T4"),
        ("ml.g4dn.16xlarge", 64, 256, 1, "NVIDIA T4"),
        ("ml.p2.xlarge", 4, 61, 1, "NVIDIA K80"),
        ("ml.p2.8xlarge", 32, 488, 8, "NVIDIA K80"),
        ("ml.p2.16xlarge", 64, 732, 16, "NVIDIA K80"),
        ("ml.p3.2xlarge", 8, 61, 1, "NVIDIA V100"),
        ("ml.p3.8xlarge", 32, 244, 4, "NVIDIA V100"),
        ("ml.p3.16xlarge", 64, 488, 8, "NVIDIA V100"),
        ("ml.g5.xlarge", 4, 16, 1, "NVIDIA A10G"),
        ("ml.g5.12xlarge", 48, 192, 4, "NVIDIA A10G"),
        ("ml.g5.48xlarge", 192, 768, 8, "NVIDIA A10G"),
        ("ml.g6.2xlarge", 8, 32, 1, "NVIDIA L4"),
        ("ml.g6.24xlarge", 96, 384, 4, "NVIDIA L4"),
        ("ml.g6e.xlarge", 4, 32, 1, "NVIDIA L40S"),
        ("ml.g6e.48xlarge", 192, 1536, 8, "NVIDIA L40S"),
    ],
)
def test_published_sizes(
    instance_type: str, vcpus: int, memory_gib: float, gpus: int, gpu_model: str | None
) -> None:
    assert instance_spec(instance_type) == InstanceSpec(instance_type, vcpus, memory_gib, gpus, gpu_model)


@pytest.mark.parametrize(
    ("instance_type", "vcpus", "memory_gib", "chips"),
    [
        ("ml.inf2.xlarge", 4, 16, 1),
        ("ml.inf2.48xlarge", 192, 768, 12),
        ("ml.trn1.2xlarge", 8, 32, 1),
        ("ml.trn1.32xlarge", 128, 512, 16),
    ],
)
def test_neuron_instances_have_no_gpus(instance_type: str, vcpus: int, memory_gib: float, chips: int) -> None:
    spec = instance_spec(instance_type)
    assert (spec.vcpus, spec.memory_gib, spec.gpus, spec.neuron_chips) == (vcpus, memory_gib, 0, chips)


@pytest.mark.parametrize("bad", ["ml.m5.huge", "m5.xlarge", "", "ML.M5.XLARGE"])
def test_unknown_type_names_the_known_ones(bad: str) -> None:
    with pytest.raises(SpecError) as info:
        instance_spec(bad)
    (problem,) = info.value.problems
    assert problem.path == "transformResources.instanceType"
    assert problem.value == bad
    assert "ml.m5.xlarge" in problem.constraint and "ml.g5.48xlarge" in problem.constraint
    assert f"Value '{bad}' at 'transformResources.instanceType'" in str(info.value)


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.m5.xlarge", {"CPU": 4.0, "ml.m5.xlarge": 1.0}),
        ("ml.g5.12xlarge", {"CPU": 48.0, "GPU": 4.0, "ml.g5.12xlarge": 1.0}),
        # Neuron chips are not Ray GPUs: the node advertises CPUs and its type only.
        ("ml.inf2.xlarge", {"CPU": 4.0, "ml.inf2.xlarge": 1.0}),
    ],
)
def test_node_resources_name_the_type(instance_type: str, expected: dict[str, float]) -> None:
    assert node_resources(instance_type) == expected


def test_node_resources_of_an_unknown_type_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"ml\.m5\.huge"):
        node_resources("ml.m5.huge")


def test_advertised_types_are_the_ml_resources() -> None:
    node = {"CPU": 4.0, "memory": 1e9, "node:10.0.0.1": 1.0, "ml.m5.xlarge": 1.0, "ml.c5.xlarge": 0.0}
    assert advertised_types(node) == {"ml.m5.xlarge": 1.0}
    assert advertised_types({"CPU": 8.0, "GPU": 1.0, "accelerator_type:A10G": 1.0}) == {}
