"""Two operator replicas with leader election: exactly one reconciles; kill it, the other takes over."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube.resources.coordination_v1 import Lease

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster.procs import Process
from aidp.devcluster.stack import AidpStack
from tests.integration.conftest import Env, make_env
from tests.integration.helpers import create, violating
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts, kills or reconfigures processes


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AidpStack, list[Process]]]:
    """A control plane of its own (the session's operator must not see these replicas)."""
    cp = ControlPlane(tmp_path_factory.mktemp("le-cp")).start()
    stack = AidpStack(
        cp,
        tmp_path_factory.mktemp("le-aidp"),
        operator_args=("--leader-election", "--audit-interval", "0", "--resync-seconds", "5"),
    )
    try:
        stack.start()
        first = stack.operator
        assert first is not None
        second = stack.start_operator(name="aidp-operator-2")
        try:
            yield stack, [first, second]
        finally:
            second.stop()
    finally:
        stack.stop()
        cp.stop()


def _holder(stack: AidpStack) -> str | None:
    lease = kube.client(stack.cp.kubeconfig).get(Lease, "aidp-operator", namespace=stack.namespace)
    return lease.spec.holderIdentity if lease.spec else None


def _synced(log: Path) -> int:
    return len(re.findall(r"synced \d+ policies", log.read_text(errors="replace")))


def test_one_leader_reconciles_and_the_other_takes_over(
    two_replicas: tuple[AidpStack, list[Process]],
) -> None:
    stack, procs = two_replicas
    client = kube.client(stack.cp.kubeconfig)
    env = make_env(client, stack.cp.kubeconfig)
    holder = wait_for(lambda: _holder(stack), timeout=30, what="a lease holder")
    env.policy("first")  # enforced by whichever replica leads
    # the sync's log line comes after the statuses it writes: wait for it, not only for the status
    leaders = wait_for(
        lambda: [p for p in procs if _synced(p.log) > 0], timeout=30, what="the leader's sync logged"
    )
    assert len(leaders) == 1, [(p.log, _synced(p.log)) for p in procs]
    leader = leaders[0]
    follower = next(p for p in procs if p is not leader)
    before = _synced(follower.log)
    assert before == 0

    leader.kill()
    wait_for(lambda: _holder(stack) not in (None, holder), timeout=60, what="the follower to take the lease")
    # the new leader enforces a change made after the takeover
    env2 = Env(client, stack.cp.kubeconfig, env.ns)
    env2.policy("second", workloadSelector={"matchLabels": {"app": "second"}})
    bad = violating("Pod", "after-takeover", env.ns, "consent-basis")
    bad["metadata"]["labels"] = {"app": "second"}
    msg = wait_for(
        lambda: create(client, bad, dry_run=True), timeout=30, what="enforcement by the new leader"
    )
    assert "AIDataPolicy second" in msg
    # OPA holds the new policy before the sync logs its line (after statuses and egress)
    wait_for(lambda: _synced(follower.log) > 0, timeout=30, what="the new leader's sync logged")
