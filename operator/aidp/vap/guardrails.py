"""Contract section 6 in CEL: `aidp-guardrails` (a guardrail's rules on the workloads of the
namespaces it selects) and `aidp-bounds` (a namespace AIDataPolicy may not be looser than the
guardrails that select its namespace)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aidp.vap.cel import (
    API_VERSION,
    CATEGORIES,
    CONSENT,
    MAX_VALUE,
    OBJECT_NAME,
    RETENTION,
    ZDR,
    annotation,
    excluded_selector,
    lit,
    lit_list,
    lower,
    object_meta,
    selects,
    template_of,
    workload_conditions,
)
from aidp.vap.workloads import workload_variables
from aidp.webhook import checked_rules

GUARDRAIL_POLICY: Final = "aidp-guardrails"


def namespace_selected(selector: Mapping[str, Any]) -> str:
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
            f"!({lower(annotation(CONSENT))} in {ceiling}) ? '[consent-basis] annotation {CONSENT} ' + "
            f"({annotation(CONSENT)} == '' ? 'is missing' : 'is \"' + {annotation(CONSENT)} + '\"') + "
            f"'; the ceiling of the cluster: {', '.join(bases)}' : ''"
        )
    retention = doc.get("retention") or {}
    if retention.get("maxDays") is not None:
        days = int(retention["maxDays"])
        raw = annotation(RETENTION)
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
            f"{lower(annotation(ZDR))} != 'true' ? '[zero-data-retention] the cluster requires provider-side "
            f"zero data retention: annotation {ZDR} must be \"true\"' : ''"
        )
    forbidden = (doc.get("dataCategories") or {}).get("forbidden") or []
    if forbidden:
        raw = annotation(CATEGORIES)
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
    variables = [{"name": name, "expression": expr} for name, expr in workload_variables(dt.date.min)[:8]]
    checks = [
        f"({namespace_selected(doc.get('namespaceSelector') or {})}) ? ({_guardrail_failures(doc)}) : ''"
        for _, doc in sorted(guardrails.items())
    ]
    variables.append(
        {
            "name": "guardrail_failures",
            "expression": "[" + ", ".join(f"string({c})" for c in checks) + "].filter(m, m != '')",
        }
    )
    # the check as a match condition (as workloads._applies_and_fails): the param selects the pod template
    # and some guardrail's rules fail it. Match conditions have no namespaceObject, so whether that
    # guardrail selects the namespace is left to the validation: a superset, never a skipped failure.
    any_fails = " || ".join(
        f"({_guardrail_failures(doc).replace('variables.ann', 'ann')}) != ''"
        for _, doc in sorted(guardrails.items())
    )
    fails = workload_conditions(
        "",
        "selected-and-fails",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"{selects('params.spec.workloadSelector', 'labels')} && "
        f"[tpl.?metadata.?annotations.orValue({{}})].exists(ann, {any_fails or 'false'})))",
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": object_meta(GUARDRAIL_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"},
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [excluded_selector(excluded_namespaces)]},
                "resourceRules": checked_rules(),
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
        f"[({namespace_selected(doc.get('namespaceSelector') or {})}) ? {_bound_fields(doc, today)} : []]"
        f".map(f, f.size() == 0 ? '' : {lit(f'ClusterAIDataPolicy/{name}')} + ' (' + f.join('; ') + ')')[0]"
        for name, doc in sorted(guardrails.items())
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": object_meta(BOUNDS_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [excluded_selector(excluded_namespaces)]},
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
