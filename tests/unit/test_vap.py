"""The vap admission engine's objects (aidp.vap, pure rendering) and the operator's bookkeeping of
them (aidp.controller.vap: drift detection); the verdicts themselves are checked against
kube-apiserver in tests/integration/test_vap_differential.py and test_vap_engine.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aidp import vap, webhook
from aidp.cli.main import app
from aidp.config import OperatorConfig
from aidp.controller import vap as vap_engine
from aidp.vap import cel, guardrails, unapproved, workloads

EXCLUDED = ("kube-system", "kube-public", "kube-node-lease", "aidp-system")
DAY = dt.date(2026, 12, 1)


# rendered only while a valid ClusterAIDataPolicy exists
GUARDRAIL_POLICIES = (
    "aidp-guardrails",
    "aidp-bounds",
    "aidp-unapproved-ai-deny",
    "aidp-unapproved-ai-warn",
)


def _objects(
    users: tuple[str, ...] = ("system:serviceaccount:aidp-system:aidp",),
) -> dict[tuple[str, str], Any]:
    return {(o["kind"], o["metadata"]["name"]): o for o in vap.render(EXCLUDED, users, DAY)}


def test_one_policy_and_one_binding_per_name() -> None:
    objs = vap.render(EXCLUDED, ["op"], DAY)
    assert [o["kind"] for o in objs] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 6
    names = [o["metadata"]["name"] for o in objs[::2]]
    assert names == [n for n in vap.POLICY_NAMES if n not in GUARDRAIL_POLICIES]
    for o in objs:
        assert o["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert o["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "aidp", vap.ENGINE_LABEL: "vap"}
    assert vap.render(EXCLUDED, ["op"], DAY) == objs  # deterministic


@pytest.mark.parametrize(("mode", "action"), [("deny", "Deny"), ("warn", "Warn"), ("dryrun", "Audit")])
def test_each_enforcement_mode_has_its_binding(mode: str, action: str) -> None:
    objs = _objects()
    name = f"aidp-workloads-{mode}"
    binding = objs[("ValidatingAdmissionPolicyBinding", name)]["spec"]
    assert binding == {
        "policyName": name,
        "validationActions": [action],
        "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
    }
    pol = objs[("ValidatingAdmissionPolicy", name)]["spec"]
    assert pol["paramKind"] == {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"}
    assert pol["failurePolicy"] == "Fail"
    applies = next(v["expression"] for v in pol["variables"] if v["name"] == "applies")
    assert workloads.MODE_FILTER[mode] in applies
    # deny: one message naming every failing rule; warn and dryrun: one per rule
    assert len(pol["validations"]) == (1 if mode == "deny" else len(workloads.RULE_VARIABLES))


def test_the_checked_kinds_are_the_webhooks() -> None:
    pol = _objects()[("ValidatingAdmissionPolicy", "aidp-workloads-deny")]["spec"]
    rules = pol["matchConstraints"]["resourceRules"]
    assert [(r["apiGroups"][0], r["apiVersions"][0], tuple(r["resources"])) for r in rules] == list(
        webhook.CHECKED_RULES
    )
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in rules)
    assert pol["matchConstraints"]["namespaceSelector"] == {
        "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": sorted(EXCLUDED)}
        ]
    }
    # one match condition (one evaluation per param): the param's mode, the webhook's conditions
    # (UPDATEs that leave the template unchanged, and the deployment controller's ReplicaSets, are not
    # judged, their pods are), then the check
    [cond] = pol["matchConditions"]
    assert cond["name"] == "applies-and-fails"
    assert cond["expression"].startswith(
        f"{workloads.MODE_FILTER['deny']} && ({cel.TEMPLATE_CHANGED}) && "
        f"({webhook.NOT_A_DEPLOYMENTS_REPLICASET}) && "
    )


@pytest.mark.parametrize("mode", workloads.MODES)
def test_the_check_itself_is_a_match_condition(mode: str) -> None:
    """kube-apiserver evaluates a policy's match conditions once per param and its validations and
    messages (three more evaluations, each converting the object) only when they hold: the workload
    policies' last condition is the check itself, from the same terms as the validations."""
    pol = _objects()[("ValidatingAdmissionPolicy", f"aidp-workloads-{mode}")]["spec"]
    [match] = pol["matchConditions"]
    cond = match["expression"]
    # the mode first, so that a param of another mode costs one comparison
    assert cond.startswith(workloads.MODE_FILTER[mode] + " && ")
    assert cel.selects("params.spec.workloadSelector", "labels") in cond
    assert workloads.fails(DAY) in cond
    # every rule is checked: the annotations, the service account, the expiry, host networking
    for needle in (
        '"aidp.io/consent-basis" in ann',
        '"aidp.io/retention-days" in ann',
        '"aidp.io/zero-data-retention" in ann',
        '"aidp.io/data-categories" in ann',
        "params.spec.serviceAccountNames",
        'params.spec.review.expires < "2026-12-01"',
        "pod.?hostNetwork",
        f"r.size() > {cel.MAX_VALUE}",
        f"raw.size() > {cel.MAX_VALUE}",
    ):
        assert needle in cond, needle
    # the validations are unchanged: they name the failing rules
    applies = next(v["expression"] for v in pol["variables"] if v["name"] == "applies")
    assert applies == f"{workloads.MODE_FILTER[mode]} && variables.selected"


