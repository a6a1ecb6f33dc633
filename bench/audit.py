"""Audit at scale (issue: cluster audit reports).

Seeds pods across namespaces (half selected by a policy and compliant, half not), then 5 policies
per namespace, and measures in separate processes: `aidp audit` wall time and peak RSS, against the
wall time of bare paginated LISTs (chunks of 500) of the same objects.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from lightkube import AsyncClient, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from tests.integration import helpers

# The baseline: a fresh interpreter that reads every object the audit reads (the workloads, the
# AIDataPolicies, NetworkPolicies and RBAC objects) with the same paginated LISTs (500 a page),
# each page decoded in full into plain dicts, the garbage collector paused as in the audit.
LIST_ONLY = """
import sys
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding, Role, RoleBinding
from aidp import kube
from aidp.audit import collect
c = kube.client(sys.argv[1])
n = 0
with collect.gc_paused():
    others = (collect.AIDataPolicy, NetworkPolicy, Role, ClusterRole, RoleBinding, ClusterRoleBinding)
    for res in (*others, *(r for r, _, _ in collect.WORKLOAD_RESOURCES)):
        for page in collect.raw_pages(c, res, None):
            n += len(page)
print(n)
"""


def _pod(ns: str, i: int) -> dict[str, Any]:
    selected = i % 2 == 0
    labels = {"app": f"svc-{i % 5}"} if selected else {"app": f"other-{i % 7}"}
    obj = helpers.workload(
        "Pod", f"p-{i:05d}", ns, labels=labels, annotations=dict(helpers.COMPLIANT), sa="default"
    )
    return obj


async def _seed_pods(kubeconfig: str, namespaces: list[str], total: int, concurrency: int = 40) -> None:
    client = AsyncClient(config=KubeConfig.from_file(kubeconfig), trust_env=False)
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait((namespaces[i % len(namespaces)], i))

    async def worker() -> None:
        while True:
            try:
                ns, i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await client.create(from_dict(_pod(ns, i)))
            except ApiError as err:
                if err.status.code != 409:
                    raise

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.close()


def seed(client: Client, kubeconfig: str, pods: int, namespaces: int, policies: int, prefix: str) -> None:
    names = [f"{prefix}-{n:03d}" for n in range(namespaces)]
    for ns in names:
        for obj in (
            Namespace(metadata=ObjectMeta(name=ns)),
            ServiceAccount(metadata=ObjectMeta(name="default", namespace=ns)),
        ):
            try:
                client.create(obj)
            except ApiError as err:
                if err.status.code != 409:
                    raise
    asyncio.run(_seed_pods(kubeconfig, names, pods))
    per_ns = max(1, policies // namespaces)
    for ns in names:
        for k in range(per_ns):
            obj = helpers.policy(
                f"svc-{k}",
                ns,
                workloadSelector={"matchLabels": {"app": f"svc-{k}"}},
                serviceAccountNames=[],
                retention={"maxDays": 30},
            )
            try:
                client.create(helpers.AIDataPolicy(obj))
            except ApiError as err:
                if err.status.code != 409:
                    raise


def measure(kubeconfig: Path, label: str) -> dict[str, float]:
    # a fresh interpreter per measurement: RUSAGE_CHILDREN's maxrss is the largest child so far,
    # so the audit runs in a wrapper process that reports its own peak
    wrapper = (
        "import resource, subprocess, sys, time; t=time.perf_counter(); "
        "r=subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(time.perf_counter()-t, "
        "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024.0, r.returncode)"
    )
    lists = []
    audits = []
    rss = 0.0
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", wrapper, sys.executable, "-c", LIST_ONLY, str(kubeconfig)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        lists.append(float(out[0]))
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                wrapper,
                sys.executable,
                "-m",
                "aidp.cli.main",
                "audit",
                "--kubeconfig",
                str(kubeconfig),
                "-o",
                "json",
                "--fail-on",
                "never",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        audits.append(float(out[0]))
        rss = max(rss, float(out[1]))
        if out[2] not in ("0", "1"):
            raise RuntimeError("aidp audit failed")
    best_list, best_audit = min(lists), min(audits)
    print(
        f"  {label}: audit {best_audit:.2f}s vs bare LISTs {best_list:.2f}s (best of 3), "
        f"peak RSS {rss:.0f} MB"
    )
    return {
        f"audit_wall_seconds_{label}": best_audit,
        f"list_wall_seconds_{label}": best_list,
        f"audit_vs_list_ratio_{label}": best_audit / best_list,
        f"audit_peak_rss_mb_{label}": rss,
    }
