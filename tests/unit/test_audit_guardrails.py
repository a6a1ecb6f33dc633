"""Guardrails in the audit and the one detector (issue 13, items 2, 5 and 7), against a real OPA.

The same pod specs go to admission (data.aidp.admission.decision, in an OPA holding the data the
operator renders: the guardrails, the namespaces they select, the catalog's detector) and to the
audit (its private OPA, `LocalOpa.use_guardrails`): what admission refuses as `unapproved-ai` under
a guardrail with unapprovedAI deny is exactly what the audit reports as shadow AI, with the same
references.
"""

from __future__ import annotations

import copy
import datetime as dt
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from aidp import check, render
from aidp.audit import guardrails as audit_guardrails
from aidp.audit.engine import Auditor
from aidp.audit.evaluate import local_opa, write_bundle
from aidp.audit.report import Skipped
from aidp.bundle import Bundle
from aidp.check import admission_review
from aidp.controller import governance
from aidp.devcluster.opa import OpaServer, new_token
from aidp.guardrail import ClusterPolicy
from aidp.model import Policy, checked_kind
from tests.integration import helpers

NS = "team"
OTHER = "elsewhere"  # no guardrail selects it
TODAY = dt.date(2026, 6, 1)

GUARDRAIL = ClusterPolicy.from_object(
    {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": "org"},
        "spec": {"namespaceSelector": {"matchLabels": {"team": "yes"}}, "unapprovedAI": "deny"},
    }
)
NAMESPACES = {NS: {"team": "yes"}, OTHER: {}}
POLICY = helpers.policy("bots", NS)


def _with(name: str, ns: str, **container: Any) -> dict[str, Any]:
    obj = helpers.workload("Deployment", name, ns, labels={"app": name}, annotations={})
    obj["spec"]["template"]["spec"]["containers"][0].update(container)
    return obj


