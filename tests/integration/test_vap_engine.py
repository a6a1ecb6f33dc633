"""The `vap` admission engine live (contract section 7, docs/admission-engines.md): the operator's
ValidatingAdmissionPolicy objects and no webhook; admission without OPA; drift repaired; the
operator-only labels; UPDATEs that leave the template unchanged; the CEL at the schema's limits."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client, codecs
from lightkube.codecs import from_dict
from lightkube.core.exceptions import ApiError
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
)
from lightkube.resources.core_v1 import Namespace, ServiceAccount
from lightkube.types import PatchType

from aidp import kube, vap
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from tests.integration import helpers
from tests.integration.conftest import Env, drop_env, make_env
from tests.integration.helpers import create, violating, workload
from tests.integration.vapstack import vap_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[ControlPlane, AidpStack]:
    return vap_stack(tmp_path_factory, request)


@pytest.fixture(scope="module")
def client(stack: tuple[ControlPlane, AidpStack]) -> Client:
    return kube.client(stack[0].kubeconfig)


@pytest.fixture
def venv(client: Client, stack: tuple[ControlPlane, AidpStack]) -> Iterator[Env]:
    e = make_env(client, stack[0].kubeconfig)
    yield e
    drop_env(client, e)


def _rules(message: str) -> set[str]:
    rules = ("review-expired", "service-account", "consent-basis", "retention-days", "zero-data-retention")
    return {r for r in (*rules, "data-categories", "host-network") if f"[{r}]" in message}


def test_policies_and_bindings_are_applied_and_no_webhook(
    client: Client, stack: tuple[ControlPlane, AidpStack]
) -> None:
    guardrail_only = {
        n for n in vap.POLICY_NAMES if n in ("aidp-guardrails", "aidp-bounds") or "unapproved" in n
    }
    for res in (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding):

        def names(res: Any = res) -> set[str]:
            managed = client.list(res, labels={"app.kubernetes.io/managed-by": "aidp"})
            return {o.metadata.name for o in managed}

        # no guardrail now: the differential test, just before on the shared stack, deleted its
        # ClusterAIDataPolicies, and the operator prunes what is no longer rendered one object at
        # a time (seen in a full run: aidp-guardrails gone, aidp-bounds not yet)
        wait_for(
            lambda names=names: names() == set(vap.POLICY_NAMES) - guardrail_only,
            timeout=30,
            what=f"exactly the vap engine's {res.__name__} objects without guardrails",
        )
    actions = {
        b.metadata.name: b.spec.validationActions for b in client.list(ValidatingAdmissionPolicyBinding)
    }
    assert actions["aidp-workloads-deny"] == ["Deny"]
    assert actions["aidp-workloads-warn"] == ["Warn"]
    assert actions["aidp-workloads-dryrun"] == ["Audit"]
    with pytest.raises(ApiError) as err:
        client.get(ValidatingWebhookConfiguration, stack[1].config.webhook_name)
    assert err.value.status.code == 404
    for pol in client.list(ValidatingAdmissionPolicy, labels={vap.ENGINE_LABEL: "vap"}):
        warnings = (
            pol.status.typeChecking.expressionWarnings if pol.status and pol.status.typeChecking else None
        )
        assert not warnings, (pol.metadata.name, warnings)


def test_admission_holds_with_opa_killed(venv: Env, stack: tuple[ControlPlane, AidpStack]) -> None:
    """No webhook on the request path: with OPA SIGKILLed, a violating create is still refused and
    a compliant one admitted (real creates, not dry-runs)."""
    venv.policy("bots")
    aidp = stack[1]
    assert aidp.opa is not None
    aidp.opa.proc.kill()
    wait_for(lambda: not aidp.opa.proc.alive(), timeout=10, what="OPA to die")  # type: ignore[union-attr]
    try:
        for kind in helpers.KINDS:
            msg = create(venv.client, violating(kind, f"bad-{kind.lower()}", venv.ns, "retention-days"))
            assert msg is not None and _rules(msg) == {"retention-days"}, (kind, msg)
            assert create(venv.client, workload(kind, f"good-{kind.lower()}", venv.ns)) is None, kind
    finally:
        aidp.start_opa()
        aidp.wait_for(aidp.enforcing, 60, "OPA back with the durable bundle")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param("delete-policy", id="policy-deleted"),
        pytest.param("delete-binding", id="binding-deleted"),
        pytest.param("edit-binding", id="binding-edited"),
        pytest.param("edit-policy", id="policy-edited"),
    ],
)
def test_drift_is_repaired(venv: Env, client: Client, change: str) -> None:
    """The operator repairs its policy and binding, and kube-apiserver enforces the repaired ones
    again (its admission plugin reads them through an informer, a moment after the write)."""
    name = "aidp-workloads-deny"
    venv.policy("bots")
    if change == "delete-policy":
        client.delete(ValidatingAdmissionPolicy, name)
    elif change == "delete-binding":
        client.delete(ValidatingAdmissionPolicyBinding, name)
    elif change == "edit-binding":
        client.patch(
            ValidatingAdmissionPolicyBinding,
            name,
            {"spec": {"validationActions": ["Audit"]}},
            patch_type=PatchType.MERGE,
        )
    else:
        client.patch(
            ValidatingAdmissionPolicy,
            name,
            {"spec": {"failurePolicy": "Ignore"}},
            patch_type=PatchType.MERGE,
        )

    def repaired() -> bool:
        pol = client.get(ValidatingAdmissionPolicy, name)
        binding = client.get(ValidatingAdmissionPolicyBinding, name)
        return (
            pol.spec is not None
            and pol.spec.failurePolicy == "Fail"
            and binding.spec is not None
            and binding.spec.validationActions == ["Deny"]
        )

    wait_for(repaired, timeout=30, what=f"the operator to repair {change}")
    bad = violating("Deployment", "bad", venv.ns, "retention-days")
    msg = wait_for(lambda: create(client, bad, dry_run=True), timeout=30, what="the repaired policy enforced")
    assert _rules(msg) == {"retention-days"}, msg


def test_limits_of_the_schema(venv: Env) -> None:
    """64 selector terms (32 matchLabels, 32 matchExpressions of 64 values each) and 64 allowed and
    64 forbidden categories: evaluated within kube-apiserver's CEL budget, same verdicts."""
    labels = {f"l{i}": "v" for i in range(32)}
    expressions = [
        {"key": f"e{i}", "operator": "In", "values": [f"x{j}" for j in range(63)] + ["yes"]}
        for i in range(32)
    ]
    allowed = [f"allowed-{i}" for i in range(64)]
    forbidden = [f"forbidden-{i}" for i in range(64)]
    venv.policy(
        "big",
        workloadSelector={"matchLabels": labels, "matchExpressions": expressions},
        serviceAccountNames=[f"sa-{i}" for i in range(63)] + [helpers.SA],
        dataCategories={"allowed": allowed, "forbidden": forbidden},
    )
    pod_labels = {**labels, **{f"e{i}": "yes" for i in range(32)}}
    ann = {**helpers.COMPLIANT, "aidp.io/data-categories": ",".join(allowed)}
    for kind in ("Pod", "Deployment", "CronJob"):
        ok = workload(kind, f"ok-{kind.lower()}", venv.ns, labels=pod_labels, annotations=ann)
        assert create(venv.client, ok, dry_run=True) is None, kind
        bad_ann = {**ann, "aidp.io/data-categories": ",".join([*allowed[:63], "forbidden-63"])}
        bad = workload(kind, f"bad-{kind.lower()}", venv.ns, labels=pod_labels, annotations=bad_ann)
        msg = create(venv.client, bad, dry_run=True)
        assert msg is not None and _rules(msg) == {"data-categories"}, msg
    other = workload("Deployment", "other", venv.ns, labels={**pod_labels, "e31": "no"}, annotations={})
    assert create(venv.client, other, dry_run=True) is None


