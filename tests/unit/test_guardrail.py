"""aidp.guardrail: the ClusterAIDataPolicy model, its parser and the document the Rego reads.

The API server's side of the agreement (the CRD accepts what the parser accepts, and refuses what it
refuses) is tests/integration/test_guardrail_crd.py.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aidp import lint
from aidp.catalog import builtin
from aidp.catalog.crd import all_regions
from aidp.contract import DEFAULT_EXCLUDED_NAMESPACES, LAWFUL_BASES
from aidp.guardrail import (
    ClusterPolicy,
    ClusterPolicyError,
    is_cluster_policy_object,
    parse_cluster_policies,
    parse_cluster_policy,
)
from aidp.policy import PolicyError
from aidp.selector import LabelSelector, LabelSelectorRequirement, selects

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "guardrails" / "60-guardrail.yaml"


def guardrail(name: str = "org-guardrails", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name, "uid": "u-1", "generation": 3},
        "spec": {"namespaceSelector": {}, **spec},
    }


CONTRACT_SPEC: dict[str, Any] = {
    "namespaceSelector": {},
    "providers": ["openai"],
    "dataResidency": ["eu"],
    "consent": {"allowedBases": ["consent", "contract"]},
    "retention": {"maxDays": 30, "requireZeroDataRetention": False},
    "dataCategories": {"forbidden": ["health", "special-category", "children", "biometric"]},
    "review": {"required": True, "maxValidityDays": 365},
    "unapprovedAI": "audit",
}


def error(obj: Any) -> ClusterPolicyError:
    with pytest.raises(ClusterPolicyError) as err:
        ClusterPolicy.from_object(obj)
    return err.value


# ---- the model ---------------------------------------------------------------------------------------


def test_the_contracts_example_parses_to_every_field() -> None:
    policy = ClusterPolicy.from_object(guardrail(**CONTRACT_SPEC))
    assert policy == ClusterPolicy(
        name="org-guardrails",
        uid="u-1",
        generation=3,
        namespace_selector=LabelSelector(),
        providers=("openai",),
        data_residency=("eu",),
        allowed_bases=("consent", "contract"),
        max_days=30,
        require_zero_data_retention=False,
        forbidden_categories=("health", "special-category", "children", "biometric"),
        review_required=True,
        max_validity_days=365,
        unapproved_ai="audit",
    )
    assert policy.ref == "ClusterAIDataPolicy/org-guardrails"
    assert policy.governed_providers() == ("openai",)


def test_to_document_is_exactly_the_shape_the_rego_reads() -> None:
    spec = {
        **CONTRACT_SPEC,
        "namespaceSelector": {
            "matchLabels": {"aidp.io/guardrail": "org"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
        },
        "unapprovedAI": "deny",
    }
    doc = ClusterPolicy.from_object(guardrail(**spec)).to_document()
    assert doc == {
        "name": "org-guardrails",
        "uid": "u-1",
        "generation": 3,
        "namespaceSelector": {
            "matchLabels": {"aidp.io/guardrail": "org"},
            "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
        },
        "providers": ["openai"],
        "dataResidency": ["eu"],
        "consent": {"allowedBases": ["consent", "contract"]},
        "retention": {"maxDays": 30, "requireZeroDataRetention": False},
        "dataCategories": {"forbidden": ["health", "special-category", "children", "biometric"]},
        "review": {"required": True, "maxValidityDays": 365},
        "unapprovedAI": "deny",
    }
    assert json.loads(json.dumps(doc)) == doc


def test_to_document_leaves_unset_ceilings_out_and_keeps_every_list() -> None:
    policy = ClusterPolicy.from_object(guardrail())
    assert policy.to_document() == {
        "name": "org-guardrails",
        "uid": "u-1",
        "generation": 3,
        "namespaceSelector": {"matchLabels": {}, "matchExpressions": []},
        "providers": [],
        "dataResidency": [],
        "consent": {},
        "retention": {"requireZeroDataRetention": False},
        "dataCategories": {"forbidden": []},
        "review": {"required": False},
        "unapprovedAI": "audit",
    }
    # no providers listed: the whole catalog is governed
    assert policy.governed_providers() == builtin().names
    # `consent: {}` and `retention: {maxDays: 0}`: no ceiling versus the strictest one
    assert ClusterPolicy.from_object(guardrail(consent={})).allowed_bases is None
    zero = ClusterPolicy.from_object(guardrail(retention={"maxDays": 0}))
    assert zero.max_days == 0
    assert zero.to_document()["retention"] == {"maxDays": 0, "requireZeroDataRetention": False}


def test_the_defaults_are_the_crds() -> None:
    policy = ClusterPolicy.from_object(guardrail())
    assert (policy.require_zero_data_retention, policy.review_required, policy.unapproved_ai) == (
        False,
        False,
        "audit",
    )
    assert (policy.providers, policy.data_residency, policy.forbidden_categories) == ((), (), ())
    assert (policy.allowed_bases, policy.max_days, policy.max_validity_days) == (None, None, None)
    # a stored object (the API server applied the defaults) gives the same guardrail
    stored = guardrail()
    stored["spec"].update(
        retention={"requireZeroDataRetention": False}, review={"required": False}, unapprovedAI="audit"
    )
    assert ClusterPolicy.from_object(stored) == policy


# ---- namespaceSelector: {} selects every namespace ------------------------------------------------------


def test_an_empty_namespace_selector_selects_every_namespace_unlike_a_workload_selector() -> None:
    every = ClusterPolicy.from_object(guardrail(namespaceSelector={}))
    for labels in ({}, {"kubernetes.io/metadata.name": "team-a"}, {"aidp.io/guardrail": "org"}):
        assert every.selects_namespace(labels)
    assert not LabelSelector().matches({})  # an AIDataPolicy's empty workloadSelector: nothing
    # excluded namespaces are never governed, whatever the selector says
    for ns in DEFAULT_EXCLUDED_NAMESPACES:
        assert not every.governs(ns, {})
    assert every.governs("team-a", {})
    assert not every.governs("monitoring", {}, excluded=("monitoring",))


def test_a_namespace_selector_selects_by_labels() -> None:
    org = ClusterPolicy.from_object(
        guardrail(namespaceSelector={"matchLabels": {"aidp.io/guardrail": "org"}})
    )
    assert org.selects_namespace({"aidp.io/guardrail": "org", "team": "a"})
    assert not org.selects_namespace({"aidp.io/guardrail": "lab"})
    assert not org.selects_namespace({})
    not_dev = ClusterPolicy.from_object(
        guardrail(
            namespaceSelector={
                "matchExpressions": [
                    {"key": "env", "operator": "NotIn", "values": ["dev", "sandbox"]},
                    {"key": "team", "operator": "Exists"},
                ]
            }
        )
    )
    assert not_dev.selects_namespace({"team": "a"})
    assert not_dev.selects_namespace({"team": "a", "env": "prod"})
    assert not not_dev.selects_namespace({"team": "a", "env": "dev"})
    assert not not_dev.selects_namespace({"env": "prod"})


label_keys = st.sampled_from(["a", "b", "team", "aidp.io/guardrail"])
label_values = st.sampled_from(["", "x", "y", "org"])
requirement = st.one_of(
    st.builds(
        lambda k, op, vs: LabelSelectorRequirement(k, op, tuple(vs)),
        label_keys,
        st.sampled_from(["In", "NotIn"]),
        st.lists(label_values, min_size=1, max_size=3, unique=True),
    ),
    st.builds(
        lambda k, op: LabelSelectorRequirement(k, op), label_keys, st.sampled_from(["Exists", "DoesNotExist"])
    ),
)
selectors = st.builds(
    lambda labels, exprs: LabelSelector(tuple(sorted(labels.items())), tuple(exprs)),
    st.dictionaries(label_keys, label_values, max_size=2),
    st.lists(requirement, max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(selector=selectors, labels=st.dictionaries(label_keys, label_values, max_size=4))
def test_selects_namespace_is_kubernetes_label_selector_semantics(
    selector: LabelSelector, labels: dict[str, str]
) -> None:
    spec_selector = selector.to_dict()
    policy = ClusterPolicy.from_object(
        guardrail(namespaceSelector={k: v for k, v in spec_selector.items() if v})  # empty lists left out
    )
    assert policy.namespace_selector == selector
    # aidp.selector.selects: Kubernetes' own reading (an empty selector selects everything)
    assert policy.selects_namespace(labels) == selects(spec_selector, labels)


# ---- round trip: the document describes the guardrail completely ------------------------------------------


def unique(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=4, unique=True)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


valid_specs = st.fixed_dictionaries(
    {
        "selector": selectors,
        "providers": _maybe(unique(list(builtin().names))),
        "dataResidency": _maybe(unique(all_regions(builtin()))),
        "bases": _maybe(unique(list(LAWFUL_BASES))),
        "maxDays": _maybe(st.integers(0, 3650)),
        "zdr": st.booleans(),
        "forbidden": _maybe(unique(["health", "children", "biometric", "c" * 63])),
        "required": st.booleans(),
        "validity": _maybe(st.integers(1, 3650)),
        "unapproved": st.sampled_from(["deny", "warn", "audit"]),
    }
)


def spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The spec of a ClusterAIDataPolicy that gives this document (the inverse of to_document)."""
    selector = {k: v for k, v in doc["namespaceSelector"].items() if v}
    spec: dict[str, Any] = {"namespaceSelector": selector, "unapprovedAI": doc["unapprovedAI"]}
    for key in ("providers", "dataResidency"):
        if doc[key]:
            spec[key] = doc[key]
    spec["consent"] = doc["consent"]
    spec["retention"] = doc["retention"]
    if doc["dataCategories"]["forbidden"]:
        spec["dataCategories"] = doc["dataCategories"]
    spec["review"] = doc["review"]
    return spec


