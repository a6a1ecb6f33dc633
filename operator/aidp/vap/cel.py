"""The CEL building blocks the `vap` engine's policies share (pure strings, no cluster): literals,
Rego's lower(), the pod template of a request, the webhook's match conditions, the workload
variables' sources, and the object skeletons every policy and binding has."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Final

from aidp.config import APPROVAL_LABEL, ISOLATED_LABEL, MANAGED_BY
from aidp.webhook import NOT_A_DEPLOYMENTS_REPLICASET, checked_rules

API_VERSION: Final = "admissionregistration.k8s.io/v1"
# the label that tells which engine rendered an object (the operator prunes the others)
ENGINE_LABEL: Final = "aidp.io/admission-engine"
OPERATOR_LABELS: Final = (APPROVAL_LABEL, ISOLATED_LABEL)

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


def workload_conditions(first: str, name: str, check: str) -> list[dict[str, str]]:
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


def annotation(key: str) -> str:
    return f"variables.ann[?{lit(key)}].orValue('').trim()"


def absent(key: str) -> str:
    return f"!({lit(key)} in variables.ann)"


def selects(selector: str, labels: str) -> str:
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


def object_meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {**MANAGED_BY, ENGINE_LABEL: "vap"}}


def excluded_selector(excluded_namespaces: Sequence[str]) -> dict[str, Any]:
    return {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": sorted(set(excluded_namespaces)),
    }


def not_operator(operator_users: Sequence[str]) -> dict[str, str]:
    return {
        "name": "not-the-operator",
        "expression": f"!(request.userInfo.username in {lit_list(operator_users)})",
    }


def workload_vap(
    name: str,
    param_kind: dict[str, str],
    excluded_namespaces: Sequence[str],
    variables: list[dict[str, Any]],
    validations: list[dict[str, Any]],
    conditions: list[dict[str, str]],
) -> dict[str, Any]:
    """A policy over the workload kinds (every namespace but the excluded), with params;
    `conditions` from `workload_conditions`."""
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": object_meta(name),
        "spec": {
            "failurePolicy": "Fail",
            "paramKind": param_kind,
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [excluded_selector(excluded_namespaces)]},
                "resourceRules": checked_rules(),
            },
            "matchConditions": conditions,
            "variables": variables,
            "validations": validations,
        },
    }