def test_a_value_over_the_length_bound_fails_its_rule(venv: Env) -> None:
    """The vap engine's bound (docs/admission-engines.md): a retention-days or data-categories value
    longer than 1024 characters fails its rule, quickly, whatever it holds."""
    venv.policy("bots")
    long_days = "0" * 1100 + "7"
    long_categories = ",".join(["internal"] * 20000)
    for key, value in (("aidp.io/retention-days", long_days), ("aidp.io/data-categories", long_categories)):
        obj = workload("Deployment", "long", venv.ns, annotations={**helpers.COMPLIANT, key: value})
        msg = create(venv.client, obj, dry_run=True)
        assert msg is not None and "longer than 1024 characters" in msg, msg


def _editor(venv: Env, stack: tuple[ControlPlane, AidpStack], tmp: Path) -> Client:
    """A user that is not the operator: a ServiceAccount with the edit role in the namespace and
    the right to patch namespaces."""
    rbac = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "editor", "namespace": venv.ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": venv.ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"ns-patcher-{venv.ns}"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "patch", "update"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"ns-patcher-{venv.ns}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"ns-patcher-{venv.ns}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": venv.ns}],
        },
    ]
    venv.client.create(ServiceAccount.from_dict({"metadata": {"name": "editor", "namespace": venv.ns}}))
    for obj in rbac:
        venv.client.create(codecs.from_dict(obj))
    kc = helpers.sa_kubeconfig(stack[0], venv.client, "editor", venv.ns, tmp / "editor.kubeconfig")
    return kube.client(kc)


