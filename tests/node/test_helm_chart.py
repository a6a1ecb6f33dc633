"""The chart on the node: `helm install charts/aidp` with the images of `make images`, as users run it.

The module takes the session's node bed, stops its host-process operator, agent and OPA (and
removes what helm must create itself: the webhook, the chart's ClusterRoles), installs the chart
into the namespace `aidp-chart`, and checks what its pods do: all Ready, one operator leads, the API
server calls the webhook through the Service `aidp-opa` (kube-proxy's iptables rules on the host
carry it to the OPA pods, as on a control-plane node that runs kube-proxy), and the examples are
admitted and denied as `aidp check` says. Then the faults: the OPA pods deleted with the operator
scaled to 0, the leading operator pod deleted, and the API server's packets to the OPA pods
dropped. At the end the release is uninstalled, its namespace is gone, and the host processes
answer again for the other node tests. (The file sorts after test_dev_node.py, which must run
before the session's node bed starts: one node per machine.)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from aidp import kube, paths, rbac_roles
from aidp.check import check_manifests
from aidp.devcluster.node import NODE_IP
from aidp.render import load_manifests
from tests.integration import helpers
from tests.node.conftest import NodeBed
from tests.waiting import wait_for

pytestmark = pytest.mark.node

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aidp"
EXAMPLES = ROOT / "examples"
NS = "aidp-chart"
RELEASE = "aidp"
WEBHOOK = "aidp-validating-webhook"
DROP_CHAIN = "AIDP-NODE-TEST-DROP"  # the node's prefix: a teardown removes it even after a crash
EXAMPLE_NAMESPACES = ("support", "marketing")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


@dataclass
class ChartBed:
    bed: NodeBed
    helm_home: Path

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        home = self.helm_home
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECONFIG": str(self.bed.cp.kubeconfig),
        }
        res = subprocess.run(
            [str(paths.testbin_dir() / "helm"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.bed.kubectl("-n", NS, *args)

    def pods(self, component: str) -> list[dict[str, Any]]:
        res = self.kubectl("get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json")
        assert res.returncode == 0, res.stderr
        items: list[dict[str, Any]] = json.loads(res.stdout)["items"]
        return items

    def ready_pods(self, component: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(component) if _ready(p) and not p["metadata"].get("deletionTimestamp")]

    def wait_ready(self, component: str, count: int, timeout: float = 300) -> list[dict[str, Any]]:
        """Exactly `count` pods of the component, all Ready and none terminating."""

        def done() -> list[dict[str, Any]]:
            pods = self.pods(component)
            ready = self.ready_pods(component)
            return ready if len(ready) == count == len(pods) else []

        try:
            return wait_for(done, timeout=timeout, interval=0.5, what=f"{count} {component} pods Ready")
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.diagnostics()}") from None

    def scale_operator(self, replicas: int) -> None:
        res = self.kubectl("scale", "deployment", f"{RELEASE}-operator", f"--replicas={replicas}")
        assert res.returncode == 0, res.stderr
        if replicas:
            self.wait_ready("operator", replicas)
        else:
            wait_for(lambda: not self.pods("operator"), timeout=120, interval=0.5, what="no operator pods")

    def leader(self) -> str:
        """The pod whose operator holds the Lease (its identity is `<pod>_<random>`)."""
        lease = self.bed.client.get(Lease, "aidp-operator", namespace=NS)
        holder = (lease.spec.holderIdentity if lease.spec else None) or ""
        return holder.rsplit("_", 1)[0]

    def diagnostics(self) -> str:
        parts = []
        for args in (
            ("get", "pods", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("logs", "-l", "app.kubernetes.io/instance=" + RELEASE, "--all-containers", "--tail=15"),
        ):
            res = self.kubectl(*args)
            parts.append(f"$ kubectl -n {NS} {' '.join(args)}\n{res.stdout[-4000:]}{res.stderr[-1000:]}")
        return "\n".join(parts)


def _ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _values(bed: NodeBed) -> dict[str, Any]:
    """The local images, never pulled; the bed's static provider addresses; small CPU requests
    (the machine has two cores and other tenants); everything else the chart's defaults."""
    small = {"cpu": "10m", "memory": "64Mi"}
    return {
        "image": {"repository": "aidp.local/aidp", "tag": "dev", "pullPolicy": "Never"},
        "operator": {"resources": {"requests": small, "limits": {"memory": "512Mi"}}},
        "opa": {
            "image": {"repository": "aidp.local/opa", "tag": "dev", "pullPolicy": "Never"},
            "resources": {"requests": small, "limits": {"memory": "512Mi"}},
            "agent": {"resources": {"requests": small, "limits": {"memory": "256Mi"}}},
        },
        "egress": {"addresses": yaml.safe_load(bed.stack.addresses_file.read_text())},
    }


