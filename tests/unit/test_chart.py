"""The Helm chart (charts/aidp), rendered by the real helm binary; no cluster needed.

Lint, the values schema, one source for the CRD and authz.rego, RBAC without wildcards and with
Secrets only in a namespaced Role, the restricted Pod Security profile, the recommended labels, and
agreement with the operator: the webhook the chart renders is the one the operator renders, and
every flag the chart passes is one `aidp run` / `aidp opa-agent` accepts.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from aidp import paths, webhook
from aidp.cli.main import app
from aidp.config import OperatorConfig

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aidp"
HELM = paths.testbin_dir() / "helm"
# helm built from source reports Kubernetes v1.20 as its default; the chart needs >= 1.29
KUBE_VERSION = "1.36.0"
NAMESPACE = "aidp-system"
RELEASE = "aidp"
RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)
# value sets every structural check runs against: the default and each mode that changes objects
MODES: dict[str, tuple[str, ...]] = {
    "default": (),
    "cilium": ("egress.backend=cilium", "egress.cilium.extraCIDRs={10.0.0.0/8}"),
    "no-egress": ("egress.backend=none",),
    "policyreport": ("audit.reportKind=policyreport",),
    "no-audit": ("audit.intervalSeconds=0",),
    "cert-manager": ("webhook.certManager.enabled=true",),
    "single-operator": ("operator.replicaCount=1", "operator.leaderElection=false"),
    "everything": (
        "metrics.serviceMonitor.enabled=true",
        "webhook.url=https://127.0.0.1:9443/",
        "webhook.excludedNamespaces={monitoring,batch-jobs}",
        "egress.addresses.static.api\\.openai\\.com={203.0.113.10}",
        "opa.replicaCount=3",
        "operator.priorityClassName=system-cluster-critical",
        "opa.networkPolicy.enabled=true",
        "opa.networkPolicy.apiServerCIDRs={10.0.0.1/32}",
    ),
}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        pytest.fail(f"{HELM} is missing: run `make testbin` first", pytrace=False)
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"aidp-helm-{os.getuid()}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def set_args(values: tuple[str, ...]) -> list[str]:
    return [arg for v in values for arg in ("--set", v)]


@functools.cache
def render(values: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *set_args(values),
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objs: list[dict[str, Any]], deployment: str, name: str) -> dict[str, Any]:
    pod = one(objs, "Deployment", deployment)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == name)


def all_modes() -> Any:
    return pytest.mark.parametrize("mode", sorted(MODES))


# ---- lint, render, schema ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["default", "cilium", "no-egress", "cert-manager", "everything"])
def test_helm_lint_strict_is_clean(mode: str) -> None:
    proc = helm("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), *set_args(MODES[mode]))
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_default_render_has_every_component() -> None:
    objs = render()
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Lease",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]
    opa = one(objs, "Deployment", "aidp-opa")
    assert opa["spec"]["replicas"] >= 2
    assert [c["name"] for c in opa["spec"]["template"]["spec"]["containers"]] == ["opa", "agent"]
    operator = one(objs, "Deployment", "aidp-operator")
    assert operator["spec"]["replicas"] == 2
    assert "--leader-election" in container(objs, "aidp-operator", "operator")["args"]
    assert one(objs, "PodDisruptionBudget", "aidp-opa")["spec"]["minAvailable"] == 1
    svc = one(objs, "Service", "aidp-opa")
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    # the objects the operator finds by name, under the operator's default names
    one(objs, "ConfigMap", "aidp-opa-bundle")
    one(objs, "Lease", "aidp-operator")
    one(objs, "ValidatingWebhookConfiguration", "aidp-validating-webhook")
    # only the operator writes the bundle and the caBundle
    assert set(one(objs, "ConfigMap", "aidp-opa-bundle")) == {"apiVersion", "kind", "metadata"}
    vwc = one(objs, "ValidatingWebhookConfiguration")
    assert "caBundle" not in vwc["webhooks"][0]["clientConfig"]


def test_opa_pod_as_specified() -> None:
    objs = render()
    opa = container(objs, "aidp-opa", "opa")
    assert opa["image"].startswith("openpolicyagent/opa:1.22.3")
    assert opa["args"] == [
        "run",
        "--server",
        "--addr=:8181",
        "--diagnostic-addr=:8282",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-private-key-file=/tls/tls.key",
        "--tls-cert-refresh-period=2s",
        "--authentication=token",
        "--authorization=basic",
        "--log-level=error",
        "--log-format=json",
        "/policies/authz.rego",
    ]
    token = next(e for e in opa["env"] if e["name"] == "AIDP_OPA_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "aidp-opa-token", "key": "token"}
    go_env = {e["name"]: e["value"] for e in opa["env"] if e["name"] in ("GOGC", "GOMEMLIMIT")}
    assert go_env == {"GOGC": "400", "GOMEMLIMIT": "400MiB"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert opa[probe]["httpGet"] == {"path": "/health", "port": "diagnostic"}
    pod = one(objs, "Deployment", "aidp-opa")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # the serving certificate only: the CA key in the same Secret never reaches OPA
    assert volumes["tls"]["secret"]["secretName"] == "aidp-webhook-tls"
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    assert volumes["authz"]["configMap"]["name"] == "aidp-opa-authz"
    authz = one(objs, "ConfigMap", "aidp-opa-authz")["data"]["authz.rego"]
    assert authz == (ROOT / "policies" / "system" / "authz.rego").read_text()
    # OPA has no API credentials; the agent has its own projected token
    assert pod["automountServiceAccountToken"] is False
    agent = container(objs, "aidp-opa", "agent")
    assert agent["args"][:3] == ["opa-agent", "--opa-url", "https://127.0.0.1:8181"]
    # the pod is ready only once the agent says OPA holds the durable bundle's current revision
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "agent-health"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent-health"}
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"agent-health": 8383}
    assert agent["args"][agent["args"].index("--health-port") + 1] == "8383"
    assert "kube-api-access" in [m["name"] for m in agent["volumeMounts"]]
    assert "kube-api-access" not in [m["name"] for m in opa["volumeMounts"]]


@pytest.mark.parametrize("backend", ["networkpolicy", "cilium", "none"])
def test_renders_for_each_egress_backend(backend: str) -> None:
    objs = render((f"egress.backend={backend}",))
    args = container(objs, "aidp-operator", "operator")["args"]
    assert args[args.index("--egress-backend") + 1] == backend
    assert ("--cilium-mode" in args) == (backend == "cilium")
    rules = one(objs, "ClusterRole", "aidp-operator")["rules"]
    writable = {
        res
        for r in rules
        if "create" in r["verbs"] and "delete" in r["verbs"]
        for res in r["resources"]
        if res in ("networkpolicies", "ciliumnetworkpolicies")
    }
    assert writable == {"networkpolicy": {"networkpolicies"}, "cilium": {"ciliumnetworkpolicies"}}.get(
        backend, set()
    )


BAD_VALUES = {
    "egress.backend=calico": "/egress/backend': value must be one of 'networkpolicy', 'cilium', 'clusternetworkpolicy', 'adminnetworkpolicy', 'none'",
    "webhook.timeoutSeconds=5": "/webhook/timeoutSeconds': maximum: got 5, want 3",
    "webhook.timeoutSeconds=0": "/webhook/timeoutSeconds': minimum: got 0, want 1",
    "webhook.failurePolicy=Maybe": "/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
    "opa.replicaCount=0": "/opa/replicaCount': minimum: got 0, want 1",
    "opa.gogc=10": "/opa/gogc': minimum: got 10, want 50",
    "audit.reportKind=csv": "/audit/reportKind': value must be one of 'openreports', 'policyreport'",
    "egress.cilium.mode=loose": "/egress/cilium/mode': value must be one of 'strict', 'preserve'",
    "logging.format=xml": "/logging/format': value must be one of 'json', 'plain'",
    "webhook.failurPolicy=Ignore": "additional properties 'failurPolicy' not allowed",
}


@pytest.mark.parametrize("value", sorted(BAD_VALUES))
def test_schema_refuses_bad_values_with_a_message(value: str) -> None:
    proc = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--set", value, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert BAD_VALUES[value] in proc.stderr, proc.stderr


def test_several_operators_need_leader_election() -> None:
    proc = helm(
        "template",
        RELEASE,
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "operator.leaderElection=false",
        check=False,
    )
    assert proc.returncode != 0
    assert "operator.replicaCount > 1 needs operator.leaderElection=true" in proc.stderr


# ---- one source ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("copy", "source"),
    [
        ("crds/aidp.io_aidatapolicies.yaml", "crds/aidp.io_aidatapolicies.yaml"),
        ("files/authz.rego", "policies/system/authz.rego"),
    ],
)
def test_chart_copies_equal_their_sources(copy: str, source: str) -> None:
    assert (CHART / copy).read_bytes() == (ROOT / source).read_bytes(), (
        f"charts/aidp/{copy} differs from {source}: cp {source} charts/aidp/{copy}"
    )


def test_chart_ships_every_crd() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(
        p.name for p in (ROOT / "crds").iterdir()
    )


# ---- RBAC --------------------------------------------------------------------------------------------
def roles(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] in ("ClusterRole", "Role")]


@all_modes()
def test_rbac_has_no_wildcards(mode: str) -> None:
    for role in roles(render(MODES[mode])):
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(field, []), f"{role['kind']} {role['metadata']['name']}: {rule}"
                assert not any("*" in item for item in rule.get(field, [])), rule
            assert "nonResourceURLs" not in rule
            # no privilege escalation through RBAC itself
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


@all_modes()
def test_secrets_only_in_a_namespaced_role(mode: str) -> None:
    objs = render(MODES[mode])
    for role in roles(objs):
        secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
        if role["kind"] == "ClusterRole":
            assert not secret_rules, f"ClusterRole {role['metadata']['name']} grants Secrets"
            continue
        assert role["metadata"]["namespace"] == NAMESPACE
        for rule in secret_rules:
            assert rule["resources"] == ["secrets"]
            # reading, watching and changing are limited to the webhook's two Secrets (list and
            # watch with resourceNames: only a request with a metadata.name field selector passes);
            # create cannot be limited
            if set(rule["verbs"]) != {"create"}:
                assert set(rule["resourceNames"]) <= {"aidp-webhook-tls", "aidp-webhook-ca-key"}, rule
            if role["metadata"]["name"] == "aidp-opa":  # the agent: never the CA key
                assert rule["resourceNames"] == ["aidp-webhook-tls"], rule
            else:
                assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]
    for binding in (o for o in objs if o["kind"] == "ClusterRoleBinding"):
        assert binding["roleRef"]["kind"] == "ClusterRole"


def test_operator_rbac_matches_what_it_does() -> None:
    objs = render()
    rules = one(objs, "ClusterRole", "aidp-operator")["rules"]

    def verbs(group: str, resource: str, name: str | None = None) -> set[str]:
        return {
            v
            for r in rules
            if group in r["apiGroups"]
            and resource in r["resources"]
            and (name is None or name in r.get("resourceNames", [name]))
            for v in r["verbs"]
        }

    # the webhook may be kept current but never created: after `helm uninstall` it stays gone
    assert verbs("admissionregistration.k8s.io", "validatingwebhookconfigurations") == {
        "list",
        "watch",
        "get",
        "patch",
    }
    named = [r for r in rules if r.get("resourceNames")]
    assert [r["resourceNames"] for r in named] == [["aidp-validating-webhook"]]
    # pods: judged and their approval label kept (egress follows the verdict), never created
    assert verbs("", "pods") == {"list", "watch", "patch"}
    # the audit reads, never writes, workloads and RBAC
    for group, resource in [
        ("apps", "deployments"),
        ("batch", "cronjobs"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ]:
        assert verbs(group, resource) == {"list"}
    assert verbs("openreports.io", "reports") == {"list", "create", "patch", "delete"}
    # without the audit, none of it
    quiet = one(render(("audit.intervalSeconds=0",)), "ClusterRole", "aidp-operator")["rules"]
    assert not [r for r in quiet if {"deployments", "reports", "clusterroles"} & set(r["resources"])]
    role = one(objs, "Role", "aidp-operator")["rules"]
    leases = [r for r in role if r["resources"] == ["leases"]]
    assert {v for r in leases for v in r["verbs"]} == {"get", "create", "update"}
    assert all(r["apiGroups"] == ["coordination.k8s.io"] for r in leases)
    agent = one(objs, "Role", "aidp-opa")["rules"]
    assert {(r["resources"][0], tuple(r["resourceNames"]), tuple(r["verbs"])) for r in agent} == {
        ("configmaps", ("aidp-opa-bundle",), ("get", "list", "watch")),
        ("secrets", ("aidp-webhook-tls",), ("get", "list", "watch")),
    }
    # the operator reads and writes the CA key's Secret; the agent cannot
    secrets = [r for r in role if r["resources"] == ["secrets"]]
    assert {(tuple(r.get("resourceNames", ())), tuple(r["verbs"])) for r in secrets} == {
        (("aidp-webhook-tls", "aidp-webhook-ca-key"), ("get", "patch")),
        ((), ("create",)),
    }


# ---- Pod Security restricted, labels ---------------------------------------------------------------
ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


@all_modes()
def test_every_pod_passes_the_restricted_profile(mode: str) -> None:
    deployments = [o for o in render(MODES[mode]) if o["kind"] == "Deployment"]
    assert len(deployments) == 2
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        psc = pod["securityContext"]
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host), f"{d['metadata']['name']}: {host}"
        for vol in pod.get("volumes", []):
            assert set(vol) - {"name"} <= ALLOWED_VOLUMES, vol
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            where = f"{d['metadata']['name']}/{c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            assert sc.get("privileged", False) is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert True in (sc.get("runAsNonRoot"), psc.get("runAsNonRoot")), where
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile"))
            assert seccomp == {"type": "RuntimeDefault"}, where
            assert not [p for p in c.get("ports", []) if p.get("hostPort")], where
            assert "resources" in c and c["resources"]["limits"]["memory"], where


@all_modes()
def test_every_object_carries_the_recommended_labels(mode: str) -> None:
    for obj in render(MODES[mode]):
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']} {obj['metadata']['name']}"
        assert set(RECOMMENDED) <= set(labels), f"{where} lacks {set(RECOMMENDED) - set(labels)}"
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/part-of"] == "aidp", where
        assert labels["app.kubernetes.io/version"] == "0.1.0", where
        if obj["kind"] == "Deployment":
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert set(RECOMMENDED) <= set(pod_labels), where


# ---- agreement with the operator --------------------------------------------------------------------
WEBHOOK_CASES = {
    "default": ((), OperatorConfig(namespace=NAMESPACE)),
    "tuned": (
        (
            "webhook.failurePolicy=Ignore",
            "webhook.timeoutSeconds=1",
            "webhook.excludedNamespaces={zeta,monitoring,kube-system}",
        ),
        OperatorConfig(
            namespace=NAMESPACE,
            webhook_failure_policy="Ignore",
            webhook_timeout_seconds=1,
            excluded_namespaces=("zeta", "monitoring", "kube-system"),
        ),
    ),
    "url": (
        ("webhook.url=https://127.0.0.1:9443/",),
        OperatorConfig(namespace=NAMESPACE, webhook_url="https://127.0.0.1:9443/"),
    ),
}


@pytest.mark.parametrize("case", sorted(WEBHOOK_CASES))
def test_chart_webhook_is_the_operators_without_ca_bundle(case: str) -> None:
    """The operator applies its rendering over the chart's (server-side apply, force): both must
    agree on every field, or an upgrade and the operator would keep changing the webhook back."""
    values, config = WEBHOOK_CASES[case]
    chart = one(render(values), "ValidatingWebhookConfiguration")
    operator = webhook.render(config, b"")
    for hook in operator["webhooks"]:
        del hook["clientConfig"]["caBundle"]
    assert chart["webhooks"] == operator["webhooks"]
    assert chart["metadata"]["name"] == operator["metadata"]["name"]


def parse(command: str, args: list[str]) -> dict[str, Any]:
    """Parse `args` exactly as `aidp <command>` would (unknown flags, types and ranges fail)."""
    cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    with cmd.make_context(command, list(args)) as ctx:
        return dict(ctx.params)


@all_modes()
def test_operator_accepts_every_flag_the_chart_passes(mode: str) -> None:
    objs = render(MODES[mode])
    args = container(objs, "aidp-operator", "operator")["args"]
    assert args[0] == "run"
    params = parse("run", args[1:])
    assert params["opa_url"] in (None, [], ()), "in a cluster the operator discovers OPA itself"
    assert params["leader_election"] == (mode != "single-operator")
    assert params["webhook_ip"] == ["127.0.0.1"]
    agent = container(objs, "aidp-opa", "agent")["args"]
    assert agent[0] == "opa-agent"
    agent_params = parse("opa-agent", agent[1:])
    assert agent_params["opa_url"] == "https://127.0.0.1:8181"
    assert agent_params["health_port"] == 8383
    assert agent_params["allow_insecure_opa"] is False
    assert str(agent_params["opa_token_file"]) == "/var/run/aidp/opa-token/token"


def test_operator_values_reach_the_flags() -> None:
    objs = render(
        (
            "webhook.failurePolicy=Ignore",
            "webhook.timeoutSeconds=2",
            "webhook.excludedNamespaces={monitoring}",
            "audit.intervalSeconds=60",
            "audit.reportKind=policyreport",
            "egress.backend=cilium",
            "egress.cilium.mode=preserve",
            "egress.cilium.sni=false",
            "logging.level=DEBUG",
            "logging.format=plain",
            "metrics.port=9500",
        )
    )
    params = parse("run", container(objs, "aidp-operator", "operator")["args"][1:])
    assert params["failure_policy"] == "Ignore"
    assert params["webhook_timeout"] == 2
    assert params["exclude_namespace"] == ["monitoring"]
    assert params["audit_interval"] == 60.0
    assert params["report_kind"] == "policyreport"
    assert params["egress_backend"] == "cilium"
    assert params["cilium_mode"] == "preserve"
    assert params["cilium_sni"] is False
    assert params["log_level"] == "DEBUG"
    assert params["log_format"] == "plain"
    assert params["metrics_port"] == 9500


def test_cert_manager_mode() -> None:
    objs = render(MODES["cert-manager"])
    params = parse("run", container(objs, "aidp-operator", "operator")["args"][1:])
    assert params["external_webhook_tls"] is True
    cert = one(objs, "Certificate", "aidp-webhook")
    assert cert["spec"]["secretName"] == "aidp-webhook-tls"
    config = OperatorConfig(namespace=NAMESPACE)
    assert cert["spec"]["dnsNames"] == [
        f"{config.opa_service}",
        f"{config.opa_service}.{NAMESPACE}",
        f"{config.opa_service}.{NAMESPACE}.svc",
        f"{config.opa_service}.{NAMESPACE}.svc.cluster.local",
    ]
    assert cert["spec"]["ipAddresses"] == ["127.0.0.1"]
    # cert-manager writes the Secret: the operator only reads it
    secrets = [r for r in one(objs, "Role", "aidp-operator")["rules"] if "secrets" in r["resources"]]
    assert secrets == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["aidp-webhook-tls"], "verbs": ["get"]}
    ]


# ---- OPA's NetworkPolicy ------------------------------------------------------------------------------
def test_opa_network_policy_is_off_by_default() -> None:
    assert not [o for o in render() if o["kind"] == "NetworkPolicy"]


def test_opa_network_policy_admits_only_the_api_server_and_the_operator() -> None:
    objs = render(
        (
            "opa.networkPolicy.enabled=true",
            "opa.networkPolicy.apiServerCIDRs={10.0.0.10/32,fd00::10/128}",
        )
    )
    netpol = one(objs, "NetworkPolicy", "aidp-opa")
    opa_pods = one(objs, "Deployment", "aidp-opa")["spec"]["template"]["metadata"]["labels"]
    operator_pods = one(objs, "Deployment", "aidp-operator")["spec"]["template"]["metadata"]["labels"]
    spec = netpol["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"].items() <= opa_pods.items()
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8181}]
    assert rule["from"][:2] == [{"ipBlock": {"cidr": "10.0.0.10/32"}}, {"ipBlock": {"cidr": "fd00::10/128"}}]
    [pods] = rule["from"][2:]
    assert set(pods) == {"podSelector"}  # the release namespace only: no namespaceSelector
    assert pods["podSelector"]["matchLabels"].items() <= operator_pods.items()
    assert not pods["podSelector"]["matchLabels"].items() <= opa_pods.items()


def test_opa_network_policy_needs_the_api_server_cidrs() -> None:
    proc = helm(
        "template",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--set",
        "opa.networkPolicy.enabled=true",
        check=False,
    )
    assert proc.returncode != 0
    assert "opa.networkPolicy.enabled needs opa.networkPolicy.apiServerCIDRs" in proc.stderr


# ---- docs ----------------------------------------------------------------------------------------------
def leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every documented key: nested objects are walked, except resource requirements (one row)."""
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "resources":
            keys += leaf_keys(value, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_docs_values_table_names_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = (ROOT / "docs" / "helm.md").read_text()
    missing = [k for k in leaf_keys(values) if f"| `{k}` |" not in docs]
    assert not missing, f"docs/helm.md's values table lacks {missing}"


def test_helm_renders_the_chart_without_kube_version() -> None:
    """The testbin helm defaults to the Kubernetes version of its client-go, as a released helm does
    (built without that it said v1.20, below the chart's kubeVersion)."""
    proc = helm("template", RELEASE, str(CHART), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "kind: ValidatingWebhookConfiguration" in proc.stdout