def test_only_the_operator_changes_its_labels(
    venv: Env, stack: tuple[ControlPlane, AidpStack], tmp_path: Path
) -> None:
    venv.policy("bots")
    wait_for(
        lambda: (venv.client.get(Namespace, venv.ns).metadata.labels or {}).get("aidp.io/governed") == "true",
        timeout=30,
        what="the governed label",
    )
    editor = _editor(venv, stack, tmp_path)
    for kind in ("Pod", "Deployment"):
        obj = workload(
            kind, f"tamper-{kind.lower()}", venv.ns, labels={"app": "bot", "aidp.io/approved": "true"}
        )
        msg = wait_for(lambda o=obj: create(editor, o, dry_run=True), timeout=10, what="refusal")  # type: ignore[misc]
        assert "aidp.io/approved" in msg and "aidp operator only" in msg, msg
    # the operator's user (the admin here) may
    assert (
        create(
            venv.client,
            workload("Pod", "approved", venv.ns, labels={"app": "bot", "aidp.io/approved": "true"}),
            dry_run=True,
        )
        is None
    )
    with pytest.raises(ApiError) as err:
        editor.patch(
            Namespace,
            venv.ns,
            {"metadata": {"labels": {"aidp.io/governed": None}}},
            patch_type=PatchType.MERGE,
        )
    assert "aidp.io/governed" in err.value.status.message