@settings(max_examples=300, deadline=None)
@given(valid_specs)
def test_the_document_round_trips(drawn: dict[str, Any]) -> None:
    sel = drawn["selector"].to_dict()
    spec: dict[str, Any] = {"namespaceSelector": {k: v for k, v in sel.items() if v}}
    for key, field in (("providers", "providers"), ("dataResidency", "dataResidency")):
        if drawn[key] is not None:
            spec[field] = drawn[key]
    if drawn["bases"] is not None:
        spec["consent"] = {"allowedBases": drawn["bases"]}
    spec["retention"] = {"requireZeroDataRetention": drawn["zdr"]}
    if drawn["maxDays"] is not None:
        spec["retention"]["maxDays"] = drawn["maxDays"]
    if drawn["forbidden"] is not None:
        spec["dataCategories"] = {"forbidden": drawn["forbidden"]}
    spec["review"] = {"required": drawn["required"]}
    if drawn["validity"] is not None:
        spec["review"]["maxValidityDays"] = drawn["validity"]
    spec["unapprovedAI"] = drawn["unapproved"]
    policy = ClusterPolicy.from_object(guardrail(**spec))
    doc = policy.to_document()
    assert ClusterPolicy.from_object(guardrail(**spec_of(doc))) == policy
    assert ("allowedBases" in doc["consent"]) == (drawn["bases"] is not None)
    assert ("maxDays" in doc["retention"]) == (drawn["maxDays"] is not None)
    assert ("maxValidityDays" in doc["review"]) == (drawn["validity"] is not None)


