"""ValidatingAdmissionPolicy objects for contract section 3 (pure rendering, no cluster).

The Rego in policies/aidp/ is the reference; these CEL expressions give the same verdict, the same
failing policies and the same rule ids (tests/integration/test_vap_differential.py checks it
against kube-apiserver). docs/admission-engines.md explains the design; in short:

- the AIDataPolicy objects themselves are the params (`paramKind`), looked up by each binding in the
  request's namespace (`paramRef.selector: {}`), so the objects do not grow with the policies; a
  namespace without AIDataPolicies has no params and passes (`parameterNotFoundAction: Allow`);
- validationActions belong to a binding, so there is one policy and one binding per enforcement mode
  (`deny` -> Deny, `warn` -> Warn, `dryrun` -> Audit); each evaluates only the params of its mode
  (`spec.enforcement`, read from the param itself: no label to keep in step, nothing a policy
  author could set apart from the spec);
- one validation per policy for `deny` (one message naming every failing rule of the policy), one
  per rule for `warn` and `dryrun` (one warning, or one audit annotation, per failing rule);
- each policy's one match condition is its check itself (`_applies_and_fails`): kube-apiserver
  evaluates it once per param, and the validations with their variables and messages only for a
  param that fails, so what a compliant request costs is one expression per (policy, param);
- CEL has no clock: today's date (UTC) is rendered into the expressions and the operator re-renders
  them right after midnight; a policy whose status says `Expired` for its current generation is
  expired too;
- `aidp-approval-labels` (only the operator may change aidp.io/approved and
  aidp.io/egress-isolated) and `aidp-governed-label` (only the operator may change the namespace
  labels that scope admission) need no params.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from aidp.config import APPROVAL_LABEL, GOVERNED_LABEL, GUARDRAILED_LABEL, ISOLATED_LABEL, MANAGED_BY
from aidp.render import detector_document
from aidp.webhook import CHECKED_RULES, NOT_A_DEPLOYMENTS_REPLICASET

API_VERSION: Final = "admissionregistration.k8s.io/v1"
MODES: Final = ("deny", "warn", "dryrun")
ACTIONS: Final = {"deny": "Deny", "warn": "Warn", "dryrun": "Audit"}
WORKLOAD_POLICY: Final = "aidp-workloads-{mode}"
APPROVAL_POLICY: Final = "aidp-approval-labels"
NAMESPACE_POLICY: Final = "aidp-governed-label"
POLICY_NAMES: Final = (
    APPROVAL_POLICY,
    NAMESPACE_POLICY,
    *(WORKLOAD_POLICY.format(mode=m) for m in MODES),
    "aidp-namespace-admission",
    "aidp-guardrails",
    "aidp-bounds",
    "aidp-unapproved-ai-deny",
    "aidp-unapproved-ai-warn",
)
OPERATOR_LABELS: Final = (APPROVAL_LABEL, ISOLATED_LABEL)
# the label that tells which engine rendered an object (the operator prunes the others)
ENGINE_LABEL: Final = "aidp.io/admission-engine"

# The longest aidp.io/retention-days and aidp.io/data-categories value (trimmed) aidp reads: a
# longer one fails its rule (docs/admission-engines.md: bounded CEL cost; the Rego has the same
# edge once policies/aidp/admission.rego adopts it).
MAX_VALUE: Final = 1024

CONSENT = "aidp.io/consent-basis"
RETENTION = "aidp.io/retention-days"
ZDR = "aidp.io/zero-data-retention"
CATEGORIES = "aidp.io/data-categories"


def lit(value: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's)."""
    return json.dumps(value, ensure_ascii=True)


def lit_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"


def lower(expr: str) -> str:
    """Rego's lower() (Go's strings.ToLower) wherever the result is compared with ASCII names: the
    two non-ASCII letters whose lower case is ASCII (U+0130 -> i, U+212A KELVIN SIGN -> k), then
    ASCII lower case. Any other non-ASCII letter stays non-ASCII either way, so it can never equal
    an allowed or forbidden name (which are ASCII) in either engine."""
    return f"{expr}.replace('\\u0130', 'i').replace('\\u212a', 'k').lowerAscii()"


def template_of(obj: str) -> str:
    """The pod template of `obj` (a Pod is its own)."""
    return (
        f"(request.kind.kind == 'Pod' ? {obj} : request.kind.kind == 'CronJob' ? "
        f"{obj}.?spec.?jobTemplate.?spec.?template.orValue({{}}) : {obj}.?spec.?template.orValue({{}}))"
    )


# An UPDATE that leaves what the verdict reads of the pod template unchanged is admitted whatever
# the verdict (policies/aidp/workload.rego `template_unchanged`): labels but the operator's,
# annotations and spec. (matchConditions have no variables and VAP's CEL has no cel.bind: a value
# is bound by a one-element list's macro.)
TEMPLATE_CHANGED: Final = (
    f"request.operation != 'UPDATE' || [{template_of('object')}].exists(n, "
    f"[{template_of('oldObject')}].exists(o, "
    "n.?metadata.?annotations.orValue({}) != o.?metadata.?annotations.orValue({}) || "
    "n.?spec.orValue({}) != o.?spec.orValue({}) || "
    "[n.?metadata.?labels.orValue({})].exists(nl, [o.?metadata.?labels.orValue({})].exists(ol, "
    f"nl.exists(k, !(k in {lit_list(OPERATOR_LABELS)}) && !(k in ol && ol[k] == nl[k])) || "
    f"ol.exists(k, !(k in {lit_list(OPERATOR_LABELS)}) && !(k in nl))))))"
)

# what the webhook leaves in the API server, left unevaluated here too (one verdict, two engines):
# UPDATEs that leave the template unchanged, and the deployment controller's ReplicaSets (their
# pods are judged; aidp.webhook.NOT_A_DEPLOYMENTS_REPLICASET)
WORKLOAD_CONDITIONS: Final = [
    {"name": "template-changed", "expression": TEMPLATE_CHANGED},
    {"name": "not-a-deployments-replicaset", "expression": NOT_A_DEPLOYMENTS_REPLICASET},
]


def _workload_conditions(first: str, name: str, check: str) -> list[dict[str, str]]:
    """The match conditions of a policy over the workload kinds, as one expression: `first` (what
    only the param decides: the cheapest), the webhook's WORKLOAD_CONDITIONS, then `check` (the
    policy's check itself). kube-apiserver evaluates every match condition of a policy, each with its
    own cost tracker, once per param; one expression whose `&&` stops at the first false costs
    one evaluation (a false condition skips the policy, as one false term makes the `&&` false; an
    error with no false term refuses the request under failurePolicy Fail in both forms)."""
    terms = [first] if first else []
    terms += [f"({c['expression']})" for c in WORKLOAD_CONDITIONS]
    return [{"name": name, "expression": " && ".join([*terms, check])}]


