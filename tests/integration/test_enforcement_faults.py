"""Enforcement survives OPA and operator failures: fail closed, restore from the durable copy."""

from __future__ import annotations

import pytest
from lightkube.core.exceptions import ApiError

from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import create, violating, workload
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts, kills or reconfigures processes


def _policy_loaded(env: Env) -> bool:
    """The webhook answers with aidp's own decision (not a connection failure)."""
    bad = create(env.client, violating("Pod", "probe-bad", env.ns, "consent-basis"), dry_run=True)
    good = create(env.client, workload("Pod", "probe-good", env.ns), dry_run=True)
    return bad is not None and "[consent-basis]" in bad and good is None


def test_opa_killed_with_operator_down_fails_closed_then_restores_from_durable_copy(
    aidp_stack: AidpStack, env: Env
) -> None:
    env.policy("guard")
    assert _policy_loaded(env)
    operator, opa = aidp_stack.operator, aidp_stack.opa
    assert operator is not None and opa is not None
    operator.kill()
    opa.kill()
    try:
        # fail closed: with OPA down, no checked object is admitted in a governed namespace
        for obj in (
            violating("Deployment", "while-down", env.ns, "retention-days"),
            workload("Deployment", "also-while-down", env.ns),
        ):
            msg = create(env.client, obj)
            assert msg is not None and "failed calling webhook" in msg, msg
        with_error = [name for name in ("while-down", "also-while-down") if _exists(env, name)]
        assert with_error == []

        # OPA comes back with the operator still down: the agent restores the durable bundle
        aidp_stack.start_opa()
        wait_for(lambda: _policy_loaded(env), timeout=30, what="enforcement restored from the durable copy")
        assert aidp_stack.opa_revision() == aidp_stack.durable_revision()
    finally:
        if not (aidp_stack.opa and aidp_stack.opa.proc and aidp_stack.opa.proc.alive()):
            aidp_stack.start_opa()
        aidp_stack.start_operator()

    # the restarted operator confirms the revision OPA holds and reports the policy enforced
    helpers.wait_enforced(env.client, env.ns, "guard")

    wait_for(
        lambda: aidp_stack.opa_revision() == aidp_stack.durable_revision(),
        timeout=10,
        what="OPA and the durable copy on one revision",
    )


def test_operator_reloads_a_replica_that_lost_its_policies(aidp_stack: AidpStack, env: Env) -> None:
    env.policy("reload")
    agent, opa = aidp_stack.agent, aidp_stack.opa
    assert agent is not None and opa is not None
    agent.kill()  # only the operator can bring the policies back now
    try:
        opa.kill()
        aidp_stack.start_opa()
        wait_for(lambda: _policy_loaded(env), timeout=30, what="operator to reload the restarted OPA")
        # other tests' namespaces may still be going away, so the revision can move on meanwhile
        wait_for(
            lambda: aidp_stack.opa_revision() == aidp_stack.durable_revision(),
            timeout=10,
            what="OPA and the durable copy to agree",
        )
    finally:
        aidp_stack.start_agent()


def _exists(env: Env, name: str) -> bool:
    from lightkube.resources.apps_v1 import Deployment

    try:
        env.client.get(Deployment, name, namespace=env.ns)
    except ApiError:
        return False
    return True
