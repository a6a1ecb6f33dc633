"""The ValidatingWebhookConfiguration that makes OPA the admission controller (pure rendering)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from aidp.config import (
    APPROVAL_LABEL,
    GOVERNED_LABEL,
    GUARDRAILED_LABEL,
    ISOLATED_LABEL,
    MANAGED_BY,
    OperatorConfig,
)

# kinds checked by the admission rules (contract section 3, docs/policy-contract.md), and the Pod
# subresources that can write what the verdict reads: pods/status keeps the spec but takes the
# submitted labels and annotations; ephemeral containers and resize change the spec
CHECKED_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "v1", ("pods", "pods/status", "pods/ephemeralcontainers", "pods/resize")),
    ("apps", "v1", ("deployments", "replicasets", "statefulsets", "daemonsets")),
    ("batch", "v1", ("jobs", "cronjobs")),
)

# UPDATEs that leave the pod template as it was (a scale, a status write, a finalizer removal, an
# adoption) never leave the API server: whatever the verdict, they are admitted (the Rego decides
# the same, so the two cannot disagree), and an OPA outage cannot block the cluster's controllers.
# For a Pod the template is its labels, annotations and spec; the approval label is compared too:
# only the operator may change it, and the Rego checks who did.
TEMPLATE_CHANGED = " ".join(
    line.strip()
    for line in """
    request.operation != 'UPDATE' || (
      request.kind.kind == 'Pod' ? (
        object.metadata.?labels.orValue({}) != oldObject.metadata.?labels.orValue({}) ||
        object.metadata.?annotations.orValue({}) != oldObject.metadata.?annotations.orValue({}) ||
        object.?spec.orValue({}) != oldObject.?spec.orValue({})
      ) : request.kind.kind == 'CronJob' ? (
        object.?spec.?jobTemplate.?spec.?template.orValue({}) !=
          oldObject.?spec.?jobTemplate.?spec.?template.orValue({})
      ) : object.?spec.?template.orValue({}) != oldObject.?spec.?template.orValue({})
    )
    """.splitlines()
    if line.strip()
)

# The ReplicaSets the deployment controller creates from a Deployment's template never leave the
# API server: the template is the Deployment's, judged when the Deployment was created or its
# template changed, and the Pods the ReplicaSet then gets are judged at their CREATE whatever the
# ReplicaSet's verdict, so no pod can run that admission would refuse (docs/security.md, "Requests
# that never reach OPA"). The controller's user is its own service account with
# --use-service-account-credentials, else kube-controller-manager's.
DEPLOYMENT_CONTROLLERS = (
    "system:serviceaccount:kube-system:deployment-controller",
    "system:kube-controller-manager",
)
NOT_A_DEPLOYMENTS_REPLICASET = (
    "!(request.operation == 'CREATE' && request.kind.kind == 'ReplicaSet' && "
    f"request.userInfo.username in {json.dumps(list(DEPLOYMENT_CONTROLLERS))} && "
    "object.metadata.?ownerReferences.orValue([]).exists(r, r.?controller.orValue(false) == true && "
    "r.kind == 'Deployment'))"
)

OPERATOR_LABELS = (APPROVAL_LABEL, ISOLATED_LABEL)


def checked_rules() -> list[dict[str, Any]]:
    """The admission rules of the requests aidp judges (both engines: the webhook's `rules`, the
    ValidatingAdmissionPolicies' `matchResources.resourceRules`)."""
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


def operator_label_write(operator_users: Sequence[str]) -> str:
    """The operator setting or removing its own labels on a Pod, nothing else changed: the Rego
    admits exactly that (the operator may; what the verdict reads is unchanged), so the request
    need not leave the API server (the approval label's write after every judged pod)."""
    labels = json.dumps(list(OPERATOR_LABELS))
    return (
        "!(request.operation == 'UPDATE' && request.kind.kind == 'Pod' && "
        f"request.userInfo.username in {json.dumps(sorted(set(operator_users)))} && "
        "object.metadata.?annotations.orValue({}) == oldObject.metadata.?annotations.orValue({}) && "
        "object.?spec.orValue({}) == oldObject.?spec.orValue({}) && "
        f"object.metadata.?labels.orValue({{}}).all(k, k in {labels} || "
        "(k in oldObject.metadata.?labels.orValue({}) && "
        "oldObject.metadata.labels[k] == object.metadata.labels[k])) && "
        f"oldObject.metadata.?labels.orValue({{}}).all(k, k in {labels} || "
        "k in object.metadata.?labels.orValue({})))"
    )


# Namespace writes reach OPA only when they change a label that only the operator may set: the
# governed label (the webhook's scope) or the guardrailed label (the bounds' scope)
GOVERNED_LABEL_CHANGED = " || ".join(
    f"object.metadata.?labels[?'{label}'].orValue('') != oldObject.metadata.?labels[?'{label}'].orValue('')"
    for label in (GOVERNED_LABEL, GUARDRAILED_LABEL)
)

# AIDataPolicy writes reach OPA only in namespaces a ClusterAIDataPolicy selects, and only when the
# spec changes (status writes and metadata edits cannot loosen a policy)
SPEC_CHANGED = "request.operation != 'UPDATE' || object.spec != oldObject.spec"


def match_conditions(operator_users: Sequence[str] = ()) -> list[dict[str, str]]:
    """validate.aidp.io's matchConditions: requests that cannot change a verdict stay in the API
    server (all must hold for OPA to be called)."""
    conditions = [
        {"name": "template-changed", "expression": TEMPLATE_CHANGED},
        {"name": "not-a-deployments-replicaset", "expression": NOT_A_DEPLOYMENTS_REPLICASET},
    ]
    if operator_users:
        conditions.append(
            {"name": "not-the-operators-labels", "expression": operator_label_write(operator_users)}
        )
    return conditions


def render(config: OperatorConfig, ca_bundle: bytes, operator_users: Sequence[str] = ()) -> dict[str, Any]:
    """The webhook, scoped to governed namespaces, never the system or the operator's namespace.
    `operator_users`: the operator's user names (its label writes on Pods are not sent)."""
    if config.webhook_url:
        client_config: dict[str, Any] = {"url": config.webhook_url}
    else:
        client_config = {
            "service": {"namespace": config.namespace, "name": config.opa_service, "path": "/", "port": 443}
        }
    client_config["caBundle"] = base64.b64encode(ca_bundle).decode()
    timeout = max(1, min(int(config.webhook_timeout_seconds), 3))
    excluded = {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": sorted(config.all_excluded_namespaces),
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": config.webhook_name, "labels": dict(MANAGED_BY)},
        "webhooks": [
            {
                "name": "validate.aidp.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": timeout,
                "failurePolicy": config.webhook_failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": dict(client_config),
                "matchConditions": match_conditions(operator_users),
                "namespaceSelector": {
                    "matchLabels": {GOVERNED_LABEL: "true"},
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": sorted(config.all_excluded_namespaces),
                        }
                    ],
                },
                "rules": checked_rules(),
            },
            {
                # the webhook's scope is the governed label: a namespace admin allowed to patch their
                # own namespace must not take it out of admission by removing it
                "name": "governed-label.aidp.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": timeout,
                "failurePolicy": config.webhook_failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": dict(client_config),
                "matchConditions": [{"name": "governed-label-changed", "expression": GOVERNED_LABEL_CHANGED}],
                "namespaceSelector": {"matchExpressions": [excluded]},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["namespaces", "namespaces/status", "namespaces/finalize"],
                        "operations": ["UPDATE"],
                        "scope": "Cluster",
                    }
                ],
            },
            {
                # bounds: an AIDataPolicy looser than a ClusterAIDataPolicy selecting its namespace
                "name": "bounds.aidp.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": timeout,
                "failurePolicy": config.webhook_failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": dict(client_config),
                "matchConditions": [{"name": "spec-changed", "expression": SPEC_CHANGED}],
                "namespaceSelector": {
                    "matchLabels": {GUARDRAILED_LABEL: "true"},
                    "matchExpressions": [excluded],
                },
                "rules": [
                    {
                        "apiGroups": ["aidp.io"],
                        "apiVersions": ["v1alpha1"],
                        "resources": ["aidatapolicies"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
            },
        ],
    }