# ---- refusals: precise, with the field, and nothing but ClusterPolicyError ---------------------------


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("x", "ClusterAIDataPolicy <unnamed>: must be an object, got the string 'x'"),
        (None, "ClusterAIDataPolicy <unnamed>: must be an object, got null"),
        ({"spec": {}}, "ClusterAIDataPolicy <unnamed>: metadata: is required"),
        ({"metadata": {"name": "g"}}, "ClusterAIDataPolicy g: spec: is required"),
        (
            {"metadata": {"name": "g"}, "spec": []},
            "ClusterAIDataPolicy g: spec: must be an object, got a list",
        ),
        (
            {"metadata": {"name": "g"}, "spec": {}},
            "ClusterAIDataPolicy g: spec.namespaceSelector: is required",
        ),
        (
            {"metadata": {"name": 7}, "spec": {"namespaceSelector": {}}},
            "ClusterAIDataPolicy <unnamed>: metadata.name: must be a string, got the number 7",
        ),
        (
            {"kind": "AIDataPolicy", "metadata": {"name": "g"}, "spec": {"namespaceSelector": {}}},
            "ClusterAIDataPolicy g: kind: must be ClusterAIDataPolicy, got 'AIDataPolicy'",
        ),
        (
            {"apiVersion": "aidp.io/v2", "metadata": {"name": "g"}, "spec": {"namespaceSelector": {}}},
            "ClusterAIDataPolicy g: apiVersion: must be aidp.io/v1alpha1, got 'aidp.io/v2'",
        ),
    ],
)
def test_odd_objects_are_refused_with_the_guardrails_name(obj: Any, message: str) -> None:
    err = error(obj)
    assert str(err) == message
    assert isinstance(err, PolicyError)


