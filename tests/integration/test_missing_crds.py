"""The operator on a cluster without the CRDs its settings need: the `cilium` egress backend without
Cilium's CRD, the periodic audit without the report CRD. Admission is still enforced, the policy
status says what is missing, and the audit still keeps the status figures current.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client

from aidp import kube
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # a control plane and an operator of their own


@pytest.fixture(scope="module")
def bare_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AidpStack]]:
    args = ("--egress-backend", "cilium", "--audit-interval", "2", "--audit-min-gap", "1")
    for cp, stack in helpers.own_stack(tmp_path_factory.mktemp("missing-crds"), *args):
        yield kube.client(cp.kubeconfig), stack


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def test_missing_crds_are_reported_and_enforcement_goes_on(bare_stack: tuple[Client, AidpStack]) -> None:
    client, stack = bare_stack
    env = make_env(client, stack.cp.kubeconfig)
    env.policy("chat")  # waits for AdmissionEnforced=True
    assert helpers.create(client, helpers.workload("Deployment", "bot", env.ns)) is None
    denied = helpers.create(client, helpers.violating("Deployment", "leaky", env.ns, "retention-days"))
    assert denied is not None and "[retention-days]" in denied

    def status() -> dict[str, Any]:
        return client.get(helpers.AIDataPolicy, "chat", namespace=env.ns).get("status") or {}

    egress = wait_for(
        lambda: (c := conditions(status()).get("EgressEnforced")) and c["status"] == "False" and c,
        timeout=30,
        what="EgressEnforced=False on the policy",
    )
    assert egress["reason"] == "ApplyFailed"
    assert "is its CRD installed" in egress["message"] and "ciliumnetworkpolicies" in egress["message"]

    audited = wait_for(
        lambda: (s := status()).get("matchedWorkloads") == 1 and s.get("lastAuditTime") and s,
        timeout=30,
        interval=0.5,
        what="the audit's figures in the policy status",
    )
    assert audited["violations"] == 0
    log = (stack.state_dir / "logs" / "aidp-operator.log").read_text()
    assert "the Report CRD (openreports.io/v1alpha1) is not installed" in log
    assert "audit failed" not in log and "reconcile failed" not in log
