"""`aidp audit` on the real control plane without false negatives (issue 11, item 9): real RBAC
objects (a RoleBinding to system:authenticated, a Role that can create Deployments, a Role with
pods/exec), a ReplicationController's pod and a custom resource's pod, a NetworkPolicy that opens
a provider address only the egress baseline knows of, and a hostNetwork pod."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Pod, Secret, ServiceAccount

from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env
from tests.waiting import wait_for

SECRET = "openai-creds"
CRD_GROUP = "audit-test.aidp.io"
Widget = create_namespaced_resource(CRD_GROUP, "v1", "Widget", "widgets")
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{CRD_GROUP}"},
    "spec": {
        "group": CRD_GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def _create(client: Client, obj: dict[str, Any]) -> Any:
    return client.create(from_dict(copy.deepcopy(obj)))


def _key_env() -> list[dict[str, Any]]:
    return [{"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "api-key"}}}]


def _rbac(kind: str, name: str, ns: str, **body: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": ns},
        **body,
    }


def _binding(name: str, ns: str, role: str, subject: dict[str, Any]) -> dict[str, Any]:
    ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
    return _rbac("RoleBinding", name, ns, roleRef=ref, subjects=[subject])


@pytest.fixture
def widget_crd(kube_client: Client) -> Iterator[None]:
    """A custom resource kind, as a custom operator brings one (removed afterwards)."""
    crd = CustomResourceDefinition.from_dict(copy.deepcopy(WIDGET_CRD))
    kube_client.create(crd)

    def established() -> bool:
        got = kube_client.get(CustomResourceDefinition, f"widgets.{CRD_GROUP}")
        return any(c.type == "Established" and c.status == "True" for c in (got.status.conditions or []))

    wait_for(established, timeout=30, what="the Widget CRD established")
    yield
    with contextlib.suppress(ApiError):
        kube_client.delete(CustomResourceDefinition, f"widgets.{CRD_GROUP}")


def _egress_applied(c: Client, ns: str, name: str) -> bool:
    st = c.get(helpers.AIDataPolicy, name, namespace=ns).get("status") or {}
    cond = {x["type"]: x for x in st.get("conditions") or []}.get("EgressEnforced", {})
    return cond.get("status") == "True"


def _cut_elsewhere(c: Client, ns: str, policy: str) -> str | None:
    """An address the namespace's egress baseline cuts that is none of the policy's endpoints'
    (another host of the provider: a regional one), or None while the baseline is not there."""
    from lightkube.resources.networking_v1 import NetworkPolicy

    try:
        np = c.get(NetworkPolicy, "aidp-egress-baseline", namespace=ns).to_dict()
    except ApiError:
        return None
    cuts = {
        x
        for r in np["spec"].get("egress") or []
        for p in r.get("to") or []
        for x in (p.get("ipBlock") or {}).get("except") or []
    }
    status = c.get(helpers.AIDataPolicy, policy, namespace=ns).get("status") or {}
    own = {a for e in status.get("endpoints") or [] for a in e.get("addresses") or []}
    others = sorted(x for x in cuts - own if ":" not in x)
    return others[0] if others and own else None


def test_audit_reports_every_way_to_the_credentials_and_every_workload(
    env: Env, kube_client: Client, aidp_stack: AidpStack, widget_crd: None
) -> None:
    c, ns = kube_client, env.ns
    env.policy("bots")
    c.create(Secret(metadata=ObjectMeta(name=SECRET, namespace=ns), stringData={"api-key": "x"}))
    # the approved Deployment, taking its key from the Secret
    bot = helpers.workload("Deployment", "bot", ns)
    bot["spec"]["replicas"] = 0
    bot["spec"]["template"]["spec"]["containers"][0]["env"] = _key_env()
    _create(c, bot)
    # a ReplicationController (a controller aidp does not list), approved like the Deployment
    template = copy.deepcopy(bot["spec"]["template"])
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"app": "bot"}, "template": template},
    }
    _create(c, rc)
    # a pod a custom operator's Widget controls, calling the provider with no policy for it
    widget = c.create(
        Widget.from_dict(
            {"apiVersion": f"{CRD_GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": ns}}
        )
    )
    worker = helpers.workload("Pod", "w1-worker", ns, labels={"app": "worker"}, annotations={}, sa="default")
    worker["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"}
    ]
    worker["metadata"]["ownerReferences"] = [
        {
            "apiVersion": f"{CRD_GROUP}/v1",
            "kind": "Widget",
            "name": "w1",
            "uid": widget.metadata.uid,
            "controller": True,
        }
    ]
    _create(c, worker)
    # RBAC: everyone authenticated reads the Secret, ci creates Deployments, alice execs into pods
    for obj in (
        _rbac(
            "Role",
            "secret-reader",
            ns,
            rules=[
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": [SECRET]}
            ],
        ),
        _binding(
            "everyone-reads",
            ns,
            "secret-reader",
            {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:authenticated"},
        ),
        _rbac(
            "Role",
            "deployer",
            ns,
            rules=[{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}],
        ),
        _binding("ci-deploys", ns, "deployer", {"kind": "ServiceAccount", "name": "ci", "namespace": ns}),
        _rbac(
            "Role",
            "debugger",
            ns,
            rules=[{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
        ),
        _binding(
            "alice-debugs",
            ns,
            "debugger",
            {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"},
        ),
    ):
        _create(c, obj)
    c.create(ServiceAccount(metadata=ObjectMeta(name="ci", namespace=ns)))
    # egress: a user NetworkPolicy opens an address of the provider that is no policy's endpoint
    # (a regional host): only the baseline knows it
    wait_for(lambda: _egress_applied(c, ns, "bots"), timeout=30, what="egress rules of bots")
    cut = wait_for(
        lambda: _cut_elsewhere(c, ns, "bots"), timeout=30, what="the baseline's other provider addresses"
    )
    _create(
        c,
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "open-region", "namespace": ns},
            "spec": {
                "podSelector": {"matchLabels": {"app": "leaky"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": cut}}], "ports": [{"protocol": "TCP", "port": 443}]}],
            },
        },
    )
    _create(c, helpers.workload("Pod", "leaky", ns, labels={"app": "leaky"}, annotations={}, sa="default"))
    # a hostNetwork pod no policy selects: NetworkPolicies do not apply to it
    host = helpers.workload("Pod", "host-agent", ns, labels={"app": "agent"}, annotations={}, sa="default")
    host["spec"]["hostNetwork"] = True
    _create(c, host)

    def rc_pod() -> bool:
        return any(
            (r.kind, r.name) == ("ReplicationController", "legacy")
            for p in c.list(Pod, namespace=ns)
            for r in (p.metadata.ownerReferences or [])
        )

    wait_for(rc_pod, timeout=60, what="the ReplicationController's pod")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aidp.cli.main",
            "audit",
            "--kubeconfig",
            str(aidp_stack.cp.kubeconfig),
            "-n",
            ns,
            "-o",
            "json",
            "--fail-on",
            "never",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    def who(f: dict[str, Any]) -> str:
        return str(f["message"]).split(" can ")[0] if f["type"] == "credential-exposure" else ""

    found = {(f["type"], f["kind"], f["name"], f["severity"], who(f)) for f in report["findings"]}
    exposure = {
        ("Group system:authenticated", "critical"),
        (f"ServiceAccount {ns}/ci", "medium"),  # creates Deployments: can mount the Secret
        ("User alice", "medium"),  # exec only: one lower than a user who reads it
    }
    assert found == {
        *(("credential-exposure", "Deployment", "bot", sev, subject) for subject, sev in exposure),
        *(
            ("credential-exposure", "ReplicationController", "legacy", sev, subject)
            for subject, sev in exposure
        ),
        ("shadow-ai", "Widget", "w1", "high", ""),
        ("egress-bypass", "Pod", "leaky", "high", ""),
        ("egress-bypass", "Pod", "host-agent", "high", ""),
        # the policy names no controller or data subjects (contract 9): both records are incomplete
        ("record-incomplete", "Deployment", "bot", "low", ""),
        ("record-incomplete", "ReplicationController", "legacy", "low", ""),
    }, [(f["type"], f["kind"], f["name"], f["message"]) for f in report["findings"]]
    leaky = next(f for f in report["findings"] if f["name"] == "leaky")
    assert f"{cut.split('/')[0]}:443, a provider address the egress baseline cuts" in leaky["message"]
    assert "hostNetwork" in next(f for f in report["findings"] if f["name"] == "host-agent")["message"]
    records = {(r["kind"], r["name"]) for r in report["processingRecords"]}
    assert records == {("Deployment", "bot"), ("ReplicationController", "legacy")}
    assert report["summary"]["workloads"] == 5  # bot, legacy (one pod), w1, leaky, host-agent
    # whom credential-exposure left out, by name: cluster admins and the built-in controllers
    left = {s for g in report["leftOut"] for s in g["subjects"]}
    assert "Group system:masters" in left
    assert "ServiceAccount kube-system/replicaset-controller" in left
    assert all(g["analysis"] == "credential-exposure" for g in report["leftOut"])
