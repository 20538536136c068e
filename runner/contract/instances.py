"""What each SageMaker Batch Transform ``ml.*`` instance type has: vCPUs, memory and accelerators.

``pool.py`` sizes one Ray placement group per logical instance from this table. Numbers are the
published EC2 sizes of the underlying instance (``ml.m5.xlarge`` = ``m5.xlarge``). Every key is a
value of botocore's ``TransformInstanceType`` enum (a unit test keeps it so). The end of the module
says how a Ray node advertises the type it stands for (``node_resources``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from runner.errors import Problem, SpecError


@dataclass(frozen=True)
class InstanceSpec:
    """One instance type. ``gpus`` counts NVIDIA GPUs only (what Ray's ``GPU`` resource means);
    AWS Inferentia/Trainium chips are in ``neuron_chips``."""

    instance_type: str
    vcpus: int
    memory_gib: float
    gpus: int = 0
    gpu_model: str | None = None
    neuron_chips: int = 0


# Sizes of the regular families: "large" = 2 vCPUs, "xlarge" = 4, "<n>xlarge" = 4n.
_SIZE_VCPUS = {"large": 2, "xlarge": 4}


def _vcpus(size: str) -> int:
    return _SIZE_VCPUS.get(size) or 4 * int(size.removesuffix("xlarge"))


def _regular(family: str, gib_per_vcpu: float, sizes: str) -> dict[str, InstanceSpec]:
    """A CPU family whose memory is a fixed multiple of its vCPUs (m: 4, c: 2, r: 8 GiB per vCPU)."""
    out = {}
    for size in sizes.split():
        name = f"ml.{family}.{size}"
        out[name] = InstanceSpec(name, _vcpus(size), float(_vcpus(size) * gib_per_vcpu))
    return out


def _gpu(family: str, model: str, gib_per_vcpu: float, sizes: dict[str, int]) -> dict[str, InstanceSpec]:
    """A GPU family: size -> GPU count (memory again a fixed multiple of the vCPUs)."""
    out = {}
    for size, gpus in sizes.items():
        name = f"ml.{family}.{size}"
        out[name] = InstanceSpec(name, _vcpus(size), float(_vcpus(size) * gib_per_vcpu), gpus, model)
    return out


def _explicit(rows: list[tuple[str, int, float, int]], model: str | None = None) -> dict[str, InstanceSpec]:
    """Families whose memory is not a multiple of the vCPUs: (type, vCPUs, GiB, GPUs)."""
    return {
        name: InstanceSpec(name, vcpus, float(gib), gpus, model if gpus else None)
        for name, vcpus, gib, gpus in rows
    }


def _neuron(rows: list[tuple[str, int, float, int]]) -> dict[str, InstanceSpec]:
    return {
        name: InstanceSpec(name, vcpus, float(gib), neuron_chips=chips) for name, vcpus, gib, chips in rows
    }


_SIX_SIZES = "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 32xlarge"
_SEVEN_SIZES = "large xlarge 2xlarge 4xlarge 8xlarge 12xlarge 16xlarge 24xlarge 48xlarge"
# g4dn, g5, g6 and g6e share one layout: 1 GPU up to 16xlarge except 12xlarge (4), then 4 and 8.
_G_GPUS = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 4, "16xlarge": 1}

INSTANCE_TYPES: Mapping[str, InstanceSpec] = MappingProxyType(
    {
        **_regular("m4", 4, "xlarge 2xlarge 4xlarge 10xlarge 16xlarge"),
        **_explicit(
            [
                ("ml.c4.xlarge", 4, 7.5, 0),
                ("ml.c4.2xlarge", 8, 15, 0),
                ("ml.c4.4xlarge", 16, 30, 0),
                ("ml.c4.8xlarge", 36, 60, 0),
            ]
        ),
        **_regular("c5", 2, "xlarge 2xlarge 4xlarge 9xlarge 18xlarge"),
        **_regular("m5", 4, "large xlarge 2xlarge 4xlarge 12xlarge 24xlarge"),
        **_regular("m6i", 4, _SIX_SIZES),
        **_regular("c6i", 2, _SIX_SIZES),
        **_regular("r6i", 8, _SIX_SIZES),
        **_regular("m7i", 4, _SEVEN_SIZES),
        **_regular("c7i", 2, _SEVEN_SIZES),
        **_regular("r7i", 8, _SEVEN_SIZES),
        **_explicit(
            [("ml.p2.xlarge", 4, 61, 1), ("ml.p2.8xlarge", 32, 488, 8), ("ml.p2.16xlarge", 64, 732, 16)],
            "NVIDIA K80",
        ),
        **_explicit(
            [("ml.p3.2xlarge", 8, 61, 1), ("ml.p3.8xlarge", 32, 244, 4), ("ml.p3.16xlarge", 64, 488, 8)],
            "NVIDIA V100",
        ),
        **_gpu("g4dn", "NVIDIA T4", 4, _G_GPUS),
        **_gpu("g5", "NVIDIA A10G", 4, {**_G_GPUS, "24xlarge": 4, "48xlarge": 8}),
        **_gpu("g6", "NVIDIA L4", 4, {**_G_GPUS, "24xlarge": 4, "48xlarge": 8}),
        **_gpu("g6e", "NVIDIA L40S", 8, {**_G_GPUS, "24xlarge": 4, "48xlarge": 8}),
        **_neuron(
            [
                ("ml.inf2.xlarge", 4, 16, 1),
                ("ml.inf2.8xlarge", 32, 128, 1),
                ("ml.inf2.24xlarge", 96, 384, 6),
                ("ml.inf2.48xlarge", 192, 768, 12),
            ]
        ),
        **_neuron([("ml.trn1.2xlarge", 8, 32, 1), ("ml.trn1.32xlarge", 128, 512, 16)]),
    }
)


def instance_spec(instance_type: str) -> InstanceSpec:
    """The sizes of ``instance_type``; an unknown type is a SpecError listing the known ones."""
    try:
        return INSTANCE_TYPES[instance_type]
    except (KeyError, TypeError):
        raise SpecError([unknown_instance_type(instance_type)]) from None


def unknown_instance_type(instance_type: object) -> Problem:
    known = ", ".join(INSTANCE_TYPES)
    return Problem(
        "transformResources.instanceType",
        instance_type,
        f"Member must be one of the instance types this runner knows: [{known}]",
    )


# ---- how a Ray node says which ml instance type it stands for ----------------------------------
# A node that is (like) one instance of type T advertises the custom resource named exactly T with
# the value 1 (``ray start --resources='{"ml.m5.xlarge": 1}'``): the value is how many instances
# of T the node holds. ``pool.py`` then asks for T in every bundle of an instance of T.
NODE_RESOURCE_PREFIX = "ml."


def node_resources(instance_type: str) -> dict[str, float]:
    """What a node standing for one instance of ``instance_type`` advertises, custom resource included."""
    spec = instance_spec(instance_type)
    resources = {"CPU": float(spec.vcpus), instance_type: 1.0}
    if spec.gpus:
        resources["GPU"] = float(spec.gpus)
    return resources


def advertised_types(resources: Mapping[str, float]) -> dict[str, float]:
    """The ml instance types among a node's (or a cluster's) resources, with their amounts."""
    return {k: float(v) for k, v in resources.items() if k.startswith(NODE_RESOURCE_PREFIX) and v > 0}
