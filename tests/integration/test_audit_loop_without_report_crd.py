"""The operator's periodic audit on a cluster where the report CRD is not installed: it cannot
write reports, says which CRD is missing, and still keeps every policy's status figures current.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import make_env
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # a control plane and an operator of their own


@pytest.fixture(scope="module")
def bare_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, AidpStack]]:
    tmp: Path = tmp_path_factory.mktemp("no-report-crd")
    cp = ControlPlane(tmp / "cp").start()
    try:
        stack = AidpStack(cp, tmp / "aidp", operator_args=("--audit-interval", "2", "--audit-min-gap", "1"))
        try:
            stack.start()
            yield kube.client(cp.kubeconfig), stack
        finally:
            stack.stop()
    finally:
        cp.stop()


def test_policy_status_follows_the_audit_without_the_report_crd(bare_stack: tuple[Client, AidpStack]) -> None:
    client, stack = bare_stack
    env = make_env(client, stack.cp.kubeconfig)
    env.policy("chat")
    assert helpers.create(client, helpers.workload("Deployment", "bot", env.ns)) is None

    def audited() -> dict[str, object] | None:
        status = client.get(helpers.AIDataPolicy, "chat", namespace=env.ns).get("status") or {}
        return status if status.get("matchedWorkloads") == 1 and status.get("lastAuditTime") else None

    status = wait_for(audited, timeout=30, interval=0.5, what="the audit's figures in the policy status")
    assert status["violations"] == 0
    log = (stack.state_dir / "logs" / "aidp-operator.log").read_text()
    assert "the Report CRD (openreports.io/v1alpha1) is not installed" in log
    assert "audit failed" not in log
