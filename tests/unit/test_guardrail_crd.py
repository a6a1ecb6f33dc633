"""The ClusterAIDataPolicy CustomResourceDefinition: names, scope, printer columns, documentation,
limits, defaults, enums kept equal to the AIDataPolicy CRD's (the provider catalog's), CEL rules with
the parser's messages, the status, and the chart's copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aidp import catalog, guardrail, model, paths
from aidp.catalog import crd as crd_gen
from tests.unit.test_crd import at, rules, walk

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = "aidp.io_clusteraidatapolicies.yaml"


def load(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert len(docs) == 1
    doc: dict[str, Any] = docs[0]
    return doc


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return load(paths.crds_dir() / CRD_FILE)


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (v,) = crd["spec"]["versions"]
    result: dict[str, Any] = v
    return result


@pytest.fixture(scope="module")
def schema(version: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def test_names_scope_and_subresources(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{guardrail.CLUSTER_PLURAL}.{model.GROUP}"
    spec = crd["spec"]
    assert spec["group"] == model.GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == guardrail.CLUSTER_KIND == "ClusterAIDataPolicy"
    assert spec["names"]["plural"] == guardrail.CLUSTER_PLURAL == "clusteraidatapolicies"
    assert spec["names"]["shortNames"] == [guardrail.CLUSTER_SHORT_NAME] == ["caidp"]
    assert spec["names"]["categories"] == ["aidp"]
    assert version["name"] == model.VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_the_chart_carries_an_identical_copy() -> None:
    source = ROOT / "crds" / CRD_FILE
    copy = ROOT / "charts" / "aidp" / "crds" / CRD_FILE
    assert copy.read_bytes() == source.read_bytes(), f"cp crds/{CRD_FILE} charts/aidp/crds/{CRD_FILE}"


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Namespaces", "Policies", "OutOfBounds", "UnapprovedAI", "Ready", "Age"]
    assert columns["Namespaces"]["jsonPath"] == ".status.governedNamespaces"
    assert columns["Policies"]["jsonPath"] == ".status.policies"
    assert columns["OutOfBounds"]["jsonPath"] == ".status.outOfBounds"
    assert columns["UnapprovedAI"]["jsonPath"] == ".spec.unapprovedAI"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Age"]["type"] == "date"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"
    assert all(c["description"].strip() for c in columns.values())


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    missing = [
        path
        for path, node in walk(schema)
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []
    assert at(schema, "metadata") == {"type": "object"}


def test_schema_is_structural_and_bounded(schema: dict[str, Any]) -> None:
    for path, node in walk(schema):
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object" and path not in ("", ".metadata"):
            assert "properties" in node or "additionalProperties" in node, path
    bounded = [*walk(at(schema, "spec"), ".spec"), *walk(at(schema, "status"), ".status")]
    for path, node in bounded:
        if node["type"] == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
            assert node.get("x-kubernetes-list-type") in ("atomic", "set", "map"), path
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node or "format" in node, f"{path} has no maxLength"
        if node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_required_fields_defaults_ranges_and_enums(schema: dict[str, Any]) -> None:
    assert schema["required"] == ["spec"]
    assert at(schema, "spec")["required"] == ["namespaceSelector"]
    assert set(at(schema, "spec")["properties"]) == {
        "namespaceSelector",
        "providers",
        "dataResidency",
        "consent",
        "retention",
        "dataCategories",
        "review",
        "unapprovedAI",
    }
    # the same enums as the AIDataPolicy CRD, which hack/gen-providers generates from the catalog
    namespaced = load(paths.crds_dir() / "aidp.io_aidatapolicies.yaml")
    (ns_version,) = namespaced["spec"]["versions"]
    ns_schema = ns_version["schema"]["openAPIV3Schema"]
    assert at(schema, "spec.providers.[]")["enum"] == at(ns_schema, "spec.provider")["enum"]
    assert at(schema, "spec.providers.[]")["enum"] == list(catalog.builtin().names)
    assert at(schema, "spec.dataResidency.[]")["enum"] == at(ns_schema, "spec.dataResidency")["enum"]
    assert at(schema, "spec.dataResidency.[]")["enum"] == crd_gen.all_regions(catalog.builtin())
    assert at(schema, "spec.consent.allowedBases.[]")["enum"] == list(model.LAWFUL_BASES)
    assert at(schema, "spec.unapprovedAI")["enum"] == list(guardrail.UNAPPROVED_AI_MODES)
    assert at(schema, "spec.unapprovedAI")["default"] == guardrail.UNAPPROVED_AI_AUDIT == "audit"
    assert at(schema, "spec.retention.requireZeroDataRetention")["default"] is False
    assert at(schema, "spec.review.required")["default"] is False
    for path in (
        "spec.providers",
        "spec.dataResidency",
        "spec.consent.allowedBases",
        "spec.dataCategories.forbidden",
    ):
        assert "default" not in at(schema, path), f"{path}: left out means no bound"
        assert at(schema, path)["x-kubernetes-list-type"] == "set"
    max_days = at(schema, "spec.retention.maxDays")
    assert (max_days["minimum"], max_days["maximum"]) == (0, model.MAX_RETENTION_DAYS)
    validity = at(schema, "spec.review.maxValidityDays")
    assert (validity["minimum"], validity["maximum"]) == (1, guardrail.MAX_VALIDITY_DAYS)
    forbidden = at(schema, "spec.dataCategories.forbidden.[]")
    assert forbidden["maxLength"] == guardrail.MAX_CATEGORY_LENGTH
    # the namespaced CRD's category items, the same pattern
    assert forbidden["pattern"] == at(ns_schema, "spec.dataCategories.forbidden.[]")["pattern"]
    selector = at(schema, "spec.namespaceSelector")
    assert at(schema, "spec.namespaceSelector.matchLabels")["maxProperties"] == guardrail.MAX_SELECTOR_LABELS
    assert (
        at(schema, "spec.namespaceSelector.matchExpressions")["maxItems"]
        == guardrail.MAX_SELECTOR_EXPRESSIONS
    )
    assert at(schema, "spec.namespaceSelector.matchExpressions.[].operator")["enum"] == list(
        model.SELECTOR_OPERATORS
    )
    # the selector's item rules are the workloadSelector's, word for word
    ns_expr = at(ns_schema, "spec.workloadSelector.matchExpressions.[]")
    assert rules(at(schema, "spec.namespaceSelector.matchExpressions.[]")) == rules(ns_expr)
    assert selector["x-kubernetes-map-type"] == "atomic"


def test_cel_messages_are_the_parsers(schema: dict[str, Any]) -> None:
    """Each empty-but-present list has one CEL rule whose message is `<field>: <the parser's problem>`."""
    for field, problem in guardrail.EMPTY_LIST_MESSAGES.items():
        if field.startswith("namespaceSelector."):
            node = at(schema, "spec.namespaceSelector")
            found = [r for r in rules(node) if r["message"].startswith(field + ":")]
        else:
            found = rules(at(schema, f"spec.{field}"))
        assert [" ".join(r["message"].split()) for r in found] == [f"{field}: {problem}"], field
    for path, node in walk(schema):
        for rule in rules(node):
            assert set(rule) == {"rule", "message"}, path


def test_status_schema(schema: dict[str, Any]) -> None:
    status = at(schema, "status")
    assert set(status["properties"]) == {
        "observedGeneration",
        "conditions",
        "governedNamespaces",
        "policies",
        "outOfBounds",
    }
    conditions = at(schema, "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) == {"type", "status"}
    assert at(schema, "status.governedNamespaces")["type"] == "integer"
    assert at(schema, "status.policies")["type"] == "integer"
    assert at(schema, "status.outOfBounds.[]")["type"] == "string"
