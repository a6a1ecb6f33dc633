"""The AIDataPolicy CustomResourceDefinition: structure, documentation, limits and CEL rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from aidp import catalog, model, paths
from aidp.catalog import crd as crd_gen

CRD_FILE = "aidp.io_aidatapolicies.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((paths.crds_dir() / CRD_FILE).read_text()) if d]
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    result: dict[str, Any] = v
    return result


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def rules(node: dict[str, Any]) -> list[dict[str, str]]:
    result: list[dict[str, str]] = node.get("x-kubernetes-validations", [])
    return result


def test_names_scope_and_subresources(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "aidatapolicies.aidp.io"
    spec = crd["spec"]
    assert spec["group"] == model.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == model.KIND
    assert spec["names"]["plural"] == model.PLURAL
    assert spec["names"]["shortNames"] == ["aidp"]
    assert spec["names"]["categories"] == ["aidp"]
    assert version["name"] == model.VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Provider", "Enforcement", "Workloads", "Violations", "Ready", "Expires", "Age"]
    assert columns["Provider"]["jsonPath"] == ".spec.provider"
    assert columns["Enforcement"]["jsonPath"] == ".spec.enforcement"
    assert columns["Workloads"]["jsonPath"] == ".status.matchedWorkloads"
    assert columns["Violations"]["jsonPath"] == ".status.violations"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Expires"]["jsonPath"] == ".spec.review.expires"
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "description": "Time since the policy was created.",
        "jsonPath": ".metadata.creationTimestamp",
    }


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in walk(schema)
        # Kubernetes forbids anything but name/generateName restrictions on the root metadata.
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []
    assert at(schema, "metadata") == {"type": "object"}


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and path not in ("", ".metadata"):
            assert "properties" in node or "additionalProperties" in node, path


def test_lists_and_strings_are_bounded_for_cel_costs(schema: dict[str, Any]) -> None:
    for path, node in walk(at(schema, "spec"), ".spec"):
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
            assert node.get("x-kubernetes-list-type") in ("atomic", "set", "map"), path
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node, f"{path} has no maxLength"
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_required_fields_defaults_and_enums(schema: dict[str, Any]) -> None:
    assert schema["required"] == ["spec"]
    spec = at(schema, "spec")
    assert spec["required"] == ["provider", "workloadSelector", "purpose", "retention"]
    assert at(schema, "spec.provider")["enum"] == list(model.PROVIDERS)
    assert at(schema, "spec.dataResidency")["enum"] == crd_gen.all_regions(catalog.builtin())
    assert at(schema, "spec.consent.allowedBases.[]")["enum"] == list(model.LAWFUL_BASES)
    assert at(schema, "spec.enforcement")["enum"] == list(model.ENFORCEMENT_MODES)
    assert at(schema, "spec.enforcement")["default"] == "deny"
    assert at(schema, "spec.consent")["default"] == {}
    assert at(schema, "spec.consent.required")["default"] is True
    assert at(schema, "spec.consent.allowedBases")["default"] == []
    assert at(schema, "spec.retention")["required"] == ["maxDays"]
    assert at(schema, "spec.retention.requireZeroDataRetention")["default"] is False
    max_days = at(schema, "spec.retention.maxDays")
    assert (max_days["type"], max_days["minimum"], max_days["maximum"]) == (
        "integer",
        0,
        model.MAX_RETENTION_DAYS,
    )
    port = at(schema, "spec.endpoints.[].port")
    assert (port["minimum"], port["maximum"], port["default"]) == (1, 65535, 443)
    assert at(schema, "spec.endpoints.[].host")["pattern"] == model.HOST_PATTERN
    assert at(schema, "spec.endpoints")["maxItems"] == model.MAX_ENDPOINTS
    assert at(schema, "spec.purpose")["maxLength"] == model.MAX_PURPOSE_LENGTH
    assert at(schema, "spec.review.expires")["pattern"] == r"^\d{4}-\d{2}-\d{2}$"
    assert at(schema, "spec.workloadSelector.matchExpressions.[].operator")["enum"] == list(
        model.SELECTOR_OPERATORS
    )
    for path in ("spec.dataCategories.allowed", "spec.dataCategories.forbidden", "spec.serviceAccountNames"):
        assert at(schema, path)["default"] == []
        assert at(schema, path)["x-kubernetes-list-type"] == "set"


def test_host_pattern_accepts_dns_names_only() -> None:
    host = re.compile(model.HOST_PATTERN)
    for ok in (
        "api.openai.com",
        "eu.api.openai.com",
        "myres.openai.azure.com",
        "a-b.example.io",
        "x1.xn--p1ai",
    ):
        assert host.match(ok), ok
    for bad in (
        "localhost",
        "10.0.0.1",
        "https://api.openai.com",
        "API.openai.com",
        "api.openai.com:443",
        "a..b",
        "-a.b",
        "a.b/c",
        "*.openai.com",
        "a.1",
    ):
        assert not host.match(bad), bad


def test_cel_rules_for_every_contract_rule(schema: dict[str, Any]) -> None:
    def messages(path: str) -> list[str]:
        return [r["message"] for r in rules(at(schema, path))]

    assert messages("spec.workloadSelector") == [
        "workloadSelector must set matchLabels or matchExpressions; an empty selector would select every pod"
    ]
    assert messages("spec.dataCategories") == [
        "dataCategories.allowed and dataCategories.forbidden must not share a category"
    ]
    assert messages("spec.endpoints") == ["endpoints must not list the same host twice"]
    assert messages("spec.consent") == [
        "consent.allowedBases must list at least one lawful basis when consent.required is true"
    ]
    assert messages("spec.workloadSelector.matchExpressions.[]") == [
        "matchExpressions with operator In or NotIn must have non-empty values",
        "matchExpressions with operator Exists or DoesNotExist must not have values",
    ]
    assert messages("spec.review.expires") == ["review.expires must be a valid calendar date (YYYY-MM-DD)"]
    assert messages("spec.purpose") == ["purpose must not be blank"]
    for path, node in walk(schema):
        for rule in rules(node):
            assert set(rule) == {"rule", "message"}, path
            assert rule["rule"].strip() and rule["message"].strip(), path


def test_status_schema(schema: dict[str, Any]) -> None:
    status = at(schema, "status")
    assert set(status["properties"]) == {
        "observedGeneration",
        "phase",
        "conditions",
        "endpoints",
        "matchedWorkloads",
        "violations",
        "lastAuditTime",
        "revision",
    }
    assert at(schema, "status.phase")["enum"] == [
        model.PHASE_ACTIVE,
        model.PHASE_EXPIRED,
        model.PHASE_DEGRADED,
    ]
    conditions = at(schema, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert set(conditions["items"]["required"]) == {"type", "status"}
    assert at(schema, "status.lastAuditTime")["format"] == "date-time"
    assert set(at(schema, "status.endpoints.[]")["properties"]) == {"host", "port", "addresses"}
