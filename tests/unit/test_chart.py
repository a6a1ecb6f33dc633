"""The Helm chart (charts/aidp), rendered by the real helm binary; no cluster needed.

Lint, the values schema, one source for the CRD and authz.rego, RBAC without wildcards and with
Secrets only in a namespaced Role, the restricted Pod Security profile, the recommended labels, and
agreement with the operator: the webhook the chart renders is the one the operator renders, and
every flag the chart passes is one `aidp run` / `aidp opa-agent` accepts.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from aidp import bundle as bundle_mod
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

# the durable copy's head and shards, as aidp.bundle names them (the chart lists them by name)
DURABLE_CONFIGMAPS = (
    "aidp-opa-bundle",
    *(bundle_mod.shard_name("aidp-opa-bundle", i) for i in range(bundle_mod.SHARDS)),
)


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
    # only the operator writes the bundle (its head and its shards) and the caBundle
    for name in DURABLE_CONFIGMAPS:
        assert set(one(objs, "ConfigMap", name)) == {"apiVersion", "kind", "metadata"}
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
        # modules and data: one bundle pulled from the agent, one activation
        "--set=services.agent.url=http://127.0.0.1:8384",
        "--set=bundles.aidp.service=agent",
        "--set=bundles.aidp.resource=/bundles/aidp.tar.gz",
        "--set=bundles.aidp.polling.long_polling_timeout_seconds=30",
        "--set=bundles.aidp.polling.min_delay_seconds=1",
        "--set=bundles.aidp.polling.max_delay_seconds=2",
        "/policies/authz.rego",
        "/policies/main.rego",
    ]
    token = next(e for e in opa["env"] if e["name"] == "AIDP_OPA_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "aidp-opa-token", "key": "token"}
    go_env = {e["name"]: e["value"] for e in opa["env"] if e["name"] in ("GOGC", "GOMEMLIMIT")}
    assert go_env == {"GOGC": "400", "GOMEMLIMIT": "400MiB"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert opa[probe]["httpGet"] == {
            "path": "/health",
            "port": "diagnostic",
            "scheme": "HTTPS",
        }  # TLS there too
    pod = one(objs, "Deployment", "aidp-opa")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # the serving certificate only: the CA key in the same Secret never reaches OPA
    assert volumes["tls"]["secret"]["secretName"] == "aidp-webhook-tls"
    assert [i["key"] for i in volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    assert volumes["authz"]["configMap"]["name"] == "aidp-opa-authz"
    files = one(objs, "ConfigMap", "aidp-opa-authz")["data"]
    assert files["authz.rego"] == (ROOT / "policies" / "system" / "authz.rego").read_text()
    assert files["main.rego"] == (ROOT / "policies" / "system" / "main.rego").read_text()
    # OPA has no API credentials; the agent has its own projected token
    assert pod["automountServiceAccountToken"] is False
    agent = container(objs, "aidp-opa", "agent")
    assert agent["args"][:3] == ["opa-agent", "--opa-url", "https://127.0.0.1:8181"]
    # the pod is ready only once the agent says OPA holds the durable bundle's current revision
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "agent-health"}
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "agent-health"}
    assert {p["name"]: p["containerPort"] for p in agent["ports"]} == {"agent-health": 8383}
    assert agent["args"][agent["args"].index("--health-port") + 1] == "8383"
    assert agent["args"][agent["args"].index("--bundle-port") + 1] == "8384"
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
    "egress.backend=calico": (
        "/egress/backend': value must be one of 'networkpolicy', 'cilium', 'clusternetworkpolicy', "
        "'adminnetworkpolicy', 'none'"
    ),
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
        ("files/main.rego", "policies/system/main.rego"),
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
        ("configmaps", DURABLE_CONFIGMAPS, ("get", "list", "watch")),
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
    objs = render(values)
    chart = one(objs, "ValidatingWebhookConfiguration")
    # in the cluster the operator is its ServiceAccount (its SelfSubjectReview says so)
    sa = one(objs, "Deployment", "aidp-operator")["spec"]["template"]["spec"]["serviceAccountName"]
    operator = webhook.render(config, b"", (f"system:serviceaccount:{NAMESPACE}:{sa}",))
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
    assert list(params["webhook_ip"]) == ["127.0.0.1"]
    agent = container(objs, "aidp-opa", "agent")["args"]
    assert agent[0] == "opa-agent"
    agent_params = parse("opa-agent", agent[1:])
    assert agent_params["opa_url"] == "https://127.0.0.1:8181"
    assert agent_params["health_port"] == 8383
    assert agent_params["bundle_port"] == 8384
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
    assert list(params["exclude_namespace"]) == ["monitoring"]
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
    """docs/install.md's generated values table (hack/values_table.py) names every key of
    values.yaml (resource requirements by their sub-keys)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = (ROOT / "docs" / "install.md").read_text()
    missing = [k for k in leaf_keys(values) if f"| `{k}` |" not in docs and f"| `{k}." not in docs]
    assert not missing, f"docs/install.md's values table lacks {missing}"
    assert "| value | default | meaning |" not in (ROOT / "docs" / "helm.md").read_text()  # one table


