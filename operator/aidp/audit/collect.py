"""Reading the cluster for an audit: paginated LISTs (at most 500 objects a request), streamed."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import DaemonSet, Deployment, ReplicaSet, StatefulSet
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import Pod
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding

from aidp.audit.engine import Auditor, Evaluate
from aidp.audit.rbac import RbacIndex
from aidp.audit.report import AuditReport
from aidp.model import Policy, PolicyError

PAGE = 500
IN_FLIGHT = 2
AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
# controllers first: a page of them is as cheap as a page of pods, and they are what people own
WORKLOAD_RESOURCES: tuple[tuple[Any, str, str], ...] = (
    (Deployment, "apps/v1", "Deployment"),
    (StatefulSet, "apps/v1", "StatefulSet"),
    (DaemonSet, "apps/v1", "DaemonSet"),
    (CronJob, "batch/v1", "CronJob"),
    (Job, "batch/v1", "Job"),
    (ReplicaSet, "apps/v1", "ReplicaSet"),
    (Pod, "v1", "Pod"),
)


def _ns(namespace: str | None) -> str:
    return namespace if namespace else "*"


def listed(
    client: Client, res: Any, namespace: str | None, api_version: str, kind: str
) -> Iterator[dict[str, Any]]:
    for obj in client.list(res, namespace=_ns(namespace), chunk_size=PAGE):
        d = obj.to_dict()
        d["apiVersion"], d["kind"] = api_version, kind
        yield d


def pages(items: Iterator[dict[str, Any]], size: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    page: list[dict[str, Any]] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def list_policies(client: Client, namespace: str | None) -> list[dict[str, Any]]:
    return list(listed(client, AIDataPolicy, namespace, "aidp.io/v1alpha1", "AIDataPolicy"))


def provider_addresses(policy_objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """The addresses in force per (namespace, host), as the operator reports them in status."""
    out: dict[tuple[str, str], list[str]] = {}
    for obj in policy_objects:
        ns = obj["metadata"]["namespace"]
        for e in (obj.get("status") or {}).get("endpoints") or []:
            if e.get("host") and e.get("addresses"):
                out.setdefault((ns, e["host"]), [])
                out[(ns, e["host"])] = sorted(set(out[(ns, e["host"])]) | set(e["addresses"]))
    return out


def audit_cluster(
    client: Client,
    evaluate: Evaluate,
    *,
    namespace: str | None = None,
    progress: Callable[[str, int], None] | None = None,
    today: dt.date | None = None,
    policy_objects: list[dict[str, Any]] | None = None,
) -> tuple[AuditReport, Auditor, list[dict[str, Any]]]:
    """Audit every top-level workload (of `namespace`, or the cluster). Returns the report, the
    auditor (per-policy tallies for status) and the AIDataPolicy objects read."""
    policy_objs = policy_objects if policy_objects is not None else list_policies(client, namespace)
    policies: list[Policy] = []
    for obj in policy_objs:
        try:
            policies.append(Policy.from_object(obj))
        except PolicyError:
            continue  # the operator reports it in the policy's status
    netpols = list(listed(client, NetworkPolicy, namespace, "networking.k8s.io/v1", "NetworkPolicy"))
    rbac = RbacIndex.build(
        listed(client, Role, namespace, "rbac.authorization.k8s.io/v1", "Role"),
        (r.to_dict() for r in client.list(ClusterRole, chunk_size=PAGE)),
        listed(client, RoleBinding, namespace, "rbac.authorization.k8s.io/v1", "RoleBinding"),
        (r.to_dict() for r in client.list(ClusterRoleBinding, chunk_size=PAGE)),
    )
    auditor = Auditor(
        evaluate,
        policies,
        today or dt.datetime.now(dt.UTC).date(),
        netpols,
        rbac,
        provider_addresses(policy_objs),
        scope=f"namespace {namespace}" if namespace else "cluster",
    )
    # OPA judges one page while the next one is read and prepared (two cores: OPA and Python
    # overlap); at most IN_FLIGHT pages are held, so memory stays bounded by the page size
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="aidp-audit") as pool:
        pending: deque[tuple[list[Any], Future[list[dict[str, Any]]]]] = deque()
        for res, api_version, kind in WORKLOAD_RESOURCES:
            for page in pages(listed(client, res, namespace, api_version, kind)):
                batch = auditor.prepare(page)
                if batch:
                    pending.append((batch, pool.submit(evaluate, [r for _, r in batch])))
                while len(pending) > IN_FLIGHT:
                    done, future = pending.popleft()
                    auditor.apply(done, future.result())
                if progress:
                    progress(kind, len(page))
        while pending:
            done, future = pending.popleft()
            auditor.apply(done, future.result())
    return auditor.finish(), auditor, policy_objs