def test_match_conditions_read_no_variables() -> None:
    """Match conditions cannot read a policy's variables (kube-apiserver compiles them without)."""
    guardrail = {
        "name": "org",
        "namespaceSelector": {"matchLabels": {"team": "a"}},
        "consent": {"allowedBases": ["contract"]},
    }
    objs = vap.render(EXCLUDED, ["op"], DAY, {"org": {**guardrail, "unapprovedAI": "deny"}})
    names = {}
    for o in objs:
        if o["kind"] == "ValidatingAdmissionPolicy":
            conds = o["spec"].get("matchConditions", [])
            names[o["metadata"]["name"]] = [c["name"] for c in conds]
            assert all("variables." not in c["expression"] for c in conds), o["metadata"]["name"]
    assert names["aidp-approval-labels"] == ["not-the-operator", "operator-label-changed"]
    assert names["aidp-governed-label"] == ["not-the-operator", "label-changed"]
    assert names["aidp-guardrails"] == ["selected-and-fails"]
    assert names["aidp-unapproved-ai-deny"] == ["unapproved-reference"]
    assert names["aidp-unapproved-ai-warn"] == ["unapproved-reference"]
    # match conditions have no namespaceObject either: the guardrails' namespaceSelector is left to
    # the validation
    guard = next(o for o in objs if o["metadata"]["name"] == "aidp-guardrails")
    assert "namespaceObject" not in guard["spec"]["matchConditions"][0]["expression"]
    assert "namespaceObject" in str(guard["spec"]["variables"])


def test_the_rules_in_the_regos_order() -> None:
    ids = [rule for rule, _ in workloads.RULE_VARIABLES]
    assert ids == [
        "review-expired",
        "service-account",
        "consent-basis",
        "retention-days",
        "zero-data-retention",
        "data-categories",
        "host-network",
    ]
    rego = (Path(__file__).parents[2] / "policies" / "aidp" / "admission.rego").read_text()
    for rule in ids:
        assert f'"{rule}"' in rego


def test_today_is_rendered_into_the_expiry() -> None:
    pol = _objects()[("ValidatingAdmissionPolicy", "aidp-workloads-deny")]["spec"]
    expired = next(v["expression"] for v in pol["variables"] if v["name"] == "p_expired")
    assert 'params.spec.review.expires < "2026-12-01"' in expired
    assert "params.?status.?phase.orValue('') == 'Expired'" in expired
    later = vap.render(EXCLUDED, ["op"], DAY + dt.timedelta(days=1))
    assert later != vap.render(EXCLUDED, ["op"], DAY)


def test_operator_users_are_cel_string_literals() -> None:
    user = 'evil" || true || "x\\'
    objs = _objects((user,))
    for name in ("aidp-approval-labels", "aidp-governed-label"):
        cond = objs[("ValidatingAdmissionPolicy", name)]["spec"]["matchConditions"][0]["expression"]
        assert cond == f"!(request.userInfo.username in [{json.dumps(user)}])"
    with pytest.raises(ValueError, match="user name"):
        vap.render(EXCLUDED, [], DAY)


