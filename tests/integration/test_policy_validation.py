"""The API server itself refuses invalid AIDataPolicies (schema + CEL), with precise messages."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import Client
from lightkube.core.exceptions import ApiError

from tests.integration import helpers

CASES: list[tuple[str, dict[str, Any], str]] = [
    ("empty-selector", {"workloadSelector": {}}, "workloadSelector must set matchLabels or matchExpressions"),
    (
        "empty-matchlabels",
        {"workloadSelector": {"matchLabels": {}}},
        "an empty selector would select every pod",
    ),
    ("unknown-provider", {"provider": "acme-ai"}, 'spec.provider: Unsupported value: "acme-ai"'),
    ("unknown-residency", {"dataResidency": "mars"}, 'spec.dataResidency: Unsupported value: "mars"'),
    ("unknown-basis", {"consent": {"allowedBases": ["vibes"]}}, 'Unsupported value: "vibes"'),
    ("unknown-enforcement", {"enforcement": "audit"}, 'spec.enforcement: Unsupported value: "audit"'),
    (
        "allowed-and-forbidden",
        {"dataCategories": {"allowed": ["internal", "health"], "forbidden": ["health"]}},
        "dataCategories.allowed and dataCategories.forbidden must not share a category",
    ),
    ("maxdays-negative", {"retention": {"maxDays": -1}}, "spec.retention.maxDays: Invalid value: -1"),
    ("maxdays-too-big", {"retention": {"maxDays": 3651}}, "spec.retention.maxDays: Invalid value: 3651"),
    ("host-with-scheme", {"endpoints": [{"host": "https://api.example.com"}]}, "spec.endpoints[0].host"),
    ("host-ip", {"endpoints": [{"host": "10.0.0.1"}]}, "spec.endpoints[0].host"),
    ("port-zero", {"endpoints": [{"host": "a.example.com", "port": 0}]}, "spec.endpoints[0].port"),
    ("port-too-big", {"endpoints": [{"host": "a.example.com", "port": 70000}]}, "spec.endpoints[0].port"),
    (
        "duplicate-host",
        {"endpoints": [{"host": "a.example.com"}, {"host": "a.example.com", "port": 8443}]},
        "endpoints must not list the same host twice",
    ),
    ("date-format", {"review": {"expires": "30/06/2027"}}, "spec.review.expires"),
    (
        "date-impossible",
        {"review": {"expires": "2027-02-30"}},
        "review.expires must be a valid calendar date",
    ),
    ("blank-purpose", {"purpose": "   "}, "purpose must not be blank"),
    (
        "consent-without-bases",
        {"consent": {"required": True, "allowedBases": []}},
        "allowedBases",
    ),
    (
        "in-without-values",
        {"workloadSelector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        "matchExpressions with operator In or NotIn must have non-empty values",
    ),
]


@pytest.mark.parametrize(("case", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_invalid_policy_is_rejected_with_a_precise_message(
    kube_client: Client, crds: list[str], namespace: str, case: str, change: dict[str, Any], expected: str
) -> None:
    obj = helpers.policy(case, namespace, **change)
    with pytest.raises(ApiError) as err:
        kube_client.create(helpers.AIDataPolicy(obj))
    assert err.value.status.code == 422
    assert expected in err.value.status.message, err.value.status.message


def test_a_valid_policy_with_every_field_is_accepted(
    kube_client: Client, crds: list[str], namespace: str
) -> None:
    obj = helpers.policy(
        "full",
        namespace,
        dataResidency="eu",
        endpoints=[{"host": "myres.openai.azure.com"}, {"host": "gw.example.com", "port": 8443}],
        workloadSelector={
            "matchLabels": {"app": "bot"},
            "matchExpressions": [{"key": "tier", "operator": "Exists"}],
        },
    )
    created = kube_client.create(helpers.AIDataPolicy(obj))
    assert created["spec"]["endpoints"][0]["port"] == 443
