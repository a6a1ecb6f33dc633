"""The audit with guardrails on the real control plane (issue 13, items 2, 5 and 7): it reads the
ClusterAIDataPolicies and the namespaces' labels, applies the guardrail rules exactly as admission
does, reports shadow AI in the namespaces they govern, `out-of-bounds` policies (from the Rego's
bounds decision) and a guardrails section."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import Client
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import Namespace

from aidp import check
from aidp.audit import collect, formats
from aidp.audit.evaluate import local_opa
from aidp.audit.report import AuditReport
from aidp.controller import governance
from tests.integration import helpers
from tests.integration.conftest import Env


@pytest.fixture
def guarded(env: Env, kube_client: Client) -> Iterator[tuple[Env, str]]:
    """env's namespace labelled, and a guardrail selecting it by that label (deleted afterwards)."""
    label = f"guard-{secrets.token_hex(3)}"
    kube_client.patch(Namespace, env.ns, {"metadata": {"labels": {"aidp-test/guard": label}}})
    yield env, f"g-{label}"
    with contextlib.suppress(ApiError):
        kube_client.delete(governance.ClusterAIDataPolicy, f"g-{label}")


def _guardrail(name: str, label: str, **spec: Any) -> Any:
    return governance.ClusterAIDataPolicy(
        {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "ClusterAIDataPolicy",
            "metadata": {"name": name},
            "spec": {"namespaceSelector": {"matchLabels": {"aidp-test/guard": label}}, **spec},
        }
    )


def _audit(client: Client, ns: str, policy_objects: list[dict[str, Any]] | None = None) -> AuditReport:
    objs = policy_objects if policy_objects is not None else collect.list_policies(client, ns)
    with local_opa(objs, check.find_opa()) as ev:
        report, _, _ = collect.audit_cluster(client, ev, namespace=ns, policy_objects=objs)
    return report


def test_the_audit_applies_and_reports_the_guardrails(guarded: tuple[Env, str], kube_client: Client) -> None:
    env, name = guarded
    ns = env.ns
    # a policy within no guardrail yet (maxDays 90), and a workload it approves (60 days)
    env.policy("loose", retention={"maxDays": 90, "requireZeroDataRetention": True})
    long = helpers.workload(
        "Deployment", "long", ns, annotations={**helpers.COMPLIANT, "aidp.io/retention-days": "60"}
    )
    rogue = helpers.workload("Deployment", "rogue", ns, labels={"app": "rogue"}, annotations={})
    rogue["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "OPENAI_API_KEY", "value": "x"}]
    for obj in (long, rogue):
        kube_client.create(from_dict(obj))
    before = _audit(kube_client, ns)
    assert not [g for g in before.guardrails if ns in g.namespaces]
    assert not [f for f in before.findings if f.type == "out-of-bounds"]
    assert ("policy-violation", "long") not in {(f.type, f.name) for f in before.findings}

    # then the privacy team sets a 30-day ceiling for the namespace
    kube_client.create(_guardrail(name, name.removeprefix("g-"), retention={"maxDays": 30}))
    report = _audit(kube_client, ns)

    bounds = [f for f in report.findings if f.type == "out-of-bounds"]
    assert [(f.severity, f.namespace, f.kind, f.name, f.policy, f.guardrail) for f in bounds] == [
        ("medium", ns, "AIDataPolicy", "loose", "loose", name)
    ]
    assert bounds[0].fields and bounds[0].fields[0].startswith("spec.retention.maxDays: 90"), bounds[0]
    # the workload gets the guardrail's rules as at admission
    guard = [(f.name, f.policy, f.rule) for f in report.findings if f.type == "policy-violation"]
    assert guard == [("long", f"ClusterAIDataPolicy/{name}", "retention-days")], report.findings
    # shadow AI in a namespace the guardrail governs, said so
    shadow = [f for f in report.findings if f.type == "shadow-ai"]
    assert [f.name for f in shadow] == ["rogue"]
    assert "env OPENAI_API_KEY" in shadow[0].message
    assert f"ClusterAIDataPolicy/{name} (unapprovedAI: audit)" in shadow[0].message
    # the guardrails section, in every format
    (summary,) = [g for g in report.guardrails if g.name == name]
    assert (summary.name, summary.namespaces, summary.policies, summary.out_of_bounds) == (
        name,
        [ns],
        [f"{ns}/loose"],
        [f"{ns}/loose"],
    )
    doc = report.to_dict()
    assert [g for g in doc["guardrails"] if g["name"] == name] == [
        {
            "name": name,
            "namespaces": [ns],
            "policies": [f"{ns}/loose"],
            "outOfBounds": [f"{ns}/loose"],
            "unapprovedAI": "audit",
            "providers": [],
        }
    ]
    (out_json,) = [f for f in doc["findings"] if f["type"] == "out-of-bounds"]
    assert out_json["guardrail"] == name and out_json["fields"] == list(bounds[0].fields)
    markdown = formats.render(report, "markdown")
    assert "## Guardrails" in markdown and f"| {name} | {ns} |" in markdown
    html = formats.render(report, "html")
    assert 'id="guardrails"' in html and f">{name}<" in html


def test_a_namespace_only_a_guardrail_governs_is_governed(
    guarded: tuple[Env, str], kube_client: Client
) -> None:
    """No AIDataPolicy in the namespace: the guardrail governs it, so an unselected hostNetwork pod
    there is an egress-bypass (it escapes the baseline the guardrail brings)."""
    env, name = guarded
    pod = helpers.workload("Pod", "hostnet", env.ns, labels={"app": "x"}, annotations={})
    pod["spec"]["hostNetwork"] = True
    kube_client.create(from_dict(pod))
    assert "egress-bypass" not in {f.type for f in _audit(kube_client, env.ns, []).findings}
    kube_client.create(_guardrail(name, name.removeprefix("g-")))
    report = _audit(kube_client, env.ns, [])
    assert [(f.type, f.name) for f in report.findings if f.type == "egress-bypass"] == [
        ("egress-bypass", "hostnet")
    ]
    assert [g.namespaces for g in report.guardrails if g.name == name] == [[env.ns]]