@pytest.mark.parametrize(
    ("spec", "path", "problem"),
    [
        ({"providers": []}, "spec.providers", "list at least one provider, or leave the field out for any"),
        (
            {"dataResidency": []},
            "spec.dataResidency",
            "list at least one residency, or leave the field out for any",
        ),
        (
            {"consent": {"allowedBases": []}},
            "spec.consent.allowedBases",
            "list at least one lawful basis, or leave the field out for no ceiling",
        ),
        (
            {"dataCategories": {"forbidden": []}},
            "spec.dataCategories.forbidden",
            "list at least one category, or leave the field out",
        ),
        (
            {"namespaceSelector": {"matchLabels": {}}},
            "spec.namespaceSelector.matchLabels",
            "list at least one label, or leave the field out (namespaceSelector: {} selects every namespace)",
        ),
        (
            {"namespaceSelector": {"matchExpressions": []}},
            "spec.namespaceSelector.matchExpressions",
            "list at least one requirement, or leave the field out (namespaceSelector: {} selects every "
            "namespace)",
        ),
        (
            {"providers": ["acme-ai"]},
            "spec.providers[0]",
            "unsupported value 'acme-ai'; supported values: " + ", ".join(builtin().names),
        ),
        ({"providers": ["openai", "openai"]}, "spec.providers[1]", "duplicate value 'openai'"),
        ({"providers": "openai"}, "spec.providers", "must be a list, got the string 'openai'"),
        (
            {"dataResidency": ["mars"]},
            "spec.dataResidency[0]",
            "unsupported value 'mars'; supported values: ",
        ),
        (
            {"consent": {"allowedBases": ["vibes"]}},
            "spec.consent.allowedBases[0]",
            "unsupported value 'vibes'",
        ),
        ({"consent": "yes"}, "spec.consent", "must be an object, got the string 'yes'"),
        ({"retention": {"maxDays": 3651}}, "spec.retention.maxDays", "must be between 0 and 3650, got 3651"),
        ({"retention": {"maxDays": -1}}, "spec.retention.maxDays", "must be between 0 and 3650, got -1"),
        ({"retention": {"maxDays": True}}, "spec.retention.maxDays", "must be an integer, got a boolean"),
        ({"retention": {"maxDays": 1.5}}, "spec.retention.maxDays", "must be an integer, got the number 1.5"),
        (
            {"retention": {"requireZeroDataRetention": "true"}},
            "spec.retention.requireZeroDataRetention",
            "must be a boolean, got the string 'true'",
        ),
        (
            {"review": {"maxValidityDays": 0}},
            "spec.review.maxValidityDays",
            "must be between 1 and 3650, got 0",
        ),
        (
            {"review": {"maxValidityDays": 3651}},
            "spec.review.maxValidityDays",
            "must be between 1 and 3650, got 3651",
        ),
        ({"review": {"required": "yes"}}, "spec.review.required", "must be a boolean, got the string 'yes'"),
        (
            {"unapprovedAI": "dryrun"},
            "spec.unapprovedAI",
            "unsupported value 'dryrun'; supported values: deny, warn, audit",
        ),
        (
            {"dataCategories": {"forbidden": ["Health"]}},
            "spec.dataCategories.forbidden[0]",
            "invalid value 'Health'",
        ),
        ({"namespaceSelector": []}, "spec.namespaceSelector", "must be an object, got a list"),
        (
            {"namespaceSelector": {"matchLabels": {"a": 1}}},
            "spec.namespaceSelector.matchLabels.a",
            "must be a string",
        ),
        (
            {"namespaceSelector": {"matchLabels": {"a": "v" * 64}}},
            "spec.namespaceSelector.matchLabels.a",
            "must be at most 63 characters long",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.namespaceSelector.matchExpressions[0].values",
            "must be non-empty when operator is In",
        ),
        (
            {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "spec.namespaceSelector.matchExpressions[0].values",
            "must be empty when operator is Exists",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}},
            "spec.namespaceSelector.matchExpressions[0].key",
            "must not be empty",
        ),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}},
            "spec.namespaceSelector.matchExpressions[0].operator",
            "unsupported value 'Has'",
        ),
    ],
)
def test_bad_fields_are_refused_with_path_and_problem(spec: dict[str, Any], path: str, problem: str) -> None:
    err = error(guardrail("g", **spec))
    assert err.ref == "g"
    assert err.path == path
    assert err.problem.startswith(problem), err.problem
    assert str(err) == f"ClusterAIDataPolicy g: {path}: {err.problem}"


def test_huge_lists_are_refused_quickly() -> None:
    huge = [f"c{i}" for i in range(100_000)]
    start = time.monotonic()
    for spec in (
        {"providers": ["openai"] * 100_000},
        {"dataCategories": {"forbidden": huge}},
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists"}] * 100_000}},
        {"namespaceSelector": {"matchLabels": {c: "v" for c in huge}}},
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": huge}]}},
    ):
        err = error(guardrail("g", **spec))
        assert "at most" in err.problem, err
    assert time.monotonic() - start < 2.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
