"""The ValidatingWebhookConfiguration that makes OPA the admission controller (pure rendering)."""

from __future__ import annotations

import base64
from typing import Any

from aidp.config import GOVERNED_LABEL, MANAGED_BY, OperatorConfig

# kinds checked by the admission rules (contract section 3 (docs/policy-contract.md)); ephemeral containers are an
# UPDATE of the pods/ephemeralcontainers subresource
CHECKED_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "v1", ("pods", "pods/ephemeralcontainers")),
    ("apps", "v1", ("deployments", "replicasets", "statefulsets", "daemonsets")),
    ("batch", "v1", ("jobs", "cronjobs")),
)


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
                "clientConfig": client_config,
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
            }
        ],
    }