def test_update_that_leaves_the_template_unchanged_is_admitted(venv: Env) -> None:
    venv.policy("limits")
    obj = workload("Deployment", "bot", venv.ns)
    assert create(venv.client, obj) is None
    venv.client.patch(
        helpers.AIDataPolicy,
        "limits",
        {"spec": {"retention": {"maxDays": 7}}},
        namespace=venv.ns,
        patch_type=PatchType.MERGE,
    )
    wait_for(
        lambda: create(venv.client, workload("Deployment", "probe", venv.ns), dry_run=True),
        timeout=10,
        what="the tightened policy",
    )
    res = type(from_dict(copy.deepcopy(obj)))
    # a scale, a label the verdict does not read (the operator's) and a metadata change are admitted
    venv.client.patch(res, "bot", {"spec": {"replicas": 3}}, namespace=venv.ns, patch_type=PatchType.MERGE)
    venv.client.patch(
        res,
        "bot",
        {"metadata": {"labels": {"team": "support"}}},
        namespace=venv.ns,
        patch_type=PatchType.MERGE,
    )
    operator_label = {"spec": {"template": {"metadata": {"labels": {"aidp.io/approved": "true"}}}}}
    venv.client.patch(res, "bot", operator_label, namespace=venv.ns, patch_type=PatchType.MERGE)
    template: dict[str, Any] = {
        "spec": {"template": {"metadata": {"annotations": {"aidp.io/retention-days": "13"}}}}
    }
    with pytest.raises(ApiError) as err:
        venv.client.patch(res, "bot", template, namespace=venv.ns, patch_type=PatchType.MERGE)
    assert _rules(err.value.status.message) == {"retention-days"}, err.value.status.message


def test_guardrail_rules_for_workloads_agree_with_the_rego(venv: Env, client: Client) -> None:
    """ClusterAIDataPolicy rules for workloads (contract section 6) in the vap engine: a workload
    that a namespace policy selects must pass every guardrail selecting its namespace; the same
    verdicts and rule ids as the Rego (aidp check's evaluate). Unapproved AI and the bounds of
    AIDataPolicy writes are not in the vap engine (docs/admission-engines.md)."""
    from lightkube.generic_resource import create_global_resource

    from aidp import check, render
    from aidp.guardrail import ClusterPolicy
    from aidp.model import CHECKED_KINDS, Policy

    guardrail_res = create_global_resource(
        "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
    )
    label = f"guardrail-{venv.ns}"
    client.patch(
        Namespace, venv.ns, {"metadata": {"labels": {"aidp-test": label}}}, patch_type=PatchType.MERGE
    )
    # loose at the namespace level: only the guardrail's rules fail
    policy = venv.policy(
        "bots",
        retention={"maxDays": 3650, "requireZeroDataRetention": False},
        dataCategories={"allowed": [], "forbidden": []},
    )
    name = f"g-{venv.ns}"
    rail = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"aidp-test": label}},
            "consent": {"allowedBases": ["contract"]},
            "retention": {"maxDays": 7, "requireZeroDataRetention": True},
            "dataCategories": {"forbidden": ["pseudonymised", "kids"]},
        },
    }
    live = client.create(guardrail_res(rail)).to_dict()
    try:
        cases = {
            "ok": {"aidp.io/retention-days": "7", "aidp.io/data-categories": "internal"},
            "days": {"aidp.io/retention-days": "14", "aidp.io/data-categories": "internal"},
            "zeros": {"aidp.io/retention-days": "0000000000000007", "aidp.io/data-categories": "internal"},
            "kelvin": {"aidp.io/retention-days": "7", "aidp.io/data-categories": "internal,\u212aids"},
            "consent": {
                "aidp.io/retention-days": "7",
                "aidp.io/data-categories": "internal",
                "aidp.io/consent-basis": " CONTRACT ",
            },
            "everything": {
                "aidp.io/retention-days": "3000",
                "aidp.io/data-categories": "pseudonymised",
                "aidp.io/consent-basis": "consent",
                "aidp.io/zero-data-retention": "no",
            },
        }
        objs = [
            workload("Deployment", f"g-{case}", venv.ns, annotations={**helpers.COMPLIANT, **ann})
            for case, ann in cases.items()
        ]
        objs.append(workload("Deployment", "unselected", venv.ns, labels={"app": "other"}, annotations={}))
        kinds = {k.kind: k for k in CHECKED_KINDS}
        reviews = [check.admission_review(o, kinds[o["kind"]], f"g-{i}") for i, o in enumerate(objs)]
        doc = ClusterPolicy.from_object(live).to_document()
        data = render.render_data(
            [Policy.from_object(policy)], guardrails={name: doc}, guardrails_of={venv.ns: [name]}
        )
        decisions = check.evaluate(reviews, data)
        assert decisions[0]["allowed"] and not decisions[1]["allowed"]  # the cases mean something
        assert all(v["policy"] == f"ClusterAIDataPolicy/{name}" for d in decisions for v in d["violations"])

        def verdicts() -> list[tuple[bool, set[str]]]:
            return [(m is None, _rules(m or "")) for m in (create(client, o, dry_run=True) for o in objs)]

        expected = [
            (
                d["allowed"],
                {v["rule"] for v in d["violations"] if v["policy"] == f"ClusterAIDataPolicy/{name}"},
            )
            for d in decisions
        ]
        wait_for(lambda: verdicts() == expected, timeout=30, what=f"the guardrail's verdicts {expected}")
    finally:
        client.delete(guardrail_res, name)


