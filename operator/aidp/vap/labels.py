"""The label guards, no params: `aidp-approval-labels` (only the operator may change aidp.io/approved
and aidp.io/egress-isolated on workloads) and `aidp-governed-label` (only the operator may change
the namespace labels that scope admission)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from aidp.config import GOVERNED_LABEL, GUARDRAILED_LABEL
from aidp.vap.cel import (
    API_VERSION,
    OBJECT_REF,
    OPERATOR_LABELS,
    excluded_selector,
    lit_list,
    not_operator,
    object_meta,
    template_of,
)
from aidp.webhook import checked_rules

APPROVAL_POLICY: Final = "aidp-approval-labels"
NAMESPACE_POLICY: Final = "aidp-governed-label"


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
        "metadata": object_meta(APPROVAL_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {
                    "matchLabels": {GOVERNED_LABEL: "true"},
                    "matchExpressions": [excluded_selector(excluded_namespaces)],
                },
                "resourceRules": checked_rules(),
            },
            "matchConditions": [not_operator(operator_users), changed],
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
        "metadata": object_meta(NAMESPACE_POLICY),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "matchPolicy": "Equivalent",
                "namespaceSelector": {"matchExpressions": [excluded_selector(excluded_namespaces)]},
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
                not_operator(operator_users),
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
