"""aidp.webhook: the ValidatingWebhookConfiguration that sends checked requests to OPA."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration

from aidp import model, webhook
from aidp.config import GOVERNED_LABEL, OperatorConfig
from aidp.model import LabelSelector, LabelSelectorRequirement

BUNDLE = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"


def the_webhook(config: OperatorConfig, bundle: bytes = BUNDLE) -> dict[str, Any]:
    vwc = webhook.render(config, bundle)
    assert [h["name"] for h in vwc["webhooks"]] == [
        "validate.aidp.io",
        "governed-label.aidp.io",
        "bounds.aidp.io",
    ]
    hook: dict[str, Any] = vwc["webhooks"][0]
    return hook


def test_the_governed_label_webhook_sees_namespace_label_changes_only() -> None:
    """A namespace admin must not take their namespace out of admission; only changes of the
    governed label reach OPA (matchConditions), every namespace but the excluded ones."""
    config = OperatorConfig()
    hook = webhook.render(config, BUNDLE)["webhooks"][1]
    assert hook["rules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["namespaces", "namespaces/status", "namespaces/finalize"],
            "operations": ["UPDATE"],
            "scope": "Cluster",
        }
    ]
    assert hook["matchConditions"] == [
        {"name": "governed-label-changed", "expression": webhook.GOVERNED_LABEL_CHANGED}
    ]
    assert GOVERNED_LABEL in webhook.GOVERNED_LABEL_CHANGED
    assert hook["failurePolicy"] == config.webhook_failure_policy
    [excluded] = hook["namespaceSelector"]["matchExpressions"]
    assert set(excluded["values"]) == set(config.all_excluded_namespaces)


def test_unchanged_templates_never_leave_the_api_server() -> None:
    hook = the_webhook(OperatorConfig())
    assert hook["matchConditions"] == [
        {"name": "template-changed", "expression": webhook.TEMPLATE_CHANGED},
        {"name": "not-a-deployments-replicaset", "expression": webhook.NOT_A_DEPLOYMENTS_REPLICASET},
    ]
    for part in ("request.operation != 'UPDATE'", "spec.?template", "jobTemplate", "metadata.?labels"):
        assert part in webhook.TEMPLATE_CHANGED


def namespace_selector(config: OperatorConfig) -> LabelSelector:
    """The rendered namespaceSelector, as a selector that can be evaluated."""
    sel = the_webhook(config)["namespaceSelector"]
    assert set(sel) <= {"matchLabels", "matchExpressions"}
    return LabelSelector(
        tuple(sorted(sel.get("matchLabels", {}).items())),
        tuple(
            LabelSelectorRequirement(e["key"], e["operator"], tuple(e.get("values", ())))
            for e in sel.get("matchExpressions", [])
        ),
    )


def ns_labels(name: str, governed: bool = True) -> dict[str, str]:
    """A namespace's labels as the API server sets them (name label) plus aidp's governed label."""
    labels = {"kubernetes.io/metadata.name": name}
    if governed:
        labels[GOVERNED_LABEL] = "true"
    return labels


def test_valid_object_with_fixed_settings() -> None:
    config = OperatorConfig()
    vwc = webhook.render(config, BUNDLE)
    assert vwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert vwc["kind"] == "ValidatingWebhookConfiguration"
    assert vwc["metadata"]["name"] == config.webhook_name
    assert vwc["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "aidp"}
    hook = the_webhook(config)
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["name"].count(".") >= 2  # a fully qualified webhook name, as the API requires
    # lightkube's model accepts it (field names and types as the API expects)
    parsed = ValidatingWebhookConfiguration.from_dict(vwc)
    assert isinstance(parsed, ValidatingWebhookConfiguration)
    assert parsed.webhooks is not None
    assert parsed.webhooks[0].sideEffects == "None"
    assert parsed.webhooks[0].clientConfig.caBundle == base64.b64encode(BUNDLE).decode()


@pytest.mark.parametrize(
    ("configured", "rendered"), [(30, 3), (10, 3), (3, 3), (2, 2), (1, 1), (0, 1), (-5, 1)]
)
def test_timeout_is_clamped_to_at_most_three_seconds(configured: int, rendered: int) -> None:
    assert the_webhook(OperatorConfig(webhook_timeout_seconds=configured))["timeoutSeconds"] == rendered


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_failure_policy_from_config(policy: str) -> None:
    assert the_webhook(OperatorConfig(webhook_failure_policy=policy))["failurePolicy"] == policy


def test_failure_policy_defaults_to_fail_closed() -> None:
    assert the_webhook(OperatorConfig())["failurePolicy"] == "Fail"


def test_rules_cover_every_checked_kind_on_create_and_update_only() -> None:
    rules = the_webhook(OperatorConfig())["rules"]
    covered: set[tuple[str, str, str]] = set()
    for rule in rules:
        assert rule["operations"] == ["CREATE", "UPDATE"]
        assert rule["scope"] == "Namespaced"
        covered |= {
            (g, v, r) for g in rule["apiGroups"] for v in rule["apiVersions"] for r in rule["resources"]
        }
    assert covered == {
        ("", "v1", "pods"),
        # the Pod subresources that can write what the verdict reads (labels, annotations, spec)
        ("", "v1", "pods/status"),
        ("", "v1", "pods/ephemeralcontainers"),
        ("", "v1", "pods/resize"),
        ("apps", "v1", "deployments"),
        ("apps", "v1", "replicasets"),
        ("apps", "v1", "statefulsets"),
        ("apps", "v1", "daemonsets"),
        ("batch", "v1", "jobs"),
        ("batch", "v1", "cronjobs"),
    }
    # the same kinds as the model's table of checked kinds (plus the ephemeral containers subresource)
    assert {(g, v, r) for g, v, r in covered if "/" not in r} == {
        (k.group, k.version, k.resource) for k in model.CHECKED_KINDS
    }
    assert not any(op in {"DELETE", "CONNECT", "*"} for rule in rules for op in rule["operations"])


def test_namespace_selector_requires_the_governed_label() -> None:
    sel = namespace_selector(OperatorConfig())
    assert sel.matches(ns_labels("support"))
    assert not sel.matches(ns_labels("support", governed=False))
    assert not sel.matches({**ns_labels("support"), GOVERNED_LABEL: "false"})


@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "aidp-system"])
def test_namespace_selector_excludes_system_and_operator_namespaces(name: str) -> None:
    # even when someone labels them governed by hand
    assert not namespace_selector(OperatorConfig()).matches(ns_labels(name))


def test_namespace_selector_excludes_the_configured_operator_namespace_and_exclusions() -> None:
    config = OperatorConfig(namespace="aidp-prod", excluded_namespaces=("monitoring", "kube-system"))
    sel = namespace_selector(config)
    for name in ("kube-system", "kube-public", "kube-node-lease", "aidp-prod", "monitoring"):
        assert not sel.matches(ns_labels(name)), name
    assert sel.matches(ns_labels("aidp-system"))  # the default operator namespace is not special here
    assert sel.matches(ns_labels("support"))
    values = the_webhook(config)["namespaceSelector"]["matchExpressions"][0]["values"]
    assert len(values) == len(set(values))  # no duplicates


def test_service_client_config_by_default() -> None:
    config = OperatorConfig(namespace="aidp-prod", opa_service="opa")
    client = the_webhook(config)["clientConfig"]
    assert "url" not in client
    assert client["service"] == {"namespace": "aidp-prod", "name": "opa", "path": "/", "port": 443}


def test_url_client_config_when_a_url_is_configured() -> None:
    config = OperatorConfig(webhook_url="https://127.0.0.1:8443/")
    client = the_webhook(config)["clientConfig"]
    assert client["url"] == "https://127.0.0.1:8443/"
    assert "service" not in client


@pytest.mark.parametrize("url", [None, "https://127.0.0.1:8443/"])
def test_ca_bundle_is_the_base64_of_the_given_bundle(url: str | None) -> None:
    two_cas = BUNDLE + BUNDLE.replace(b"MIIB", b"MIIC")
    client = the_webhook(OperatorConfig(webhook_url=url), two_cas)["clientConfig"]
    assert base64.b64decode(client["caBundle"], validate=True) == two_cas


def test_requests_that_cannot_change_a_verdict_stay_in_the_api_server() -> None:
    """The deployment controller's ReplicaSets (their pods are judged) and, once the operator's
    user is known, its own label writes on Pods (docs/security.md); tests/integration/
    test_webhook_calls.py shows both on a real control plane."""
    assert "'ReplicaSet'" in webhook.NOT_A_DEPLOYMENTS_REPLICASET
    assert "system:serviceaccount:kube-system:deployment-controller" in webhook.NOT_A_DEPLOYMENTS_REPLICASET
    assert "r.kind == 'Deployment'" in webhook.NOT_A_DEPLOYMENTS_REPLICASET
    assert "'Pod'" not in webhook.NOT_A_DEPLOYMENTS_REPLICASET  # every Pod CREATE is judged
    hook = webhook.render(OperatorConfig(), BUNDLE, ("system:serviceaccount:aidp-system:aidp-operator",))
    [*_, last] = hook["webhooks"][0]["matchConditions"]
    assert last["name"] == "not-the-operators-labels"
    assert '["system:serviceaccount:aidp-system:aidp-operator"]' in last["expression"]
    assert "request.operation == 'UPDATE' && request.kind.kind == 'Pod'" in last["expression"]
    assert '["aidp.io/approved", "aidp.io/egress-isolated"]' in last["expression"]