def test_bounds_of_policy_writes_agree_with_the_rego(venv: Env, client: Client) -> None:
    """An AIDataPolicy looser than a ClusterAIDataPolicy selecting its namespace is refused, with
    the same fields out of bounds as the Rego's bounds (the webhook's bounds.aidp.io)."""
    import re

    from lightkube.generic_resource import create_global_resource

    from aidp import check, render
    from aidp.guardrail import ClusterPolicy

    guardrail_res = create_global_resource(
        "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
    )
    label = f"bounds-{venv.ns}"
    client.patch(
        Namespace, venv.ns, {"metadata": {"labels": {"aidp-test": label}}}, patch_type=PatchType.MERGE
    )
    name = f"b-{venv.ns}"
    rail = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {
                "matchExpressions": [{"key": "aidp-test", "operator": "In", "values": [label]}]
            },
            "providers": ["openai"],
            "dataResidency": ["eu"],
            "consent": {"allowedBases": ["consent", "contract"]},
            "retention": {"maxDays": 30, "requireZeroDataRetention": True},
            "dataCategories": {"forbidden": ["health"]},
            "review": {"required": True, "maxValidityDays": 365},
        },
    }
    live = client.create(guardrail_res(rail)).to_dict()
    import datetime as dt

    soon = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=100)).isoformat()
    late = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=400)).isoformat()
    ok: dict[str, Any] = {
        "dataResidency": "eu",
        "consent": {"required": True, "allowedBases": ["contract"]},
        "retention": {"maxDays": 30, "requireZeroDataRetention": True},
        "dataCategories": {"allowed": ["internal"], "forbidden": []},
        "review": {"approvedBy": "dpo@example.com", "expires": soon},
    }
    variants: dict[str, dict[str, Any]] = {
        "ok": ok,
        "provider": {**ok, "provider": "anthropic", "dataResidency": None},
        "consent-off": {**ok, "consent": {"required": False, "allowedBases": []}},
        "bases": {**ok, "consent": {"required": True, "allowedBases": ["consent", "legitimate-interests"]}},
        "retention": {**ok, "retention": {"maxDays": 90, "requireZeroDataRetention": False}},
        "categories": {**ok, "dataCategories": {"allowed": ["health", "internal"], "forbidden": []}},
        "review-missing": {**ok, "review": None},
        "review-late": {**ok, "review": {"approvedBy": " ", "expires": late}},
    }
    try:
        objs = []
        for variant, spec in variants.items():
            obj = helpers.policy(f"p-{variant}", venv.ns, **spec)
            obj["spec"] = {k: v for k, v in obj["spec"].items() if v is not None}
            objs.append(obj)
        doc = ClusterPolicy.from_object(live).to_document()
        data = render.render_data([], guardrails={name: doc}, guardrails_of={venv.ns: [name]})
        # the variants set every field the bounds read, so the CRD's defaults change nothing here
        decisions = check.evaluate([check.policy_review(o, f"b-{i}") for i, o in enumerate(objs)], data)
        assert decisions[0]["allowed"] and sum(not d["allowed"] for d in decisions) == len(objs) - 1

        def fields(message: str) -> set[str]:
            return set(re.findall(r"(spec\.[A-Za-z.]+):", message))

        expected = [(d["allowed"], fields(d["message"])) for d in decisions]

        def verdicts() -> list[tuple[bool, set[str]]]:
            out = []
            for o in objs:
                msg = create(client, o, dry_run=True)
                out.append((msg is None, fields(msg or "")))
            return out

        wait_for(lambda: verdicts() == expected, timeout=30, what=f"the bounds' verdicts {expected}")
    finally:
        client.delete(guardrail_res, name)


