"""Webhook calls per Deployment create (`webhook_calls_per_deployment_create`, the `opa` engine).

A compliant Deployment with one replica, in a governed namespace, makes kube-apiserver admit a
Deployment CREATE (the user), a ReplicaSet CREATE (the deployment controller) and a Pod CREATE (the
replicaset controller), plus their status UPDATEs. kube-apiserver counts each call to aidp's
`validate.aidp.io` webhook in `apiserver_admission_webhook_request_total{name="validate.aidp.io"}`
(its /metrics); the figure is the counter's increase over N creates, divided by N, read once every
Deployment has its Pod and the counter stands still. The webhook's matchConditions
(aidp/webhook.py; docs/security.md#requests-that-never-reach-opa) decide what is called.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path

from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Pod, ServiceAccount
from tests.integration import helpers

from aidp import paths

NAMESPACE = "bench-webhook-calls"
WEBHOOK = "validate.aidp.io"
_SAMPLE = re.compile(r"^apiserver_admission_webhook_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def webhook_requests(kubeconfig: str, webhook: str = WEBHOOK) -> float:
    """kube-apiserver's count of calls to `webhook` so far (every operation, kind and outcome)."""
    out = subprocess.run(
        [str(paths.testbin_dir() / "kubectl"), "--kubeconfig", kubeconfig, "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    total = 0.0
    for line in out.splitlines():
        m = _SAMPLE.match(line)
        if m and f'name="{webhook}"' in m.group("labels"):
            total += float(m.group("value"))
    return total


def _settled(kubeconfig: str, timeout: float = 60.0) -> float:
    """The counter once it has not moved for three reads a second apart."""
    deadline = time.monotonic() + timeout
    last, still = webhook_requests(kubeconfig), 0
    while still < 3 and time.monotonic() < deadline:
        time.sleep(1.0)
        now = webhook_requests(kubeconfig)
        still = still + 1 if now == last else 0
        last = now
    return last


def webhook_calls(client: Client, kubeconfig: str, deployments: int = 20) -> dict[str, float]:
    """Create `deployments` compliant Deployments (one replica each) in a governed namespace and
    count aidp's webhook calls until each has its Pod (no scheduler binds them: Pending is enough)."""
    with contextlib.suppress(ApiError):
        client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
    with contextlib.suppress(ApiError):
        client.create(ServiceAccount(metadata=ObjectMeta(name=helpers.SA, namespace=NAMESPACE)))
    with contextlib.suppress(ApiError):
        client.create(from_dict(helpers.policy("bots", NAMESPACE)))
    helpers.wait_enforced(client, NAMESPACE, "bots", timeout=60)
    deadline = time.monotonic() + 60
    while (client.get(Namespace, NAMESPACE).metadata.labels or {}).get("aidp.io/governed") != "true":  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace {NAMESPACE} not governed after 60 s")
        time.sleep(0.2)
    try:
        before = _settled(kubeconfig)
        for i in range(deployments):
            obj = helpers.workload("Deployment", f"calls-{i}", NAMESPACE)
            obj["spec"]["replicas"] = 1
            client.create(from_dict(obj))
        deadline = time.monotonic() + 120
        while len(list(client.list(Pod, namespace=NAMESPACE))) < deployments:
            if time.monotonic() > deadline:
                raise RuntimeError("the Deployments' Pods were not all created within 120 s")
            time.sleep(0.5)
        after = _settled(kubeconfig)
    finally:
        with contextlib.suppress(ApiError):
            client.delete(Namespace, NAMESPACE)
    calls = (after - before) / deployments
    print(f"  {WEBHOOK} calls per Deployment create (1 replica): {calls:.2f} over {deployments} creates")
    return {"webhook_calls_per_deployment_create": calls}


def main() -> None:  # pragma: no cover - a manual run against a given control plane
    import sys

    from aidp import kube

    kc = sys.argv[1]
    print(webhook_calls(kube.client(Path(kc)), kc))


if __name__ == "__main__":
    main()
