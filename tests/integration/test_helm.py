"""The Helm chart on a real API server: install, upgrade and uninstall, and the chart's RBAC driving
the real operator.

There is no kubelet: Deployments exist and the ReplicaSet controller creates their Pods (which the
Pod Security admission of a `restricted` namespace must accept), but nothing runs in them. To show
that the chart's RBAC is enough, the operator and the OPA agent run here as processes, each with a
token of the chart's own ServiceAccount and with the arguments of the chart's own containers.

The module has a control plane of its own: the chart's webhook name is cluster-wide and an aidp
operator governs every namespace, so it must not meet the session's aidp (the `aidp_stack` fixture).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, Secret, ServiceAccount
from lightkube.resources.discovery_v1 import EndpointSlice
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.types import PatchType

from aidp import catalog, kube, paths
from aidp.bundle import REVISION_ANNOTATION
from aidp.devcluster import ControlPlane
from aidp.devcluster.opa import OpaServer
from aidp.devcluster.procs import ComponentError, Process, free_port, log_tail
from aidp.devcluster.stack import DEMO_ADDRESSES
from aidp.opa_loader import Replica, revision_of
from tests.conftest import upstream_crd
from tests.integration.helpers import sa_kubeconfig
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only  # starts, kills or reconfigures processes

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aidp"
EXAMPLES = ROOT / "examples"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
AIDataPolicy = create_namespaced_resource("aidp.io", "v1alpha1", "AIDataPolicy", "aidatapolicies")
Report = create_namespaced_resource("openreports.io", "v1alpha1", "Report", "reports")
PERMISSION_ERRORS = ("forbidden", "not enough permissions", "unauthorized")


# ---- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    errors = []
    for _ in range(2):  # a second try on fresh ports: other processes on this machine take ports too
        cp = ControlPlane(tmp_path_factory.mktemp("helm-controlplane"))
        try:
            cp.start()
        except ComponentError as err:
            errors.append(str(err))
            continue
        yield cp
        cp.stop()
        return
    pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def client(cluster: ControlPlane) -> Client:
    c = kube.client(cluster.kubeconfig)
    # the genuine OpenReports CRD: the audit writes a Report per namespace
    kube.install_crd_files(c, [upstream_crd("openreports-reports.yaml")])
    return c


class Helm:
    """The real helm binary against the module's cluster, with its own (throwaway) home."""

    def __init__(self, cluster: ControlPlane, home: Path) -> None:
        self.cluster = cluster
        self.home = home
        self.binary = paths.testbin_dir() / "helm"
        if not self.binary.is_file():
            pytest.fail(f"{self.binary} is missing: run `make testbin` first", pytrace=False)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
            "KUBECONFIG": str(self.cluster.kubeconfig),
        }
        proc = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, env=env, timeout=180, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def manifest(self, release: str, namespace: str) -> list[dict[str, Any]]:
        out = self("get", "manifest", release, "-n", namespace).stdout
        return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def helm(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(cluster, tmp_path_factory.mktemp("helm-home"))


def restricted_namespace(client: Client, name: str) -> str:
    client.create(Namespace(metadata=ObjectMeta(name=name, labels=RESTRICTED)))
    wait_for(lambda: client.get(ServiceAccount, "default", namespace=name), timeout=30, what="default SA")
    return name


# ---- helpers -----------------------------------------------------------------------------------------
def live(client: Client, doc: dict[str, Any]) -> Any | None:
    """The object `doc` describes as the API server has it, or None."""
    res = type(from_dict(doc))
    try:
        return client.get(res, doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def container(manifest: list[dict[str, Any]], component: str, name: str) -> dict[str, Any]:
    dep = next(
        d
        for d in manifest
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    )
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with the value after `flag` replaced (the flag must be there)."""
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(paths.testbin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def vwc_dict(client: Client) -> dict[str, Any]:
    got: dict[str, Any] = client.get(ValidatingWebhookConfiguration, "aidp-validating-webhook").to_dict()
    return got


def conditions(obj: Any) -> dict[str, str]:
    st = obj.to_dict().get("status") or {}
    return {c["type"]: c["status"] for c in st.get("conditions") or []}


def permission_errors(log: Path) -> list[str]:
    return [
        line for line in log.read_text().splitlines() if any(e in line.lower() for e in PERMISSION_ERRORS)
    ]


# ---- install, upgrade, uninstall ----------------------------------------------------------------------
MODES = {
    "cilium": ["--set", "egress.backend=cilium", "--set", "egress.cilium.extraCIDRs={10.0.0.0/8}"],
    "no-egress": ["--set", "egress.backend=none"],
    "policyreport": ["--set", "audit.reportKind=policyreport"],
    "no-audit": ["--set", "audit.intervalSeconds=0", "--set", "metrics.enabled=false"],
    "single-operator": ["--set", "operator.replicaCount=1", "--set", "operator.leaderElection=false"],
    "tuned": [
        "--set",
        "webhook.url=https://127.0.0.1:9443/",
        "--set",
        "webhook.excludedNamespaces={monitoring,ci}",
        "--set",
        "egress.addresses.static.api\\.openai\\.com={203.0.113.10}",
        "--set",
        "opa.replicaCount=3",
    ],
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_is_accepted_by_the_api_server(client: Client, helm: Helm, mode: str) -> None:
    """Each variant of the chart, created by the API server as a server-side dry run: schema,
    validation and admission (Pod Security warnings included)."""
    ns = restricted_namespace(client, f"aidp-dry-{mode}")
    rendered = helm("template", "aidp", str(CHART), "-n", ns, "--validate", *MODES[mode]).stdout
    created = kubectl(helm.cluster.kubeconfig, "create", "--dry-run=server", "-f", "-", stdin=rendered)
    assert created.returncode == 0, created.stderr
    assert "Warning" not in created.stderr, created.stderr
    assert len(created.stdout.splitlines()) == len([d for d in yaml.safe_load_all(rendered) if d])


def test_install_upgrade_uninstall(cluster: ControlPlane, client: Client, helm: Helm) -> None:
    ns = restricted_namespace(client, "aidp-chart")
    # the namespace really enforces the restricted profile
    bad = from_dict(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "privileged", "namespace": ns},
            "spec": {
                "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]
            },
        }
    )
    with pytest.raises(ApiError, match="violates PodSecurity"):
        client.create(bad)

    proc = helm("install", "aidp", str(CHART), "-n", ns)
    assert "PodSecurity" not in proc.stdout + proc.stderr, proc.stderr
    manifest = helm.manifest("aidp", ns)
    kinds = {d["kind"] for d in manifest}
    assert {"Deployment", "ValidatingWebhookConfiguration", "ClusterRole", "Role", "Lease"} <= kinds
    for doc in manifest:
        assert live(client, doc) is not None, f"{doc['kind']} {doc['metadata']['name']} not created"
    client.get(CustomResourceDefinition, "aidatapolicies.aidp.io")  # from the chart's crds/

    # the ReplicaSet controller creates every pod, and Pod Security admission accepts each one
    replicas = sum(d["spec"]["replicas"] for d in manifest if d["kind"] == "Deployment")
    assert replicas == 4

    def pods() -> list[Pod]:
        return list(client.list(Pod, namespace=ns, labels={"app.kubernetes.io/instance": "aidp"}))

    wait_for(lambda: len(pods()) == replicas, timeout=60, what=f"{replicas} pods")
    for rs in client.list(ReplicaSet, namespace=ns):
        failures = (
            [c for c in (rs.status.conditions or []) if c.type == "ReplicaFailure"] if rs.status else []
        )
        assert not failures, failures
    token_before = client.get(Secret, "aidp-opa-token", namespace=ns).data
    # what the operator writes (as it writes it: server-side apply, field manager aidp)
    ca_bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n").decode()
    hook = vwc_dict(client)["webhooks"][0]
    operator_writes = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "aidp-validating-webhook"},
            "webhooks": [
                {
                    **hook,
                    "clientConfig": {
                        **hook["clientConfig"],
                        "caBundle": ca_bundle,
                    },
                }
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "aidp-opa-bundle",
                "namespace": ns,
                "annotations": {REVISION_ANNOTATION: "r1"},
            },
            "binaryData": {"bundle.json.gz": base64.b64encode(b"bundle").decode()},
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "aidp-operator", "namespace": ns},
            "spec": {"holderIdentity": "aidp-operator-0_abc", "leaseDurationSeconds": 10},
        },
    ]
    for obj in operator_writes:
        client.apply(from_dict(obj), field_manager="aidp", force=True)

    # upgrade with changed values
    helm(
        "upgrade",
        "aidp",
        str(CHART),
        "-n",
        ns,
        "--reuse-values",
        "--set",
        "webhook.failurePolicy=Ignore",
        "--set",
        "audit.intervalSeconds=60",
    )
    vwc = client.get(ValidatingWebhookConfiguration, "aidp-validating-webhook")
    assert vwc.webhooks and vwc.webhooks[0].failurePolicy == "Ignore"
    dep = client.get(Deployment, "aidp-operator", namespace=ns)
    assert dep.spec and dep.spec.template.spec
    args = dep.spec.template.spec.containers[0].args or []
    assert args[args.index("--audit-interval") + 1] == "60"
    assert args[args.index("--failure-policy") + 1] == "Ignore"
    # the operator's fields survive the upgrade: the chart never sets them
    assert vwc.webhooks[0].clientConfig.caBundle == ca_bundle
    cm = client.get(ConfigMap, "aidp-opa-bundle", namespace=ns)
    assert cm.binaryData == {"bundle.json.gz": base64.b64encode(b"bundle").decode()}
    assert cm.metadata and (cm.metadata.annotations or {}).get(REVISION_ANNOTATION) == "r1"
    lease = client.get(Lease, "aidp-operator", namespace=ns)
    assert lease.spec and lease.spec.holderIdentity == "aidp-operator-0_abc"
    # the generated OPA token survives upgrades
    assert client.get(Secret, "aidp-opa-token", namespace=ns).data == token_before

    # uninstall: nothing of the release is left, the CRD stays (Helm's CRD convention)
    helm("uninstall", "aidp", "-n", ns, "--wait", "--timeout", "60s")
    for doc in manifest:
        wait_for(lambda doc=doc: live(client, doc) is None, timeout=30, what=f"{doc['kind']} gone")
    wait_for(lambda: not pods(), timeout=60, what="pods gone (garbage collector)")
    left = {
        kind.__name__: [o.metadata.name for o in client.list(kind, namespace=ns) if o.metadata]
        for kind in (ConfigMap, Secret, ServiceAccount, Lease, Deployment, ReplicaSet, Pod)
    }
    assert left == {
        "ConfigMap": ["kube-root-ca.crt"],
        "Secret": [],
        "ServiceAccount": ["default"],
        "Lease": [],
        "Deployment": [],
        "ReplicaSet": [],
        "Pod": [],
    }
    webhooks = [w.metadata.name for w in client.list(ValidatingWebhookConfiguration) if w.metadata]
    assert "aidp-validating-webhook" not in webhooks
    client.get(CustomResourceDefinition, "aidatapolicies.aidp.io")


# ---- the chart's RBAC runs the real operator ----------------------------------------------------------
class Running:
    """The operator and the OPA agent with the chart's arguments and ServiceAccounts, and OPA."""

    def __init__(self) -> None:
        self.procs: list[Process] = []
        self.opa: OpaServer | None = None

    def start(self, proc: Process) -> Process:
        proc.start()
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise p.failure("exited")

    def stop(self) -> None:
        if self.opa is not None:
            self.opa.stop()
        for p in reversed(self.procs):
            p.stop()


def test_chart_rbac_is_enough_for_the_operator(
    cluster: ControlPlane, client: Client, helm: Helm, tmp_path: Path
) -> None:
    ns = restricted_namespace(client, "aidp-rbac")
    opa_port, diagnostic_port = free_port(), free_port()
    values = {
        # OPA runs here, not behind the Service: the webhook and the operator call it on loopback
        "webhook": {"url": f"https://127.0.0.1:{opa_port}/"},
        "audit": {"intervalSeconds": 5, "minGapSeconds": 2},
        # this machine has no route to the providers: static addresses, as `make run` uses
        "egress": {"addresses": yaml.safe_load(DEMO_ADDRESSES)},
        # the catalog from a ConfigMap: read at start and watched with the chart's RBAC
        "providerCatalog": {"configMap": "rbac-providers"},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    builtin_catalog = catalog.BUILTIN_FILE.read_text(encoding="utf-8")
    client.create(
        ConfigMap(
            metadata=ObjectMeta(name="rbac-providers", namespace=ns), data={"providers.yaml": builtin_catalog}
        )
    )
    helm("install", "rbac", str(CHART), "-n", ns, "-f", str(values_file))
    manifest = helm.manifest("rbac", ns)

    token_file = tmp_path / "opa-token"
    token_file.touch(mode=0o600)
    token = client.get(Secret, "rbac-aidp-opa-token", namespace=ns).data or {}
    token_file.write_bytes(base64.b64decode(token["token"]))
    addresses = next(d for d in manifest if d["metadata"]["name"] == "rbac-aidp-egress-addresses")
    addresses_file = tmp_path / "addresses.yaml"
    addresses_file.write_text(addresses["data"]["addresses.yaml"])

    operator_kc = sa_kubeconfig(cluster, client, "rbac-aidp-operator", ns, tmp_path / "operator.kubeconfig")
    agent_kc = sa_kubeconfig(cluster, client, "rbac-aidp-opa", ns, tmp_path / "agent.kubeconfig")
    # Secrets: only the TLS Secret in the release namespace, and never cluster-wide
    for kc, verb, where, expected in [
        (operator_kc, "get", ["secrets/aidp-webhook-tls", "-n", ns], "yes"),
        (operator_kc, "get", ["secrets/rbac-aidp-opa-token", "-n", ns], "no"),
        (operator_kc, "list", ["secrets", "-n", ns], "no"),
        (operator_kc, "list", ["secrets", "--all-namespaces"], "no"),
        (operator_kc, "create", ["validatingwebhookconfigurations"], "no"),
        (operator_kc, "list", ["endpointslices.discovery.k8s.io", "-n", ns], "yes"),
        (operator_kc, "list", ["endpointslices.discovery.k8s.io", "-n", "default"], "no"),
        (operator_kc, "get", ["secrets/aidp-webhook-ca-key", "-n", ns], "yes"),
        # the provider catalog's ConfigMap, and no other (list and watch by name: a field selector)
        (operator_kc, "get", ["configmaps/rbac-providers", "-n", ns], "yes"),
        (operator_kc, "watch", ["configmaps/rbac-providers", "-n", ns], "yes"),
        (operator_kc, "list", ["configmaps/rbac-providers", "-n", ns], "yes"),
        (operator_kc, "list", ["configmaps", "-n", ns], "no"),
        (operator_kc, "watch", ["configmaps", "-n", ns], "no"),
        (operator_kc, "get", ["configmaps/rbac-aidp-egress-addresses", "-n", ns], "no"),
        (operator_kc, "get", ["configmaps/rbac-providers", "-n", "default"], "no"),
        (agent_kc, "get", ["secrets/aidp-webhook-tls", "-n", ns], "yes"),
        (agent_kc, "watch", ["secrets/aidp-webhook-tls", "-n", ns], "yes"),
        (agent_kc, "watch", ["configmaps/aidp-opa-bundle", "-n", ns], "yes"),
        # the CA key is in a Secret of its own that the agent (and so a compromised OPA pod) cannot read
        (agent_kc, "get", ["secrets/aidp-webhook-ca-key", "-n", ns], "no"),
        (agent_kc, "list", ["secrets", "-n", ns], "no"),
        (agent_kc, "watch", ["secrets", "-n", ns], "no"),
        (agent_kc, "list", ["pods", "-n", ns], "no"),
    ]:
        got = kubectl(kc, "auth", "can-i", verb, *where).stdout.strip()
        assert got == expected, f"can-i {verb} {where}: {got}"

    # the chart's own arguments; only what points into a pod is changed
    operator = container(manifest, "operator", "operator")
    op_args = list(operator["args"])
    assert op_args[0] == "run"
    op_args = replace_flag(op_args, "--opa-token-file", str(token_file))
    op_args = replace_flag(op_args, "--egress-addresses-file", str(addresses_file))
    op_args = replace_flag(op_args, "--liveness", f"http://127.0.0.1:{free_port()}/healthz")
    op_args = replace_flag(op_args, "--metrics-port", str(free_port()))
    op_args += [
        "--kubeconfig",
        str(operator_kc),
        "--namespace",
        ns,
        "--opa-url",
        f"https://127.0.0.1:{opa_port}",
    ]
    op_env = {e["name"]: e["value"] for e in operator["env"] if "value" in e}
    op_env |= {"AIDP_NAMESPACE": ns, "POD_NAME": "rbac-aidp-operator-local"}

    tls_dir = tmp_path / "opa-tls"
    agent = container(manifest, "opa", "agent")
    agent_args = list(agent["args"])
    agent_args = replace_flag(agent_args, "--opa-url", f"https://127.0.0.1:{opa_port}")
    agent_args = replace_flag(agent_args, "--opa-token-file", str(token_file))
    agent_args = replace_flag(agent_args, "--tls-dir", str(tls_dir))
    agent_args = replace_flag(agent_args, "--interval", "0.2")
    health_port = free_port()
    agent_args = replace_flag(agent_args, "--health-port", str(health_port))
    # OPA here is loaded through its API by the operator (`--opa-url`); the agent's bundle service
    # (which the chart's OPA pulls from) only needs a free port
    agent_args = replace_flag(agent_args, "--bundle-port", str(free_port()))
    agent_args += ["--kubeconfig", str(agent_kc), "--namespace", ns]

    logs = tmp_path / "logs"
    running = Running()
    try:
        op = running.start(
            Process(
                "operator", [sys.executable, "-m", "aidp.cli.main", *op_args], logs / "operator.log", op_env
            )
        )
        agent_proc = running.start(
            Process("opa-agent", [sys.executable, "-m", "aidp.cli.main", *agent_args], logs / "agent.log")
        )

        def alive_and(check: Any) -> Any:
            def probe() -> Any:
                running.check_alive()
                return check()

            return probe

        # the operator (leader through the chart's Lease) issues the certificate into its Secret;
        # the agent, with the OPA ServiceAccount, copies it out for OPA
        wait_for(alive_and(lambda: (tls_dir / "tls.crt").is_file()), timeout=60, what="webhook certificate")
        lease = client.get(Lease, "aidp-operator", namespace=ns)
        assert lease.spec and "rbac-aidp-operator-local" in str(lease.spec.holderIdentity)
        # the catalog ConfigMap is watched with the chart's RBAC: a change is applied (and said)
        client.patch(
            ConfigMap,
            "rbac-providers",
            {"data": {"providers.yaml": builtin_catalog + "# changed\n"}},
            namespace=ns,
            patch_type=PatchType.MERGE,
        )

        def catalog_applied() -> bool:
            return any(
                e.reason == "ProviderCatalogApplied" and e.involvedObject.name == "rbac-providers"
                for e in client.list(Event, namespace=ns)
            )

        wait_for(alive_and(catalog_applied), timeout=30, what="the changed catalog ConfigMap applied")
        # in a cluster the operator finds the OPA pods this way (none run here): its RBAC allows it
        sa_client = kube.client(operator_kc)
        service = {"kubernetes.io/service-name": "aidp-opa"}
        slices = list(sa_client.list(EndpointSlice, namespace=ns, labels=service))
        assert slices and not [e for s in slices for e in s.endpoints or []]
        running.opa = OpaServer(
            tmp_path / "opa",
            token_file.read_text().strip(),
            cert_file=tls_dir / "tls.crt",
            key_file=tls_dir / "tls.key",
            ca_file=tls_dir / "ca.crt",
            port=opa_port,
            diagnostic_port=diagnostic_port,
        ).start()
        replica = Replica(f"https://127.0.0.1:{opa_port}", token_file.read_text().strip(), tls_dir / "ca.crt")

        def enforcing() -> bool:
            cm = client.get(ConfigMap, "aidp-opa-bundle", namespace=ns)
            durable = (cm.metadata.annotations or {}).get(REVISION_ANNOTATION) if cm.metadata else None
            return durable is not None and revision_of(replica) == durable

        wait_for(alive_and(enforcing), timeout=60, what="OPA to hold the durable bundle")

        def agent_ready() -> bool:
            url = f"http://127.0.0.1:{health_port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)

        # the chart's readiness probe: the agent (watching with the chart's RBAC) says OPA is current
        wait_for(alive_and(agent_ready), timeout=30, what="the agent's /readyz")
        vwc = client.get(ValidatingWebhookConfiguration, "aidp-validating-webhook")
        assert vwc.webhooks and vwc.webhooks[0].clientConfig.caBundle, "the operator set the caBundle"

        # the examples, through the live webhook
        admin = cluster.kubeconfig
        for name in ("00-namespace.yaml", "10-policy.yaml", "20-serviceaccount.yaml"):
            done = kubectl(admin, "apply", "-f", str(EXAMPLES / name))
            assert done.returncode == 0, done.stderr

        def ready() -> bool:
            conds = conditions(client.get(AIDataPolicy, "support-summaries", namespace="support"))
            return all(conds.get(t) == "True" for t in ("Ready", "AdmissionEnforced", "EgressEnforced"))

        wait_for(
            alive_and(ready), timeout=60, what="support-summaries Ready, AdmissionEnforced, EgressEnforced"
        )
        support = client.get(Namespace, "support")
        assert support.metadata and (support.metadata.labels or {}).get("aidp.io/governed") == "true"
        netpols = list(
            client.list(NetworkPolicy, namespace="support", labels={"app.kubernetes.io/managed-by": "aidp"})
        )
        assert netpols, "the operator created no NetworkPolicy"

        admitted = kubectl(admin, "apply", "-f", str(EXAMPLES / "30-compliant-deployment.yaml"))
        assert admitted.returncode == 0, admitted.stderr
        for name in ("40-noncompliant-retention.yaml", "50-noncompliant-copied-labels.yaml"):
            denied = kubectl(admin, "apply", "-f", str(EXAMPLES / name))
            assert denied.returncode != 0
            assert 'admission webhook "validate.aidp.io" denied the request: aidp:' in denied.stderr, (
                denied.stderr
            )
        unrelated = kubectl(admin, "apply", "-f", str(EXAMPLES / "60-unrelated-cronjob.yaml"))
        assert unrelated.returncode == 0, unrelated.stderr

        # the audit writes the namespace's Report and the policy's audit figures
        report = wait_for(
            alive_and(lambda: _get(client, Report, "aidp-audit", "support")), timeout=60, what="Report"
        )
        assert report.to_dict()["summary"]["pass"] >= 1
        wait_for(
            alive_and(
                lambda: (
                    (client.get(AIDataPolicy, "support-summaries", namespace="support").to_dict())
                    .get("status", {})
                    .get("lastAuditTime")
                )
            ),
            timeout=30,
            what="lastAuditTime",
        )
        running.check_alive()
        for proc in (op, agent_proc):
            problems = permission_errors(proc.log)
            assert not problems, f"{proc.name}:\n" + "\n".join(problems[:20])

        # uninstall while the operator still runs: it may not bring the webhook back
        helm("uninstall", "rbac", "-n", ns)
        time.sleep(3.0)
        with pytest.raises(ApiError) as gone:
            client.get(ValidatingWebhookConfiguration, "aidp-validating-webhook")
        assert gone.value.status.code == 404
    except BaseException:
        for p in running.procs:
            print(f"--- {p.name} ({p.log}):\n{log_tail(p.log, 80)}")
        raise
    finally:
        running.stop()
    print(json.dumps({"operator_args": op_args, "agent_args": agent_args}, indent=1))


def _get(client: Client, res: Any, name: str, namespace: str) -> Any | None:
    with contextlib.suppress(ApiError):
        return client.get(res, name, namespace=namespace)
    return None