def _gone(client: Any, res: Any, name: str, namespace: str | None = None) -> bool:
    try:
        client.get(res, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return True
        raise
    return False


@pytest.fixture(scope="module")
def chart(node_bed: NodeBed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartBed]:
    bed = node_bed
    cb = ChartBed(bed, tmp_path_factory.mktemp("helm-home"))
    client = bed.client
    # the chart's components, not the host processes, answer from here on
    bed.stack.stop()
    with contextlib.suppress(ApiError):
        client.delete(ValidatingWebhookConfiguration, bed.stack.config.webhook_name)
    for role in rbac_roles.cluster_roles():
        with contextlib.suppress(ApiError):
            client.delete(ClusterRole, role["metadata"]["name"])
    values = cb.helm_home / "values.yaml"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text(yaml.safe_dump(_values(bed)))
    try:
        t0 = time.monotonic()
        # the release namespace enforces Pod Security `restricted` (docs/helm.md#pod-security)
        client.create(Namespace(metadata=ObjectMeta(name=NS, labels=RESTRICTED)))
        cb.helm("install", RELEASE, str(CHART), "-n", NS, "-f", str(values))
        cb.wait_ready("opa", 2)
        cb.wait_ready("operator", 2)
        print(f"helm install -> every pod of the chart Ready: {time.monotonic() - t0:.1f}s")
        yield cb
    finally:
        cb.helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "3m", check=False)
        for name in (*EXAMPLE_NAMESPACES, NS):
            with contextlib.suppress(ApiError):
                client.delete(Namespace, name)
        for name in (*EXAMPLE_NAMESPACES, NS):
            wait_for(partial(_gone, client, Namespace, name), timeout=180, interval=0.5, what=f"{name} gone")
        wait_for(
            lambda: _gone(client, ValidatingWebhookConfiguration, WEBHOOK),
            timeout=30,
            what="the chart's webhook gone",
        )
        # the host processes again, for the rest of the session
        bed.stack.start(timeout=120)


def governed(bed: NodeBed) -> str:
    ns = bed.namespace()
    bed.policy(ns, "bots")
    return ns


def compliant(bed: NodeBed, ns: str, name: str) -> dict[str, Any]:
    return bed.probe_pod(ns, name)


def violating(bed: NodeBed, ns: str, name: str) -> dict[str, Any]:
    return bed.probe_pod(ns, name, annotations={}, sa="default")


def admitted(bed: NodeBed, obj: dict[str, Any]) -> str | None:
    """None when the API server admits `obj` (dry run: the webhook is called, nothing is created),
    else its message."""
    return helpers.create(bed.client, obj, dry_run=True)


def decides(bed: NodeBed, ns: str) -> bool:
    """OPA decides for `ns`: a compliant pod admitted, a violating one denied by aidp's rules."""
    denied = admitted(bed, violating(bed, ns, "v"))
    return admitted(bed, compliant(bed, ns, "c")) is None and denied is not None and "aidp:" in denied


# ---- the chart runs --------------------------------------------------------------------------------
def test_the_chart_pods_are_ready_and_the_webhook_goes_through_the_service(chart: ChartBed) -> None:
    client = chart.bed.client
    operators = chart.wait_ready("operator", 2)
    opas = chart.wait_ready("opa", 2)
    for pod in opas:
        names = {c["name"] for c in pod["status"]["containerStatuses"] if c["ready"]}
        assert names == {"opa", "agent"}, pod["status"]["containerStatuses"]
    # leader election: one operator holds the Lease
    leader = wait_for(chart.leader, timeout=60, what="an operator holding the Lease")
    assert leader in {p["metadata"]["name"] for p in operators}

    # the webhook: the chart's, pointing at the Service, the CA bundle filled in by the operator
    def vwc() -> Any:
        got = client.get(ValidatingWebhookConfiguration, WEBHOOK)
        return got if got.webhooks and got.webhooks[0].clientConfig.caBundle else None

    hooks = wait_for(vwc, timeout=60, what="the operator's caBundle in the chart's webhook")
    assert (hooks.metadata.annotations or {}).get("meta.helm.sh/release-name") == RELEASE
    for hook in hooks.webhooks:
        assert hook.clientConfig.url is None
        assert hook.clientConfig.service is not None
        assert (hook.clientConfig.service.namespace, hook.clientConfig.service.name) == (NS, "aidp-opa")
    # the API server (a host process) reaches Service addresses as a control-plane node does:
    # kube-proxy's nat OUTPUT jump and the Service's rule, DNAT to the OPA pods' addresses
    assert (
        "-j KUBE-SERVICES"
        in subprocess.run(
            ["iptables", "-t", "nat", "-S", "OUTPUT"], capture_output=True, text=True, check=True
        ).stdout
    )
    svc = json.loads(chart.kubectl("get", "service", "aidp-opa", "-o", "json").stdout)
    rules = subprocess.run(
        ["iptables", "-t", "nat", "-S", "KUBE-SERVICES"], capture_output=True, text=True, check=True
    ).stdout
    assert f"-d {svc['spec']['clusterIP']}/32" in rules, rules
    # nothing of the host stack is left to answer
    assert not any(p.alive() for p in chart.bed.stack.processes().values())