def pod_specs(ns: str) -> list[dict[str, Any]]:
    """Workloads no policy selects: some reference an AI provider, some look like they might."""
    return [
        _with("key", ns, env=[{"name": "OPENAI_API_KEY", "value": "x"}]),
        _with("base-url", ns, env=[{"name": "LLM_URL", "value": "https://api.openai.com/v1"}]),
        _with("azure", ns, env=[{"name": "AZURE_OPENAI_ENDPOINT", "value": "https://r.openai.azure.com"}]),
        _with("arg", ns, args=["--endpoint", "https://api.anthropic.com"]),
        _with("command", ns, command=["curl", "https://generativelanguage.googleapis.com/v1"]),
        _with("init", ns, env=[]),
        _with("lookalike", ns, env=[{"name": "MY_OPENAI_KEY", "value": "notapi.openai.com.evil.example"}]),
        _with("plain", ns, env=[{"name": "LOG_LEVEL", "value": "info"}], args=["--port", "8080"]),
        _with(
            "from-ref",
            ns,
            env=[{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
    ]


def _add_init(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for obj in objs:
        if obj["metadata"]["name"] == "init":
            obj["spec"]["template"]["spec"]["initContainers"] = [
                {"name": "i", "image": "x", "env": [{"name": "BEDROCK_REGION", "value": "eu-west-1"}]}
            ]
    return objs


@pytest.fixture(scope="module")
def admission() -> Iterator[Any]:
    """data.aidp.admission.decision in an OPA holding the operator's rendering of the data."""
    opa = check.find_opa()
    of = governance.select([GUARDRAIL], NAMESPACES, ())
    data = render.render_data(
        [Policy.from_object(POLICY)],
        guardrails={GUARDRAIL.name: GUARDRAIL.to_document()},
        guardrails_of=of,
        with_detector=True,
    )
    with tempfile.TemporaryDirectory(prefix="aidp-admission-") as tmp:
        files = write_bundle(Bundle(render.policy_modules(), data), Path(tmp) / "bundle")
        server = OpaServer(Path(tmp) / "opa", new_token(), bin_dir=opa.parent, preload=(files,)).start()
        try:
            client = server.client()

            def decide(obj: dict[str, Any]) -> dict[str, Any]:
                kind = checked_kind(obj["apiVersion"], obj["kind"])
                assert kind is not None
                got = client.query_rule(admission_review(obj, kind, "u"), "aidp/admission", "decision")
                result: dict[str, Any] = got["result"]
                return result

            yield decide
        finally:
            server.stop()


@pytest.fixture(scope="module")
def audit_opa() -> Iterator[Any]:
    with local_opa([POLICY], check.find_opa()) as ev:
        ev.use_guardrails(
            {GUARDRAIL.name: GUARDRAIL.to_document()}, governance.select([GUARDRAIL], NAMESPACES, ())
        )
        yield ev


def _audit(evaluate: Any, objs: list[dict[str, Any]]) -> Any:
    of = governance.select([GUARDRAIL], NAMESPACES, ())
    auditor = Auditor(
        evaluate,
        [Policy.from_object(POLICY)],
        TODAY,
        network_policies=None,
        governed={NS},
        guardrails=[GUARDRAIL],
        guardrails_of=of,
    )
    auditor.add(copy.deepcopy(objs))
    return auditor.finish()


def test_admission_and_the_audit_agree_on_unapproved_ai(admission: Any, audit_opa: Any) -> None:
    objs = _add_init(pod_specs(NS) + pod_specs(OTHER))
    refused: dict[tuple[str, str], str] = {}
    for obj in objs:
        decision = admission(obj)
        rules = {v["rule"] for v in decision["violations"]}
        if "unapproved-ai" in rules:
            assert decision["allowed"] is False and obj["metadata"]["namespace"] == NS
            (v,) = [v for v in decision["violations"] if v["rule"] == "unapproved-ai"]
            assert v["policy"] == "ClusterAIDataPolicy/org"
            refused[(NS, obj["metadata"]["name"])] = v["message"].split("(")[1].split(")")[0]
        else:
            assert decision["allowed"] is True, decision
    report = _audit(audit_opa, objs)
    shadow = {(f.namespace, f.name): f.message for f in report.findings if f.type == "shadow-ai"}
    # in the guardrail's namespace: exactly what admission refuses, with the same references
    in_ns = {k: m for k, m in shadow.items() if k[0] == NS}
    assert (
        set(in_ns)
        == set(refused)
        == {(NS, n) for n in ("key", "base-url", "azure", "arg", "command", "init", "from-ref")}
    )
    for key, refs in refused.items():
        assert f"references an AI provider ({refs})" in in_ns[key], (key, in_ns[key])
        assert "ClusterAIDataPolicy/org (unapprovedAI: deny)" in in_ns[key]
    # elsewhere: the same detector, no guardrail
    assert {k[1] for k in shadow if k[0] == OTHER} == {k[1] for k in refused}
    # and the audit's decisions carry the unapproved-ai violation as admission's do
    violations = {(f.namespace, f.name) for f in report.findings if f.rule == "unapproved-ai"}
    assert violations == set(refused)


def test_the_audit_asks_opa_once_per_distinct_spec(audit_opa: Any) -> None:
    """Workloads that agree on everything the decision and the detector read are judged once."""
    calls: list[int] = []

    def counting(reviews: Any) -> Any:
        calls.append(len(reviews))
        return audit_opa(reviews)

    same = [_with(f"w{i}", OTHER, env=[{"name": "OPENAI_API_KEY", "value": "x"}]) for i in range(20)]
    report = _audit(counting, same)
    assert sum(calls) == 1 and len([f for f in report.findings if f.type == "shadow-ai"]) == 20


def test_bounds_fields_keep_their_parentheses() -> None:
    message = (
        'aidp: AIDataPolicy team/p denied: looser than ClusterAIDataPolicy/a (spec.provider: "x" is not one '
        "of the providers it allows (openai, anthropic); spec.retention.maxDays: 90, more than its ceiling "
        "of 30 days); ClusterAIDataPolicy/b (spec.review.approvedBy: required by it)"
    )
    assert audit_guardrails.fields_of(message, "a") == [
        'spec.provider: "x" is not one of the providers it allows (openai, anthropic)',
        "spec.retention.maxDays: 90, more than its ceiling of 30 days",
    ]
    assert audit_guardrails.fields_of(message, "b") == ["spec.review.approvedBy: required by it"]
    assert audit_guardrails.fields_of(message, "c") == []


class _Refusing:
    """A client whose ClusterAIDataPolicy LIST fails with `code`."""

    def __init__(self, code: int) -> None:
        self.code = code

    def list(self, res: Any, **_: Any) -> Any:
        raise ApiError(status=Status(code=self.code, message=f"refused with {self.code}"))


def test_a_missing_crd_means_no_guardrails() -> None:
    skipped: list[Skipped] = []
    got = audit_guardrails.read(_Refusing(404), None, skipped)  # type: ignore[arg-type]
    assert (got.valid, got.of, got.available, skipped) == ([], {}, False, [])


def test_guardrails_the_caller_may_not_read_are_named_as_not_analysed() -> None:
    skipped: list[Skipped] = []
    got = audit_guardrails.read(_Refusing(403), None, skipped)  # type: ignore[arg-type]
    assert got.valid == [] and [s.analysis for s in skipped] == ["guardrails"]


def test_a_namespace_a_guardrail_selects_is_governed(audit_opa: Any) -> None:
    """Without an explicit `governed`, the Auditor counts the guardrails' namespaces as governed: an
    unselected hostNetwork pod there escapes the baseline the guardrail brings (egress-bypass);
    in a namespace nothing governs it escapes nothing."""
    pods = []
    for ns in (NS, OTHER):
        pod = helpers.workload("Pod", "hostnet", ns, labels={"app": "x"}, annotations={})
        pod["spec"]["hostNetwork"] = True
        pods.append(pod)
    auditor = Auditor(
        audit_opa,
        [],
        TODAY,
        network_policies=[],
        guardrails=[GUARDRAIL],
        guardrails_of=governance.select([GUARDRAIL], NAMESPACES, ()),
    )
    auditor.add(pods)
    report = auditor.finish()
    assert [(f.type, f.namespace) for f in report.findings] == [("egress-bypass", NS)]
