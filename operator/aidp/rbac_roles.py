"""The ClusterRoles that separate who may approve AI use (issue 13, docs/security.md "Who can approve what").

- `aidp-policy-viewer`: read AIDataPolicies; aggregated into the built-in `view`, `edit` and
  `admin` roles, so whoever can see a namespace can see what it approves;
- `aidp-policy-author`: write AIDataPolicies. NOT aggregated: a namespace admin cannot approve AI
  use (and, not holding these permissions, cannot bind the role to themselves); bind it per
  namespace, with a RoleBinding, to whoever approves AI use there;
- `aidp-guardrail-viewer`: read ClusterAIDataPolicies (and every namespace's AIDataPolicies);
- `aidp-guardrail-admin`: write ClusterAIDataPolicies (and read AIDataPolicies); bind it with a
  ClusterRoleBinding to the privacy team. Nothing aggregated grants it.

None of them touches a status subresource beyond reading it: status is the operator's.

The chart ships the same objects (charts/aidp/templates/rbac-roles.yaml, with the chart's labels
added); `aidp dev up` applies `cluster_roles()`. tests/unit/test_rbac_roles.py renders the chart and
compares the two.
"""

from __future__ import annotations

from typing import Any, Final

from aidp.contract import GROUP, PLURAL
from aidp.guardrail import CLUSTER_PLURAL

POLICY_VIEWER: Final = "aidp-policy-viewer"
POLICY_AUTHOR: Final = "aidp-policy-author"
GUARDRAIL_VIEWER: Final = "aidp-guardrail-viewer"
GUARDRAIL_ADMIN: Final = "aidp-guardrail-admin"
ROLE_NAMES: Final = (POLICY_VIEWER, POLICY_AUTHOR, GUARDRAIL_VIEWER, GUARDRAIL_ADMIN)

AGGREGATE_TO: Final = ("view", "edit", "admin")
AGGREGATE_LABEL: Final = "rbac.authorization.k8s.io/aggregate-to-{}"
COMPONENT: Final = "rbac"
# the labels every role carries wherever it is installed (the chart adds its own)
LABELS: Final = {
    "app.kubernetes.io/name": "aidp",
    "app.kubernetes.io/part-of": "aidp",
    "app.kubernetes.io/component": COMPONENT,
}

READ: Final = ("get", "list", "watch")
WRITE: Final = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


def _rule(resources: tuple[str, ...], verbs: tuple[str, ...]) -> dict[str, Any]:
    return {"apiGroups": [GROUP], "resources": list(resources), "verbs": list(verbs)}


def _role(
    name: str, rules: list[dict[str, Any]], extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {**LABELS, **(extra_labels or {})}},
        "rules": rules,
    }


def cluster_roles() -> list[dict[str, Any]]:
    """The four ClusterRoles, as Kubernetes objects (plain dicts), in a fixed order."""
    policies = (PLURAL, f"{PLURAL}/status")
    guardrails = (CLUSTER_PLURAL, f"{CLUSTER_PLURAL}/status")
    return [
        _role(
            POLICY_VIEWER,
            [_rule(policies, READ)],
            {AGGREGATE_LABEL.format(role): "true" for role in AGGREGATE_TO},
        ),
        _role(POLICY_AUTHOR, [_rule((PLURAL,), WRITE), _rule((f"{PLURAL}/status",), READ)]),
        _role(GUARDRAIL_VIEWER, [_rule(guardrails, READ), _rule(policies, READ)]),
        _role(
            GUARDRAIL_ADMIN,
            [
                _rule((CLUSTER_PLURAL,), WRITE),
                _rule((f"{CLUSTER_PLURAL}/status",), READ),
                _rule(policies, READ),
            ],
        ),
    ]
