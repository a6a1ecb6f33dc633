"""The webhook's matchConditions on a real control plane (docs/security.md, "Requests that never
reach OPA"): what stays in kube-apiserver, counted by its own metric
(apiserver_admission_webhook_request_total, as bench/webhook_calls.py does), and what that costs
an attacker: nothing, because every Pod CREATE is still judged."""

from __future__ import annotations

import time
from typing import Any

import pytest
from bench.webhook_calls import webhook_requests
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Namespace, Pod
from lightkube.types import PatchType

from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import create, workload
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only


def _governed(env: Env) -> None:
    env.policy("bots")
    wait_for(
        lambda: (env.client.get(Namespace, env.ns).metadata.labels or {}).get("aidp.io/governed") == "true",  # type: ignore[union-attr]
        timeout=30,
        what="the governed label",
    )


def _settled(kubeconfig: str) -> float:
    """The counter once three reads a second apart agree."""
    last, still = webhook_requests(kubeconfig), 0
    deadline = time.monotonic() + 60
    while still < 3 and time.monotonic() < deadline:
        time.sleep(1.0)
        now = webhook_requests(kubeconfig)
        still = still + 1 if now == last else 0
        last = now
    return last


def _deployment(name: str, ns: str, **kw: Any) -> dict[str, Any]:
    obj = workload("Deployment", name, ns, **kw)
    obj["spec"]["replicas"] = 1
    return obj


def test_a_deployment_create_calls_the_webhook_twice(env: Env) -> None:
    """A Deployment with one replica: the Deployment's CREATE and its Pod's CREATE reach OPA; the
    deployment controller's ReplicaSet and the operator's approval label on the Pod do not."""
    _governed(env)
    kubeconfig = str(env.kubeconfig)
    before = _settled(kubeconfig)
    n = 3
    for i in range(n):
        assert create(env.client, _deployment(f"d{i}", env.ns)) is None

    def approved() -> bool:
        pods = list(env.client.list(Pod, namespace=env.ns))
        return len(pods) == n and all(
            (p.metadata.labels or {}).get("aidp.io/approved") == "true"  # type: ignore[union-attr]
            for p in pods
        )

    # the operator wrote its label on every Pod: an UPDATE that stays in kube-apiserver
    wait_for(approved, timeout=60, what="the Pods created and approved by the operator")
    assert len(list(env.client.list(ReplicaSet, namespace=env.ns))) == n
    assert _settled(kubeconfig) - before == 2 * n


def test_the_deployment_controllers_replicaset_is_not_sent_but_its_pods_are(env: Env) -> None:
    """A Deployment admitted before its policy tightened: deleting its ReplicaSet makes the
    controller create a new one from the old template. That ReplicaSet is admitted unchecked, and
    its Pods are refused, so nothing runs that admission would refuse; the same ReplicaSet written
    by a user is judged."""
    _governed(env)
    assert create(env.client, _deployment("old", env.ns)) is None
    wait_for(lambda: list(env.client.list(Pod, namespace=env.ns)), timeout=60, what="the first Pod")
    env.client.patch(
        helpers.AIDataPolicy,
        "bots",
        {"spec": {"retention": {"maxDays": 7}}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    helpers.wait_enforced(env.client, env.ns, "bots")
    wait_for(
        lambda: create(env.client, _deployment("probe", env.ns), dry_run=True),
        timeout=30,
        what="the tightened policy",
    )
    [rs] = list(env.client.list(ReplicaSet, namespace=env.ns))
    old_uid = rs.metadata.uid  # type: ignore[union-attr]
    env.client.delete(ReplicaSet, str(rs.metadata.name), namespace=env.ns)  # type: ignore[union-attr]

    def new_replicaset() -> str | None:
        for r in env.client.list(ReplicaSet, namespace=env.ns):
            # the same name (the template's hash), a new object
            if r.metadata and r.metadata.uid != old_uid and r.metadata.deletionTimestamp is None:
                return r.metadata.name
        return None

    name = wait_for(new_replicaset, timeout=60, what="the controller's new ReplicaSet")

    def refused() -> str | None:
        status = env.client.get(ReplicaSet, str(name), namespace=env.ns).status
        for cond in (status.conditions if status else None) or []:
            if (
                cond.type == "ReplicaFailure"
                and cond.reason == "FailedCreate"
                and "aidp:" in (cond.message or "")
            ):
                return cond.message
        return None

    msg = wait_for(refused, timeout=60, what="the ReplicaSet's Pods refused")
    assert "AIDataPolicy bots" in msg and "[retention-days]" in msg, msg
    pods = [
        p
        for p in env.client.list(Pod, namespace=env.ns)
        if p.metadata and p.metadata.deletionTimestamp is None
    ]
    assert pods == [], [p.metadata.name for p in pods if p.metadata]
    assert env.client.get(Deployment, "old", namespace=env.ns) is not None
    # a user writing the same ReplicaSet is judged
    user_rs = workload("ReplicaSet", "by-hand", env.ns)
    user_rs["spec"]["replicas"] = 0
    denied = create(env.client, user_rs)
    assert denied is not None and "[retention-days]" in denied, denied