def _ai_pod(kind: str, name: str, ns: str, labels: dict[str, str], how: str) -> dict[str, Any]:
    """A workload referencing an AI provider by `how`: an env name, a host in an env value, in the
    args, or in an init container's command; `none`: no reference (a look-alike host)."""
    obj = workload(kind, name, ns, labels=labels, annotations={})
    tpl = obj if kind == "Pod" else obj["spec"]["template"]
    spec = tpl["spec"]
    c = spec["containers"][0]
    if how == "env":
        c["env"] = [{"name": "OPENAI_API_KEY", "value": "x"}]
    elif how == "value":
        c["env"] = [{"name": "BASE", "value": "HTTPS://EU.API.OPENAI.COM/v1"}]
    elif how == "args":
        c["args"] = ["--endpoint=https://api.anthropic.com"]
    elif how == "init":
        spec["initContainers"] = [{"name": "i", "image": c["image"], "command": ["curl", "api.mistral.ai"]}]
    elif how == "long":  # beyond the detector's bound: a reference itself (both engines)
        c["env"] = [{"name": "BLOB", "value": "a.bc " * 3277}]
    elif how == "at-bound":  # host-like tokens, none a provider's, at the bound: searched, nothing found
        c["args"] = ["a.bc " * 3276 + "abcd"]
    else:
        c["env"] = [{"name": "OPENAI", "value": "https://notapi.openai.com.example"}]
    return obj