def test_lower_maps_the_two_letters_whose_lower_case_is_ascii() -> None:
    # Go's strings.ToLower (Rego's lower) maps U+0130 to i and U+212A (KELVIN SIGN) to k
    expr = cel.lower("x")
    assert expr == "x.replace('\\u0130', 'i').replace('\\u212a', 'k').lowerAscii()"
    assert "\u0130".lower()[0] == "i" and "\u212a".lower() == "k"


def test_the_approval_and_governed_label_policies_have_no_params() -> None:
    objs = _objects()
    for name in ("aidp-approval-labels", "aidp-governed-label"):
        assert "paramKind" not in objs[("ValidatingAdmissionPolicy", name)]["spec"]
        assert objs[("ValidatingAdmissionPolicyBinding", name)]["spec"] == {
            "policyName": name,
            "validationActions": ["Deny"],
        }
    scope = objs[("ValidatingAdmissionPolicy", "aidp-approval-labels")]["spec"]["matchConstraints"]
    assert scope["namespaceSelector"]["matchLabels"] == {"aidp.io/governed": "true"}


def test_drift_detection() -> None:
    state = vap_engine.State()
    desired = _objects()[("ValidatingAdmissionPolicyBinding", "aidp-workloads-deny")]
    key = ("ValidatingAdmissionPolicyBinding", "aidp-workloads-deny")
    state.desired[key] = desired
    state.applied[key] = "digest"
    live = json.loads(json.dumps(desired))
    live["spec"]["matchResources"] = {"namespaceSelector": {}, "objectSelector": {}}  # defaults
    live["metadata"]["resourceVersion"] = "7"
    assert not vap_engine.observed(live, "MODIFIED", state)
    assert state.applied[key] == "digest"
    live["spec"]["validationActions"] = ["Deny", "Audit"]
    assert vap_engine.observed(live, "MODIFIED", state)
    assert key not in state.applied
    state.applied[key] = "digest"
    assert vap_engine.observed(desired, "DELETED", state)
    other = {**desired, "metadata": {"name": "not-ours"}}
    assert not vap_engine.observed(other, "DELETED", state)


def test_engine_flags() -> None:
    assert OperatorConfig().admission_engine == "opa"
    assert vap_engine.uses_webhook(OperatorConfig()) and not vap_engine.uses_vap(OperatorConfig())
    both = OperatorConfig(admission_engine="both")
    assert vap_engine.uses_webhook(both) and vap_engine.uses_vap(both)
    only = OperatorConfig(admission_engine="vap")
    assert vap_engine.uses_vap(only) and not vap_engine.uses_webhook(only)


