"""The ValidatingWebhookConfiguration that makes OPA the admission controller (pure rendering)."""

from __future__ import annotations

import base64
from typing import Any

from aidp.config import GOVERNED_LABEL, GUARDRAILED_LABEL, MANAGED_BY, OperatorConfig

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

# Namespace writes reach OPA only when they change a label that only the operator may set: the
# governed label (the webhook's scope) or the guardrailed label (the bounds' scope)
GOVERNED_LABEL_CHANGED = " || ".join(
    f"object.metadata.?labels[?'{label}'].orValue('') != oldObject.metadata.?labels[?'{label}'].orValue('')"
    for label in (GOVERNED_LABEL, GUARDRAILED_LABEL)
)

# AIDataPolicy writes reach OPA only in namespaces a ClusterAIDataPolicy selects, and only when the
# spec changes (status writes and metadata edits cannot loosen a policy)
SPEC_CHANGED = "request.operation != 'UPDATE' || object.spec != oldObject.spec"


def render(config: OperatorConfig, ca_bundle: bytes) -> dict[str, Any]:
    """The webhook, scoped to governed namespaces, never the system or the operator's namespace."""
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
                "matchConditions": [{"name": "template-changed", "expression": TEMPLATE_CHANGED}],
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
                "rules": [
                    {
                        "apiGroups": [group],
                        "apiVersions": [version],
                        "resources": list(resources),
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                    for group, version, resources in CHECKED_RULES
                ],
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