def test_the_examples_are_admitted_and_denied_as_aidp_check_says(chart: ChartBed) -> None:
    client = chart.bed.client
    offline = {(r.kind, r.namespace, r.name): r.allowed for r in check_manifests(load_manifests([EXAMPLES]))}
    assert False in offline.values() and True in offline.values()
    live: dict[tuple[str, str, str], bool] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for obj in kube.load_yaml_files([path]):
            key = (obj.kind, obj.metadata.namespace, obj.metadata.name)
            try:
                client.create(obj)
                live[key] = True
            except ApiError as err:
                assert err.status.code in (400, 403), err.status.message
                assert 'admission webhook "validate.aidp.io" denied the request: aidp:' in str(
                    err.status.message
                ), err.status.message
                live[key] = False
            if obj.kind == "AIDataPolicy":
                helpers.wait_enforced(client, obj.metadata.namespace, obj.metadata.name, timeout=120)
    assert {k: live[k] for k in offline} == offline


# ---- faults ----------------------------------------------------------------------------------------
def test_opa_pods_deleted_refuse_throughout_and_enforce_again_without_the_operator(chart: ChartBed) -> None:
    bed = chart.bed
    ns = governed(bed)
    try:
        assert wait_for(lambda: decides(bed, ns), timeout=60, what="OPA deciding for the namespace")
        chart.scale_operator(0)
        old = {p["metadata"]["name"] for p in chart.pods("opa")}
        res = chart.kubectl("delete", "pods", "-l", "app.kubernetes.io/component=opa", "--wait=false")
        assert res.returncode == 0, res.stderr
        tries = 0
        deadline = time.monotonic() + 300
        # until both replacements are Ready: every violating create is refused (denied by OPA, or
        # refused because no OPA answers: failurePolicy Fail)
        while True:
            pods = chart.ready_pods("opa")
            if len(pods) == 2 and not {p["metadata"]["name"] for p in pods} & old:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the new OPA pods not Ready within 300 s\n{chart.diagnostics()}")
            message = admitted(bed, violating(bed, ns, f"v{tries}"))
            assert message is not None, f"a violating pod was admitted while OPA restarted (try {tries})"
            tries += 1
            time.sleep(0.2)
        assert tries > 0
        # the agents restored the policies from the durable ConfigMap: no operator runs
        assert not chart.pods("operator")
        assert wait_for(lambda: decides(bed, ns), timeout=30, what="the new OPA pods deciding")
    finally:
        chart.scale_operator(2)
        bed.drop_namespace(ns)


def test_another_operator_enforces_a_new_policy_when_the_leader_pod_is_deleted(chart: ChartBed) -> None:
    """The deleted leader releases the Lease on its way out; the standing follower or the
    Deployment's replacement pod, whichever asks first, takes it (both seen in CI runs).

    The policy is created only once another operator holds the Lease: `kubectl delete` returns
    before the kubelet stops the old pod, which can still enforce a policy created at once (seen
    in CI), and then the test would prove nothing about the takeover."""
    bed = chart.bed
    chart.wait_ready("operator", 2)
    leader = wait_for(chart.leader, timeout=60, what="an operator holding the Lease")
    res = chart.kubectl("delete", "pod", leader, "--wait=false")
    assert res.returncode == 0, res.stderr
    new_leader = wait_for(
        lambda: (holder := chart.leader()) not in ("", leader) and holder,
        timeout=120,
        what="another operator holding the Lease",
    )
    ns = bed.namespace()
    try:
        bed.policy(ns, "bots")  # waits until the policy is enforced (status by the new leader)
        assert chart.leader() == new_leader
        assert wait_for(lambda: decides(bed, ns), timeout=30, what="OPA deciding for the new policy")
    finally:
        bed.drop_namespace(ns)
        chart.wait_ready("operator", 2)