spec_keys = st.sampled_from(
    [
        "namespaceSelector",
        "providers",
        "dataResidency",
        "consent",
        "retention",
        "dataCategories",
        "review",
        "unapprovedAI",
    ]
)
inner_keys = st.sampled_from(
    [
        "matchLabels",
        "matchExpressions",
        "allowedBases",
        "maxDays",
        "requireZeroDataRetention",
        "forbidden",
        "required",
    ]
)


@settings(max_examples=500, deadline=None)
@given(key=spec_keys, inner=inner_keys, value=json_values, top=json_values)
def test_odd_data_never_raises_anything_but_cluster_policy_error(
    key: str, inner: str, value: Any, top: Any
) -> None:
    obj = guardrail(**CONTRACT_SPEC)
    obj["spec"][key] = value
    nested = guardrail(**CONTRACT_SPEC)
    nested["spec"][key] = {inner: value}
    for candidate in (
        obj,
        nested,
        top,
        {"metadata": top, "spec": value},
        {"metadata": {"name": "g"}, "spec": top},
    ):
        with contextlib.suppress(ClusterPolicyError):
            parse_cluster_policy(copy.deepcopy(candidate))


def test_parse_cluster_policies_collects_the_errors() -> None:
    good = guardrail("good")
    bad = guardrail("bad", providers=[])
    policies, errors = parse_cluster_policies([good, bad, "junk"])
    assert [p.name for p in policies] == ["good"]
    assert [str(e) for e in errors] == [
        "ClusterAIDataPolicy bad: spec.providers: list at least one provider, or leave the field out for any",
        "ClusterAIDataPolicy <unnamed>: must be an object, got the string 'junk'",
    ]


def test_a_namespace_in_metadata_is_ignored() -> None:
    obj = guardrail()
    obj["metadata"]["namespace"] = "team-a"
    assert ClusterPolicy.from_object(obj) == ClusterPolicy.from_object(guardrail())


def test_is_cluster_policy_object() -> None:
    assert is_cluster_policy_object(guardrail())
    assert is_cluster_policy_object({**guardrail(), "apiVersion": "aidp.io/v1beta1"})
    assert not is_cluster_policy_object({**guardrail(), "kind": "AIDataPolicy"})
    assert not is_cluster_policy_object({**guardrail(), "apiVersion": "example.com/v1alpha1"})


# ---- the example ---------------------------------------------------------------------------------


def test_the_example_guardrail_parses_and_lints_clean() -> None:
    (manifest,) = lint.load_files([EXAMPLE])
    crd = lint.crd_kind_of(manifest.obj)
    assert crd is not None and crd.kind == "ClusterAIDataPolicy" and not crd.namespaced
    assert lint.lint_custom_resource(manifest, crd) == []
    policy = ClusterPolicy.from_object(manifest.obj)
    assert policy.name == "org-guardrails"
    assert policy.selects_namespace({"aidp.io/guardrail": "org"})
    assert not policy.selects_namespace({})
    assert (policy.providers, policy.data_residency, policy.allowed_bases) == (
        ("openai",),
        ("eu",),
        ("consent", "contract"),
    )
    assert (policy.max_days, policy.review_required, policy.max_validity_days, policy.unapproved_ai) == (
        30,
        True,
        365,
        "deny",
    )
    assert set(policy.forbidden_categories) == {"health", "special-category", "children", "biometric"}


def test_a_bad_guardrail_is_linted_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(EXAMPLE.read_text().replace("providers: [openai]", "providers: []"))
    (manifest,) = lint.load_files([path])
    crd = lint.crd_kind_of(manifest.obj)
    assert crd is not None
    assert [str(f) for f in lint.lint_custom_resource(manifest, crd)] == [
        f"{path}:17: ClusterAIDataPolicy org-guardrails: spec.providers: providers: list at least one "
        "provider, "
        "or leave the field out for any"
    ]


def test_null_label_values_are_dropped_as_the_api_server_does() -> None:
    """The API server drops a map's null values before validation: {a: null, b: x} is {b: x}, and
    {a: null} is an empty matchLabels (refused). tests/integration/test_guardrail_crd.py shows it."""
    policy = ClusterPolicy.from_object(guardrail(namespaceSelector={"matchLabels": {"a": None, "b": "x"}}))
    assert policy.namespace_selector == LabelSelector((("b", "x"),))
    err = error(guardrail("g", namespaceSelector={"matchLabels": {"a": None}}))
    assert err.path == "spec.namespaceSelector.matchLabels"
    assert err.problem.startswith("list at least one label")
