"""aidp.check and `aidp check`: offline admission with the real opa binary and the real Rego."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from aidp import check, model, render
from aidp.cli import policy as policy_cli


@pytest.fixture(scope="module", autouse=True)
def opa_binary() -> Path:
    try:
        return check.find_opa()
    except check.OpaError as err:
        pytest.fail(f"{err} (run make testbin)")


POLICY = """\
apiVersion: aidp.io/v1alpha1
kind: AIDataPolicy
metadata: {name: support-summaries, namespace: support}
spec:
  provider: openai
  workloadSelector: {matchLabels: {app: support-bot}}
  serviceAccountNames: [support-bot]
  purpose: Summarise support tickets
  consent: {allowedBases: [consent, contract]}
  retention: {maxDays: 30}
  dataCategories: {allowed: [public, internal], forbidden: [health]}
  review: {expires: "2099-12-31"}
"""

COMPLIANT = {
    "aidp.io/consent-basis": "contract",
    "aidp.io/retention-days": "30",
    "aidp.io/data-categories": "internal",
}


def deployment(
    name: str, annotations: dict[str, str], *, namespace: str | None = "support", **spec: Any
) -> str:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    pod_spec = {"serviceAccountName": "support-bot", "containers": [{"name": "c", "image": "x"}], **spec}
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": "support-bot"}},
                "template": {
                    "metadata": {"labels": {"app": "support-bot"}, "annotations": annotations},
                    "spec": pod_spec,
                },
            },
        }
    )


def manifests(*docs: str) -> list[dict[str, Any]]:
    return render.parse_manifests("---\n".join(docs), "test")


def test_denied_and_allowed_workloads() -> None:
    results = check.check_manifests(
        manifests(
            POLICY,
            deployment("good", COMPLIANT),
            deployment(
                "bad", {"aidp.io/retention-days": "-3", "aidp.io/data-categories": "internal, Health"}
            ),
        )
    )
    assert [r.to_dict() for r in results] == [
        {
            "kind": "Deployment",
            "namespace": "support",
            "name": "good",
            "allowed": True,
            "violations": [],
            "warnings": [],
            "reason": "complies with support/support-summaries",
            "hints": [],
            "source": "<input> (object #2)",
        },
        {
            "kind": "Deployment",
            "namespace": "support",
            "name": "bad",
            "allowed": False,
            "violations": [
                {
                    "policy": "support-summaries",
                    "rule": "consent-basis",
                    "message": "annotation aidp.io/consent-basis is missing; "
                    "allowed bases: consent, contract",
                    "enforcement": "deny",
                },
                {
                    "policy": "support-summaries",
                    "rule": "retention-days",
                    "message": 'annotation aidp.io/retention-days "-3" is not a non-negative integer',
                    "enforcement": "deny",
                },
                {
                    "policy": "support-summaries",
                    "rule": "data-categories",
                    "message": "categories not in the allowed list: health (allowed: public, internal); "
                    "forbidden categories declared: health",
                    "enforcement": "deny",
                },
            ],
            "warnings": [],
            "reason": "fails support/support-summaries",
            "hints": [],
            "source": "<input> (object #3)",
        },
    ]
    assert results[1].message.startswith(
        "aidp: Deployment support/bad denied by AIDataPolicy support-summaries: [consent-basis] "
    )


def test_every_checked_kind() -> None:
    template = {"metadata": {"labels": {"app": "support-bot"}}, "spec": {"containers": []}}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "bot-", "labels": {"app": "support-bot"}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "rs"},
            "spec": {"template": template},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "ss"},
            "spec": {"template": template},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "ds"},
            "spec": {"template": template},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "job"},
            "spec": {"template": template},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "cj"},
            "spec": {"jobTemplate": {"spec": {"template": template}}},
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ignored"}},
    ]
    policy = yaml.safe_load(POLICY)
    policy["metadata"].pop("namespace")  # everything in "default"
    results = check.check_manifests([policy, *objects])
    assert [(r.kind, r.namespace, r.name, r.allowed) for r in results] == [
        ("Pod", "default", "bot-", False),
        ("ReplicaSet", "default", "rs", False),
        ("StatefulSet", "default", "ss", False),
        ("DaemonSet", "default", "ds", False),
        ("Job", "default", "job", False),
        ("CronJob", "default", "cj", False),
    ]
    assert {v.rule for r in results for v in r.violations} == {
        "service-account",
        "consent-basis",
        "retention-days",
        "data-categories",
    }


def test_modes_unselected_and_excluded_namespaces() -> None:
    warn = POLICY.replace("name: support-summaries", "name: w").replace(
        "review:", "enforcement: warn\n  review:"
    )
    dryrun = (
        POLICY.replace("name: support-summaries", "name: d")
        .replace("support-bot}}", "dry}}")
        .replace("review:", "enforcement: dryrun\n  review:")
    )
    dry_workload = deployment("dry", {}).replace("app: support-bot", "app: dry")
    results = check.check_manifests(
        manifests(
            warn,
            dryrun,
            deployment("warned", {}),
            dry_workload,
            deployment("unselected", {}).replace("app: support-bot", "app: other"),
            deployment("system", {}, namespace="kube-system"),
        )
    )
    warned, dry, unselected, system = results
    assert warned.allowed
    assert [v.rule for v in warned.violations] == ["consent-basis", "retention-days", "data-categories"]
    assert warned.warnings[0] == (
        "aidp: Deployment support/warned: AIDataPolicy w [consent-basis] "
        "annotation aidp.io/consent-basis is missing; allowed bases: consent, contract"
    )
    assert len(warned.warnings) == 3
    assert dry.allowed
    assert dry.warnings == ()
    assert {v.enforcement for v in dry.violations} == {"dryrun"}
    assert unselected.to_dict()["violations"] == []
    assert unselected.allowed
    assert (system.namespace, system.allowed, system.violations) == ("kube-system", True, ())
    assert warned.reason == "warned by support/w"
    assert dry.reason == "fails support/d in dryrun mode"
    assert unselected.reason == "no policy selects it"
    assert system.reason == "namespace not governed"


def test_expired_review_and_two_policies() -> None:
    expired = POLICY.replace("2099-12-31", "2000-01-01").replace("name: support-summaries", "name: old")
    results = check.check_manifests(manifests(POLICY, expired, deployment("bot", COMPLIANT)))
    (result,) = results
    assert not result.allowed
    assert [(v.policy, v.rule) for v in result.violations] == [("old", "review-expired")]


def test_all_workloads_are_evaluated_in_one_opa_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd: list[str], **kwargs: Any) -> Any:
        calls.append(cmd)
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    results = check.check_manifests(manifests(POLICY, *(deployment(f"d{i}", COMPLIANT) for i in range(10))))
    assert len(results) == 10
    assert len(calls) == 1
    assert calls[0][1] == "eval"


def test_admission_review_shape() -> None:
    obj = yaml.safe_load(deployment("bot", COMPLIANT, namespace=None))
    kind = check.split_manifests([obj])[0][0]
    review = check.admission_review(obj, kind, "uid-1")
    request = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    assert request["kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert (request["uid"], request["operation"], request["dryRun"]) == ("uid-1", "CREATE", False)
    assert (request["namespace"], request["name"]) == ("default", "bot")
    assert request["object"]["metadata"]["namespace"] == "default"
    assert "namespace" not in obj["metadata"]  # the input is not modified


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        (
            ["apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"],
            "nothing to check: the manifests contain no",
        ),
        (
            [POLICY.replace("maxDays: 30", "maxDays: -1"), deployment("x", COMPLIANT)],
            "<input> (object #1): AIDataPolicy support/support-summaries: spec.retention.maxDays: "
            "must be between 0 and 3650, got -1",
        ),
        (
            [POLICY, POLICY, deployment("x", COMPLIANT)],
            "<input> (object #2): AIDataPolicy support/support-summaries: defined more than once "
            "(first at <input> (object #1))",
        ),
        (
            [deployment("x", COMPLIANT).replace("'30'", "30")],
            "<input> (object #1): Deployment support/x: "
            'spec.template.metadata.annotations["aidp.io/retention-days"]: must be a string, '
            "got the integer 30",
        ),
        (["kind: Deployment\nmetadata: {name: x}\n"], "Deployment x: apiVersion and kind are required"),
        (
            ["apiVersion: v1\nkind: Pod\nmetadata: {}\n"],
            "metadata.name: is required (or metadata.generateName)",
        ),
        (
            ["apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: [a]}\n"],
            "metadata.labels: must be a map of strings, got a list",
        ),
        (
            ["apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: 5}\n"],
            "metadata.namespace: must be a string, got the integer 5",
        ),
        (
            ["apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"],
            "spec: is required and must be an object",
        ),
        (
            ["apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {}}\n"],
            "spec.jobTemplate.spec: is required and must be an object",
        ),
        (
            ["apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {metadata: 1}}\n"],
            "spec.template.metadata: must be an object, got the integer 1",
        ),
    ],
)
def test_bad_input(docs: list[str], message: str) -> None:
    with pytest.raises(check.CheckError) as info:
        check.check_manifests(manifests(*docs))
    assert message in str(info.value)


def test_find_opa(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, opa_binary: Path) -> None:
    monkeypatch.setenv("AIDP_OPA_BIN", str(opa_binary))
    assert check.find_opa() == opa_binary
    monkeypatch.setenv("AIDP_OPA_BIN", str(tmp_path / "missing"))
    with pytest.raises(check.OpaError, match=r"AIDP_OPA_BIN=.* is not an executable file"):
        check.find_opa()
    monkeypatch.delenv("AIDP_OPA_BIN")
    monkeypatch.setenv("AIDP_TESTBIN", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(check.OpaError, match="run `make testbin`"):
        check.find_opa()


def test_opa_failures_are_reported(tmp_path: Path) -> None:
    reviews = [check.admission_review(yaml.safe_load(deployment("x", {})), model.CHECKED_KINDS[1], "u")]
    data = render.render_data([])
    with pytest.raises(check.OpaError, match="opa eval failed"):
        check.evaluate(reviews, data, modules={"broken.rego": "package broken\n\nx := \n"})
    with pytest.raises(check.OpaError, match="opa eval returned 0 decisions for 1 objects"):
        check.evaluate(reviews, data, modules={"empty.rego": "package empty\n"})
    not_opa = tmp_path / "opa"
    not_opa.write_text("#!/bin/sh\necho '{}'\n")
    not_opa.chmod(0o755)
    with pytest.raises(check.OpaError, match="no decisions"):
        check.evaluate(reviews, data, opa=not_opa)
    with pytest.raises(check.OpaError, match="cannot run"):
        check.evaluate(reviews, data, opa=tmp_path / "absent")
    assert check.evaluate([], data) == []


def test_missing_rego_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIDP_POLICY_DIR", str(tmp_path))
    with pytest.raises(check.OpaError, match="cannot read aidp's Rego modules: no Rego modules found"):
        check.check_manifests(manifests(POLICY, deployment("x", COMPLIANT)))


# --- aidp check ----------------------------------------------------------------------------------


def app() -> typer.Typer:
    application = typer.Typer()
    policy_cli.register(application)
    return application


def write(tmp_path: Path, name: str, *docs: str) -> Path:
    path = tmp_path / name
    path.write_text("---\n".join(docs))
    return path


def test_check_command_text_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    policy = write(tmp_path, "policy.yaml", POLICY)
    good = write(tmp_path, "good.yaml", deployment("good", COMPLIANT))
    ok = runner.invoke(app(), ["check", "-f", str(policy), "-f", str(good)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == (
        "VALID AIDataPolicy support/support-summaries\n"
        "ALLOWED Deployment support/good (complies with support/support-summaries)\n"
    )

    bad = write(tmp_path, "bad.yaml", deployment("bad", {**COMPLIANT, "aidp.io/retention-days": "31"}))
    denied = runner.invoke(app(), ["check", "-f", str(policy), "-f", str(good), "-f", str(bad)])
    assert denied.exit_code == 1
    assert denied.stdout == (
        "VALID AIDataPolicy support/support-summaries\n"
        "ALLOWED Deployment support/good (complies with support/support-summaries)\n"
        "DENIED Deployment support/bad (fails support/support-summaries)\n"
        "  - support-summaries [retention-days] (deny) annotation aidp.io/retention-days declares 31 days, "
        "more than the 30 days the policy allows\n"
    )

    warn_policy = write(tmp_path, "warn.yaml", POLICY.replace("review:", "enforcement: warn\n  review:"))
    warned = runner.invoke(app(), ["check", "-f", str(warn_policy), "-f", str(bad)])
    assert warned.exit_code == 0
    # each warn-mode failure is printed once (not again as the warning that repeats it)
    assert warned.stdout == (
        "VALID AIDataPolicy support/support-summaries\n"
        "ALLOWED Deployment support/bad (warned by support/support-summaries)\n"
        "  - support-summaries [retention-days] (warn) annotation aidp.io/retention-days declares 31 days, "
        "more than the 30 days the policy allows\n"
    )


def test_check_command_json(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write(tmp_path, "all.yaml", POLICY, deployment("good", COMPLIANT), deployment("bad", {}))
    result = runner.invoke(app(), ["check", "-f", str(tmp_path), "-o", "json"])
    assert result.exit_code == 1
    entries = json.loads(result.stdout)
    assert [(e["name"], e["allowed"]) for e in entries] == [("good", True), ("bad", False)]
    assert set(entries[1]) == {
        "kind",
        "namespace",
        "name",
        "allowed",
        "violations",
        "warnings",
        "reason",
        "hints",
        "source",
    }
    assert entries[0]["source"] == f"{path}:14"  # the line the object starts at (after 12 + 1)
    assert set(entries[1]["violations"][0]) >= {"policy", "rule", "message"}
    assert path.exists()


def test_check_command_bad_input(tmp_path: Path) -> None:
    runner = CliRunner()
    other = write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    nothing = runner.invoke(app(), ["check", "-f", str(other)])
    assert nothing.exit_code == 2
    assert nothing.stdout == ""
    assert nothing.stderr.startswith("error: nothing to check")
    broken = write(tmp_path, "broken.yaml", "a: [\n")
    invalid = runner.invoke(app(), ["check", "-f", str(broken)])
    assert invalid.exit_code == 2
    assert "invalid YAML" in invalid.stderr
    missing = runner.invoke(app(), ["check"])
    assert missing.exit_code == 2


# --- ClusterAIDataPolicies in the files ------------------------------------------------------------

GUARDRAIL = """\
apiVersion: aidp.io/v1alpha1
kind: ClusterAIDataPolicy
metadata: {name: org}
spec:
  namespaceSelector: {matchLabels: {tier: regulated}}
  providers: [openai]
  consent: {allowedBases: [consent, contract]}
  retention: {maxDays: 7}
  dataCategories: {forbidden: [health]}
  unapprovedAI: deny