def test_run_refuses_an_unknown_engine(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    result = CliRunner().invoke(
        app,
        ["run", "--opa-token-file", str(token), "--admission-engine", "gatekeeper"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 2
    assert "--admission-engine" in result.stderr


def test_guardrails_add_a_policy_of_their_own() -> None:
    doc = {
        "name": "org",
        "namespaceSelector": {"matchLabels": {"aidp.io/guardrail": "org"}},
        "consent": {"allowedBases": ["contract"]},
        "retention": {"maxDays": 30, "requireZeroDataRetention": False},
        "dataCategories": {"forbidden": ["health"]},
    }
    objs = vap.render(
        EXCLUDED, ["op"], DAY, {"org": doc, "all": {**doc, "name": "all", "namespaceSelector": {}}}
    )
    pol = next(o for o in objs if o["metadata"]["name"] == "aidp-guardrails")
    assert pol["kind"] == "ValidatingAdmissionPolicy"
    assert pol["spec"]["paramKind"] == {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"}
    failures = next(v["expression"] for v in pol["spec"]["variables"] if v["name"] == "guardrail_failures")
    assert '"ClusterAIDataPolicy/org"' in failures and '"ClusterAIDataPolicy/all"' in failures
    assert failures.startswith("[string((true) ? ")  # {} selects every namespace: "all" sorts first
    assert "zero-data-retention" not in failures  # not required by either
    binding = next(o for o in objs if o["metadata"]["name"] == "aidp-guardrails" and o is not pol)
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert guardrails.namespace_selected({"matchExpressions": [{"key": "k", "operator": "Gt"}]}) == "false"
    bounds = next(
        o for o in objs if o["metadata"]["name"] == "aidp-bounds" and o["kind"] == "ValidatingAdmissionPolicy"
    )
    looser = bounds["spec"]["variables"][0]["expression"]
    assert '"ClusterAIDataPolicy/org"' in looser and "spec.consent.allowedBases" in looser
    assert "aidp.io" in bounds["spec"]["matchConstraints"]["resourceRules"][0]["apiGroups"]


def test_dev_up_refuses_an_unknown_engine(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["dev", "up", "--state-dir", str(tmp_path), "--admission-engine", "x"])
    assert result.exit_code == 2
    assert "--admission-engine" in result.stderr


def test_the_detector_globs_as_regular_expressions() -> None:
    """OPA's glob.match(pattern, [], text) has `.` as its delimiter: `*` stops at a dot."""
    import re

    env = re.compile(unapproved.render_detector({"env": ["OPENAI_*"], "hosts": []})["env"])
    assert env.match("OPENAI_API_KEY") and env.match("OPENAI_")
    assert not env.match("OPENAI_A.B") and not env.match("XOPENAI_KEY") and not env.match("openai_key")
    hosts = re.compile(unapproved.render_detector({"env": [], "hosts": ["*.api.openai.com"]})["hosts"])
    assert hosts.match("eu.api.openai.com") and not hosts.match("a.b.api.openai.com")
    assert not hosts.match("euxapi.openai.com")
    nothing = re.compile(unapproved.render_detector({})["env"])
    assert not nothing.match("") and not nothing.match("OPENAI_KEY")


def test_unapproved_ai_reads_one_param_per_namespace() -> None:
    doc = {
        "name": "org",
        "namespaceSelector": {},
        "unapprovedAI": "deny",
        "dataCategories": {"forbidden": []},
    }
    objs = {(o["kind"], o["metadata"]["name"]): o for o in vap.render(EXCLUDED, ["op"], DAY, {"org": doc})}
    for mode, action in (("deny", "Deny"), ("warn", "Warn")):
        pol = objs[("ValidatingAdmissionPolicy", f"aidp-unapproved-ai-{mode}")]
        assert pol["spec"]["paramKind"] == {"apiVersion": "aidp.io/v1alpha1", "kind": "NamespaceAdmission"}
        b = objs[("ValidatingAdmissionPolicyBinding", f"aidp-unapproved-ai-{mode}")]
        assert b["spec"]["validationActions"] == [action]
        assert b["spec"]["paramRef"] == {"name": "aidp", "parameterNotFoundAction": "Allow"}
        approved = next(v["expression"] for v in pol["spec"]["variables"] if v["name"] == "approved")
        assert DAY.isoformat() in approved  # an expired policy approves nothing
    guard = objs[("ValidatingAdmissionPolicy", "aidp-namespace-admission")]
    assert guard["spec"]["matchConditions"][0]["expression"] == '!(request.userInfo.username in ["op"])'
    assert guard["spec"]["matchConstraints"]["resourceRules"][0]["operations"] == [
        "CREATE",
        "UPDATE",
        "DELETE",
    ]


def test_params_only_where_a_guardrail_denies_or_warns() -> None:
    rails = {
        "d": {"unapprovedAI": "deny"},
        "w": {"unapprovedAI": "warn"},
        "a": {"unapprovedAI": "audit"},
    }
    docs = {
        "x": [{"name": "p", "review": {"expires": "2030-01-01"}, "workloadSelector": {"matchLabels": {}}}]
    }
    out = unapproved.params_objects(docs, rails, {"x": ["a", "d", "w"], "y": ["a"], "z": ["w"]})
    assert set(out) == {"x", "z"}
    assert out["x"]["spec"] == {
        "unapprovedAI": [{"name": "d", "mode": "deny"}, {"name": "w", "mode": "warn"}],
        "policies": [{"name": "p", "expires": "2030-01-01", "workloadSelector": {"matchLabels": {}}}],
    }
    assert out["z"]["spec"]["policies"] == [] and out["z"]["metadata"] == {
        "name": "aidp",
        "namespace": "z",
        "labels": {"app.kubernetes.io/managed-by": "aidp", vap.ENGINE_LABEL: "vap"},
    }
