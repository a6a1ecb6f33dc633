"""Separation of duties in RBAC (aidp.rbac_roles): the chart's ClusterRoles are the ones `aidp dev up`
applies, and they grant what docs/security.md says, no more. (tests/integration/test_rbac_roles.py
shows it with real tokens on the real API server.)"""

from __future__ import annotations

from typing import Any

import pytest

from aidp import rbac_roles
from tests.unit.test_chart import MODES, render

# labels only Helm adds (the release, the chart and who manages it)
HELM_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}


def chart_roles(values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        o
        for o in render(values)
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] in rbac_roles.ROLE_NAMES
    ]


def without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    labels = {k: v for k, v in obj["metadata"]["labels"].items() if k not in HELM_LABELS}
    return {**obj, "metadata": {**obj["metadata"], "labels": labels}}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_chart_ships_the_roles_dev_up_applies(mode: str) -> None:
    chart = chart_roles(MODES[mode])
    assert [without_helm_labels(o) for o in chart] == rbac_roles.cluster_roles()
    for obj in chart:
        assert set(obj["metadata"]["labels"]) - set(rbac_roles.LABELS) - HELM_LABELS <= {
            f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("view", "edit", "admin")
        }


def verbs(role: dict[str, Any], resource: str) -> set[str]:
    return {
        v
        for r in role["rules"]
        if resource in r["resources"] and "aidp.io" in r["apiGroups"]
        for v in r["verbs"]
    }


def test_who_may_do_what() -> None:
    roles = {r["metadata"]["name"]: r for r in rbac_roles.cluster_roles()}
    assert list(roles) == list(rbac_roles.ROLE_NAMES)
    read = {"get", "list", "watch"}
    write = read | {"create", "update", "patch", "delete", "deletecollection"}
    viewer = roles["aidp-policy-viewer"]
    assert verbs(viewer, "aidatapolicies") == read
    assert verbs(viewer, "clusteraidatapolicies") == set()
    assert verbs(roles["aidp-policy-author"], "aidatapolicies") == write
    assert verbs(roles["aidp-policy-author"], "clusteraidatapolicies") == set()
    assert verbs(roles["aidp-guardrail-viewer"], "clusteraidatapolicies") == read
    assert verbs(roles["aidp-guardrail-viewer"], "aidatapolicies") == read
    assert verbs(roles["aidp-guardrail-admin"], "clusteraidatapolicies") == write
    assert verbs(roles["aidp-guardrail-admin"], "aidatapolicies") == read
    # status is the operator's: nobody here may write it
    for role in roles.values():
        for resource in ("aidatapolicies/status", "clusteraidatapolicies/status"):
            assert verbs(role, resource) <= read, role["metadata"]["name"]
        for rule in role["rules"]:
            assert rule["apiGroups"] == ["aidp.io"]
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]


def test_only_reading_policies_is_aggregated() -> None:
    aggregated = {
        r["metadata"]["name"]
        for r in rbac_roles.cluster_roles()
        if any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"]["labels"])
    }
    assert aggregated == {"aidp-policy-viewer"}
    (viewer,) = [r for r in rbac_roles.cluster_roles() if r["metadata"]["name"] == "aidp-policy-viewer"]
    assert {k: v for k, v in viewer["metadata"]["labels"].items() if "aggregate" in k} == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true",
        "rbac.authorization.k8s.io/aggregate-to-edit": "true",
        "rbac.authorization.k8s.io/aggregate-to-admin": "true",
    }
