"""Observe before enforcing (contract section 4): a namespace whose policies are all dryrun gets no
egress objects; switching a policy to warn applies them."""

from __future__ import annotations

import time

from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from tests.integration import helpers
from tests.integration.conftest import Env
from tests.waiting import wait_for


def _aidp_objects(env: Env) -> list[str]:
    return sorted(
        str(n.metadata.name)
        for n in env.client.list(
            NetworkPolicy, namespace=env.ns, labels={"app.kubernetes.io/managed-by": "aidp"}
        )
        if n.metadata
    )


def test_dryrun_namespace_is_observed_then_warn_applies_the_rules(env: Env) -> None:
    policy = env.policy("bots", enforcement="dryrun")
    conds = {c["type"]: c for c in policy["status"]["conditions"]}
    wait_for(
        lambda: (
            {
                c["type"]: c
                for c in (
                    env.client.get(helpers.AIDataPolicy, "bots", namespace=env.ns).to_dict().get("status")
                    or {}
                ).get("conditions", [])
            }.get("EgressEnforced", {}).get("reason")
            == "Observed"
        ),
        timeout=30,
        what="EgressEnforced=Unknown/Observed",
    )
    del conds
    assert _aidp_objects(env) == []
    started = time.monotonic()
    env.client.patch(
        helpers.AIDataPolicy,
        "bots",
        {"spec": {"enforcement": "warn"}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    wait_for(
        lambda: _aidp_objects(env) == ["aidp-egress-baseline", "aidp-egress-bots"],
        timeout=30,
        what="egress objects",
    )
    print(f"dryrun -> warn: egress objects in {time.monotonic() - started:.2f}s")
