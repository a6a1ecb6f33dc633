"""aidp.model: parsing AIDataPolicy objects, defaults, validation and the contract's constants."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp import model
from aidp.model import Endpoint, LabelSelector, LabelSelectorRequirement, Policy, PolicyError


def example() -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": "support-summaries", "namespace": "support", "uid": "u-1", "generation": 3},
        "spec": {
            "provider": "openai",
            "dataResidency": "eu",
            "endpoints": [{"host": "myres.openai.azure.com", "port": 443}, {"host": "eu.api.openai.com"}],
            "workloadSelector": {"matchLabels": {"app": "support-bot"}},
            "serviceAccountNames": ["support-bot"],
            "purpose": "Summarise support tickets for agents",
            "consent": {"required": True, "allowedBases": ["consent", "contract"]},
            "retention": {"maxDays": 30, "requireZeroDataRetention": False},
            "dataCategories": {"allowed": ["public", "internal"], "forbidden": ["health"]},
            "enforcement": "warn",
            "review": {"approvedBy": "dpo@example.com", "ticket": "PRIV-123", "expires": "2027-06-30"},
        },
    }


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "provider": "openai",
            "workloadSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "purpose": "x",
            "consent": {"allowedBases": ["consent"]},
            "retention": {"maxDays": 0},
        },
    }


def error_for(obj: Any, **kwargs: Any) -> str:
    with pytest.raises(PolicyError) as info:
        Policy.from_object(obj, **kwargs)
    return str(info.value)


def test_parse_full_example() -> None:
    policy = Policy.from_object(example())
    assert (policy.name, policy.namespace, policy.uid, policy.generation) == (
        "support-summaries",
        "support",
        "u-1",
        3,
    )
    assert policy.ref == "support/support-summaries"
    spec = policy.spec
    assert spec.provider == "openai"
    assert spec.data_residency == "eu"
    assert spec.workload_selector == LabelSelector((("app", "support-bot"),), ())
    assert spec.service_account_names == ("support-bot",)
    assert spec.consent == model.Consent(True, ("consent", "contract"))
    assert spec.retention == model.Retention(30, False)
    assert spec.data_categories == model.DataCategories(("public", "internal"), ("health",))
    assert spec.enforcement == "warn"
    assert spec.review == model.Review("dpo@example.com", "PRIV-123", dt.date(2027, 6, 30))


def test_residency_endpoint_replaces_global_and_endpoints_are_deduplicated() -> None:
    policy = Policy.from_object(example())
    assert policy.spec.provider_endpoint == Endpoint("eu.api.openai.com", 443)
    assert policy.endpoints == (Endpoint("eu.api.openai.com", 443), Endpoint("myres.openai.azure.com", 443))


def test_defaults_like_the_crd() -> None:
    policy = Policy.from_object(minimal())
    spec = policy.spec
    assert policy.uid == ""
    assert policy.generation == 0
    assert spec.data_residency is None
    assert spec.endpoints == ()
    assert policy.endpoints == (Endpoint("api.openai.com", 443),)
    assert spec.service_account_names == ()
    assert spec.consent == model.Consent(True, ("consent",))
    assert spec.retention == model.Retention(0, False)
    assert spec.data_categories == model.DataCategories((), ())
    assert spec.enforcement == "deny"
    assert spec.review == model.Review(None, None, None)
    obj = minimal()
    obj["spec"]["endpoints"] = [{"host": "x.example.com"}]
    assert Policy.from_object(obj).spec.endpoints == (Endpoint("x.example.com", 443),)


def test_namespace_default_and_kind_optional() -> None:
    obj = minimal()
    del obj["metadata"]["namespace"]
    del obj["apiVersion"], obj["kind"]
    assert Policy.from_object(obj, default_namespace="default").namespace == "default"
    assert "metadata.namespace: is required" in error_for(obj)


def test_consent_not_required_needs_no_bases() -> None:
    obj = minimal()
    obj["spec"]["consent"] = {"required": False}
    assert Policy.from_object(obj).spec.consent == model.Consent(False, ())


def test_yaml_date_objects_are_accepted() -> None:
    obj = minimal()
    obj["spec"]["review"] = {"expires": dt.date(2027, 1, 2)}
    assert Policy.from_object(obj).spec.review.expires == dt.date(2027, 1, 2)


def mutate(path: str, value: Any) -> dict[str, Any]:
    obj = example()
    target: Any = obj
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("apiVersion", "aidp.io/v2", "apiVersion: must be aidp.io/v1alpha1, got 'aidp.io/v2'"),
        ("kind", "Pod", "kind: must be AIDataPolicy"),
        ("metadata", None, "metadata: is required"),
        ("metadata.name", "", "metadata.name: must not be empty"),
        ("metadata.name", 5, "metadata.name: must be a string, got the number 5"),
        ("spec", None, "spec: is required"),
        ("spec", [], "spec: must be an object, got a list"),
        (
            "spec.provider",
            "x-ai",
            "spec.provider: unsupported provider 'x-ai'; supported providers: openai, azure-openai, "
            "anthropic, google-gemini, aws-bedrock, mistral, cohere",
        ),
        ("spec.provider", _DELETE, "spec.provider: is required"),
        (
            "spec.dataResidency",
            "de",
            "spec.dataResidency: unsupported value 'de'; supported values: us, eu, au, in, jp",
        ),
        ("spec.purpose", "  ", "spec.purpose: must not be empty"),
        ("spec.purpose", _DELETE, "spec.purpose: is required"),
        ("spec.purpose", "x" * 1025, "spec.purpose: must be at most 1024 characters long"),
        ("spec.workloadSelector", {}, "spec.workloadSelector: must set matchLabels or matchExpressions"),
        ("spec.workloadSelector", _DELETE, "spec.workloadSelector: is required"),
        (
            "spec.workloadSelector",
            {"matchLabels": {}, "matchExpressions": []},
            "an empty selector would select every pod",
        ),
        (
            "spec.workloadSelector.matchLabels",
            {"app": 1},
            "spec.workloadSelector.matchLabels.app: label selector",
        ),
        (
            "spec.workloadSelector",
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "spec.workloadSelector.matchExpressions[0].values: must be non-empty when operator is In",
        ),
        (
            "spec.workloadSelector",
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
            "must be non-empty when operator is NotIn",
        ),
        (
            "spec.workloadSelector",
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            "spec.workloadSelector.matchExpressions[0].values: must be empty when operator is Exists",
        ),
        (
            "spec.workloadSelector",
            {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
            "matchExpressions[0].operator: unsupported value 'Equals'",
        ),
        (
            "spec.workloadSelector",
            {"matchExpressions": [{"key": "a"}]},
            "matchExpressions[0].operator: is required",
        ),
        ("spec.consent.allowedBases", ["whim"], "spec.consent.allowedBases[0]: unsupported value 'whim'"),
        (
            "spec.consent.allowedBases",
            [],
            "spec.consent.allowedBases: must list at least one lawful basis when consent.required is true",
        ),
        ("spec.consent", _DELETE, "spec.consent.allowedBases: must list at least one lawful basis"),
        ("spec.consent.required", "yes", "spec.consent.required: must be a boolean, got the string 'yes'"),
        ("spec.consent.allowedBases", ["consent", "consent"], "allowedBases[1]: duplicate value 'consent'"),
        ("spec.retention", _DELETE, "spec.retention: is required"),
        ("spec.retention.maxDays", _DELETE, "spec.retention.maxDays: is required"),
        ("spec.retention.maxDays", 3651, "spec.retention.maxDays: must be between 0 and 3650, got 3651"),
        ("spec.retention.maxDays", -1, "must be between 0 and 3650, got -1"),
        ("spec.retention.maxDays", "30", "spec.retention.maxDays: must be an integer, got the string '30'"),
        ("spec.retention.maxDays", True, "must be an integer, got a boolean"),
        ("spec.retention.maxDays", 1.5, "must be an integer, got the number 1.5"),
        (
            "spec.dataCategories",
            {"allowed": ["health", "public"], "forbidden": ["health"]},
            "spec.dataCategories: allowed and forbidden must not overlap; both list: health",
        ),
        ("spec.dataCategories.allowed", ["Public"], "spec.dataCategories.allowed[0]: invalid value 'Public'"),
        (
            "spec.dataCategories.allowed",
            "public",
            "spec.dataCategories.allowed: must be a list, got the string",
        ),
        (
            "spec.enforcement",
            "block",
            "spec.enforcement: unsupported value 'block'; supported values: deny, warn",
        ),
        ("spec.endpoints", [{"host": "10.0.0.1"}], "spec.endpoints[0].host: invalid host '10.0.0.1'"),
        ("spec.endpoints", [{"host": "https://x.com"}], "invalid host 'https://x.com'"),
        ("spec.endpoints", [{"host": "localhost"}], "invalid host 'localhost'"),
        ("spec.endpoints", [{"host": "X.example.com"}], "invalid host 'X.example.com'"),
        ("spec.endpoints", [{"port": 443}], "spec.endpoints[0].host: is required"),
        (
            "spec.endpoints",
            [{"host": "x.example.com"}, {"host": "x.example.com", "port": 8443}],
            "spec.endpoints[1].host: duplicate endpoint host 'x.example.com'",
        ),
        (
            "spec.endpoints",
            [{"host": "x.example.com", "port": 0}],
            "spec.endpoints[0].port: must be between 1",
        ),
        ("spec.endpoints", [{"host": "x.example.com", "port": 65536}], "must be between 1 and 65535"),
        ("spec.endpoints", [{"host": f"h{i}.example.com"} for i in range(17)], "must have at most 16 items"),
        ("spec.endpoints", ["x.example.com"], "spec.endpoints[0]: must be an object, got the string"),
        (
            "spec.review.expires",
            "2027-02-30",
            "spec.review.expires: '2027-02-30' is not a valid calendar date",
        ),
        (
            "spec.review.expires",
            "2027-6-30",
            "spec.review.expires: must be a date YYYY-MM-DD, got the string",
        ),
        ("spec.review.expires", "20270630", "must be a date YYYY-MM-DD"),
        ("spec.review.expires", 20270630, "must be a date YYYY-MM-DD, got the number 20270630"),
        ("spec.serviceAccountNames", [None], "spec.serviceAccountNames[0]: must be a string, got null"),
    ],
)
def test_invalid_objects_give_precise_errors(path: str, value: Any, expected: str) -> None:
    message = error_for(mutate(path, value))
    named = "AIDataPolicy " if path.startswith("metadata") else "AIDataPolicy support/support-summaries: "
    assert message.startswith(named)
    assert expected in message


def test_errors_name_the_object_even_when_metadata_is_odd() -> None:
    assert error_for(["not", "an", "object"]) == "AIDataPolicy <unnamed>: must be an object, got a list"
    assert error_for({"metadata": "x"}).startswith("AIDataPolicy <unnamed>: metadata: must be an object")
    obj = minimal()
    obj["metadata"] = {"name": "p"}
    assert error_for(obj, default_namespace="").startswith("AIDataPolicy <no namespace>/p: ")


def test_policy_error_attributes() -> None:
    err = PolicyError("ns/p", "spec.x", "is wrong")
    assert (err.ref, err.path, err.problem) == ("ns/p", "spec.x", "is wrong")
    assert str(err) == "AIDataPolicy ns/p: spec.x: is wrong"
    assert str(PolicyError("ns/p", "", "defined twice")) == "AIDataPolicy ns/p: defined twice"


def test_parse_policies_collects_errors() -> None:
    bad = mutate("spec.provider", "nope")
    policies, errors = model.parse_policies([example(), bad, minimal()])
    assert [p.name for p in policies] == ["support-summaries", "p"]
    assert len(errors) == 1
    assert "unsupported provider 'nope'" in str(errors[0])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "provider",
        "dataResidency",
        "endpoints",
        "workloadSelector",
        "serviceAccountNames",
        "purpose",
        "consent",
        "retention",
        "dataCategories",
        "enforcement",
        "review",
    ]
)


@settings(max_examples=300, deadline=None)
@given(key=spec_keys, value=json_values, top=json_values)
def test_odd_data_never_raises_anything_but_policy_error(key: str, value: Any, top: Any) -> None:
    obj = example()
    obj["spec"][key] = value
    for candidate in (obj, top, {"metadata": top, "spec": value}):
        with contextlib.suppress(PolicyError):
            Policy.from_object(copy.deepcopy(candidate), default_namespace="default")


def test_label_selector_semantics() -> None:
    labels = {"app": "bot", "tier": "web"}
    assert not LabelSelector().matches(labels)
    assert LabelSelector((("app", "bot"),)).matches(labels)
    assert not LabelSelector((("app", "other"),)).matches(labels)

    def req(key: str, op: str, *values: str) -> LabelSelector:
        return LabelSelector((), (LabelSelectorRequirement(key, op, values),))

    assert req("app", "In", "bot", "x").matches(labels)
    assert not req("app", "In", "x").matches(labels)
    assert req("app", "NotIn", "x").matches(labels)
    assert req("missing", "NotIn", "x").matches(labels)
    assert not req("app", "NotIn", "bot").matches(labels)
    assert req("tier", "Exists").matches(labels)
    assert not req("missing", "Exists").matches(labels)
    assert req("missing", "DoesNotExist").matches(labels)
    assert not req("app", "DoesNotExist").matches(labels)
    assert not req("app", "Bogus").matches(labels)
    assert req("app", "In", "bot").to_dict() == {
        "matchLabels": {},
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["bot"]}],
    }


def test_review_expiry_boundary() -> None:
    review = model.Review(expires=dt.date(2027, 6, 30))
    assert not review.expired(dt.date(2027, 6, 30))
    assert review.expired(dt.date(2027, 7, 1))
    assert not model.Review().expired(dt.date(3000, 1, 1))
    policy = Policy.from_object(example())
    assert policy.expired(dt.date(2027, 7, 1))
    assert not policy.expired(dt.date(2027, 6, 1))


def test_checked_kinds() -> None:
    assert [k.kind for k in model.CHECKED_KINDS] == [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
    ]
    deployment = model.checked_kind("apps/v1", "Deployment")
    assert deployment is not None
    assert deployment.resource == "deployments"
    assert deployment.api_version == "apps/v1"
    pod = model.checked_kind("v1", "Pod")
    assert pod is not None
    assert pod.api_version == "v1"
    assert pod.template_path == ()
    cronjob = model.checked_kind("batch/v1", "CronJob")
    assert cronjob is not None
    assert cronjob.template_path == ("spec", "jobTemplate", "spec", "template")
    assert model.checked_kind("extensions/v1beta1", "Deployment") is None
    assert model.checked_kind("v1", "ConfigMap") is None
    assert model.checked_kind(None, "Pod") is None


def test_contract_constants() -> None:
    assert model.RULE_IDS == (
        "review-expired",
        "service-account",
        "consent-basis",
        "retention-days",
        "zero-data-retention",
        "data-categories",
        "host-network",
        "unapproved-ai",
    )
    assert model.LAWFUL_BASES == (
        "consent",
        "contract",
        "legal-obligation",
        "vital-interests",
        "public-task",
        "legitimate-interests",
    )
    assert model.ENFORCEMENT_MODES == ("deny", "warn", "dryrun")
    assert model.WORKLOAD_ANNOTATIONS == (
        "aidp.io/consent-basis",
        "aidp.io/retention-days",
        "aidp.io/data-categories",
        "aidp.io/zero-data-retention",
        "aidp.io/purpose",
    )
    openai = model.PROVIDERS["openai"]
    assert openai.endpoint() == Endpoint("api.openai.com", 443)
    assert [openai.endpoint(r).host for r in openai.regions] == [
        "us.api.openai.com",
        "eu.api.openai.com",
        "au.api.openai.com",
        "in.api.openai.com",
        "jp.api.openai.com",
    ]