def test_unapproved_ai_agrees_with_the_rego(venv: Env, client: Client) -> None:
    """ClusterAIDataPolicy rule unapproved-ai in the vap engine (the operator's NamespaceAdmission
    param, the catalog's detector rendered into CEL): deny refuses a Deployment with OPENAI_API_KEY
    that no policy selects, warn admits it with a warning, a selected (or unreferencing) one passes,
    an expired policy approves nothing; the verdicts and rule ids are the Rego's."""
    from lightkube.generic_resource import create_global_resource

    from aidp import check, render
    from aidp.guardrail import ClusterPolicy
    from aidp.model import CHECKED_KINDS, Policy
    from tests.integration.vapstack import dry_run

    guardrail_res = create_global_resource(
        "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
    )
    label = f"unapproved-{venv.ns}"
    client.patch(
        Namespace, venv.ns, {"metadata": {"labels": {"aidp-test": label}}}, patch_type=PatchType.MERGE
    )
    policy = venv.policy("bots")  # selects app=bot
    expired = venv.policy(
        "old",
        workloadSelector={"matchLabels": {"app": "old"}},
        review={"approvedBy": "dpo@example.com", "expires": "2020-01-01"},
        enforcement="dryrun",  # its own failures do not block: only unapproved-ai decides
    )
    name = f"u-{venv.ns}"
    rail = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": {"aidp-test": label}}, "unapprovedAI": "deny"},
    }
    client.create(guardrail_res(rail))
    try:
        objs = [
            _ai_pod(kind, f"{how}-{kind.lower()}-{app}", venv.ns, {"app": app}, how)
            for kind in ("Deployment", "Pod")
            for how in ("env", "value", "args", "init", "none", "long", "at-bound")
            for app in ("shadow", "old")
        ]
        approved = _ai_pod("Deployment", "approved", venv.ns, {"app": "bot"}, "env")
        approved["spec"]["template"]["metadata"]["annotations"] = dict(helpers.COMPLIANT)
        objs.append(approved)
        kinds = {k.kind: k for k in CHECKED_KINDS}
        reviews = [check.admission_review(o, kinds[o["kind"]], f"u-{i}") for i, o in enumerate(objs)]

        def expected(mode: str) -> list[tuple[bool, bool]]:
            live = client.get(guardrail_res, name).to_dict()
            doc = ClusterPolicy.from_object(live).to_document()
            assert doc["unapprovedAI"] == mode
            data = render.render_data(
                [Policy.from_object(policy), Policy.from_object(expired)],
                guardrails={name: doc},
                guardrails_of={venv.ns: [name]},
                with_detector=True,
            )
            out = []
            for d in check.evaluate(reviews, data):
                rules = {v["rule"] for v in d["violations"] if v["policy"] == f"ClusterAIDataPolicy/{name}"}
                out.append((d["allowed"], "unapproved-ai" in rules))
            return out

        def verdicts() -> list[tuple[bool, bool]]:
            out = []
            for o in objs:
                code, message, warnings = dry_run(client, o)
                text = message + " ".join(warnings)
                out.append((code < 300, f"ClusterAIDataPolicy/{name}" in text and "[unapproved-ai]" in text))
            return out

        deny = expected("deny")
        assert deny[0] == (False, True) and deny[-1] == (True, False)  # the cases mean something
        wait_for(lambda: verdicts() == deny, timeout=30, what=f"unapproved-ai deny verdicts {deny}")
        msg = create(client, objs[0], dry_run=True)
        assert msg is not None and f"denied by ClusterAIDataPolicy/{name}: [unapproved-ai]" in msg, msg
        assert "env OPENAI_API_KEY" in msg, msg
        long = next(o for o in objs if o["metadata"]["name"] == "long-deployment-shadow")
        msg = create(client, long, dry_run=True)
        assert msg is not None and "longer than 16384 characters (not read)" in msg, msg

        client.patch(guardrail_res, name, {"spec": {"unapprovedAI": "warn"}}, patch_type=PatchType.MERGE)
        warn = expected("warn")
        assert all(allowed for allowed, _ in warn) and warn[0] == (True, True)
        wait_for(lambda: verdicts() == warn, timeout=30, what=f"unapproved-ai warn verdicts {warn}")
        _, _, warnings = dry_run(client, objs[0])
        assert any(f"ClusterAIDataPolicy/{name} [unapproved-ai]" in w for w in warnings), warnings
        # kube-apiserver type-checked the new policies against NamespaceAdmission's schema: no warning
        for pname in ("aidp-unapproved-ai-deny", "aidp-unapproved-ai-warn", "aidp-namespace-admission"):
            pol = wait_for(
                lambda n=pname: (  # type: ignore[misc]
                    p
                    if (p := client.get(ValidatingAdmissionPolicy, n)).status
                    and p.status.observedGeneration == p.metadata.generation  # type: ignore[union-attr]
                    else None
                ),
                timeout=30,
                what=f"{pname} type-checked",
            )
            checked = pol.status.typeChecking
            assert not (checked and checked.expressionWarnings), (pname, checked)
    finally:
        client.delete(guardrail_res, name)


