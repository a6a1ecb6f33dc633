"""Egress proven by packets: connection attempts from inside pods on a real node.

Every check is `nc -z -w SECONDS HOST 443` run with `kubectl exec` in a probe pod; the hosts resolve
through the node's CoreDNS to the provider stand-in's addresses (contract section 8), and the
NetworkPolicies are the ones aidp's operator rendered, enforced by kube-router with iptables/ipset.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from lightkube.codecs import from_dict
from lightkube.types import PatchType

from aidp.devcluster.node import CDN_EDGE, OUTSIDE_ADDRESS, OUTSIDE_HOST
from tests.integration import helpers
from tests.node.conftest import NodeBed
from tests.waiting import wait_for

pytestmark = pytest.mark.node

API = "api.openai.com"
EU = "eu.api.openai.com"
CONVERGE = 90  # seconds: a policy change reaches the packets well within this on the node


@dataclass
class Governed:
    ns: str
    approved: str
    unapproved: str


@pytest.fixture(scope="module")
def governed(node_bed: NodeBed) -> Iterator[Governed]:
    """A namespace with one AIDataPolicy (global endpoint), an approved and an unapproved pod."""
    ns = node_bed.namespace()
    node_bed.policy(ns, "bots")
    approved = node_bed.run_pod(node_bed.probe_pod(ns, "approved"))
    unapproved = node_bed.run_pod(
        node_bed.probe_pod(ns, "unapproved", labels={"app": "other"}, annotations={}, sa="default")
    )
    # both pods exist and the rules have followed: the baseline refuses the unapproved pod, then
    # the approved pod reaches its endpoint (in this order: before the baseline every pod connects)
    node_bed.until_connects(ns, unapproved, API, False, timeout=CONVERGE)
    node_bed.until_connects(ns, approved, API, True, timeout=CONVERGE)
    yield Governed(ns, approved, unapproved)
    node_bed.drop_namespace(ns)


def test_approved_pod_connects_to_its_endpoint(node_bed: NodeBed, governed: Governed) -> None:
    node_bed.expect(governed.ns, governed.approved, API, True)


def test_unapproved_pod_in_the_same_namespace_is_refused(node_bed: NodeBed, governed: Governed) -> None:
    node_bed.expect(governed.ns, governed.unapproved, API, False)
    # every address of the host is cut off, not only the one DNS answered first
    for address in ("203.0.113.10", "203.0.113.11"):
        node_bed.expect(governed.ns, governed.unapproved, address, False)


def test_copied_labels_without_declarations_are_denied_at_admission(
    node_bed: NodeBed, governed: Governed
) -> None:
    obj = node_bed.probe_pod(governed.ns, "copycat", annotations={}, sa="default")
    message = helpers.create(node_bed.client, obj)
    assert message is not None and "denied" in message.lower(), message


def test_non_provider_address_is_reachable_for_every_pod(node_bed: NodeBed, governed: Governed) -> None:
    for pod in (governed.approved, governed.unapproved):
        node_bed.expect(governed.ns, pod, OUTSIDE_HOST, True)
        node_bed.expect(governed.ns, pod, OUTSIDE_ADDRESS, True)


def test_dns_resolves_in_every_pod(node_bed: NodeBed, governed: Governed) -> None:
    for pod in (governed.approved, governed.unapproved):
        out = node_bed.exec(governed.ns, pod, "nslookup", API)
        assert out.returncode == 0 and "203.0.113.10" in out.stdout, out.stdout + out.stderr
        svc = node_bed.exec(governed.ns, pod, "nslookup", "kubernetes.default.svc.cluster.local")
        assert svc.returncode == 0 and "10.0.0.1" in svc.stdout, svc.stdout + svc.stderr


def test_pods_reach_the_api_server_through_the_kubernetes_service(
    node_bed: NodeBed, governed: Governed
) -> None:
    for pod in (governed.approved, governed.unapproved):
        node_bed.expect(governed.ns, pod, "kubernetes.default.svc.cluster.local", True)


def test_second_cdn_edge_is_reachable_by_an_unapproved_pod_in_preserve_mode(
    node_bed: NodeBed, governed: Governed
) -> None:
    """The documented limit of an IP-based backend (docs/egress.md): an address of the provider
    that the addresses file (or DNS, at the operator's lookup) did not list is not cut out of the
    baseline, so an unapproved pod that knows it gets through."""
    node_bed.expect(governed.ns, governed.unapproved, API, False)
    node_bed.expect(governed.ns, governed.unapproved, CDN_EDGE, True)


def test_pod_in_an_ungoverned_namespace_connects(node_bed: NodeBed) -> None:
    ns = node_bed.namespace(governed_sa=False)
    try:
        pod = node_bed.run_pod(
            node_bed.probe_pod(ns, "free", labels={"app": "x"}, annotations={}, sa="default")
        )
        node_bed.expect(ns, pod, API, True)
        node_bed.expect(ns, pod, EU, True)
    finally:
        node_bed.drop_namespace(ns)


def test_residency_policy_reaches_its_region_only(node_bed: NodeBed) -> None:
    ns = node_bed.namespace()
    try:
        node_bed.policy(ns, "eu-bots", dataResidency="eu")
        pod = node_bed.run_pod(node_bed.probe_pod(ns, "eu-bot"))
        node_bed.until_connects(ns, pod, EU, True, timeout=CONVERGE)
        node_bed.expect(ns, pod, API, False)
    finally:
        node_bed.drop_namespace(ns)


def _review(days: int) -> dict[str, Any]:
    expires = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)
    return {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": expires.isoformat()}


def test_revocation_cuts_the_approved_pod_off_and_reapproval_reconnects(
    node_bed: NodeBed, record_property: Any
) -> None:
    ns = node_bed.namespace()
    try:
        node_bed.policy(ns, "bots")
        pod = node_bed.run_pod(node_bed.probe_pod(ns, "bot"))
        node_bed.until_connects(ns, pod, API, True, timeout=CONVERGE)

        def set_review(days: int) -> None:
            node_bed.client.patch(
                helpers.AIDataPolicy,
                "bots",
                {"spec": {"review": _review(days)}},
                namespace=ns,
                patch_type=PatchType.MERGE,
            )

        set_review(-1)
        revoked = node_bed.until_connects(ns, pod, API, False, timeout=CONVERGE)
        set_review(365)
        restored = node_bed.until_connects(ns, pod, API, True, timeout=CONVERGE)
        record_property("revocation_seconds", round(revoked, 2))
        record_property("reapproval_seconds", round(restored, 2))
        print(json.dumps({"revocation_seconds": round(revoked, 2), "reapproval_seconds": round(restored, 2)}))
    finally:
        node_bed.drop_namespace(ns)


def test_an_image_the_node_lacks_is_never_pulled(node_bed: NodeBed) -> None:
    """containerd's packets go to loopback only: images come from `make images`, never a registry."""
    ns = node_bed.namespace(governed_sa=False)
    try:
        obj = node_bed.probe_pod(ns, "absent", labels={"app": "x"}, annotations={}, sa="default")
        obj["spec"]["containers"][0].update(image="registry.invalid/absent:1", imagePullPolicy="IfNotPresent")
        node_bed.client.create(from_dict(obj))

        def pull_refused() -> str:
            res = node_bed.kubectl("-n", ns, "get", "events", "-o", "json")
            events = json.loads(res.stdout or "{}").get("items", [])
            return next((e["message"] for e in events if "Failed to pull" in e.get("message", "")), "")

        message = wait_for(pull_refused, timeout=60, interval=0.5, what="the pull to fail")
        assert "operation not permitted" in message or "connection refused" in message, message
    finally:
        node_bed.drop_namespace(ns)