"""

REGULATED = "apiVersion: v1\nkind: Namespace\nmetadata: {name: support, labels: {tier: regulated}}\n"


def ai_deployment(name: str, namespace: str) -> str:
    return deployment(
        name,
        {},
        namespace=namespace,
        containers=[{"name": "c", "image": "x", "env": [{"name": "OPENAI_API_KEY"}]}],
    ).replace("app: support-bot", "app: notebook")


def test_a_policy_looser_than_a_guardrail_is_refused_and_takes_no_part() -> None:
    loose = POLICY.replace("maxDays: 30", "maxDays: 90").replace("provider: openai", "provider: anthropic")
    report = check.run_check(manifests(GUARDRAIL, REGULATED, loose, deployment("bot", COMPLIANT)))
    refused, bot = report.results
    assert (refused.kind, refused.namespace, refused.name, refused.allowed) == (
        "AIDataPolicy",
        "support",
        "support-summaries",
        False,
    )
    assert refused.reason == "looser than ClusterAIDataPolicy/org"
    assert refused.message.startswith(
        "aidp: AIDataPolicy support/support-summaries denied: looser than ClusterAIDataPolicy/org ("
    )
    assert [(v.policy, v.rule, v.message.split(":")[0]) for v in refused.violations] == [
        ("ClusterAIDataPolicy/org", "out-of-bounds", "spec.provider"),
        ("ClusterAIDataPolicy/org", "out-of-bounds", "spec.retention.maxDays"),
    ]
    assert not report.allowed
    assert report.policies == ()  # not VALID: the API server would refuse it
    # the workload is judged without the refused policy: nothing selects it (and it is no AI client)
    assert (bot.allowed, bot.reason) == (True, "no policy selects it")
    assert any("AIDataPolicy support/support-summaries selects it but is refused" in h for h in bot.hints)


def test_a_policy_within_bounds_is_valid_and_workloads_get_the_guardrail_rules() -> None:
    within = POLICY.replace("maxDays: 30", "maxDays: 7").replace(
        "{allowed: [public, internal], forbidden: [health]}", "{forbidden: [biometric]}"
    )
    seven = {**COMPLIANT, "aidp.io/retention-days": "7"}
    report = check.run_check(
        manifests(
            GUARDRAIL,
            REGULATED,
            within,
            deployment("good", seven),
            deployment("health", {**seven, "aidp.io/data-categories": "internal,health"}),
        )
    )
    assert [p.ref for p in report.policies] == ["support/support-summaries"]
    good, health = report.results
    assert (good.allowed, good.reason) == (
        True,
        "complies with support/support-summaries, ClusterAIDataPolicy/org",
    )
    assert not health.allowed
    assert health.reason == "fails ClusterAIDataPolicy/org; complies with support/support-summaries"
    assert [(v.policy, v.rule) for v in health.violations] == [("ClusterAIDataPolicy/org", "data-categories")]
    assert "ClusterAIDataPolicy/org: [data-categories]" in health.message


def test_guardrails_govern_namespaces_by_the_labels_of_the_files_namespace_objects() -> None:
    by_name = GUARDRAIL.replace("name: org}", "name: by-name}").replace(
        "{tier: regulated}", "{kubernetes.io/metadata.name: research}"
    )
    everywhere = GUARDRAIL.replace("name: org}", "name: all}").replace(
        "namespaceSelector: {matchLabels: {tier: regulated}}", "namespaceSelector: {}"
    )
    unlabelled = "apiVersion: v1\nkind: Namespace\nmetadata: {name: sandbox}\n"
    docs = [GUARDRAIL, by_name, REGULATED, unlabelled]
    results = check.check_manifests(
        manifests(*docs, *(ai_deployment(f"nb-{ns}", ns) for ns in ("support", "sandbox", "research")))
    )
    support, sandbox, research = results
    assert (support.allowed, support.reason) == (False, "no policy selects it; fails ClusterAIDataPolicy/org")
    assert [(v.policy, v.rule) for v in support.violations] == [("ClusterAIDataPolicy/org", "unapproved-ai")]
    assert "env OPENAI_API_KEY" in support.violations[0].message
    # sandbox's Namespace object has no tier label; research has no Namespace object in the files,
    # so only its kubernetes.io/metadata.name label
    assert (sandbox.allowed, sandbox.reason) == (True, "no policy selects it")
    assert [v.policy for v in research.violations] == ["ClusterAIDataPolicy/by-name"]
    # {} selects every namespace but the excluded ones
    system = check.check_manifests(
        manifests(everywhere, ai_deployment("nb", "kube-system"), ai_deployment("x", "a"))
    )
    assert [(r.allowed, r.reason) for r in system] == [
        (True, "namespace not governed"),
        (False, "no policy selects it; fails ClusterAIDataPolicy/all"),
    ]


def test_unapproved_ai_warn_is_printed_once(tmp_path: Path) -> None:
    warn = GUARDRAIL.replace("unapprovedAI: deny", "unapprovedAI: warn")
    path = write(tmp_path, "all.yaml", warn, REGULATED, ai_deployment("nb", "support"))
    result = CliRunner().invoke(app(), ["check", "-f", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "VALID ClusterAIDataPolicy org",
        "ALLOWED Deployment support/nb (no policy selects it; warned by ClusterAIDataPolicy/org)",
    ]
    assert lines[2].startswith(
        "  - ClusterAIDataPolicy/org [unapproved-ai] (warn) the pod references an AI provider"
    )
    assert len(lines) == 3


def test_check_command_refuses_a_policy_out_of_bounds(tmp_path: Path) -> None:
    loose = POLICY.replace("maxDays: 30", "maxDays: 90")
    path = write(tmp_path, "all.yaml", GUARDRAIL, REGULATED, loose)
    result = CliRunner().invoke(app(), ["check", "-f", str(path)])
    assert result.exit_code == 1, result.output
    assert result.stdout == (
        "VALID ClusterAIDataPolicy org\n"
        "DENIED AIDataPolicy support/support-summaries (looser than ClusterAIDataPolicy/org)\n"
        "  - ClusterAIDataPolicy/org [out-of-bounds] (deny) spec.retention.maxDays: 90, more than its "
        "ceiling of 7 days\n"
    )
    duplicate = write(tmp_path, "dup.yaml", GUARDRAIL, GUARDRAIL)
    twice = CliRunner().invoke(app(), ["check", "-f", str(duplicate)])
    assert twice.exit_code == 2
    assert "ClusterAIDataPolicy org: defined more than once (first at" in twice.stderr


def test_render_puts_the_files_guardrails_into_the_opa_data(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", GUARDRAIL, REGULATED, POLICY)
    result = CliRunner().invoke(app(), ["render", "-f", str(path), "-o", "json"])
    assert result.exit_code == 0, result.output
    (opa_data,) = [o for o in json.loads(result.stdout) if o["kind"] == "OPAData"]
    data = opa_data["data"]
    assert data["cluster"]["org"]["retention"] == {"maxDays": 7, "requireZeroDataRetention": False}
    assert data["guardrailsOf"] == {"support": ["org"]}
    assert data["policies"]["support"]["support-summaries"]["retention"]["maxDays"] == 30
    assert data["detector"]["env"]


def test_a_refusal_before_the_policies_rules_gives_its_own_reason() -> None:
    tampered = yaml.safe_load(deployment("bot", COMPLIANT))
    tampered["spec"]["template"]["metadata"]["labels"]["aidp.io/approved"] = "true"
    (result,) = check.check_manifests([*manifests(POLICY), tampered])
    assert not result.allowed
    assert result.violations == ()
    assert result.reason.startswith("the label aidp.io/approved is set and removed by the aidp operator only")


def test_the_clusters_guardrails_and_namespace_labels_take_part_and_the_files_replace_them() -> None:
    """As with --kubeconfig: the live guardrails and namespace labels are used; a guardrail or a
    Namespace of the files replaces the cluster's of the same name."""
    live = [check.ClusterPolicy.from_object(yaml.safe_load(GUARDRAIL))]
    labels = {"support": {"tier": "regulated"}}
    loose = POLICY.replace("maxDays: 30", "maxDays: 90")
    report = check.run_check(manifests(loose), cluster_guardrails=live, cluster_namespaces=labels)
    (refused,) = report.results
    assert (refused.kind, refused.reason) == ("AIDataPolicy", "looser than ClusterAIDataPolicy/org")
    relaxed = GUARDRAIL.replace("maxDays: 7", "maxDays: 120")
    within = check.run_check(manifests(relaxed, loose), cluster_guardrails=live, cluster_namespaces=labels)
    assert within.results == () and [p.ref for p in within.policies] == ["support/support-summaries"]
    unlabelled = "apiVersion: v1\nkind: Namespace\nmetadata: {name: support}\n"
    moved = check.run_check(manifests(unlabelled, loose), cluster_guardrails=live, cluster_namespaces=labels)
    assert moved.results == () and moved.allowed