@contextlib.contextmanager
def dropped(addresses: list[str], port: int) -> Iterator[None]:
    """The host's packets (the API server's) to `addresses:port` dropped, always lifted again.

    Filter OUTPUT sees the packets after kube-proxy's DNAT, so the rule names the OPA pods'
    addresses; pod-to-pod traffic (the operator loading OPA) is forwarded, not output, and stays."""

    def ipt(*args: str, check: bool = True) -> None:
        subprocess.run(["iptables", *args], capture_output=True, text=True, check=check)

    ipt("-N", DROP_CHAIN)
    try:
        for addr in addresses:
            ipt("-A", DROP_CHAIN, "-d", f"{addr}/32", "-p", "tcp", "--dport", str(port), "-j", "DROP")
        ipt("-I", "OUTPUT", "1", "-j", DROP_CHAIN)
        yield
    finally:
        ipt("-D", "OUTPUT", "-j", DROP_CHAIN, check=False)
        ipt("-F", DROP_CHAIN, check=False)
        ipt("-X", DROP_CHAIN, check=False)


def test_api_server_to_opa_dropped_fails_closed_and_recovers(chart: ChartBed) -> None:
    bed = chart.bed
    ns = governed(bed)
    free = bed.namespace()
    try:
        assert wait_for(lambda: decides(bed, ns), timeout=60, what="OPA deciding for the namespace")
        addresses = [p["status"]["podIP"] for p in chart.wait_ready("opa", 2)]
        with dropped(addresses, 8181):
            t0 = time.monotonic()
            message = admitted(bed, compliant(bed, ns, "c"))
            took = time.monotonic() - t0
            assert message is not None, "a create in a governed namespace was admitted without OPA"
            assert "failed calling webhook" in message and "validate.aidp.io" in message, message
            assert "deadline exceeded" in message or "timeout" in message.lower(), message
            print(f"fail-closed answer after {took:.2f}s (webhook timeoutSeconds 3): {message}")
            # the namespace selector: an ungoverned namespace never calls the webhook
            assert admitted(bed, compliant(bed, free, "c")) is None
        assert (
            DROP_CHAIN
            not in subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
        )
        assert wait_for(lambda: decides(bed, ns), timeout=60, what="OPA deciding once the drop is lifted")
    finally:
        bed.drop_namespace(ns)
        bed.drop_namespace(free)


def test_opa_network_policy_leaves_opa_to_the_api_server_and_the_operators(chart: ChartBed) -> None:
    """`opa.networkPolicy` (helm upgrade) with the node's address as the API server's: a pod of
    another namespace loses OPA's port, the webhook and the operators' loads keep working.

    Last in the module: the release keeps the policy until it is uninstalled."""
    bed = chart.bed
    free = bed.namespace(governed_sa=False)
    ns = governed(bed)
    try:
        opa_ip = chart.wait_ready("opa", 2)[0]["status"]["podIP"]
        curious = bed.run_pod(
            bed.probe_pod(free, "curious", labels={"app": "x"}, annotations={}, sa="default")
        )

        def reaches_opa() -> bool:
            return bed.connects(free, curious, opa_ip, port=8181, wait=1)

        assert wait_for(reaches_opa, timeout=60, interval=0.5, what="OPA's port reachable before the policy")
        chart.helm(
            "upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values",
            "--set", "opa.networkPolicy.enabled=true",
            "--set", f"opa.networkPolicy.apiServerCIDRs={{{NODE_IP}/32}}",
        )  # fmt: skip
        wait_for(lambda: not reaches_opa(), timeout=90, interval=0.5, what="OPA's port closed to other pods")
        # the API server (from the node's address) still calls the webhook ...
        assert wait_for(lambda: decides(bed, ns), timeout=60, what="OPA deciding behind its NetworkPolicy")
        # ... and the operators still load OPA: a new policy is enforced
        bed.policy(ns, "later", workloadSelector={"matchLabels": {"app": "later"}})
        assert not reaches_opa()
    finally:
        bed.drop_namespace(ns)
        bed.drop_namespace(free)
