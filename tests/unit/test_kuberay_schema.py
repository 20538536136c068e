"""deploy/raycluster.yaml and deploy/rayjob.yaml pass KubeRay's own CRD schemas (ray.io/v1, vendored in
tests/data/kuberay/), with unknown fields as errors: the API server prunes a field its structural schema
does not list, so a misspelled field would otherwise vanish without a word.

Not checked here: the CEL rules (x-kubernetes-validations) and string formats, which jsonschema ignores."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = ROOT / "tests" / "data" / "kuberay"
MANIFESTS = ("raycluster.yaml", "rayjob.yaml")
SCHEMA_FILES = {"RayCluster": "raycluster.v1.schema.json", "RayJob": "rayjob.v1.schema.json"}


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `schema` that rejects unknown fields the way Kubernetes pruning drops them: every
    object schema with `properties` and neither `additionalProperties` nor
    `x-kubernetes-preserve-unknown-fields: true` gets `additionalProperties: false`."""
    out = copy.deepcopy(schema)
    _close(out)
    return out


def _close(node: Any) -> None:
    if isinstance(node, list):  # `items` as a list of schemas
        for sub in node:
            _close(sub)
        return
    if not isinstance(node, dict):  # absent, or `additionalProperties: true/false`
        return
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        node["additionalProperties"] = False
    # Walk schemas only: the keys of `properties` are field names, which may look like keywords.
    for sub in node.get("properties", {}).values():
        _close(sub)
    for key in ("items", "additionalProperties", "not", "anyOf", "oneOf", "allOf"):
        _close(node.get(key))


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file:kind/name, document) for every RayCluster and RayJob in deploy/; other kinds are skipped."""
    found = []
    for name in MANIFESTS:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if isinstance(doc, dict) and doc.get("kind") in SCHEMA_FILES:
                found.append((f"{name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


MANIFEST_DOCS = manifests()


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft7Validator]:
    out = {}
    for kind, file in SCHEMA_FILES.items():
        schema = closed(json.loads((SCHEMAS / file).read_text()))
        Draft7Validator.check_schema(schema)
        out[kind] = Draft7Validator(schema)
    return out


def errors(validators: dict[str, Draft7Validator], doc: dict[str, Any]) -> list[str]:
    """Every schema violation in `doc`, as `/json/path: message`, sorted."""
    return sorted(
        "/" + "/".join(str(p) for p in e.absolute_path) + ": " + e.message
        for e in validators[doc["kind"]].iter_errors(doc)
    )


def test_every_kind_has_a_manifest() -> None:
    assert sorted({doc["kind"] for _, doc in MANIFEST_DOCS}) == sorted(SCHEMA_FILES)


@pytest.mark.parametrize(("where", "doc"), MANIFEST_DOCS, ids=[where for where, _ in MANIFEST_DOCS])
def test_manifest_passes_kuberay_schema(
    validators: dict[str, Draft7Validator], where: str, doc: dict[str, Any]
) -> None:
    assert doc["apiVersion"] == "ray.io/v1", where
    assert errors(validators, doc) == [], where


def _doc(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(doc for _, doc in MANIFEST_DOCS if doc["kind"] == kind))


def _cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]
    return spec


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_misspelled_head_field_fails(validators: dict[str, Draft7Validator], kind: str) -> None:
    doc = _doc(kind)
    head = _cluster_spec(doc)["headGroupSpec"]
    head["rayStartParam"] = head.pop("rayStartParams")
    found = errors(validators, doc)
    assert any("'rayStartParam' was unexpected" in e and "/headGroupSpec:" in e for e in found), found


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_misspelled_worker_groups_fails(validators: dict[str, Draft7Validator], kind: str) -> None:
    doc = _doc(kind)
    spec = _cluster_spec(doc)
    spec["workerGroupSpec"] = spec.pop("workerGroupSpecs")
    found = errors(validators, doc)
    assert any("'workerGroupSpec' was unexpected" in e for e in found), found


@pytest.mark.parametrize("kind", sorted(SCHEMA_FILES))
def test_wrong_type_fails(validators: dict[str, Draft7Validator], kind: str) -> None:
    doc = _doc(kind)
    _cluster_spec(doc)["workerGroupSpecs"][0]["replicas"] = "two"
    found = errors(validators, doc)
    wanted = "/workerGroupSpecs/0/replicas: 'two' is not of type 'integer'"
    assert any(e.endswith(wanted) for e in found), found


def test_unknown_field_deep_in_pod_template_fails(validators: dict[str, Draft7Validator]) -> None:
    doc = _doc("RayCluster")
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    found = errors(validators, doc)
    assert any("'imagePullPolicyy' was unexpected" in e for e in found), found


def test_closed_leaves_maps_and_preserved_objects_open() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "free": {"type": "object", "properties": {"a": {}}, "x-kubernetes-preserve-unknown-fields": True},
            "list": {"type": "array", "items": {"type": "object", "properties": {"b": {"type": "integer"}}}},
            "either": {"anyOf": [{"type": "object", "properties": {"c": {}}}]},
            # A field named like a keyword is a field, not a schema to close.
            "properties": {"type": "object"},
        },
    }
    out = closed(schema)
    assert "additionalProperties" not in schema  # the original is untouched
    v = Draft7Validator(out)
    assert v.is_valid({"labels": {"x": "y"}, "free": {"z": 1}, "list": [{"b": 1}], "properties": {"p": 1}})
    assert not v.is_valid({"unknown": 1})
    assert not v.is_valid({"list": [{"b": 1, "unknown": 1}]})
    assert not v.is_valid({"either": {"c": 1, "unknown": 1}})
    assert not v.is_valid({"labels": {"x": 1}})