OBJECT_NAME: Final = (
    "(request.name != '' ? request.name : object.metadata.?name.orValue('') != '' ? object.metadata.name : "
    "object.metadata.?generateName.orValue(''))"
)
OBJECT_REF: Final = f"request.kind.kind + ' ' + request.namespace + '/' + {OBJECT_NAME}"

SERVICE_ACCOUNT: Final = (
    "variables.pod.?serviceAccountName.orValue('') != '' ? variables.pod.serviceAccountName : "
    "variables.pod.?serviceAccount.orValue('') != '' ? variables.pod.serviceAccount : 'default'"
)


def _raw(key: str) -> str:
    return f"variables.ann[?{lit(key)}].orValue('').trim()"


def _missing(key: str) -> str:
    return f"!({lit(key)} in variables.ann)"


def _expired(today: dt.date) -> str:
    return (
        "(params.spec.?review.?expires.orValue('') != '' && "
        f"params.spec.review.expires < {lit(today.isoformat())}) || "
        "(params.?status.?phase.orValue('') == 'Expired' && "
        "params.?status.?observedGeneration.orValue(-1) == params.metadata.?generation.orValue(0)) ? "
        "'[review-expired] the policy review expired on ' + params.spec.?review.?expires.orValue('') + "
        "' (UTC); renew spec.review.expires after a new review' : ''"
    )


def _variables(today: dt.date) -> list[tuple[str, str]]:
    """(name, expression) of the workload policies' variables, in the order they may refer to each
    other; the p_* are '' when the rule passes, else "[rule] explanation"."""
    return [
        ("tpl", template_of("object")),
        ("labels", "variables.tpl.?metadata.?labels.orValue({})"),
        ("ann", "variables.tpl.?metadata.?annotations.orValue({})"),
        ("pod", "variables.tpl.?spec.orValue({})"),
        ("ref", OBJECT_REF),
        # metav1.LabelSelector matching, as policies/aidp/selector.rego: an empty selector selects
        # nothing, an unknown operator never matches
        ("ml", "params.spec.workloadSelector.?matchLabels.orValue({})"),
        ("me", "params.spec.workloadSelector.?matchExpressions.orValue([])"),
        (
            "selected",
            "(variables.ml.size() > 0 || variables.me.size() > 0) && "
            "variables.ml.all(k, k in variables.labels && variables.labels[k] == variables.ml[k]) && "
            "variables.me.all(e, e.operator == 'In' ? "
            "(e.key in variables.labels && variables.labels[e.key] in e.?values.orValue([])) : "
            "e.operator == 'NotIn' ? "
            "!(e.key in variables.labels && variables.labels[e.key] in e.?values.orValue([])) : "
            "e.operator == 'Exists' ? e.key in variables.labels : "
            "e.operator == 'DoesNotExist' ? !(e.key in variables.labels) : false)",
        ),
        ("sa", SERVICE_ACCOUNT),
        ("p_expired", _expired(today)),
        (
            "p_service_account",
            "params.spec.?serviceAccountNames.orValue([]).size() > 0 && "
            "!(variables.sa in params.spec.serviceAccountNames) ? "
            "'[service-account] service account \"' + variables.sa + "
            "'\" is not one of the allowed service accounts: ' + "
            "params.spec.serviceAccountNames.join(', ') : ''",
        ),
        ("bases", "params.spec.?consent.?allowedBases.orValue([])"),
        ("consent_raw", _raw(CONSENT)),
        (
            "consent_problem",
            f"{_missing(CONSENT)} ? 'annotation {CONSENT} is missing' : "
            f"variables.consent_raw == '' ? 'annotation {CONSENT} is empty' : "
            f"!({lower('variables.consent_raw')} in variables.bases) ? "
            f"'annotation {CONSENT} \"' + variables.consent_raw + '\" is not an allowed basis' : ''",
        ),
        (
            "p_consent",
            "params.spec.?consent.?required.orValue(true) == true && variables.consent_problem != '' ? "
            "'[consent-basis] ' + variables.consent_problem + '; allowed bases: ' + "
            "(variables.bases.size() > 0 ? variables.bases.join(', ') : '(none)') : ''",
        ),
        ("max_days", "params.spec.retention.maxDays"),
        ("retention_raw", _raw(RETENTION)),
        (
            "p_retention",
            f"{_missing(RETENTION)} ? '[retention-days] annotation {RETENTION} is missing; the policy allows "
            "at most ' + string(variables.max_days) + ' days' : "
            f"variables.retention_raw == '' ? '[retention-days] annotation {RETENTION} is empty; the policy "
            "allows at most ' + string(variables.max_days) + ' days' : "
            f"variables.retention_raw.size() > {MAX_VALUE} ? "
            f"'[retention-days] annotation {RETENTION} is longer than {MAX_VALUE} characters' : "
            f"!variables.retention_raw.matches('^[0-9]+$') ? '[retention-days] annotation {RETENTION} \"' + "
            "variables.retention_raw + '\" is not a non-negative integer' : "
            # more than 15 significant digits is more than any maxDays (<= 3650), as in the Rego
            "(!variables.retention_raw.matches('^0*[0-9]{1,15}$') || int(variables.retention_raw) > "
            f"variables.max_days) ? '[retention-days] annotation {RETENTION} declares ' + "
            "variables.retention_raw + ' days, more than the ' + string(variables.max_days) + "
            "' days the policy allows' : ''",
        ),
        ("zdr_raw", _raw(ZDR)),
        (
            "zdr_problem",
            f"{_missing(ZDR)} ? 'annotation {ZDR} is missing' : "
            f"variables.zdr_raw == '' ? 'annotation {ZDR} is empty' : "
            f"{lower('variables.zdr_raw')} != 'true' ? "
            f"'annotation {ZDR} is \"' + variables.zdr_raw + '\", not \"true\"' : ''",
        ),
        (
            "p_zdr",
            "params.spec.retention.?requireZeroDataRetention.orValue(false) == true && "
            "variables.zdr_problem != '' ? '[zero-data-retention] the policy requires provider-side zero "
            "data retention, but ' + variables.zdr_problem : ''",
        ),
        ("categories_raw", _raw(CATEGORIES)),
        # The declared list is the user's: iterating over it costs kube-apiserver time that grows
        # with the square of its length (measured: exists() over 16,000 items takes 0.3 s), so a
        # value longer than MAX_VALUE characters fails the rule before anything iterates over it,
        # and the lists named in the message are built only for up to 64 items.
        ("items", "variables.categories_raw.split(',')"),
        ("few", "variables.items.size() <= 64"),
        ("allowed", "params.spec.?dataCategories.?allowed.orValue([])"),
        ("forbidden", "params.spec.?dataCategories.?forbidden.orValue([])"),
        ("named", "variables.items.exists(i, i.trim() != '')"),
        (
            "any_outside",
            "variables.allowed.size() > 0 && "
            f"variables.items.exists(i, i.trim() != '' && !({lower('i.trim()')} in variables.allowed))",
        ),
        (
            "any_forbidden",
            "variables.forbidden.size() > 0 && "
            f"variables.items.exists(i, {lower('i.trim()')} in variables.forbidden)",
        ),
        (
            "outside_text",
            "variables.few ? "
            f"variables.items.map(i, {lower('i.trim()')})"
            ".filter(c, c != '' && !(c in variables.allowed)).join(', ') "
            ": 'some of the ' + string(variables.items.size()) + ' items'",
        ),
        (
            "forbidden_text",
            "variables.few ? "
            f"variables.items.map(i, {lower('i.trim()')}).filter(c, c in variables.forbidden).join(', ') "
            ": 'some of the ' + string(variables.items.size()) + ' items'",
        ),
        (
            "p_categories",
            f"{_missing(CATEGORIES)} ? '[data-categories] annotation {CATEGORIES} is missing' : "
            f"variables.categories_raw == '' ? '[data-categories] annotation {CATEGORIES} is empty' : "
            f"variables.categories_raw.size() > {MAX_VALUE} ? '[data-categories] annotation {CATEGORIES} is "
            f"longer than {MAX_VALUE} characters' : "
            "!variables.named ? "
            f"'[data-categories] annotation {CATEGORIES} names no category' : "
            "!variables.any_outside && !variables.any_forbidden ? '' : '[data-categories] ' + "
            "(variables.any_outside ? 'categories not in the allowed list: ' + variables.outside_text + "
            "' (allowed: ' + variables.allowed.join(', ') + ')' : '') + "
            "(variables.any_outside && variables.any_forbidden ? '; ' : '') + "
            "(variables.any_forbidden ? 'forbidden categories declared: ' + variables.forbidden_text : '')",
        ),
        (
            "p_host_network",
            "variables.pod.?hostNetwork.orValue(false) == true ? '[host-network] the pod runs with "
            "hostNetwork: true, which escapes every egress rule; AI workloads must use the pod network' : ''",
        ),
    ]


