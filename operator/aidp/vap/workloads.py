"""Contract section 3 in CEL: the workload policies `aidp-workloads-{deny,warn,dryrun}`, whose
params are the AIDataPolicy objects of the request's namespace; the variables every rule reads,
each rule's message (the Rego's rule ids, in its order) and the check a compliant request costs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from aidp.vap.cel import (
    CATEGORIES,
    CONSENT,
    MAX_VALUE,
    OBJECT_REF,
    RETENTION,
    SERVICE_ACCOUNT,
    ZDR,
    absent,
    annotation,
    lit,
    lower,
    selects,
    template_of,
    workload_conditions,
    workload_vap,
)

MODES: Final = ("deny", "warn", "dryrun")
ACTIONS: Final = {"deny": "Deny", "warn": "Warn", "dryrun": "Audit"}
WORKLOAD_POLICY: Final = "aidp-workloads-{mode}"


def expired_message(today: dt.date) -> str:
    return (
        "(params.spec.?review.?expires.orValue('') != '' && "
        f"params.spec.review.expires < {lit(today.isoformat())}) || "
        "(params.?status.?phase.orValue('') == 'Expired' && "
        "params.?status.?observedGeneration.orValue(-1) == params.metadata.?generation.orValue(0)) ? "
        "'[review-expired] the policy review expired on ' + params.spec.?review.?expires.orValue('') + "
        "' (UTC); renew spec.review.expires after a new review' : ''"
    )


def workload_variables(today: dt.date) -> list[tuple[str, str]]:
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
        ("p_expired", expired_message(today)),
        (
            "p_service_account",
            "params.spec.?serviceAccountNames.orValue([]).size() > 0 && "
            "!(variables.sa in params.spec.serviceAccountNames) ? "
            "'[service-account] service account \"' + variables.sa + "
            "'\" is not one of the allowed service accounts: ' + "
            "params.spec.serviceAccountNames.join(', ') : ''",
        ),
        ("bases", "params.spec.?consent.?allowedBases.orValue([])"),
        ("consent_raw", annotation(CONSENT)),
        (
            "consent_problem",
            f"{absent(CONSENT)} ? 'annotation {CONSENT} is missing' : "
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
        ("retention_raw", annotation(RETENTION)),
        (
            "p_retention",
            f"{absent(RETENTION)} ? '[retention-days] annotation {RETENTION} is missing; the policy allows "
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
        ("zdr_raw", annotation(ZDR)),
        (
            "zdr_problem",
            f"{absent(ZDR)} ? 'annotation {ZDR} is missing' : "
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
        ("categories_raw", annotation(CATEGORIES)),
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
            f"{absent(CATEGORIES)} ? '[data-categories] annotation {CATEGORIES} is missing' : "
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


def fails(today: dt.date) -> str:
    """CEL, over `params` and the bound `ann` (the pod template's annotations) and `pod` (its spec):
    the workload fails a rule of the policy, i.e. `variables.failures` is not empty. Each term is
    the condition under which that rule's variable (`workload_variables`) is not '', without building its
    message; the categories are split and normalised once."""
    consent = annotation(CONSENT).replace("variables.ann", "ann")
    retention = annotation(RETENTION).replace("variables.ann", "ann")
    zdr = annotation(ZDR).replace("variables.ann", "ann")
    categories = annotation(CATEGORIES).replace("variables.ann", "ann")
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
    return workload_conditions(
        MODE_FILTER[mode],
        "applies-and-fails",
        f"[{template_of('object')}].exists(tpl, [tpl.?metadata.?labels.orValue({{}})].exists(labels, "
        f"{selects('params.spec.workloadSelector', 'labels')} && "
        "[tpl.?metadata.?annotations.orValue({})].exists(ann, [tpl.?spec.orValue({})].exists(pod, "
        f"{fails(today)}))))",
    )


def workload_policy(mode: str, excluded_namespaces: Sequence[str], today: dt.date) -> dict[str, Any]:
    """The policy that evaluates the AIDataPolicies of one enforcement mode (the params)."""
    variables = [{"name": name, "expression": expr} for name, expr in workload_variables(today)]
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
    return workload_vap(
        WORKLOAD_POLICY.format(mode=mode),
        {"apiVersion": "aidp.io/v1alpha1", "kind": "AIDataPolicy"},
        excluded_namespaces,
        variables,
        validations,
        _applies_and_fails(mode, today),
    )
