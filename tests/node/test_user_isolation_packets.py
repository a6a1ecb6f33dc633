"""aidp never loosens a namespace's own egress isolation, proven by packets (issue 14).

The namespace starts with the common hardening baseline: a default-deny egress NetworkPolicy that
allows DNS only, and a second one that lets `app=other` pods reach one outside address. Each pod's
reachability is measured before aidp governs the namespace and again after an AIDataPolicy is
applied: unapproved pods reach nothing they could not reach before (the provider included),
approved pods reach exactly their endpoint in addition, DNS answers as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.resources.core_v1 import Pod

from aidp.config import ISOLATED_LABEL
from aidp.devcluster.node import CDN_EDGE, NODE_IP, OUTSIDE_ADDRESS
from tests.node.conftest import NodeBed
from tests.waiting import wait_for

pytestmark = pytest.mark.node

CONVERGE = 90
API = "api.openai.com"
EU = "eu.api.openai.com"
# what each check reaches: the provider by name and by both listed addresses, its other region,
# the unlisted CDN edge, and an outside address
TARGETS = (API, "203.0.113.10", "203.0.113.11", EU, CDN_EDGE, OUTSIDE_ADDRESS)


def _user_policies(ns: str) -> list[dict[str, Any]]:
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-egress", "namespace": ns},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": f"{NODE_IP}/32"}}], "ports": dns}],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "others-reach-one-site", "namespace": ns},
            "spec": {
                "podSelector": {"matchLabels": {"app": "other"}},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": f"{OUTSIDE_ADDRESS}/32"}}],
                        "ports": [{"protocol": "TCP", "port": 443}],
                    }
                ],
            },
        },
    ]


@dataclass
class Isolated:
    ns: str
    pods: dict[str, str]  # role -> pod name
    before: dict[str, dict[str, bool]]  # role -> target -> connects, before aidp governed the ns


def _reach(bed: NodeBed, ns: str, pod: str) -> dict[str, bool]:
    return {target: bed.connects(ns, pod, target, wait=2) for target in TARGETS}


def _answers(bed: NodeBed, ns: str, pod: str) -> bool:
    out = bed.exec(ns, pod, "nslookup", API)
    return out.returncode == 0 and "203.0.113.10" in out.stdout


def _resolves(bed: NodeBed, ns: str, pod: str) -> bool:
    """DNS answers, waited for: under egress isolation a pod's first queries to the node's CoreDNS
    were seen timing out for up to ~20 s in full node runs before answering (docs/development.md;
    the cause is not found yet)."""
    try:
        wait_for(lambda: _answers(bed, ns, pod), timeout=60, interval=1, what=f"DNS in {pod}")
    except AssertionError:
        return False
    return True


def _isolated_label(bed: NodeBed, ns: str, pod: str) -> bool:
    meta = bed.client.get(Pod, pod, namespace=ns).metadata
    return bool(meta and (meta.labels or {}).get(ISOLATED_LABEL) == "true")


@pytest.fixture(scope="module")
def isolated(node_bed: NodeBed) -> Iterator[Isolated]:
    ns = node_bed.namespace()
    try:
        for obj in _user_policies(ns):
            node_bed.client.create(from_dict(obj))
        pods = {
            "approved": node_bed.run_pod(node_bed.probe_pod(ns, "approved")),
            "unapproved": node_bed.run_pod(
                node_bed.probe_pod(ns, "unapproved", labels={"app": "none"}, annotations={}, sa="default")
            ),
            "other": node_bed.run_pod(
                node_bed.probe_pod(ns, "other", labels={"app": "other"}, annotations={}, sa="default")
            ),
        }
        # kube-router has applied the user's isolation once the outside address is closed for the
        # approved pod and open for `other`
        node_bed.until_connects(ns, pods["approved"], OUTSIDE_ADDRESS, False, timeout=CONVERGE)
        node_bed.until_connects(ns, pods["other"], OUTSIDE_ADDRESS, True, timeout=CONVERGE)
        before = {role: _reach(node_bed, ns, pod) for role, pod in pods.items()}
        for role, pod in pods.items():
            assert _resolves(node_bed, ns, pod), f"{role}: DNS before aidp"

        node_bed.policy(ns, "bots")
        for pod in pods.values():
            wait_for(
                lambda pod=pod: _isolated_label(node_bed, ns, pod),  # type: ignore[misc]
                timeout=CONVERGE,
                what=f"{pod} labelled {ISOLATED_LABEL}",
            )
        node_bed.until_connects(ns, pods["approved"], API, True, timeout=CONVERGE)
        yield Isolated(ns, pods, before)
    finally:
        node_bed.drop_namespace(ns)


def test_before_aidp_the_user_isolation_holds(isolated: Isolated) -> None:
    """The baseline of the comparison: default-deny closes everything but DNS, `other` has its site."""
    assert not any(isolated.before["approved"].values()), isolated.before
    assert not any(isolated.before["unapproved"].values()), isolated.before
    assert isolated.before["other"] == {t: t == OUTSIDE_ADDRESS for t in TARGETS}, isolated.before


def test_unapproved_pods_reach_nothing_new(node_bed: NodeBed, isolated: Isolated) -> None:
    for role in ("unapproved", "other"):
        after = _reach(node_bed, isolated.ns, isolated.pods[role])
        assert after == isolated.before[role], f"{role}: before {isolated.before[role]}, after {after}"


def test_the_approved_pod_reaches_exactly_its_endpoint_in_addition(
    node_bed: NodeBed, isolated: Isolated
) -> None:
    after = _reach(node_bed, isolated.ns, isolated.pods["approved"])
    gained = {t for t, ok in after.items() if ok and not isolated.before["approved"][t]}
    lost = {t for t, ok in isolated.before["approved"].items() if ok and not after[t]}
    # the endpoint by name and its listed addresses; not its other region, nor the unlisted edge
    assert gained == {API, "203.0.113.10", "203.0.113.11"}, after
    assert not lost, after


def test_dns_answers_as_before(node_bed: NodeBed, isolated: Isolated) -> None:
    for role, pod in isolated.pods.items():
        assert _resolves(node_bed, isolated.ns, pod), f"{role}: DNS after aidp"


def test_a_pod_started_after_the_policy_is_never_loosened(node_bed: NodeBed, isolated: Isolated) -> None:
    """The window of a new pod: until the operator labels it isolated, the baseline selects it too;
    the baseline cuts the provider, so the window can only open other sites, never the provider."""
    pod = node_bed.run_pod(
        node_bed.probe_pod(isolated.ns, "late", labels={"app": "none"}, annotations={}, sa="default")
    )
    node_bed.expect(isolated.ns, pod, API, False, wait=2)
    wait_for(lambda: _isolated_label(node_bed, isolated.ns, pod), timeout=CONVERGE, what="late pod isolated")
    node_bed.until_connects(isolated.ns, pod, OUTSIDE_ADDRESS, False, timeout=CONVERGE)
    assert _reach(node_bed, isolated.ns, pod) == isolated.before["unapproved"]