# rule id -> variable name, in the Rego's rule order (policies/aidp/admission.rego rule_ids)
RULE_VARIABLES: Final = (
    ("review-expired", "p_expired"),
    ("service-account", "p_service_account"),
    ("consent-basis", "p_consent"),
    ("retention-days", "p_retention"),
    ("zero-data-retention", "p_zdr"),
    ("data-categories", "p_categories"),
    ("host-network", "p_host_network"),
)

MODE_FILTER: Final = {
    "deny": "!(params.spec.?enforcement.orValue('deny') in ['warn', 'dryrun'])",
    "warn": "params.spec.?enforcement.orValue('deny') == 'warn'",
    "dryrun": "params.spec.?enforcement.orValue('deny') == 'dryrun'",
}


def _fails(today: dt.date) -> str:
    """CEL, over `params` and the bound `ann` (the pod template's annotations) and `pod` (its spec):
    the workload fails a rule of the policy, i.e. `variables.failures` is not empty. Each term is
    the condition under which that rule's variable (`_variables`) is not '', without building its
    message; the categories are split and normalised once."""
    consent = _raw(CONSENT).replace("variables.ann", "ann")
    retention = _raw(RETENTION).replace("variables.ann", "ann")
    zdr = _raw(ZDR).replace("variables.ann", "ann")
    categories = _raw(CATEGORIES).replace("variables.ann", "ann")
    sa = SERVICE_ACCOUNT.replace("variables.pod", "pod")
    bases = "params.spec.?consent.?allowedBases.orValue([])"
    allowed = "params.spec.?dataCategories.?allowed.orValue([])"
    forbidden = "params.spec.?dataCategories.?forbidden.orValue([])"
    terms = [
        # review-expired
        "(params.spec.?review.?expires.orValue('') != '' && "
        f"params.spec.review.expires < {lit(today.isoformat())}) || "
        "(params.?status.?phase.orValue('') == 'Expired' && "
        "params.?status.?observedGeneration.orValue(-1) == params.metadata.?generation.orValue(0))",
        # service-account
        "(params.spec.?serviceAccountNames.orValue([]).size() > 0 && "
        f"!(({sa}) in params.spec.serviceAccountNames))",
        # consent-basis
        "(params.spec.?consent.?required.orValue(true) == true && "
        f"(!({lit(CONSENT)} in ann) || {consent} == '' || !({lower(consent)} in {bases})))",
        # retention-days
        f"!({lit(RETENTION)} in ann) || [{retention}].exists(r, r == '' || r.size() > {MAX_VALUE} || "
        "!r.matches('^[0-9]+$') || !r.matches('^0*[0-9]{1,15}$') || int(r) > params.spec.retention.maxDays)",
        # zero-data-retention
        "(params.spec.retention.?requireZeroDataRetention.orValue(false) == true && "
        f"(!({lit(ZDR)} in ann) || {zdr} == '' || {lower(zdr)} != 'true'))",
        # data-categories (an item is empty exactly when its normalised form is)
        f"!({lit(CATEGORIES)} in ann) || [{categories}].exists(raw, raw == '' || raw.size() > {MAX_VALUE} || "
        f"[raw.split(',').map(i, {lower('i.trim()')})].exists(cs, !cs.exists(c, c != '') || "
        f"({allowed}.size() > 0 && cs.exists(c, c != '' && !(c in {allowed}))) || "
        f"({forbidden}.size() > 0 && cs.exists(c, c in {forbidden}))))",
        # host-network
        "pod.?hostNetwork.orValue(false) == true",
    ]
    return " || ".join(f"({t})" for t in terms)


