"""Which user policies isolate a pod for egress (aidp.egress.isolation): NetworkPolicy and Cilium."""

from __future__ import annotations

from typing import Any

import pytest

from aidp.config import ISOLATED_LABEL, MANAGED_BY
from aidp.egress.isolation import isolated, isolates_egress, isolators


def pod(labels: dict[str, str], sa: str = "bot", ns: str = "team") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": ns, "labels": labels}, "spec": {"serviceAccountName": sa}}


def netpol(spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": "np", "labels": labels or {}}, "spec": spec}


def cnp(name: str = "c", **rule: Any) -> dict[str, Any]:
    return {"kind": "CiliumNetworkPolicy", "metadata": {"name": name}, "spec": rule}


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({"podSelector": {}, "policyTypes": ["Egress"]}, True),
        ({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}, False),  # policyTypes decides
        ({"podSelector": {}, "egress": [{}]}, True),  # no policyTypes: egress rules isolate
        ({"podSelector": {}}, False),
    ],
)
def test_networkpolicy_isolation_follows_policy_types(spec: dict[str, Any], want: bool) -> None:
    assert isolates_egress(netpol(spec)) is want


def test_aidps_own_objects_never_isolate() -> None:
    assert not isolates_egress(netpol({"podSelector": {}, "policyTypes": ["Egress"]}, dict(MANAGED_BY)))
    own = cnp(endpointSelector={}, egress=[{}])
    own["metadata"]["labels"] = dict(MANAGED_BY)
    assert isolators([own]) == []


def test_a_networkpolicy_isolates_the_pods_it_selects() -> None:
    found = isolators([netpol({"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Egress"]})])
    assert isolated(pod({"app": "db"}), found)
    assert not isolated(pod({"app": "web"}), found)


def test_the_operators_labels_do_not_decide_isolation() -> None:
    found = isolators([netpol({"podSelector": {"matchLabels": {ISOLATED_LABEL: "true"}}, "egress": [{}]})])
    assert not isolated(pod({ISOLATED_LABEL: "true"}), found)


def test_a_cilium_rule_with_egress_puts_its_endpoints_in_default_deny() -> None:
    found = isolators([cnp(endpointSelector={"matchLabels": {"k8s:app": "db"}}, egress=[])])
    assert isolated(pod({"app": "db"}), found)
    assert not isolated(pod({"app": "web"}), found)


def test_egress_deny_alone_isolates_and_ingress_alone_does_not() -> None:
    assert isolators([cnp(endpointSelector={}, egressDeny=[{"toCIDR": ["10.0.0.0/8"]}])])
    assert not isolators([cnp(endpointSelector={}, ingress=[{}])])


def test_enable_default_deny_false_leaves_egress_open() -> None:
    rule = {
        "endpointSelector": {},
        "egress": [{"toEntities": ["world"]}],
        "enableDefaultDeny": {"egress": False},
    }
    assert not isolators([cnp(**rule)])


def test_every_rule_of_specs_counts_and_host_policies_select_no_pod() -> None:
    obj = {
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "multi"},
        "specs": [
            {"nodeSelector": {}, "egress": [{}]},  # a host policy
            {
                "endpointSelector": {
                    "matchExpressions": [{"key": "any:tier", "operator": "In", "values": ["x"]}]
                },
                "egress": [{}],
            },
        ],
    }
    found = isolators([obj])
    assert [f.source for f in found] == ["CiliumNetworkPolicy/multi"]
    assert isolated(pod({"tier": "x"}), found)
    assert not isolated(pod({"tier": "y"}), found)


def test_cilium_identity_labels_select_by_service_account_and_namespace() -> None:
    by_sa = isolators(
        [cnp(endpointSelector={"matchLabels": {"io.cilium.k8s.policy.serviceaccount": "bot"}}, egress=[])]
    )
    assert isolated(pod({}, sa="bot"), by_sa)
    assert not isolated(pod({}, sa="other"), by_sa)
    by_ns = isolators(
        [cnp(endpointSelector={"matchLabels": {"k8s:io.kubernetes.pod.namespace": "team"}}, egress=[])]
    )
    assert isolated(pod({}, ns="team"), by_ns)
    # a NetworkPolicy does not see Cilium's identity labels
    np_sa = isolators(
        [
            netpol(
                {
                    "podSelector": {"matchLabels": {"io.cilium.k8s.policy.serviceaccount": "bot"}},
                    "egress": [{}],
                }
            )
        ]
    )
    assert not isolated(pod({}, sa="bot"), np_sa)


def test_an_empty_endpoint_selector_selects_every_pod() -> None:
    assert isolated(pod({"app": "anything"}), isolators([cnp(endpointSelector={}, egress=[{}])]))
