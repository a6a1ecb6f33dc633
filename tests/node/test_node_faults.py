"""Faults on the node: the kubelet and the enforcer restarted, the pods and the rules hold."""

from __future__ import annotations

import json

import pytest

from tests.node.conftest import NodeBed

pytestmark = pytest.mark.node

API = "api.openai.com"


def container_ids(node_bed: NodeBed, ns: str) -> dict[str, str]:
    res = node_bed.kubectl("-n", ns, "get", "pods", "-o", "json")
    return {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["containerID"]
        for p in json.loads(res.stdout)["items"]
    }


@pytest.mark.parametrize("component", ["kubelet", "kube-router"])
def test_restarted_component_keeps_pods_running_and_rules_in_force(node_bed: NodeBed, component: str) -> None:
    ns = node_bed.namespace()
    try:
        node_bed.policy(ns, "bots")
        approved = node_bed.run_pod(node_bed.probe_pod(ns, "approved"))
        unapproved = node_bed.run_pod(
            node_bed.probe_pod(ns, "unapproved", labels={"app": "other"}, annotations={}, sa="default")
        )
        node_bed.until_connects(ns, unapproved, API, False, timeout=90)  # the baseline first,
        node_bed.until_connects(ns, approved, API, True, timeout=90)  # then the approved pod's rule
        before = container_ids(node_bed, ns)

        node_bed.node.restart(component, kill=True)

        node_bed.until_ready()
        # exec goes through the kubelet: wait until it answers again, then the rules are as before
        node_bed.until_connects(ns, approved, API, True, timeout=60)
        node_bed.expect(ns, unapproved, API, False)
        assert container_ids(node_bed, ns) == before  # the same containers: nothing was restarted
    finally:
        node_bed.drop_namespace(ns)