def _applies_and_fails(mode: str, today: dt.date) -> list[dict[str, str]]:
    """The match condition of a workload policy: the param is of the policy's mode, selects the pod
    template and the template fails one of its rules. kube-apiserver evaluates the match conditions
    once per param, and the validations (with their variables and messages: three more evaluations,
    each converting the object anew) only when they all hold, so a compliant workload, or a param of
    another mode or selecting other pods, costs this one expression
    (docs/admission-engines.md#what-each-policy-costs). (Match conditions have no variables: values
    are bound by a one-element list's macro.)"""
    return _workload_conditions(
        MODE_FILTER[mode],
        "applies-and-fails",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"{_selects('params.spec.workloadSelector', 'labels')} && "
        "[tpl.?metadata.?annotations.orValue({})].exists(ann, [tpl.?spec.orValue({})].exists(pod, "
        f"{_fails(today)}))))",
    )


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {**MANAGED_BY, ENGINE_LABEL: "vap"}}


def _excluded(excluded_namespaces: Sequence[str]) -> dict[str, Any]:
    return {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": sorted(set(excluded_namespaces)),
    }


def _workload_rules() -> list[dict[str, Any]]:
    return [
        {
            "apiGroups": [group],
            "apiVersions": [version],
            "resources": list(resources),
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
        for group, version, resources in CHECKED_RULES
    ]


def _not_operator(operator_users: Sequence[str]) -> dict[str, str]:
    return {
        "name": "not-the-operator",
        "expression": f"!(request.userInfo.username in {lit_list(operator_users)})",
    }


def workload_policy(mode: str, excluded_namespaces: Sequence[str], today: dt.date) -> dict[str, Any]:
    """The policy that evaluates the AIDataPolicies of one enforcement mode (the params)."""
    variables = [{"name": name, "expression": expr} for name, expr in _variables(today)]
    variables += [
        {"name": "applies", "expression": f"{MODE_FILTER[mode]} && variables.selected"},
        {
            "name": "failures",
            "expression": "["
            + ", ".join(f"string(variables.{var})" for _, var in RULE_VARIABLES)
            + "].filter(s, s != '')",
        },
    ]
    if mode == "deny":
        validations = [
            {
                "expression": "!variables.applies || variables.failures.size() == 0",
                "messageExpression": "'aidp: ' + variables.ref + ' denied by AIDataPolicy ' + "
                "params.metadata.name + ': ' + variables.failures.join('; ')",
                "message": "aidp: denied by an AIDataPolicy of the namespace",
                "reason": "Forbidden",
            }
        ]
    else:
        validations = [
            {
                "expression": f"!variables.applies || variables.{var} == ''",
                "messageExpression": "'aidp: ' + variables.ref + ': AIDataPolicy ' + "
                f"params.metadata.name + ' ' + variables.{var}",
                "message": f"aidp: [{rule}] an AIDataPolicy of the namespace ({mode})",
            }
            for rule, var in RULE_VARIABLES
        ]
    return _workload_vap(
        WORKLOAD_POLICY.format(mode=mode),
        {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"},
        excluded_namespaces,
        variables,
        validations,
        _applies_and_fails(mode, today),
    )


def _workload_vap(
    name: str,
    param_kind: dict[str, str],
    excluded_namespaces: Sequence[str],
    variables: list[dict[str, Any]],
    validations: list[dict[str, Any]],
    conditions: list[dict[str, str]],
) -> dict[str, Any]:
    """A policy over the workload kinds (every namespace but the excluded), with params;
    `conditions` from `_workload_conditions`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(name),
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": param_kind,
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [_excluded(excluded_namespaces)]},
                "resourceRules": _workload_rules(),
            },
            "matchConditions": conditions,
            "variables": variables,
            "validations": validations,
        },
    }


def approval_policy(excluded_namespaces: Sequence[str], operator_users: Sequence[str]) -> dict[str, Any]:
    """Only the operator may set, change or remove its labels on a pod or a pod template. The match
    condition `operator-label-changed` is the check itself (`changed` not empty), so a request that
    leaves the labels alone costs one expression, not the validation and its message too."""
    new = f"{template_of('object')}.?metadata.?labels.orValue({{}})"
    old = (
        f"(request.operation == 'UPDATE' ? {template_of('oldObject')}.?metadata.?labels.orValue({{}}) : {{}})"
    )
    variables = [
        {"name": "new", "expression": new},
        {"name": "old", "expression": old},
        {
            "name": "changed",
            "expression": f"{lit_list(OPERATOR_LABELS)}.filter(k, "
            "variables.new[?k].orValue('') != variables.old[?k].orValue(''))",
        },
    ]
    changed = {
        "name": "operator-label-changed",
        "expression": f"[{new}].exists(n, [{old}].exists(o, "
        f"{lit_list(OPERATOR_LABELS)}.exists(k, n[?k].orValue('') != o[?k].orValue(''))))",
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(APPROVAL_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {
                    "matchLabels": {GOVERNED_LABEL: "true"},
                    "matchExpressions": [_excluded(excluded_namespaces)],
                },
                "resourceRules": _workload_rules(),
            },
            "matchConditions": [_not_operator(operator_users), changed],
            "variables": variables,
            "validations": [
                {
                    "expression": "variables.changed.size() == 0",
                    "messageExpression": f"'aidp: ' + {OBJECT_REF} + ' denied: the label ' + "
                    "variables.changed.join(' and ') + ' is set and removed by the aidp operator only, "
                    "after it judged the running pod; remove it from the ' + "
                    "(request.kind.kind == 'Pod' ? \"pod's labels\" : \"pod template's labels\")",
                    "message": "aidp: the approval labels are set and removed by the aidp operator only",
                    "reason": "Forbidden",
                }
            ],
        },
    }


def namespace_policy(excluded_namespaces: Sequence[str], operator_users: Sequence[str]) -> dict[str, Any]:
    """Only the operator may change the namespace labels that scope admission (the governed label)
    and the guardrails' bounds (the guardrailed label)."""
    labels = (GOVERNED_LABEL, GUARDRAILED_LABEL)
    differs = (
        "object.metadata.?labels.orValue({})[?k].orValue('') != "
        "oldObject.metadata.?labels.orValue({})[?k].orValue('')"
    )
    changed = f"{lit_list(labels)}.filter(k, {differs})"
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(NAMESPACE_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [_excluded(excluded_namespaces)]},
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["namespaces", "namespaces/status", "namespaces/finalize"],
                        "operations": ["UPDATE"],
                        "scope": "Cluster",
                    }
                ],
            },
            "matchConditions": [
                _not_operator(operator_users),
                # the check itself: an update that leaves those labels alone is not evaluated further
                {"name": "label-changed", "expression": f"{lit_list(labels)}.exists(k, {differs})"},
            ],
            "variables": [{"name": "changed", "expression": changed}],
            "validations": [
                {
                    "expression": "variables.changed.size() == 0",
                    "messageExpression": "'aidp: Namespace ' + object.metadata.name + "
                    "' denied: the label ' + variables.changed.join(' and ') + ' is managed by the aidp "
                    "operator (it marks the namespaces aidp governs: those with an AIDataPolicy or selected "
                    "by a ClusterAIDataPolicy)'",
                    "message": "aidp: the namespace labels aidp.io/governed and aidp.io/guardrailed are "
                    "managed by the aidp operator",
                    "reason": "Forbidden",
                }
            ],
        },
    }


