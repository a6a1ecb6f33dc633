"""The audit on a seeded cluster: one workload per finding type, exactly the expected findings,
the same findings in every format, verdicts equal to admission now, in-cluster reports and status."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Secret, ServiceAccount
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env, drop_env, make_env
from tests.waiting import wait_for

Report = create_namespaced_resource("openreports.io", "v1alpha1", "Report", "reports")
TODAY = dt.datetime.now(dt.UTC).date()


def _create(client: Client, obj: dict[str, Any]) -> None:
    client.create(from_dict(copy.deepcopy(obj)))


@pytest.fixture(scope="module")
def seeded(aidp_stack: AidpStack, kube_client: Client) -> Iterator[tuple[Env, Env]]:
    a = make_env(kube_client, aidp_stack.cp.kubeconfig)
    b = make_env(kube_client, aidp_stack.cp.kubeconfig)
    c = kube_client
    # policy-violation: created before its policy existed (90 days > the 30 the policy allows)
    legacy = helpers.workload(
        "Deployment", "legacy", a.ns, annotations={**helpers.COMPLIANT, "aidp.io/retention-days": "90"}
    )
    legacy["spec"]["replicas"] = 0
    _create(c, legacy)
    a.policy("bots")
    # approved, with its API key in a Secret that another service account can read
    c.create(Secret(metadata=ObjectMeta(name="openai-creds", namespace=a.ns), stringData={"api-key": "x"}))
    bot = helpers.workload("Deployment", "bot", a.ns)
    bot["spec"]["replicas"] = 0
    bot["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_API_KEY", "valueFrom": {"secretKeyRef": {"name": "openai-creds", "key": "api-key"}}}
    ]
    _create(c, bot)
    c.create(ServiceAccount(metadata=ObjectMeta(name="intruder", namespace=a.ns)))
    c.create(
        Role.from_dict(
            {
                "metadata": {"name": "secret-reader", "namespace": a.ns},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
            }
        )
    )
    c.create(
        RoleBinding.from_dict(
            {
                "metadata": {"name": "intruder-reads-secrets", "namespace": a.ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "intruder", "namespace": a.ns}],
            }
        )
    )
    # shadow-ai: calls the provider, selected by no policy
    sneaky = helpers.workload("Deployment", "sneaky", a.ns, labels={"app": "sneaky"}, annotations={})
    sneaky["spec"]["replicas"] = 0
    sneaky["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "OPENAI_BASE_URL", "value": "https://api.openai.com/v1"}
    ]
    _create(c, sneaky)
    # egress-bypass: a user NetworkPolicy opens all egress for a pod that is not approved
    _create(c, helpers.workload("Pod", "leaky", a.ns, labels={"app": "leaky"}, annotations={}, sa="default"))
    c.create(
        NetworkPolicy.from_dict(
            {
                "metadata": {"name": "allow-all-egress", "namespace": a.ns},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "leaky"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
                },
            }
        )
    )
    # review-expired and review-expiring, in a namespace of their own
    b.policy(
        "stale",
        review={"approvedBy": "dpo@example.com", "expires": (TODAY - dt.timedelta(days=1)).isoformat()},
    )
    b.policy(
        "soon",
        review={"approvedBy": "dpo@example.com", "expires": (TODAY + dt.timedelta(days=10)).isoformat()},
        workloadSelector={"matchLabels": {"app": "soon"}},
    )
    # the egress rules (and their addresses in status) are in place before anything is audited
    wait_for(lambda: _egress_applied(c, a.ns, "bots"), timeout=30, what="egress rules of bots")
    yield a, b
    drop_env(c, a)
    drop_env(c, b)


def _egress_applied(c: Client, ns: str, name: str) -> bool:
    st = c.get(helpers.AIDataPolicy, name, namespace=ns).get("status") or {}
    cond = {x["type"]: x for x in st.get("conditions") or []}.get("EgressEnforced", {})
    return cond.get("status") == "True" and bool((st.get("endpoints") or [{}])[0].get("addresses"))


def _audit(stack: AidpStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", "audit", "--kubeconfig", str(stack.cp.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _key(f: dict[str, Any]) -> tuple[str, str, str, str, str | None, str | None]:
    return (f["type"], f["namespace"], f["kind"], f["name"], f.get("policy") or None, f.get("rule") or None)


def _expected(a: Env, b: Env) -> set[tuple[str, str, str, str, str | None, str | None]]:
    return {
        ("policy-violation", a.ns, "Deployment", "legacy", "bots", "retention-days"),
        ("shadow-ai", a.ns, "Deployment", "sneaky", None, None),
        ("egress-bypass", a.ns, "Pod", "leaky", "bots", None),
        ("credential-exposure", a.ns, "Deployment", "bot", None, None),
        # bots names no controller or data subjects (contract 9): its record is incomplete
        ("record-incomplete", a.ns, "Deployment", "bot", "bots", None),
        ("review-expired", b.ns, "AIDataPolicy", "stale", "stale", None),
        ("review-expiring", b.ns, "AIDataPolicy", "soon", "soon", None),
    }


def test_seeded_cluster_yields_exactly_the_expected_findings(
    aidp_stack: AidpStack, seeded: tuple[Env, Env]
) -> None:
    a, b = seeded
    out = _audit(aidp_stack, "-o", "json", "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["kind"] == "AuditReport" and report["apiVersion"] == "aidp.io/v1alpha1"
    ours = [f for f in report["findings"] if f["namespace"] in (a.ns, b.ns)]
    assert {_key(f) for f in ours} == _expected(a, b)
    assert len(ours) == len(_expected(a, b))
    assert "intruder" in next(f for f in ours if f["type"] == "credential-exposure")["message"]
    records = [r for r in report["processingRecords"] if r["namespace"] == a.ns]
    assert [(r["kind"], r["name"], r["policy"]) for r in records] == [("Deployment", "bot", "bots")]
    assert records[0]["retentionDays"] == 14 and records[0]["consentBasis"] == "contract"


def test_every_format_carries_the_same_findings(
    aidp_stack: AidpStack, seeded: tuple[Env, Env], tmp_path: Any
) -> None:
    a, b = seeded
    expected = _expected(a, b)
    out = _audit(aidp_stack, "-n", a.ns, "-o", "csv", "--fail-on", "never")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {_key({k: (v or None) for k, v in r.items()}) for r in rows} == {
        e for e in expected if e[1] == a.ns
    }
    for fmt in ("markdown", "html"):
        target = tmp_path / f"report.{fmt}"
        res = _audit(aidp_stack, "-n", a.ns, "-o", fmt, "--output", str(target), "--fail-on", "never")
        assert res.returncode == 0, res.stderr
        text = target.read_text()
        for kind_, _ns, _k, name, _p, rule in (e for e in expected if e[1] == a.ns):
            assert kind_ in text and name in text and (rule is None or rule in text), (fmt, kind_, name)


def test_fail_on_gates_the_exit_code(aidp_stack: AidpStack, seeded: tuple[Env, Env]) -> None:
    a, b = seeded
    assert _audit(aidp_stack, "-n", a.ns, "--fail-on", "violation").returncode == 1
    assert _audit(aidp_stack, "-n", b.ns, "--fail-on", "never").returncode == 0
    # review-expired is high: the b namespace fails a violation gate too
    assert _audit(aidp_stack, "-n", b.ns, "--fail-on", "violation").returncode == 1


def test_audit_verdicts_equal_admission_now(
    aidp_stack: AidpStack, seeded: tuple[Env, Env], kube_client: Client
) -> None:
    a, _ = seeded
    report = json.loads(_audit(aidp_stack, "-n", a.ns, "--fail-on", "never").stdout)
    violating = {(f["kind"], f["name"]) for f in report["findings"] if f["type"] == "policy-violation"}
    workloads = {"Deployment": ["legacy", "bot", "sneaky"], "Pod": ["leaky"]}
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Pod

    for kind, names in workloads.items():
        res = Deployment if kind == "Deployment" else Pod
        for name in names:
            live = kube_client.get(res, name, namespace=a.ns).to_dict()
            replay = {
                "apiVersion": live.get("apiVersion", "apps/v1" if kind == "Deployment" else "v1"),
                "kind": kind,
                "metadata": {
                    "name": f"{name}-replay",
                    "namespace": a.ns,
                    "labels": live["metadata"].get("labels"),
                    "annotations": live["metadata"].get("annotations"),
                },
                "spec": live["spec"],
            }
            try:
                kube_client.create(from_dict(replay), dry_run=True)
                admitted = True
            except ApiError as err:
                assert "aidp:" in err.status.message, err.status.message
                admitted = False
            assert admitted == ((kind, name) not in violating), (kind, name)


@pytest.mark.local_only  # scrapes the local operator's metrics port
def test_in_cluster_audit_writes_reports_and_policy_status(
    aidp_stack: AidpStack, seeded: tuple[Env, Env], kube_client: Client
) -> None:
    a, _ = seeded

    def report_ready() -> dict[str, Any] | None:
        try:
            rep = kube_client.get(Report, "aidp-audit", namespace=a.ns).to_dict()
        except ApiError:
            return None
        names = {(r["category"], r["resources"][0]["name"]) for r in rep.get("results") or []}
        wanted = {
            ("policy-violation", "legacy"),
            ("shadow-ai", "sneaky"),
            ("egress-bypass", "leaky"),
            ("credential-exposure", "bot"),
            ("processing-record", "bot"),
        }
        return rep if wanted <= names else None

    rep = wait_for(report_ready, timeout=90, what="the operator's Report for the seeded namespace")
    assert rep["summary"]["fail"] >= 3 and rep["summary"]["pass"] == 1
    assert len(json.dumps(rep)) < 1_000_000
    st = kube_client.get(helpers.AIDataPolicy, "bots", namespace=a.ns)["status"]
    assert st["violations"] == 1 and st["matchedWorkloads"] == 2 and st["lastAuditTime"]
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{aidp_stack.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    for name in (
        "aidp_audit_duration_seconds",
        "aidp_audit_last_run_timestamp_seconds",
        "aidp_audit_findings",
        "aidp_reconcile_errors_total",
        'aidp_policies{phase="Active"}',
        "aidp_opa_load_errors_total",
    ):
        assert name in metrics


def test_raw_pages_follow_continue_tokens_and_drop_managed_fields(env: Env, kube_client: Client) -> None:
    """The audit's reading: pages of at most `limit` objects, every object once, managedFields and
    status left out by the workload decoder, cluster-scoped resources listed too."""
    from lightkube.resources.core_v1 import Namespace, Pod

    from aidp.audit import collect

    names = [f"p{i}" for i in range(5)]
    for name in names:
        kube_client.create(from_dict(helpers.workload("Pod", name, env.ns)))
    pages = list(collect.raw_pages(kube_client, Pod, env.ns, collect.WORKLOAD_LIST, limit=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(o["metadata"]["name"] for p in pages for o in p) == names
    for obj in (o for p in pages for o in p):
        assert "managedFields" not in obj["metadata"] and "status" not in obj
        assert obj["metadata"]["namespace"] == env.ns and obj["spec"]["containers"]
    full = [o for p in collect.raw_pages(kube_client, Pod, env.ns, limit=3) for o in p]
    assert len(full) == 5 and all("managedFields" in o["metadata"] for o in full)
    cluster = [o["metadata"]["name"] for p in collect.raw_pages(kube_client, Namespace, None) for o in p]
    assert env.ns in cluster


def test_a_namespace_admin_gets_an_audit_that_names_what_it_could_not_analyse(
    env: Env, kube_client: Client, aidp_stack: AidpStack, tmp_path: Path
) -> None:
    """`aidp audit -n` by someone who may read the namespace but nothing cluster-scoped: the
    workloads are judged, and credential-exposure (which needs ClusterRoles) is reported as not
    analysed instead of the audit failing or calling it clean."""
    env.policy("chat")
    assert helpers.create(kube_client, helpers.workload("Deployment", "bot", env.ns)) is None
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "auditor", "namespace": env.ns},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
            {
                "apiGroups": ["apps"],
                "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
                "verbs": ["list"],
            },
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ["list"]},
            {"apiGroups": ["aidp.io"], "resources": ["aidatapolicies"], "verbs": ["list"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list"]},
            {
                "apiGroups": ["rbac.authorization.k8s.io"],
                "resources": ["roles", "rolebindings"],
                "verbs": ["list"],
            },
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "auditor", "namespace": env.ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "auditor"},
        "subjects": [{"kind": "ServiceAccount", "name": "auditor", "namespace": env.ns}],
    }
    kube_client.create(ServiceAccount(metadata=ObjectMeta(name="auditor", namespace=env.ns)))
    for obj in (role, binding):
        kube_client.create(from_dict(obj))
    kubeconfig = helpers.sa_kubeconfig(aidp_stack.cp, kube_client, "auditor", env.ns, tmp_path / "kc")
    proc = subprocess.run(
        [sys.executable, "-m", "aidp.cli.main", "audit", "--kubeconfig", str(kubeconfig), "-n", env.ns],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["workloads"] == 1 and report["summary"]["approved"] == 1
    by_analysis = {s["analysis"]: s for s in report["skipped"]}
    assert set(by_analysis) == {"credential-exposure", "guardrails"}, report["skipped"]
    skipped, guardrails = by_analysis["credential-exposure"], by_analysis["guardrails"]
    assert "clusterroles" in skipped["reason"] and "forbidden" in skipped["reason"]
    assert "aidp audit: credential-exposure: not analysed" in proc.stderr
    # nor the ClusterAIDataPolicies (cluster-scoped): the guardrails are not analysed either
    assert "clusteraidatapolicies" in guardrails["reason"]
    assert "aidp audit: guardrails: not analysed" in proc.stderr
