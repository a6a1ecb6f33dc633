"""Building policies and workloads for the admission tests, waiting on the operator, and the
private control planes and credentials some tests need."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount

from aidp import kube
from aidp.devcluster import ControlPlane
from aidp.devcluster import kubeconfig as kubeconfig_mod
from aidp.devcluster.stack import AidpStack

AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
SA = "bot"
KINDS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
FUTURE = "2099-12-31"

COMPLIANT = {
    "aidp.io/consent-basis": "contract",
    "aidp.io/retention-days": "14",
    "aidp.io/zero-data-retention": "true",
    "aidp.io/data-categories": "internal,pseudonymised",
}

# for each rule id: how a workload that violates only that rule differs from the compliant one
VIOLATIONS: dict[str, dict[str, Any]] = {
    "service-account": {"sa": "default"},
    "consent-basis": {"annotations": {"aidp.io/consent-basis": "legitimate-interests"}},
    "retention-days": {"annotations": {"aidp.io/retention-days": "31"}},
    "zero-data-retention": {"annotations": {"aidp.io/zero-data-retention": "false"}},
    "data-categories": {"annotations": {"aidp.io/data-categories": "internal,health"}},
}


def policy(name: str, namespace: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provider": "openai",
        "workloadSelector": {"matchLabels": {"app": "bot"}},
        "serviceAccountNames": [SA],
        "purpose": "Summarise support tickets",
        "consent": {"required": True, "allowedBases": ["consent", "contract"]},
        "retention": {"maxDays": 30, "requireZeroDataRetention": True},
        "dataCategories": {"allowed": ["public", "internal", "pseudonymised"], "forbidden": ["health"]},
        "enforcement": "deny",
        "review": {"approvedBy": "dpo@example.com", "ticket": "PRIV-1", "expires": FUTURE},
    }
    spec.update(overrides)
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def workload(
    kind: str,
    name: str,
    namespace: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    sa: str = SA,
) -> dict[str, Any]:
    labels = {"app": "bot"} if labels is None else labels
    ann = dict(COMPLIANT) if annotations is None else annotations
    pod_spec: dict[str, Any] = {
        "serviceAccountName": sa,
        "containers": [{"name": "c", "image": "registry.example.com/bot:1.0"}],
    }
    if kind in ("Job", "CronJob"):
        pod_spec["restartPolicy"] = "Never"
    template = {"metadata": {"labels": labels, "annotations": ann}, "spec": pod_spec}
    meta = {"name": name, "namespace": namespace}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, **template["metadata"]},
            "spec": pod_spec,
        }
    if kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": template}}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def violating(kind: str, name: str, namespace: str, rule: str) -> dict[str, Any]:
    change = VIOLATIONS[rule]
    ann = {**COMPLIANT, **change.get("annotations", {})}
    return workload(kind, name, namespace, annotations=ann, sa=change.get("sa", SA))


def create(client: Client, obj: dict[str, Any], *, dry_run: bool = False) -> str | None:
    """Create `obj`; None when admitted, else the API server's message."""
    try:
        client.create(from_dict(copy.deepcopy(obj)), dry_run=dry_run)
    except ApiError as err:
        return str(err.status.message)
    return None


def wait_enforced(client: Client, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the operator reports this generation of the policy loaded into OPA."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = client.get(AIDataPolicy, name, namespace=namespace)
        last = obj.to_dict()
        st = last.get("status") or {}
        conds = {c["type"]: c for c in st.get("conditions") or []}
        if (
            st.get("observedGeneration") == last["metadata"]["generation"]
            and conds.get("AdmissionEnforced", {}).get("status") == "True"
        ):
            return last
        time.sleep(0.05)
    raise AssertionError(
        f"AIDataPolicy {namespace}/{name} not enforced after {timeout}s: {last.get('status')}"
    )


def sa_token(client: Client, name: str, namespace: str) -> str:
    """A token of a ServiceAccount from the TokenRequest API (what the kubelet mounts in a pod)."""
    req = ServiceAccount.Token(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=TokenRequestSpec(audiences=[], expirationSeconds=3600),
    )
    got = client.create(req, name=name, namespace=namespace)
    assert got.status is not None
    return str(got.status.token)


def sa_kubeconfig(cluster: ControlPlane, client: Client, sa: str, namespace: str, path: Path) -> Path:
    text = kubeconfig_mod.render(
        cluster.server,
        cluster.ca_file.read_bytes(),
        user=f"system:serviceaccount:{namespace}:{sa}",
        token=sa_token(client, sa, namespace),
    )
    return kubeconfig_mod.write(path, text)


def own_stack(
    tmp: Path, *operator_args: str, crds: Sequence[Path] = ()
) -> Iterator[tuple[ControlPlane, AidpStack]]:
    """A control plane (with `crds` installed before aidp starts) and aidp of their own, stopped
    afterwards (for use as a fixture body: `yield from own_stack(...)`)."""
    cp = ControlPlane(tmp / "cp").start()
    stack = AidpStack(cp, tmp / "aidp", operator_args=operator_args)
    try:
        if crds:
            kube.install_crd_files(kube.client(cp.kubeconfig), list(crds))
        stack.start()
        yield cp, stack
    finally:
        stack.stop()
        cp.stop()