GUARDRAIL_POLICY: Final = "aidp-guardrails"


def _namespace_selected(selector: Mapping[str, Any]) -> str:
    """CEL: the request's namespace's labels match a ClusterAIDataPolicy's namespaceSelector
    (Kubernetes semantics: `{}` selects every namespace)."""
    labels = "namespaceObject.metadata.?labels.orValue({})"
    terms = [
        f"{labels}[?{lit(k)}].orValue('') == {lit(v)} && {lit(k)} in {labels}"
        for k, v in sorted((selector.get("matchLabels") or {}).items())
    ]
    for e in selector.get("matchExpressions") or []:
        key, op, values = lit(e["key"]), e["operator"], lit_list(e.get("values") or [])
        has = f"{key} in {labels}"
        if op == "In":
            terms.append(f"({has} && {labels}[{key}] in {values})")
        elif op == "NotIn":
            terms.append(f"!({has} && {labels}[{key}] in {values})")
        elif op == "Exists":
            terms.append(has)
        elif op == "DoesNotExist":
            terms.append(f"!({has})")
        else:
            terms.append("false")
    return " && ".join(terms) or "true"


def _guardrail_failures(doc: Mapping[str, Any]) -> str:
    """CEL: '' when the workload passes the guardrail's workload rules (policies/aidp/guardrails.rego
    `guardrail_problems`), else "ClusterAIDataPolicy/<name>: [rule] explanation; ..."."""
    parts: list[str] = []
    bases = (doc.get("consent") or {}).get("allowedBases")
    if bases is not None:
        ceiling = lit_list(bases)
        parts.append(
            f"!({lower(_raw(CONSENT))} in {ceiling}) ? '[consent-basis] annotation {CONSENT} ' + "
            f"({_raw(CONSENT)} == '' ? 'is missing' : 'is \"' + {_raw(CONSENT)} + '\"') + "
            f"'; the ceiling of the cluster: {', '.join(bases)}' : ''"
        )
    retention = doc.get("retention") or {}
    if retention.get("maxDays") is not None:
        days = int(retention["maxDays"])
        raw = _raw(RETENTION)
        # the Rego's within_days: ^0*[0-9]{1,15}$ (leading zeros allowed, as for the namespace
        # policies' rule), at most MAX_VALUE characters and at most maxDays
        parts.append(
            f"!({raw}.size() <= {MAX_VALUE} && {raw}.matches('^0*[0-9]{{1,15}}$') && int({raw}) <= {days}) ? "
            f"'[retention-days] annotation {RETENTION} ' + "
            f"({raw} == '' ? 'is missing' : 'is \"' + {raw} + '\"') "
            f"+ '; the cluster allows at most {days} days' : ''"
        )
    if retention.get("requireZeroDataRetention") is True:
        parts.append(
            f"{lower(_raw(ZDR))} != 'true' ? '[zero-data-retention] the cluster requires provider-side "
            f"zero data retention: annotation {ZDR} must be \"true\"' : ''"
        )
    forbidden = (doc.get("dataCategories") or {}).get("forbidden") or []
    if forbidden:
        raw = _raw(CATEGORIES)
        parts.append(
            f"{raw}.size() > {MAX_VALUE} ? "
            f"'[data-categories] annotation {CATEGORIES} is longer than {MAX_VALUE} characters' : "
            f"{raw}.split(',').exists(i, {lower('i.trim()')} in {lit_list(forbidden)}) ? "
            "'[data-categories] categories forbidden in this cluster declared (forbidden: "
            f"{', '.join(forbidden)})' : ''"
        )
    if not parts:
        return "''"
    listed = "[" + ", ".join(f"({p})" for p in parts) + "].filter(m, m != '')"
    name = lit(f"ClusterAIDataPolicy/{doc['name']}")
    return f"[{listed}].map(l, l.size() == 0 ? '' : {name} + ': ' + l.join('; '))[0]"


def guardrail_policy(
    excluded_namespaces: Sequence[str], guardrails: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The ClusterAIDataPolicies' rules for workloads (contract section 6): a workload that an
    AIDataPolicy of its namespace selects (the params, whatever their mode) must pass every
    guardrail selecting its namespace. The guardrails are few and cluster-wide: the operator renders
    them into the expressions (and re-renders on every change); kube-apiserver matches their
    namespaceSelector against the request's namespace (`namespaceObject`)."""
    variables = [{"name": name, "expression": expr} for name, expr in _variables(dt.date.min)[:8]]
    checks = [
        f"({_namespace_selected(doc.get('namespaceSelector') or {})}) ? ({_guardrail_failures(doc)}) : ''"
        for _, doc in sorted(guardrails.items())
    ]
    variables.append(
        {
            "name": "guardrail_failures",
            "expression": "[" + ", ".join(f"string({c})" for c in checks) + "].filter(m, m != '')",
        }
    )
    # the check as a match condition (see _applies_and_fails): the param selects the pod template
    # and some guardrail's rules fail it. Match conditions have no namespaceObject, so whether that
    # guardrail selects the namespace is left to the validation: a superset, never a skipped failure.
    any_fails = " || ".join(
        f"({_guardrail_failures(doc).replace('variables.ann', 'ann')}) != ''"
        for _, doc in sorted(guardrails.items())
    )
    fails = _workload_conditions(
        "",
        "selected-and-fails",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"{_selects('params.spec.workloadSelector', 'labels')} && "
        f"[tpl.?metadata.?annotations.orValue({{}})].exists(ann, {any_fails or 'false'})))",
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(GUARDRAIL_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"},
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [_excluded(excluded_namespaces)]},
                "resourceRules": _workload_rules(),
            },
            "matchConditions": fails,
            "variables": variables,
            "validations": [
                {
                    "expression": "!variables.selected || variables.guardrail_failures.size() == 0",
                    "messageExpression": "'aidp: ' + variables.ref + ' denied by ' + "
                    "variables.guardrail_failures.join('; ')",
                    "message": "aidp: denied by a ClusterAIDataPolicy",
                    "reason": "Forbidden",
                }
            ],
        },
    }


BOUNDS_POLICY: Final = "aidp-bounds"