def test_the_namespace_admin_cannot_forge_the_unapproved_ai_param(
    venv: Env, client: Client, stack: tuple[ControlPlane, AidpStack], tmp_path: Path
) -> None:
    """The NamespaceAdmission param decides which pods count as approved: a namespace admin who
    could write it would approve their own pod. The aggregated roles do not grant it, and a user
    granted it anyway (a Role with every verb) is refused by aidp-namespace-admission: create,
    update and delete."""
    from lightkube.generic_resource import create_global_resource

    from aidp.controller.vap import NamespaceAdmission

    guardrail_res = create_global_resource(
        "aidp.io", "v1alpha1", "ClusterAIDataPolicy", "clusteraidatapolicies"
    )
    label = f"forge-{venv.ns}"
    client.patch(
        Namespace, venv.ns, {"metadata": {"labels": {"aidp-test": label}}}, patch_type=PatchType.MERGE
    )
    name = f"f-{venv.ns}"
    rail = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": {"aidp-test": label}}, "unapprovedAI": "deny"},
    }
    client.create(guardrail_res(rail))
    try:
        param = wait_for(
            lambda: _get_or_none(client, NamespaceAdmission, "aidp", venv.ns),
            timeout=30,
            what="the operator's NamespaceAdmission",
        )
        assert param.to_dict()["spec"]["unapprovedAI"] == [{"name": name, "mode": "deny"}]
        editor = _editor(venv, stack, tmp_path)  # the edit role
        forged = {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "NamespaceAdmission",
            "metadata": {"name": "aidp", "namespace": venv.ns},
            "spec": {
                "unapprovedAI": [],
                "policies": [
                    {"name": "x", "expires": "", "workloadSelector": {"matchLabels": {"app": "shadow"}}}
                ],
            },
        }
        with pytest.raises(ApiError) as err:
            editor.apply(codecs.from_dict(forged), field_manager="forger", force=True)
        assert err.value.status.code == 403, err.value.status.message  # RBAC: not in the edit role
        grant = [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "everything", "namespace": venv.ns},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "everything", "namespace": venv.ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "everything"},
                "subjects": [{"kind": "ServiceAccount", "name": "editor", "namespace": venv.ns}],
            },
        ]
        for obj in grant:
            client.create(codecs.from_dict(obj))
        wait_for(  # the authorizer reads RBAC through an informer: the grant holds a moment later
            lambda: editor.get(NamespaceAdmission, "aidp", namespace=venv.ns), timeout=30, what="the grant"
        )

        def refused(call: Any) -> tuple[bool, str]:
            """Whether aidp-namespace-admission refused the call, and what happened."""
            try:
                got = call()
            except ApiError as e:
                text = f"{e.status.code}: {e.status.message}"
                return e.status.code == 403 and "written by the aidp operator only" in text, text
            return False, f"accepted: {got.to_dict() if hasattr(got, 'to_dict') else got}"

        # the guard is in force before any param exists (it is never deleted with the vap engine):
        # the forger gets no window, not even right after the guardrail appeared
        ok, what = refused(lambda: editor.apply(codecs.from_dict(forged), field_manager="forger", force=True))
        assert ok, what
        ok, what = refused(lambda: editor.delete(NamespaceAdmission, "aidp", namespace=venv.ns))
        assert ok, what
        client.delete(
            NamespaceAdmission, "aidp", namespace=venv.ns
        )  # the admin may; the operator puts it back
        other = {**forged, "metadata": {"name": "other", "namespace": venv.ns}}
        ok, what = refused(lambda: editor.create(codecs.from_dict(other)))
        assert ok, what
        shadow = _ai_pod("Deployment", "shadow", venv.ns, {"app": "shadow"}, "env")
        wait_for(lambda: create(editor, shadow, dry_run=True), timeout=30, what="unapproved-ai still denies")
        # a namespace being deleted takes its param along (the namespace controller's delete passes)
        client.delete(Namespace, venv.ns)
        wait_for(
            lambda: _get_or_none(client, Namespace, venv.ns, None) is None,
            timeout=90,
            what="the namespace and its NamespaceAdmission deleted",
        )
    finally:
        client.delete(guardrail_res, name)


def _get_or_none(client: Client, res: Any, name: str, ns: str | None) -> Any:
    try:
        return client.get(res, name, namespace=ns)
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise
