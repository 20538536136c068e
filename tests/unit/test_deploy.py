"""deploy/: every YAML parses; the Ray cluster launcher config passes Ray's own schema; the KubeRay
manifests have the fields the operator needs; every node type stands for a real ml.* instance type
with that type's sizes; the bundled job parses; the runner's wheel builds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from runner.contract.instances import INSTANCE_TYPES, advertised_types, instance_spec, node_resources
from runner.contract.spec import parse_transform_job
from runner.cost.prices import ec2_twin
from runner.errors import WorkerStartupError
from runner.model.artifacts import parse_create_model

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = ("raycluster.yaml", "rayjob.yaml")
# Resources Ray defines itself; any other resource name must be an ml.* instance type.
RAY_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}
WHEEL_BUILD_LIMIT_S = 60


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d is not None]


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    """(file, RayCluster spec) for the RayCluster and the RayJob's embedded cluster."""
    out = []
    for name in KUBERAY:
        for doc in documents(name):
            if doc["kind"] == "RayCluster":
                out.append((name, doc["spec"]))
            elif doc["kind"] == "RayJob":
                out.append((name, doc["spec"]["rayClusterSpec"]))
    return out


def advertised_resources(ray_start_params: dict[str, str]) -> dict[str, float]:
    """What a pod started with these rayStartParams advertises to Ray (CPU, GPU, custom)."""
    out = {"CPU": float(ray_start_params["num-cpus"])}
    if "num-gpus" in ray_start_params:
        out["GPU"] = float(ray_start_params["num-gpus"])
    if "resources" in ray_start_params:
        out.update(json.loads(json.loads(ray_start_params["resources"])))
    return out


def assert_runner_places_only(ml_type: str, node: dict[str, float]) -> None:
    """On a cluster of this node, the runner's bundles ask for the node's type: an instance of it
    fits (with one or several workers), one of any other type is refused, naming the node's type."""
    from runner.engine.sizing import check_fits, size_instances

    assert advertised_types(node) == {ml_type: 1.0}
    for workers in (1, 2, 3):
        sizing = size_instances(instance_spec(ml_type), 1, workers, node, local=False)
        assert sizing.bundle()[ml_type] == pytest.approx(1 / workers, abs=1e-4)
        check_fits(ml_type, 1, sizing, [node])
    other = "ml.c5.xlarge"
    sizing = size_instances(instance_spec(other), 1, 1, node, local=False)
    with pytest.raises(WorkerStartupError, match=f"stand for these ml instance types: {re.escape(ml_type)}"):
        check_fits(other, 1, sizing, [node])


def ray_version() -> str:
    import ray

    return str(ray.__version__)


@pytest.mark.parametrize("path", sorted(p.name for p in DEPLOY.glob("*.yaml")))
def test_every_yaml_parses(path: str) -> None:
    assert documents(path)


def test_cluster_launcher_config_passes_rays_schema() -> None:
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = documents("cluster-aws.yaml")[0]
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


def test_cluster_launcher_node_types_are_ml_instances() -> None:
    config = documents("cluster-aws.yaml")[0]
    kinds = set()
    for name, node in config["available_node_types"].items():
        if name == config["head_node_type"]:
            assert node["resources"].get("CPU") == 0  # the head runs no model workers
            continue
        custom = set(node["resources"]) - RAY_RESOURCES
        assert len(custom) == 1, name
        (ml_type,) = custom
        spec = INSTANCE_TYPES[ml_type]
        assert node["resources"][ml_type] == 1
        assert node["resources"]["CPU"] == spec.vcpus
        assert node["resources"].get("GPU", 0) == spec.gpus
        assert node["resources"] == node_resources(ml_type)  # the scheme runner/engine/pool.py places by
        assert_runner_places_only(ml_type, node["resources"])
        assert node["node_config"]["InstanceType"] == ec2_twin(ml_type)
        kinds.add("gpu" if spec.gpus else "cpu")
    assert kinds == {"cpu", "gpu"}


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_required_fields(name: str) -> None:
    docs = documents(name)
    ray_docs = [d for d in docs if d["apiVersion"] == "ray.io/v1"]
    assert ray_docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    for doc in ray_docs:
        assert doc["kind"] in ("RayCluster", "RayJob")
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])


@pytest.mark.parametrize(("name", "spec"), cluster_specs(), ids=lambda v: v if isinstance(v, str) else "")
def test_kuberay_cluster_spec(name: str, spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == ray_version(), "rayVersion must match the Ray the image installs"
    head = spec["headGroupSpec"]
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["template"]["spec"]["containers"][0]["image"]
    kinds = set()
    for group in spec["workerGroupSpecs"]:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", group["groupName"])
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        params = group["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), "rayStartParams values are strings"
        # KubeRay passes the value to `ray start --resources=<value>` as is: a quoted JSON object.
        resources = json.loads(json.loads(params["resources"]))
        assert len(resources) == 1 and set(resources) <= set(INSTANCE_TYPES), resources
        (ml_type,) = resources
        spec_ = INSTANCE_TYPES[ml_type]
        assert resources[ml_type] == 1
        assert group["groupName"] == ml_type.replace(".", "-")
        assert int(params["num-cpus"]) == spec_.vcpus
        assert int(params.get("num-gpus", "0")) == spec_.gpus
        advertised = advertised_resources(params)
        assert advertised == node_resources(ml_type)  # the scheme runner/engine/pool.py places by
        assert_runner_places_only(ml_type, advertised)
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        limits = container["resources"]["limits"]
        assert int(limits.get("nvidia.com/gpu", "0")) == spec_.gpus
        assert float(limits["memory"].removesuffix("Gi")) <= spec_.memory_gib
        assert pod["nodeSelector"]["node.kubernetes.io/instance-type"] == ec2_twin(ml_type)
        kinds.add("gpu" if spec_.gpus else "cpu")
    assert kinds == {"cpu", "gpu"}


def test_rayjob_runs_the_bundled_requests() -> None:
    docs = {d["kind"]: d for d in documents("rayjob.yaml")}
    job = docs["RayJob"]["spec"]
    assert job["entrypoint"].split()[:2] == ["batch-transform", "run"]
    assert "--ray-address auto" in job["entrypoint"]
    data = docs["ConfigMap"]["data"]
    request = json.loads(data["job.json"])
    spec = parse_transform_job(request)
    model = parse_create_model(json.loads(data["model.json"]))
    assert model.name == spec.model_name
    # The files the entrypoint names are the ConfigMap's keys, mounted on the head.
    mount = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert f"{mount['mountPath']}/job.json" in job["entrypoint"]
    assert f"{mount['mountPath']}/model.json" in job["entrypoint"]
    # The cluster has a group for the job's instance type, with a pod per instance.
    resources = request["TransformResources"]
    group = next(
        g
        for g in job["rayClusterSpec"]["workerGroupSpecs"]
        if resources["InstanceType"] in json.loads(json.loads(g["rayStartParams"]["resources"]))
    )
    assert group["replicas"] >= resources["InstanceCount"]
    # And the runner can place the job on the pods the group starts (the head advertises no type).
    from runner.engine.sizing import check_fits, size_instances

    head = {"CPU": float(job["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"])}
    pods = [advertised_resources(group["rayStartParams"])] * group["replicas"]
    cluster: dict[str, float] = {}
    for node in [head, *pods]:
        for k, v in node.items():
            cluster[k] = cluster.get(k, 0.0) + v
    instance = instance_spec(resources["InstanceType"])
    sizing = size_instances(
        instance, resources["InstanceCount"], request["MaxConcurrentTransforms"], cluster, False
    )
    assert sizing.node_resource == resources["InstanceType"]
    check_fits(resources["InstanceType"], resources["InstanceCount"], sizing, [head, *pods])


def test_dockerfile_installs_the_wheel_and_ray() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "pip wheel --no-deps" in text
    assert "WHEEL=$(ls /wheels/*.whl)" in text
    assert re.search(r'pip install .*"\$\{WHEEL\}\$\{ONNX_EXTRA:\+\[\$ONNX_EXTRA\]\}" "ray\[default\]', text)
    assert f"ARG RAY_VERSION={ray_version()}" in text
    # What the wheel stage copies is all the wheel needs (checked by the build test below).
    assert re.findall(r"^COPY (?!--from)(.+?) \./", text, re.M) == ["pyproject.toml README.md", "runner"]


def test_the_wheel_builds(tmp_path: Path) -> None:
    """`pip wheel . --no-deps` from the same files the Dockerfile's wheel stage copies."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "runner", src / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "w"),
            ".",
        ],
        cwd=src,
        check=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
        timeout=WHEEL_BUILD_LIMIT_S * 2,
    )
    assert time.monotonic() - t0 < WHEEL_BUILD_LIMIT_S
    (wheel,) = (tmp_path / "w").glob("batch_transform_runner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "runner/cli/main.py",
        "runner/cost/report.py",
        "runner/cost/prices.py",
        "runner/cost/compare.py",
    ):
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "batch-transform = runner.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_schema_check_is_real() -> None:
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = documents("cluster-aws.yaml")[0]
    config["available_node_types"]["ml-m5-xlarge"]["resources"]["ml.m5.xlarge"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


# What each base's own Python is: Ubuntu 22.04 brings 3.10, too old for requires-python.
UBUNTU_PYTHON = {"ubuntu20.04": (3, 8), "ubuntu22.04": (3, 10), "ubuntu24.04": (3, 12)}


def build_commands() -> list[str]:
    """Every `docker build` of the image that the Dockerfile's header and docs/deploy.md give."""
    out = []
    for text in ((DEPLOY / "Dockerfile").read_text(), (ROOT / "docs" / "deploy.md").read_text()):
        joined = re.sub(r"\\\n\s*#?\s*", " ", text)
        out += [m.group(0) for m in re.finditer(r"docker build -f deploy/Dockerfile[^\n]*", joined)]
    return out


def python_of(base: str) -> tuple[int, int]:
    if base.startswith("python:"):
        major, minor = base.split(":")[1].split("-")[0].split(".")[:2]
        return int(major), int(minor)
    release = re.search(r"ubuntu\d+\.\d+", base)
    assert release is not None, f"unknown base image {base}: add its Python here"
    return UBUNTU_PYTHON[release.group(0)]


def test_every_image_has_python_311_and_one_onnxruntime() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    default_base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    default_extra = re.search(r"^ARG ONNX_EXTRA=(\S*)", text, re.M)
    assert default_base and default_extra
    extras = set(re.findall(r"^([a-z0-9-]+) = ", (ROOT / "pyproject.toml").read_text(), re.M))
    commands = build_commands()
    assert len(commands) >= 4, commands  # CPU and GPU, in the Dockerfile and in the docs
    flavours = set()
    for command in commands:
        base = re.search(r"--build-arg BASE_IMAGE=(\S+)", command)
        extra = re.search(r"--build-arg ONNX_EXTRA=(\S+)", command)
        base_image = base.group(1) if base else default_base.group(1)
        onnx = extra.group(1) if extra else default_extra.group(1)
        assert python_of(base_image) >= (3, 11), command
        assert onnx in extras and onnx in ("onnx", "onnx-gpu"), command
        assert "onnxruntime" not in command, "one flavour a build, through ONNX_EXTRA: " + command
        assert ("cuda" in base_image) == (onnx == "onnx-gpu"), command
        flavours.add(onnx)
    assert flavours == {"onnx", "onnx-gpu"}
    # The build itself refuses an older Python and an image with both flavours.
    assert "assert v >= (3, 11)" in text and "both onnxruntime flavours installed" in text


def test_the_launcher_head_can_reach_its_workers() -> None:
    """The cluster launcher's autoscaler runs on the head and reaches workers over SSH with rsync."""
    text = (DEPLOY / "Dockerfile").read_text()
    installed = re.search(r"apt-get install -y --no-install-recommends ([^&]+)&&", text)
    assert installed is not None
    assert {"openssh-client", "rsync", "wget"} <= set(installed.group(1).split())


def pod_specs() -> list[dict[str, Any]]:
    specs = []
    for _, spec in cluster_specs():
        specs.append(spec["headGroupSpec"]["template"]["spec"])
        specs += [g["template"]["spec"] for g in spec["workerGroupSpecs"]]
    return specs


def test_every_service_account_named_is_shipped_with_an_irsa_role() -> None:
    named = {pod["serviceAccountName"] for pod in pod_specs()}
    assert named == {"batch-transform"}
    (account,) = [d for d in documents("serviceaccount.yaml") if d["kind"] == "ServiceAccount"]
    assert account["metadata"]["name"] in named
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/batch-transform-node", role)


def policy(name: str) -> dict[str, Any]:
    document = json.loads((DEPLOY / "iam" / name).read_text())
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Action"] and statement["Resource"]
    return document


def actions(document: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for statement in document["Statement"]:
        action = statement["Action"]
        out |= {action} if isinstance(action, str) else set(action)
    return out


def test_iam_policies_cover_the_launcher_and_the_nodes() -> None:
    node, launcher = policy("node-policy.json"), policy("launcher-policy.json")
    # The nodes: read inputs and models, write outputs by multipart upload (and abort it), pull the image.
    assert {"s3:GetObject", "s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload"} <= actions(node)
    assert "ecr:BatchGetImage" in actions(node)
    # The launcher (and the head's autoscaler): start, stop and tag nodes, and give them their role.
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "iam:PassRole"} <= actions(
        launcher
    )
    passed = next(s["Resource"] for s in launcher["Statement"] if s["Action"] == "iam:PassRole")
    config = documents("cluster-aws.yaml")[0]
    profiles = {
        t["node_config"]["IamInstanceProfile"]["Name"] for t in config["available_node_types"].values()
    }
    assert profiles == {"batch-transform-head", "batch-transform-node"}
    assert {arn.rsplit("/", 1)[1] for arn in passed} == profiles