def _bound_fields(doc: Mapping[str, Any], today: dt.date) -> str:
    """CEL: the list of the fields of the AIDataPolicy (`object.spec`) out of the guardrail's bounds,
    as policies/aidp/guardrails.rego `bound_problems` words them."""
    spec = "object.spec"
    checks: list[str] = []
    providers = list(doc.get("providers") or [])
    if providers:
        checks.append(
            f"!({spec}.?provider.orValue('') in {lit_list(providers)}) ? 'spec.provider: \"' + "
            f"{spec}.?provider.orValue('') + '\" is not one of the providers it allows "
            f"({', '.join(providers)})' : ''"
        )
    residencies = list(doc.get("dataResidency") or [])
    if residencies:
        checks.append(
            f"!({spec}.?dataResidency.orValue('') in {lit_list(residencies)}) ? 'spec.dataResidency: \"' + "
            f"{spec}.?dataResidency.orValue('') + '\" is not one of the residencies it allows "
            f"({', '.join(residencies)})' : ''"
        )
    ceiling = (doc.get("consent") or {}).get("allowedBases")
    if ceiling is not None:
        checks.append(
            f"{spec}.?consent.?required.orValue(true) == false ? "
            "'spec.consent.required: false, but its consent ceiling needs true' : ''"
        )
        checks.append(
            f"{spec}.?consent.?allowedBases.orValue([]).exists(b, !(b in {lit_list(ceiling)})) ? "
            f"'spec.consent.allowedBases: ' + "
            f"{spec}.consent.allowedBases.filter(b, !(b in {lit_list(ceiling)}))"
            f".join(', ') + ' outside its ceiling ({', '.join(ceiling)})' : ''"
        )
    retention = doc.get("retention") or {}
    if retention.get("maxDays") is not None:
        days = int(retention["maxDays"])
        checks.append(
            f"{spec}.?retention.?maxDays.orValue(0) > {days} ? 'spec.retention.maxDays: ' + "
            f"string({spec}.?retention.?maxDays.orValue(0)) + ', more than its ceiling of {days} days' : ''"
        )
    if retention.get("requireZeroDataRetention") is True:
        checks.append(
            f"{spec}.?retention.?requireZeroDataRetention.orValue(false) != true ? "
            "'spec.retention.requireZeroDataRetention: must be true (it requires zero data retention)' : ''"
        )
    forbidden = list((doc.get("dataCategories") or {}).get("forbidden") or [])
    if forbidden:
        checks.append(
            f"{spec}.?dataCategories.?allowed.orValue([]).exists(c, c in {lit_list(forbidden)}) ? "
            f"'spec.dataCategories.allowed: ' + "
            f"{spec}.dataCategories.allowed.filter(c, c in {lit_list(forbidden)})"
            ".join(', ') + ' forbidden by it' : ''"
        )
    review = doc.get("review") or {}
    if review.get("required") is True:
        for key in ("approvedBy", "expires"):
            checks.append(
                f"{spec}.?review.?{key}.orValue('').trim() == '' ? 'spec.review.{key}: required by it' : ''"
            )
    if review.get("maxValidityDays") is not None:
        days = int(review["maxValidityDays"])
        latest = (today + dt.timedelta(days=days)).isoformat()
        expires = f"{spec}.?review.?expires.orValue('')"
        checks.append(
            f"{expires}.trim() != '' && {expires} > {lit(latest)} ? 'spec.review.expires: ' + {expires} + "
            f"', later than {days} days from today ({latest})' : ''"
        )
    if not checks:
        return "[]"
    return "[" + ", ".join(f"string({c})" for c in checks) + "].filter(m, m != '')"


def bounds_policy(
    excluded_namespaces: Sequence[str], guardrails: Mapping[str, Mapping[str, Any]], today: dt.date
) -> dict[str, Any]:
    """An AIDataPolicy looser than a ClusterAIDataPolicy selecting its namespace is refused
    (contract section 6, the webhook's bounds.aidp.io): the message names every guardrail and every
    field out of its bounds."""
    parts = [
        f"[({_namespace_selected(doc.get('namespaceSelector') or {})}) ? {_bound_fields(doc, today)} : []]"
        f".map(f, f.size() == 0 ? '' : {lit(f'ClusterAIDataPolicy/{name}')} + ' (' + f.join('; ') + ')')[0]"
        for name, doc in sorted(guardrails.items())
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(BOUNDS_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [_excluded(excluded_namespaces)]},
                "resourceRules": [
                    {
                        "apiGroups": ["aidp.io"],
                        "apiVersions": ["v1alpha1"],
                        "resources": ["aidatapolicies"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
            },
            # status writes and metadata edits cannot loosen a policy (the webhook's spec-changed)
            "matchConditions": [
                {
                    "name": "spec-changed",
                    "expression": "request.operation != 'UPDATE' || object.spec != oldObject.spec",
                }
            ],
            "variables": [
                {
                    "name": "looser",
                    "expression": "[" + ", ".join(f"string({p})" for p in parts) + "].filter(m, m != '')",
                }
            ],
            "validations": [
                {
                    "expression": "variables.looser.size() == 0",
                    "messageExpression": "'aidp: AIDataPolicy ' + request.namespace + '/' + "
                    f"{OBJECT_NAME} + ' denied: looser than ' + variables.looser.join('; ')",
                    "message": "aidp: the AIDataPolicy is looser than a ClusterAIDataPolicy selecting its "
                    "namespace",
                    "reason": "Forbidden",
                }
            ],
        },
    }


def binding(
    policy: dict[str, Any], action: str, *, params: bool, param_name: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"policyName": policy["metadata"]["name"], "validationActions": [action]}
    if param_name is not None:
        # the one object of that name in the request's namespace; none: nothing to check
        spec["paramRef"] = {"name": param_name, "parameterNotFoundAction": "Allow"}
    elif params:
        # every AIDataPolicy of the request's namespace; none: nothing to check
        spec["paramRef"] = {"selector": {}, "parameterNotFoundAction": "Allow"}
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(policy["metadata"]["name"]),
        "spec": spec,
    }