def test_helm_renders_the_chart_without_kube_version() -> None:
    """The testbin helm defaults to the Kubernetes version of its client-go, as a released helm does
    (built without that it said v1.20, below the chart's kubeVersion)."""
    proc = helm("template", RELEASE, str(CHART), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "kind: ValidatingWebhookConfiguration" in proc.stdout


# ---- install checks: NOTES and `helm template` --------------------------------------------------------
IMAGE_WARNING = "WARNING: image aidp:0.1.0 is the chart's default, a local name that no registry publishes"
CRD_UNCHECKED = "NOTE: the report CRD reports.openreports.io could not be checked"


def template_text(*values: str) -> str:
    return helm(
        "template", RELEASE, str(CHART), "-n", NAMESPACE, "--kube-version", KUBE_VERSION, *set_args(values)
    ).stdout


def rendered_notes(tmp_path: Path, *values: str) -> str:
    """NOTES.txt as helm renders it (helm install prints it, `helm template` does not, and
    `helm install --dry-run` needs a reachable cluster): a copy of the chart renders the real
    NOTES.txt through tpl into comments of an extra template."""
    import shutil

    chart = tmp_path / "aidp"
    shutil.copytree(CHART, chart)
    (chart / "notes-under-test.txt").write_text((CHART / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "zz-notes-under-test.yaml").write_text(
        '{{- range splitList "\\n" (tpl (.Files.Get "notes-under-test.txt") .) }}\n#N {{ . }}\n{{- end }}\n'
    )
    out = helm(
        "template",
        RELEASE,
        str(chart),
        "-n",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "--show-only",
        "templates/zz-notes-under-test.yaml",
        *set_args(values),
    ).stdout
    return "\n".join(line[3:] for line in out.splitlines() if line.startswith("#N"))


def test_helm_template_with_default_values_shows_the_install_warnings() -> None:
    out = template_text()
    assert "# Source: aidp/templates/install-checks.yaml" in out
    assert f"# {IMAGE_WARNING}" in out
    assert "#     --set image.repository=<registry>/aidp --set image.tag=0.1.0" in out
    # no cluster to look the CRD up in: said so, with the command that installs the pinned copy
    assert f"# {CRD_UNCHECKED}" in out
    assert "kubectl apply --server-side -f deploy/crds/openreports.io_reports.yaml" in out
    # comments only: no object is added
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert len(docs) == len(render())


def test_helm_template_with_an_image_set_has_no_image_warning() -> None:
    for values in (
        ("image.repository=registry.example.com/platform/aidp", "image.tag=0.1.0"),
        ("image.digest=sha256:" + "a" * 64,),
    ):
        out = template_text(*values)
        assert "WARNING: image" not in out, values
        assert CRD_UNCHECKED in out  # the CRD still cannot be checked without a cluster
    quiet = template_text("image.repository=registry.example.com/aidp", "audit.intervalSeconds=0")
    assert "install-checks.yaml" not in quiet  # nothing to say, nothing rendered
    policyreports = template_text("image.repository=r.example.com/aidp", "audit.reportKind=policyreport")
    assert "policyreports.wgpolicyk8s.io could not be checked" in policyreports
    assert "deploy/crds/wgpolicyk8s.io_policyreports.yaml" in policyreports


def test_notes_warn_about_the_default_image_and_the_report_crd(tmp_path: Path) -> None:
    notes = rendered_notes(tmp_path)
    assert notes.startswith("aidp 0.1.0 is installed in namespace aidp-system (release aidp).")
    assert IMAGE_WARNING in notes
    assert CRD_UNCHECKED in notes
    assert "kubectl apply --server-side -f deploy/crds/openreports.io_reports.yaml" in notes
    set_image = rendered_notes(
        tmp_path / "b", "image.repository=registry.example.com/aidp", "image.tag=1.2.3"
    )
    assert "WARNING: image" not in set_image
    assert "image.repository" not in set_image


def test_make_image_builds_the_image_the_chart_installs_by_default() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    default_image = f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"
    proc = subprocess.run(
        ["make", "-n", "--no-print-directory", "image"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"docker build -t {default_image} ."
    deployment = one(render(), "Deployment", "aidp-operator")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == default_image


def test_the_report_crds_for_users_are_the_pinned_upstream_copies() -> None:
    deploy = ROOT / "deploy" / "crds"
    upstream = ROOT / "tests" / "upstream-crds"
    pairs = {
        "openreports.io_reports.yaml": "openreports-reports.yaml",
        "wgpolicyk8s.io_policyreports.yaml": "wgpolicyk8s-policyreports.yaml",
    }
    assert {p.name for p in deploy.glob("*.yaml")} == set(pairs)
    for mine, theirs in pairs.items():
        assert (deploy / mine).read_bytes() == (upstream / theirs).read_bytes(), mine
    install = (ROOT / "docs" / "install.md").read_text()
    assert "kubectl apply --server-side -f deploy/crds/openreports.io_reports.yaml" in install


# ---- alert rules ---------------------------------------------------------------------------------------
# Metrics the rules read that other components export, with the labels the rules may use.
EXTERNAL_METRICS = {
    "kube_deployment_status_replicas_ready": {"namespace", "deployment"},  # kube-state-metrics
    "kube_deployment_spec_replicas": {"namespace", "deployment"},  # kube-state-metrics
    # kube-apiserver (k8s.io/apiserver admission metrics)
    "apiserver_admission_webhook_rejection_count": {
        "name",
        "type",
        "operation",
        "error_type",
        "rejection_code",
    },
}
PROMQL_FUNCTIONS = {"rate", "increase", "sum", "max", "min", "avg", "count", "absent", "time"}
PROMQL_TOKEN = re.compile(
    r"""\s*(?:(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)|(?P<duration>\[\d+[smhdw]\])"""
    r"""|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)|(?P<string>"(?:[^"\\]|\\.)*")"""
    r"""|(?P<op>==|!=|>=|<=|=~|!~|[-+*/<>=(){},])|(?P<bad>\S))"""
)


class PromQL:
    """A recursive-descent parser for the PromQL the chart's rules use (comparisons and arithmetic
    of function calls, aggregations and selectors with label matchers and ranges); raises
    ValueError on anything else and returns the selectors it read: (metric, {label: value})."""

    def __init__(self, text: str) -> None:
        self.tokens = [(m.lastgroup or "", m.group(m.lastgroup or 0)) for m in PROMQL_TOKEN.finditer(text)]
        if any(kind == "bad" for kind, _ in self.tokens):
            raise ValueError(f"unexpected character in {text!r}")
        self.i = 0
        self.selectors: list[tuple[str, dict[str, str]]] = []
        self.expr()
        if self.i != len(self.tokens):
            raise ValueError(f"trailing tokens {self.tokens[self.i :]} in {text!r}")

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (value is not None and got[1] != value):
            raise ValueError(f"expected {value or kind}, got {got}")
        self.i += 1
        return got[1]

    def expr(self) -> None:
        self.operand()
        while self.peek()[1] in {"==", "!=", ">", "<", ">=", "<=", "+", "-", "*", "/"}:
            self.i += 1
            self.operand()

    def operand(self) -> None:
        kind, value = self.peek()
        if kind == "number":
            self.i += 1
        elif value == "(":
            self.i += 1
            self.expr()
            self.take("op", ")")
        elif kind == "name" and self.tokens[self.i + 1 : self.i + 2] == [("op", "(")]:
            if value not in PROMQL_FUNCTIONS:
                raise ValueError(f"unknown function {value}")
            self.i += 2
            self.expr()
            self.take("op", ")")
        elif kind == "name":
            self.i += 1
            labels: dict[str, str] = {}
            if self.peek() == ("op", "{"):
                self.i += 1
                while self.peek() != ("op", "}"):
                    label = self.take("name")
                    if self.peek()[1] not in {"=", "!=", "=~", "!~"}:
                        raise ValueError(f"expected a label matcher after {label}")
                    self.i += 1
                    labels[label] = self.take("string")[1:-1].replace("\\\\", "\\")
                    if self.peek() == ("op", ","):
                        self.i += 1
                self.take("op", "}")
            if self.peek()[0] == "duration":
                self.i += 1
            self.selectors.append((value, labels))
        else:
            raise ValueError(f"unexpected {self.peek()}")


def aidp_metrics() -> dict[str, set[str]]:
    """The operator's metrics as Prometheus exposes them (counters with _total), with their labels."""
    from prometheus_client import REGISTRY

    from aidp import metrics

    out: dict[str, set[str]] = {}
    for collector in vars(metrics).values():
        if hasattr(collector, "_name") and hasattr(collector, "_type"):
            name = collector._name + ("_total" if collector._type == "counter" else "")
            out[name] = set(collector._labelnames)
    assert REGISTRY is not None and out
    return out


def test_promql_checker_refuses_what_prometheus_refuses() -> None:
    assert PromQL('sum(rate(a_total{x="1",y=~"b|c"}[5m])) > 0.5').selectors == [
        ("a_total", {"x": "1", "y": "b|c"})
    ]
    for bad in ("sum(rate(a[5m]) > 0", 'a{x="1"', "a{x 1}", "rat(a[5m])", "a >", 'a{x="1"}[5x]', "a # b"):
        with pytest.raises(ValueError):
            PromQL(bad)


def test_alert_rules_parse_and_read_metrics_that_exist() -> None:
    assert not [o for o in render() if o["kind"] == "PrometheusRule"]  # off by default
    (rule_object,) = [
        o
        for o in render(("metrics.prometheusRule.enabled=true", "providerCatalog.configMap=providers"))
        if o["kind"] == "PrometheusRule"
    ]
    assert rule_object["apiVersion"] == "monitoring.coreos.com/v1"
    rules = [r for group in rule_object["spec"]["groups"] for r in group["rules"]]
    names = {r["alert"] for r in rules}
    assert {"AIDPPolicyDegraded", "AIDPOPAReplicasNotLoaded", "AIDPWebhookRejectionsHigh"} <= names
    assert "AIDPProviderCatalogRejected" in names  # with a catalog ConfigMap only
    (plain,) = [o for o in render(("metrics.prometheusRule.enabled=true",)) if o["kind"] == "PrometheusRule"]
    assert "AIDPProviderCatalogRejected" not in {
        r["alert"] for g in plain["spec"]["groups"] for r in g["rules"]
    }
    known = {**aidp_metrics(), **EXTERNAL_METRICS}
    webhooks = {w["name"] for w in webhook.render(OperatorConfig(), b"")["webhooks"]}
    for rule in rules:
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule
        selectors = PromQL(rule["expr"]).selectors
        assert selectors, rule["alert"]
        for metric, labels in selectors:
            assert metric in known, (
                f"{rule['alert']}: {metric} is no metric aidp or its documented sources export"
            )
            assert set(labels) <= known[metric], (
                f"{rule['alert']}: {metric} has no labels {set(labels) - known[metric]}"
            )
            if metric == "aidp_policies":
                assert labels["phase"] == "Degraded"
            if "name" in labels and metric.startswith("apiserver_admission_webhook"):
                pattern = re.compile(labels["name"])
                assert {w for w in webhooks if pattern.fullmatch(w)}, labels["name"]
            if "deployment" in labels:
                assert labels == {"namespace": NAMESPACE, "deployment": "aidp-opa"}
    threshold = render(
        ("metrics.prometheusRule.enabled=true", "metrics.prometheusRule.rejectionsPerSecond=2")
    )
    (high,) = [
        r
        for o in threshold
        if o["kind"] == "PrometheusRule"
        for g in o["spec"]["groups"]
        for r in g["rules"]
        if r["alert"] == "AIDPWebhookRejectionsHigh"
    ]
    assert high["expr"].rstrip().endswith("> 2")


@all_modes()
def test_pods_get_no_service_link_env_and_probe_opa_over_https(mode: str) -> None:
    """Kubernetes injects AIDP_OPA_PORT=tcp://... for the Service aidp-opa unless service links are
    off, and aidp's flags read AIDP_* variables; OPA's diagnostic port serves TLS."""
    objs = render(MODES[mode])
    for obj in objs:
        if obj.get("kind") == "Deployment":
            assert obj["spec"]["template"]["spec"]["enableServiceLinks"] is False, obj["metadata"]["name"]
    opa = container(objs, "aidp-opa", "opa")
    for probe in ("readinessProbe", "livenessProbe"):
        assert opa[probe]["httpGet"]["scheme"] == "HTTPS"
