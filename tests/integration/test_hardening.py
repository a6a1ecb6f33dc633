"""Hardening (issue 11) on the real control plane: controllers never blocked by a verdict change,
every path that writes pod metadata judged, egress that follows the verdict, and the webhook's scope
out of a namespace admin's reach.

The control plane runs kube-controller-manager (deployment, replicaset, statefulset and job
controllers) but no kubelet: pods stay Pending, and a pod's end is written to pods/status by hand,
as a kubelet would.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.apiextensions_v1 import JSONSchemaProps
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Namespace, Pod, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from aidp import kube
from aidp.config import APPROVAL_LABEL, GOVERNED_LABEL, ISOLATED_LABEL
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.integration.helpers import COMPLIANT, create, workload
from tests.waiting import wait_for

TIGHT = {"maxDays": 10, "requireZeroDataRetention": True}
DECLARED_20 = {**COMPLIANT, "aidp.io/retention-days": "20"}
YESTERDAY = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _pods(client: Client, ns: str, labels: dict[str, str]) -> list[Pod]:
    return list(client.list(Pod, namespace=ns, labels=labels))


def _tighten(env: Env, policy: str, **spec: Any) -> None:
    env.client.patch(
        helpers.AIDataPolicy, policy, {"spec": spec}, namespace=env.ns, patch_type=PatchType.MERGE
    )
    helpers.wait_enforced(env.client, env.ns, policy)


def _scaled_workload(env: Env, kind: str, replicas: int) -> tuple[str, dict[str, str]]:
    name = _name(kind.lower())
    labels = {"app": "bot", "run": name}
    obj = workload(kind, name, env.ns, labels=labels, annotations=DECLARED_20)
    obj["spec"]["replicas"] = replicas
    if kind == "StatefulSet":
        obj["spec"]["podManagementPolicy"] = "Parallel"  # no kubelet: pods never get Ready
    assert create(env.client, obj) is None
    wait_for(lambda: len(_pods(env.client, env.ns, labels)) == replicas, timeout=60, what=f"{replicas} pods")
    return name, labels


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("Deployment", {"retention": TIGHT}),  # the issue's repro: maxDays lowered below the declared 20
        ("Deployment", {"review": {"approvedBy": "dpo@example.com", "expires": YESTERDAY}}),  # expired
        ("StatefulSet", {"retention": TIGHT}),
    ],
    ids=["deployment-tightened", "deployment-expired", "statefulset-tightened"],
)
def test_scale_down_after_the_policy_turns_against_the_workload(
    env: Env, kind: str, change: dict[str, Any]
) -> None:
    env.policy("bots")
    name, labels = _scaled_workload(env, kind, 2)
    _tighten(env, "bots", **change)
    # the same template is now denied afresh ...
    assert create(env.client, workload("Pod", _name("fresh"), env.ns, annotations=DECLARED_20)) is not None
    # ... but the controllers' UPDATEs that leave the template alone go through
    res = Deployment if kind == "Deployment" else StatefulSet
    env.client.patch(res, name, {"spec": {"replicas": 0}}, namespace=env.ns, patch_type=PatchType.MERGE)
    if kind == "Deployment":

        def replicaset_at_zero() -> bool:
            sets = list(env.client.list(ReplicaSet, namespace=env.ns, labels=labels))
            return bool(sets) and all(rs.spec is not None and rs.spec.replicas == 0 for rs in sets)

        wait_for(replicaset_at_zero, timeout=60, what="the ReplicaSet scaled to 0")
    wait_for(lambda: not _pods(env.client, env.ns, labels), timeout=60, what="the pods gone")


def test_job_pods_finish_after_tightening(env: Env) -> None:
    """The job controller removes its tracking finalizer from finished pods and completes the Job."""
    env.policy("bots")
    name = _name("job")
    obj = workload("Job", name, env.ns, annotations=DECLARED_20)
    assert create(env.client, obj) is None
    wait_for(lambda: _pods(env.client, env.ns, {"job-name": name}), timeout=60, what="the Job's pod")
    _tighten(env, "bots", retention=TIGHT)
    [pod] = _pods(env.client, env.ns, {"job-name": name})
    assert pod.metadata is not None and pod.metadata.name
    # the kubelet's report that the pod ended, through pods/status (labels unchanged)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "phase": "Succeeded",
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted"}],
        "containerStatuses": [
            {
                "name": "c",
                "image": "registry.example.com/bot:1.0",
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
                },
            }
        ],
    }
    env.client.patch(
        Pod.Status, pod.metadata.name, {"status": status}, namespace=env.ns, patch_type=PatchType.MERGE
    )

    def complete() -> bool:
        job = env.client.get(Job, name, namespace=env.ns)
        conds = (job.status.conditions if job.status else None) or []
        return any(c.type == "Complete" and c.status == "True" for c in conds)

    wait_for(complete, timeout=60, what="the Job complete")
    finalizers = env.client.get(Pod, pod.metadata.name, namespace=env.ns).metadata.finalizers  # type: ignore[union-attr]
    assert not finalizers, finalizers


def test_relabel_through_pods_status_is_denied(env: Env) -> None:
    """The issue's repro: labels written through the status subresource are judged like the Pod."""
    env.policy("bots")
    name = _name("other")
    assert create(env.client, workload("Pod", name, env.ns, labels={"app": "other"}, annotations={})) is None
    with pytest.raises(ApiError) as err:
        env.client.patch(
            Pod.Status,
            name,
            {"metadata": {"labels": {"app": "bot"}}},
            namespace=env.ns,
            patch_type=PatchType.MERGE,
        )
    message = str(err.value.status.message)
    assert "aidp: Pod" in message and "AIDataPolicy bots" in message, message
    labels = env.client.get(Pod, name, namespace=env.ns).metadata.labels  # type: ignore[union-attr]
    assert labels == {"app": "other"}
    # a status write that leaves the metadata alone still works (a kubelet's report)
    env.client.patch(
        Pod.Status,
        name,
        {"status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )


def test_host_network_pod_is_denied(env: Env) -> None:
    env.policy("bots")
    obj = workload("Pod", _name("host"), env.ns)
    obj["spec"]["hostNetwork"] = True
    message = create(env.client, obj)
    assert message is not None and "[host-network]" in message, message


# ---- egress follows the verdict ---------------------------------------------------------------


def _approved(client: Client, ns: str, name: str) -> bool:
    labels = client.get(Pod, name, namespace=ns).metadata.labels or {}  # type: ignore[union-attr]
    return labels.get(APPROVAL_LABEL) == "true"


def test_egress_follows_the_verdict(env: Env) -> None:
    early = _name("early")
    # a pod that existed before its policy, with no declarations: never approved
    assert create(env.client, workload("Pod", early, env.ns, annotations={})) is None
    env.policy("bots")
    good = _name("good")
    started = time.monotonic()
    assert create(env.client, workload("Pod", good, env.ns, annotations=DECLARED_20)) is None
    wait_for(lambda: _approved(env.client, env.ns, good), timeout=30, what="the compliant pod approved")
    print(f"approval window (create -> label): {time.monotonic() - started:.2f}s")
    assert not _approved(env.client, env.ns, early)
    # the policy's NetworkPolicy selects approved pods only
    netpol = env.client.get(NetworkPolicy, "aidp-egress-bots", namespace=env.ns)
    assert netpol.spec is not None and netpol.spec.podSelector.matchLabels == {
        "app": "bot",
        APPROVAL_LABEL: "true",
    }
    # tightened: the running pod is judged again and loses its approval
    started = time.monotonic()
    _tighten(env, "bots", retention=TIGHT)
    wait_for(lambda: not _approved(env.client, env.ns, good), timeout=30, what="the approval revoked")
    print(f"revocation window (policy change -> label removed): {time.monotonic() - started:.2f}s")
    # loosened again: approved again
    _tighten(env, "bots", retention={"maxDays": 30, "requireZeroDataRetention": True})
    wait_for(lambda: _approved(env.client, env.ns, good), timeout=30, what="approved again")


def _attacker(
    aidp_stack: AidpStack, client: Client, ns: str, tmp_path: Path, rules: list[PolicyRule]
) -> Client:
    """A namespace admin's client: a ServiceAccount with `rules` in `ns` (a TokenRequest token)."""
    sa = _name("admin")
    client.create(ServiceAccount(metadata=ObjectMeta(name=sa, namespace=ns)))
    client.create(Role(metadata=ObjectMeta(name=sa, namespace=ns), rules=rules))
    client.create(
        RoleBinding(
            metadata=ObjectMeta(name=sa, namespace=ns),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="Role", name=sa),
            subjects=[Subject(kind="ServiceAccount", name=sa, namespace=ns)],
        )
    )
    path = helpers.sa_kubeconfig(aidp_stack.cp, client, sa, ns, tmp_path / f"{sa}.kubeconfig")
    return kube.client(path)


def test_only_the_operator_sets_the_approval_label(env: Env, aidp_stack: AidpStack, tmp_path: Path) -> None:
    env.policy("bots")
    admin = _attacker(
        aidp_stack,
        env.client,
        env.ns,
        tmp_path,
        [
            PolicyRule(
                apiGroups=[""], resources=["pods", "pods/status"], verbs=["create", "get", "patch", "update"]
            )
        ],
    )
    pod = workload("Pod", _name("self"), env.ns, labels={"app": "bot", APPROVAL_LABEL: "true"})
    message = create(admin, pod)
    assert (
        message is not None
        and f"the label {APPROVAL_LABEL} is set and removed by the aidp operator" in message
    )
    # on a compliant pod the operator set it on: the admin can neither keep it after a change nor re-add it
    name = _name("bot")
    assert create(admin, workload("Pod", name, env.ns)) is None
    wait_for(lambda: _approved(env.client, env.ns, name), timeout=30, what="approved by the operator")
    for res, value in ((Pod, None), (Pod, "yes"), (Pod.Status, None)):
        with pytest.raises(ApiError) as err:
            admin.patch(
                res,
                name,
                {"metadata": {"labels": {APPROVAL_LABEL: value}}},
                namespace=env.ns,
                patch_type=PatchType.MERGE,
            )
        assert APPROVAL_LABEL in str(err.value.status.message)
    assert _approved(env.client, env.ns, name)


def test_a_namespace_admin_cannot_remove_the_governed_label(
    env: Env, aidp_stack: AidpStack, tmp_path: Path
) -> None:
    env.policy("bots")
    wait_for(
        lambda: (env.client.get(Namespace, env.ns).metadata.labels or {}).get(GOVERNED_LABEL) == "true",  # type: ignore[union-attr]
        timeout=30,
        what="the namespace governed",
    )
    admin = _attacker(
        aidp_stack,
        env.client,
        env.ns,
        tmp_path,
        [PolicyRule(apiGroups=[""], resources=["namespaces"], verbs=["get", "patch", "update"])],
    )
    for value in (None, "false"):
        with pytest.raises(ApiError) as err:
            admin.patch(
                Namespace,
                env.ns,
                {"metadata": {"labels": {GOVERNED_LABEL: value}}},
                patch_type=PatchType.MERGE,
            )
        assert "is managed by the aidp operator" in str(err.value.status.message)
    # the admin's Role works for other labels (the refusal is about the governed label only)
    admin.patch(Namespace, env.ns, {"metadata": {"labels": {"team": "shop"}}}, patch_type=PatchType.MERGE)
    labels = env.client.get(Namespace, env.ns).metadata.labels or {}  # type: ignore[union-attr]
    assert labels.get(GOVERNED_LABEL) == "true" and labels.get("team") == "shop"
    # and admission still applies there
    assert create(env.client, workload("Pod", _name("x"), env.ns, annotations={})) is not None


def test_webhook_calls_skip_unchanged_updates(env: Env) -> None:
    """matchConditions keep template-preserving UPDATEs in the API server: they are admitted even
    with a verdict that would deny the template (checked above), and a fresh template is judged."""
    env.policy("bots")
    obj = from_dict(workload("Deployment", _name("d"), env.ns, annotations=DECLARED_20))
    env.client.create(obj)
    _tighten(env, "bots", retention=TIGHT)
    name = obj.metadata.name  # type: ignore[attr-defined]
    env.client.patch(
        Deployment,
        name,
        {"metadata": {"labels": {"tier": "web"}}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    with pytest.raises(ApiError) as err:
        env.client.patch(
            Deployment,
            name,
            {"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}},
            namespace=env.ns,
            patch_type=PatchType.MERGE,
        )
    assert "[retention-days]" in str(err.value.status.message)


def test_pods_a_user_policy_isolates_are_left_out_of_the_baseline(env: Env) -> None:
    """aidp never loosens a namespace's own egress isolation: the operator labels the pods a user
    NetworkPolicy isolates for egress, and the baseline selects only the others."""
    env.client.create(
        NetworkPolicy.from_dict(
            {
                "metadata": {"name": "deny-egress", "namespace": env.ns},
                "spec": {"podSelector": {"matchLabels": {"locked": "yes"}}, "policyTypes": ["Egress"]},
            }
        )
    )
    env.policy("bots")
    locked, free = _name("locked"), _name("free")
    started = time.monotonic()
    assert create(env.client, workload("Pod", locked, env.ns, labels={"app": "bot", "locked": "yes"})) is None
    wait_for(
        lambda: _labelled(env.client, env.ns, locked, ISOLATED_LABEL), timeout=30, what="isolation label"
    )
    print(f"isolation window (create -> label): {time.monotonic() - started:.2f}s")
    # an isolated compliant pod stays approved when its namespace is judged again (a policy change:
    # the sync judges the pods before it reports the new generation enforced)
    wait_for(lambda: _approved(env.client, env.ns, locked), timeout=30, what="the isolated pod approved")
    _tighten(env, "bots", purpose="Summarise support tickets, reviewed")
    assert _approved(env.client, env.ns, locked) and _labelled(env.client, env.ns, locked, ISOLATED_LABEL)
    assert create(env.client, workload("Pod", free, env.ns)) is None
    wait_for(lambda: _approved(env.client, env.ns, free), timeout=30, what="approved")
    assert not _labelled(env.client, env.ns, free, ISOLATED_LABEL)
    # the user's policy stops isolating it: the label goes (re-judged on the NetworkPolicy event)
    env.client.delete(NetworkPolicy, "deny-egress", namespace=env.ns)
    wait_for(
        lambda: not _labelled(env.client, env.ns, locked, ISOLATED_LABEL), timeout=30, what="label removed"
    )


def _labelled(client: Client, ns: str, name: str, label: str) -> bool:
    labels = client.get(Pod, name, namespace=ns).metadata.labels or {}  # type: ignore[union-attr]
    return labels.get(label) == "true"


# ---- invalid specs fail closed -----------------------------------------------------------------


@pytest.fixture(scope="module")
def lax_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, AidpStack]]:
    """A private control plane whose AIDataPolicy CRD was loosened after aidp started (a schema
    skew, as after a partial upgrade): the API server stores specs the operator cannot use."""
    yield from helpers.own_stack(tmp_path_factory.mktemp("lax"), "--resync-seconds", "5")


@pytest.mark.local_only
def test_a_namespace_whose_only_policy_is_invalid_is_governed_and_cut(
    lax_stack: tuple[Any, AidpStack],
) -> None:
    cp, _ = lax_stack
    client = kube.client(cp.kubeconfig)
    crd = client.get(CustomResourceDefinition, "aidatapolicies.aidp.io")
    version = crd.spec.versions[0]  # type: ignore[union-attr]
    version.schema.openAPIV3Schema.properties["spec"] = JSONSchemaProps(  # type: ignore[union-attr,index]
        type="object", x_kubernetes_preserve_unknown_fields=True
    )
    client.replace(crd)
    ns = f"bad-{secrets.token_hex(3)}"
    client.create(Namespace(metadata=ObjectMeta(name=ns)))
    bad = helpers.policy("broken", ns, retention={"maxDays": "a lot"})

    def created() -> bool:
        try:
            client.create(helpers.AIDataPolicy(bad))
        except ApiError as err:
            return err.status.code == 409  # else the loosened schema is not in force yet
        return True

    wait_for(created, timeout=30, what="the invalid policy stored")

    def condition() -> dict[str, Any] | None:
        st = client.get(helpers.AIDataPolicy, "broken", namespace=ns).to_dict().get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        return conds.get("EgressEnforced")

    egress = wait_for(condition, timeout=30, what="the policy's status")
    assert (egress["status"], egress["reason"]) == ("False", "InvalidSpec"), egress
    # governed all the same: labelled for admission, and a baseline that cuts every provider
    wait_for(
        lambda: (client.get(Namespace, ns).metadata.labels or {}).get(GOVERNED_LABEL) == "true", timeout=30
    )  # type: ignore[union-attr]
    base = wait_for(lambda: client.get(NetworkPolicy, "aidp-egress-baseline", namespace=ns), timeout=30)
    cut = {
        c
        for rule in base.spec.egress or []
        for p in rule.to or []
        if p.ipBlock
        for c in (p.ipBlock.except_ or [])
    }  # type: ignore[union-attr]
    assert {"203.0.113.10/32", "203.0.113.30/32", "203.0.113.100/32"} <= cut  # openai, its region, anthropic
    # and no pod is approved there (nothing gives egress)
    names = {n.metadata.name for n in client.list(NetworkPolicy, namespace=ns)}  # type: ignore[union-attr]
    assert names == {"aidp-egress-baseline"}