def render(
    excluded_namespaces: Sequence[str],
    operator_users: Sequence[str],
    today: dt.date | None = None,
    guardrails: Mapping[str, Mapping[str, Any]] | None = None,
    detector: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Every object of the `vap` engine: each policy followed by its binding; `guardrails` (name ->
    `ClusterPolicy.to_document()`) add `aidp-guardrails`, `aidp-bounds` and `aidp-unapproved-ai-*`
    (`aidp-namespace-admission`, which guards their params, is always there); `detector`
    (default: the current catalog's, `aidp.render.detector_document`) is what `unapproved-ai`
    looks for."""
    if not operator_users:
        raise ValueError("the operator's user name is needed (only it may change its labels)")
    day = today or dt.datetime.now(dt.UTC).date()
    objects: list[dict[str, Any]] = []
    for pol in (
        approval_policy(excluded_namespaces, operator_users),
        namespace_policy(excluded_namespaces, operator_users),
    ):
        objects += [pol, binding(pol, "Deny", params=False)]
    for mode in MODES:
        pol = workload_policy(mode, excluded_namespaces, day)
        objects += [pol, binding(pol, ACTIONS[mode], params=True)]
    # always, not only while guardrails exist: in force before the first param is written, and
    # never deleted and re-created under a namespace admin who would write one meanwhile
    pol = params_guard_policy(operator_users)
    objects += [pol, binding(pol, "Deny", params=False)]
    if guardrails:
        pol = guardrail_policy(excluded_namespaces, guardrails)
        objects += [pol, binding(pol, "Deny", params=True)]
        pol = bounds_policy(excluded_namespaces, guardrails, day)
        objects += [pol, binding(pol, "Deny", params=False)]
        detector = render_detector(detector_document() if detector is None else detector)
        for mode in UNAPPROVED_MODES:
            pol = unapproved_policy(mode, excluded_namespaces, day, detector)
            objects += [pol, binding(pol, ACTIONS[mode], params=True, param_name=PARAMS_NAME)]
    return objects


# --- unapproved AI (contract section 6; policies/aidp/guardrails.rego `unapproved`) ---------------
#
# "No active AIDataPolicy selects the pod" is an AND over the namespace's policies, which a policy
# whose params are the AIDataPolicies cannot compute (each param is evaluated alone, and with none
# the evaluation is skipped). So the operator writes one typed param per namespace, the
# NamespaceAdmission `aidp` (crds/aidp.io_namespaceadmissions.yaml): the namespace's parsed
# AIDataPolicies (name, review date, workload selector, as in data.aidp.policies) and the selecting
# guardrails whose unapprovedAI is deny or warn (data.aidp.guardrailsOf). Only the operator may
# write it: no aggregated role grants it, and `aidp-namespace-admission` refuses everyone else.

UNAPPROVED_MODES: Final = ("deny", "warn")
UNAPPROVED_POLICY: Final = "aidp-unapproved-ai-{mode}"
PARAMS_GUARD_POLICY: Final = "aidp-namespace-admission"
PARAMS_API_VERSION: Final = "aidp.io/v1alpha1"
PARAMS_KIND: Final = "NamespaceAdmission"
PARAMS_PLURAL: Final = "namespaceadmissions"
PARAMS_NAME: Final = "aidp"
NAMESPACE_CONTROLLERS: Final = (
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
)
# env values, args and commands longer than this in all are not searched for hosts and count as a
# reference (guardrails.rego max_texts_length): searching more exceeds kube-apiserver's per-call CEL
# cost limit (measured: 48,000 characters of dense host-like tokens within it, 64,000 over)
MAX_TEXTS: Final = 16384
# the Rego's host token (guardrails.rego ai_references), found in lower-cased texts
HOST_TOKEN: Final = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+"  # noqa: S105


def glob_regex(pattern: str) -> str:
    """An RE2 expression equal to OPA's `glob.match(pattern, [], text)` for the catalog's globs
    (env names `[A-Za-z0-9_*]`, hosts `[a-z0-9.*-]`): OPA's default delimiter is `.`, so `*`
    matches any run of characters but `.`, and the whole text must match."""
    return "".join("[^.]*" if c == "*" else re.escape(c) for c in pattern)


def render_detector(detector: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The catalog's detector (`aidp.render.detector_document`, what the Rego reads as
    data.aidp.detector) as two anchored RE2 expressions: env names and hosts."""

    def one(globs: Sequence[str]) -> str:
        return "^(" + "|".join(glob_regex(g) for g in globs) + ")$" if globs else "^$.^"

    return {"env": one(list(detector.get("env") or [])), "hosts": one(list(detector.get("hosts") or []))}


def params_object(
    namespace: str,
    policies: Sequence[Mapping[str, Any]],
    unapproved: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """The NamespaceAdmission `aidp` of one namespace: `policies` as rendered for the Rego
    (`aidp.render.policy_document`), `unapproved` the (guardrail name, unapprovedAI) selecting it."""
    return {
        "apiVersion": PARAMS_API_VERSION,
        "kind": PARAMS_KIND,
        "metadata": {
            "name": PARAMS_NAME,
            "namespace": namespace,
            "labels": {**MANAGED_BY, ENGINE_LABEL: "vap"},
        },
        "spec": {
            "unapprovedAI": [
                {"name": name, "mode": mode} for name, mode in sorted(unapproved) if mode in UNAPPROVED_MODES
            ],
            "policies": [
                {
                    "name": str(p["name"]),
                    "expires": str((p.get("review") or {}).get("expires") or ""),
                    "workloadSelector": p.get("workloadSelector") or {},
                }
                for p in sorted(policies, key=lambda p: str(p["name"]))
            ],
        },
    }


def params_namespaces(
    guardrails: Mapping[str, Mapping[str, Any]], guardrails_of: Mapping[str, Sequence[str]]
) -> set[str]:
    """The namespaces that a guardrail with unapprovedAI deny or warn selects."""
    return {
        ns
        for ns, names in guardrails_of.items()
        if any((guardrails.get(n) or {}).get("unapprovedAI") in UNAPPROVED_MODES for n in names)
    }


def params_objects(
    policies_by_namespace: Mapping[str, Sequence[Mapping[str, Any]]],
    guardrails: Mapping[str, Mapping[str, Any]],
    guardrails_of: Mapping[str, Sequence[str]],
) -> dict[str, dict[str, Any]]:
    """namespace -> its NamespaceAdmission, for every namespace that a guardrail with
    unapprovedAI deny or warn selects (elsewhere `unapproved-ai` has nothing to do)."""
    out: dict[str, dict[str, Any]] = {}
    for ns, names in sorted(guardrails_of.items()):
        unapproved = [
            (n, str(guardrails[n].get("unapprovedAI")))
            for n in names
            if n in guardrails and guardrails[n].get("unapprovedAI") in UNAPPROVED_MODES
        ]
        if unapproved:
            out[ns] = params_object(ns, policies_by_namespace.get(ns, ()), unapproved)
    return out


def _selects(selector: str, labels: str) -> str:
    """CEL: the workload selector `selector` (an AIDataPolicy's: empty selects nothing) selects
    `labels` (policies/aidp/selector.rego)."""
    ml = f"{selector}.?matchLabels.orValue({{}})"
    me = f"{selector}.?matchExpressions.orValue([])"
    return (
        f"({ml}.size() > 0 || {me}.size() > 0) && "
        f"{ml}.all(k, k in {labels} && {labels}[k] == {ml}[k]) && "
        f"{me}.all(e, e.operator == 'In' ? (e.key in {labels} && {labels}[e.key] in e.?values.orValue([])) : "
        f"e.operator == 'NotIn' ? !(e.key in {labels} && {labels}[e.key] in e.?values.orValue([])) : "
        f"e.operator == 'Exists' ? e.key in {labels} : "
        f"e.operator == 'DoesNotExist' ? !(e.key in {labels}) : false)"
    )


def unapproved_policy(
    mode: str, excluded_namespaces: Sequence[str], today: dt.date, detector: Mapping[str, str]
) -> dict[str, Any]:
    """Rule `unapproved-ai` of the guardrails with unapprovedAI `mode` (the param's list): a pod
    template that references AI credentials or endpoints (the catalog's detector, `render_detector`)
    but that no active AIDataPolicy of the namespace selects (the param's policies; active: its
    review date is not before today, rendered as for the workload policies)."""
    containers = (
        "[variables.pod.?initContainers.orValue([]), variables.pod.?containers.orValue([]), "
        "variables.pod.?ephemeralContainers.orValue([])]"
    )
    env_refs = (
        f"{containers}.map(cs, cs.map(c, c.?env.orValue([])"
        f".filter(e, e.?name.orValue('').matches({lit(detector['env'])}))"
        ".map(e, 'env ' + e.name).join(', ')).filter(t, t != '').join(', ')).filter(t, t != '').join(', ')"
    )
    texts = "(c.?env.orValue([]).map(e, e.?value.orValue('')) + c.?args.orValue([]) + c.?command.orValue([]))"
    host_refs = (
        f"{containers}.map(cs, cs.map(c, {texts}.map(t, {lower('t')}.findAll({lit(HOST_TOKEN)})"
        f".filter(h, h.matches({lit(detector['hosts'])})).map(h, 'host ' + h).join(', '))"
        ".filter(t, t != '').join(', ')).filter(t, t != '').join(', ')).filter(t, t != '').join(', ')"
    )
    length = f"{containers}.map(cs, cs.map(c, {texts}.map(t, t.size()).sum()).sum()).sum()"
    too_long = f"'env values, args and commands longer than {MAX_TEXTS} characters (not read)'"
    approved = (
        "params.spec.?policies.orValue([]).exists(p, "
        f"!(p.?expires.orValue('') != '' && p.expires < {lit(today.isoformat())}) && "
        f"{_selects('p.workloadSelector', 'variables.labels')})"
    )
    references = f"[{env_refs}, {length} > {MAX_TEXTS} ? {too_long} : {host_refs}].filter(t, t != '')"
    variables = [{"name": name, "expression": expr} for name, expr in _variables(today)[:5]]
    variables += [
        {
            "name": "rails",
            "expression": f"params.spec.?unapprovedAI.orValue([]).filter(g, g.mode == {lit(mode)})",
        },
        {"name": "approved", "expression": approved},
        {"name": "references", "expression": f"{references}.join(', ')"},
    ]
    # the check itself as a match condition (see _applies_and_fails): a guardrail of this mode, the
    # template approved by no active policy, and a reference
    fails = _workload_conditions(
        f"params.spec.?unapprovedAI.orValue([]).exists(g, g.mode == {lit(mode)})",
        "unapproved-reference",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"!({approved.replace('variables.labels', 'labels')}) && [tpl.?spec.orValue({{}})].exists(pod, "
        f"{references.replace('variables.pod', 'pod')}.size() > 0)))",
    )
    reason = (
        "' [unapproved-ai] the pod references an AI provider (' + variables.references + ') but no active "
        "AIDataPolicy selects it; write one (within the cluster\\'s guardrails) or remove the reference'"
    )
    if mode == "deny":
        message = (
            "'aidp: ' + variables.ref + ' denied by ' + variables.rails.map(g, 'ClusterAIDataPolicy/' + "
            f"g.name + ':' + {reason}).join('; ')"
        )
    else:
        message = (
            "'aidp: ' + variables.ref + ': ' + variables.rails.map(g, 'ClusterAIDataPolicy/' + g.name + "
            f"{reason}).join('; ')"
        )
    validation: dict[str, Any] = {
        "expression": "variables.rails.size() == 0 || variables.approved || variables.references == ''",
        "messageExpression": message,
        "message": f"aidp: [unapproved-ai] the pod references an AI provider but no active AIDataPolicy "
        f"selects it ({mode})",
    }
    if mode == "deny":
        validation["reason"] = "Forbidden"
    return _workload_vap(
        UNAPPROVED_POLICY.format(mode=mode),
        {"apiVersion": PARAMS_API_VERSION, "kind": PARAMS_KIND},
        excluded_namespaces,
        variables,
        [validation],
        fails,
    )


def params_guard_policy(operator_users: Sequence[str]) -> dict[str, Any]:
    """Only the operator writes a NamespaceAdmission: an owner of a namespace who could write one
    would list a selector that approves their own pod, or drop the guardrails. A namespace being
    deleted takes its objects along (the namespace controller's deletes)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(PARAMS_GUARD_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "resourceRules": [
                    {
                        "apiGroups": ["aidp.io"],
                        "apiVersions": ["*"],
                        "resources": [PARAMS_PLURAL],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "scope": "Namespaced",
                    }
                ],
            },
            "matchConditions": [
                _not_operator(operator_users),
                {
                    # the namespace controller's deletes (a DeleteCollection) of a namespace being
                    # deleted, whichever user kube-controller-manager runs it as
                    "name": "not-a-namespace-being-deleted",
                    "expression": "!(request.operation == 'DELETE' && "
                    f"(request.userInfo.username in {lit_list(NAMESPACE_CONTROLLERS)} || "
                    "(namespaceObject != null && "
                    "namespaceObject.?status.?phase.orValue('') == 'Terminating')))",
                },
            ],
            "validations": [
                {
                    "expression": "false",
                    "messageExpression": "'aidp: NamespaceAdmission ' + request.namespace + '/' + "
                    "request.name + "
                    "' denied: it is written by the aidp operator only (the vap engine reads it to decide "
                    "rule unapproved-ai)'",
                    "message": "aidp: NamespaceAdmission objects are written by the aidp operator only",
                    "reason": "Forbidden",
                }
            ],
        },
    }
