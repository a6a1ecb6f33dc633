"""The ClusterAIDataPolicy CRD on the real API server, and the parser (aidp.guardrail) agreeing with it.

Every object here is sent as a server-side **dry-run** create (the whole admission chain: decoding,
schema, CEL, defaulting, pruning; nothing stored), so no guardrail ever governs the session's
namespaces. For each hostile case: the API server refuses it with a precise message and the parser
refuses it too, or the API server accepts it and the parser accepts both what was sent and what the
server returned (with its defaults), giving the same guardrail. Generated objects (hypothesis) check
the same agreement on a few hundred more.
"""

from __future__ import annotations

import copy
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidp.catalog import builtin
from aidp.catalog.crd import all_regions
from aidp.contract import LAWFUL_BASES
from aidp.devcluster import ControlPlane
from aidp.guardrail import ClusterPolicy, ClusterPolicyError
from aidp.policy import PolicyError

ROOT = Path(__file__).resolve().parents[2]
PATH = "/apis/aidp.io/v1alpha1/clusteraidatapolicies"
# a label no namespace carries: even a stored object would govern nothing
NOWHERE = {"matchLabels": {"aidp.test/guardrail-crd": "nowhere"}}


class RawApi:
    """POSTs ClusterAIDataPolicies as raw JSON with the admin client certificate (typed objects
    could not carry wrong types or unknown fields)."""

    def __init__(self, cp: ControlPlane) -> None:
        ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        ctx.load_cert_chain(str(cp.pki_dir / "admin.crt"), str(cp.pki_dir / "admin.key"))
        self.http = httpx.Client(base_url=cp.server, verify=ctx, trust_env=False, timeout=30.0)

    def dry_run_create(self, obj: Any, *, validation: str = "Ignore") -> httpx.Response:
        return self.http.post(
            PATH,
            params={"dryRun": "All", "fieldValidation": validation},
            content=json.dumps(obj, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )


@pytest.fixture(scope="module")
def raw_api(control_plane: ControlPlane, crds: list[str]) -> Iterator[RawApi]:
    assert "clusteraidatapolicies.aidp.io" in crds
    api = RawApi(control_plane)
    yield api
    api.http.close()


def guardrail(name: str = "g", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "ClusterAIDataPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": NOWHERE, **spec},
    }


def comparable(policy: ClusterPolicy) -> dict[str, Any]:
    doc = policy.to_document()
    del doc["uid"], doc["generation"]  # the server assigns them
    return doc


def agree(api: RawApi, obj: Any) -> tuple[bool, str]:
    """Send `obj`; assert the parser agrees with the API server. Returns (accepted, message)."""
    response = api.dry_run_create(obj)
    if response.status_code == 201:
        returned = response.json()
        try:
            sent = ClusterPolicy.from_object(obj)
            stored = ClusterPolicy.from_object(returned)
        except PolicyError as err:
            raise AssertionError(f"the API server accepted what the parser refuses: {err}\n{obj}") from err
        assert comparable(sent) == comparable(stored), (obj, returned)
        assert stored.uid == returned["metadata"].get("uid", "")
        return True, ""
    assert response.status_code in (400, 422), (response.status_code, response.text[:2000], obj)
    message = str(response.json().get("message", ""))
    assert message, response.text
    with pytest.raises(ClusterPolicyError) as err:
        ClusterPolicy.from_object(obj)
    assert isinstance(err.value, PolicyError)
    assert str(err.value).startswith("ClusterAIDataPolicy "), str(err.value)
    return False, message


# ---- the contract's example and the repository's example are accepted ------------------------------


def test_the_contracts_example_is_accepted_with_its_defaults(raw_api: RawApi) -> None:
    obj = guardrail(
        "org-guardrails",
        providers=["openai"],
        dataResidency=["eu"],
        consent={"allowedBases": ["consent", "contract"]},
        retention={"maxDays": 30, "requireZeroDataRetention": False},
        dataCategories={"forbidden": ["health", "special-category", "children", "biometric"]},
        review={"required": True, "maxValidityDays": 365},
        unapprovedAI="audit",
    )
    assert agree(raw_api, obj) == (True, "")
    minimal = raw_api.dry_run_create(guardrail("minimal", namespaceSelector={}))
    assert minimal.status_code == 201, minimal.text
    spec = minimal.json()["spec"]
    # the CRD's defaults, as the parser applies them
    assert spec == {
        "namespaceSelector": {},
        "retention": {"requireZeroDataRetention": False},
        "review": {"required": False},
        "unapprovedAI": "audit",
    }
    parsed = ClusterPolicy.from_object(minimal.json())
    assert parsed.selects_namespace({}) and parsed.selects_namespace({"any": "label"})
    assert (parsed.providers, parsed.allowed_bases, parsed.max_days, parsed.unapproved_ai) == (
        (),
        None,
        None,
        "audit",
    )


def test_the_example_guardrail_is_accepted(raw_api: RawApi) -> None:
    (obj,) = [
        d for d in yaml.safe_load_all((ROOT / "examples/guardrails/60-guardrail.yaml").read_text()) if d
    ]
    response = raw_api.dry_run_create(obj, validation="Strict")
    assert response.status_code == 201, response.text
    assert agree(raw_api, obj) == (True, "")


# ---- hostile cases: refused by both with a precise message, or accepted by both ----------------------

TOO_MANY_LABELS = {f"k{i}": "v" for i in range(33)}
ALL_LABELS = {f"k{i}": "v" for i in range(32)}

# (case, spec changes, the API server's message, or None when the object is valid)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # empty-but-present lists
    (
        "providers-empty",
        {"providers": []},
        "providers: list at least one provider, or leave the field out for any",
    ),
    (
        "residency-empty",
        {"dataResidency": []},
        "dataResidency: list at least one residency, or leave the field out for any",
    ),
    (
        "bases-empty",
        {"consent": {"allowedBases": []}},
        "consent.allowedBases: list at least one lawful basis, or leave the field out for no ceiling",
    ),
    (
        "forbidden-empty",
        {"dataCategories": {"forbidden": []}},
        "dataCategories.forbidden: list at least one category, or leave the field out",
    ),
    (
        "selector-labels-empty",
        {"namespaceSelector": {"matchLabels": {}}},
        "namespaceSelector.matchLabels: list at least one label, or leave the field out",
    ),
    (
        "selector-expressions-empty",
        {"namespaceSelector": {"matchExpressions": []}},
        "namespaceSelector.matchExpressions: list at least one requirement, or leave the field out",
    ),
    # unknown values
    ("provider-unknown", {"providers": ["acme-ai"]}, 'spec.providers[0]: Unsupported value: "acme-ai"'),
    ("provider-case", {"providers": ["OpenAI"]}, 'spec.providers[0]: Unsupported value: "OpenAI"'),
    ("residency-unknown", {"dataResidency": ["mars"]}, 'spec.dataResidency[0]: Unsupported value: "mars"'),
    (
        "basis-unknown",
        {"consent": {"allowedBases": ["consent", "vibes"]}},
        'spec.consent.allowedBases[1]: Unsupported value: "vibes"',
    ),
    ("unapproved-unknown", {"unapprovedAI": "dryrun"}, 'spec.unapprovedAI: Unsupported value: "dryrun"'),
    ("unapproved-case", {"unapprovedAI": "Deny"}, 'spec.unapprovedAI: Unsupported value: "Deny"'),
    ("category-upper", {"dataCategories": {"forbidden": ["Health"]}}, "spec.dataCategories.forbidden[0]"),
    ("category-long", {"dataCategories": {"forbidden": ["c" * 64]}}, "spec.dataCategories.forbidden[0]"),
    ("operator-unknown", {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}, "Is"),
    # ranges
    ("maxdays-negative", {"retention": {"maxDays": -1}}, "spec.retention.maxDays: Invalid value: -1"),
    ("maxdays-too-big", {"retention": {"maxDays": 3651}}, "spec.retention.maxDays: Invalid value: 3651"),
    ("validity-zero", {"review": {"maxValidityDays": 0}}, "spec.review.maxValidityDays: Invalid value: 0"),
    ("validity-too-big", {"review": {"maxValidityDays": 3651}}, "spec.review.maxValidityDays: Invalid value"),
    # wrong types
    ("providers-string", {"providers": "openai"}, "spec.providers: Invalid value"),
    ("providers-object", {"providers": {"openai": True}}, "spec.providers: Invalid value"),
    ("maxdays-string", {"retention": {"maxDays": "30"}}, "spec.retention.maxDays: Invalid value"),
    ("maxdays-float", {"retention": {"maxDays": 30.5}}, "spec.retention.maxDays"),
    (
        "zdr-string",
        {"retention": {"requireZeroDataRetention": "true"}},
        "spec.retention.requireZeroDataRetention",
    ),
    ("review-required-int", {"review": {"required": 1}}, "spec.review.required"),
    ("consent-list", {"consent": ["consent"]}, "spec.consent: Invalid value"),
    ("selector-list", {"namespaceSelector": [{"matchLabels": {"a": "b"}}]}, "spec.namespaceSelector"),
    (
        "selector-value-int",
        {"namespaceSelector": {"matchLabels": {"a": 1}}},
        "spec.namespaceSelector.matchLabels.a",
    ),
    ("provider-item-int", {"providers": [1]}, "spec.providers[0]"),
    # bounded sizes and sets
    (
        "providers-duplicate",
        {"providers": ["openai", "openai"]},
        'spec.providers[1]: Duplicate value: "openai"',
    ),
    (
        "forbidden-huge",
        {"dataCategories": {"forbidden": [f"c{i}" for i in range(65)]}},
        "spec.dataCategories.forbidden: Too many: 65: must have at most 64 items",
    ),
    ("selector-labels-huge", {"namespaceSelector": {"matchLabels": TOO_MANY_LABELS}}, "Too many: 33"),
    (
        "selector-expressions-huge",
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": f"k{i}", "operator": "Exists"} for i in range(33)]
            }
        },
        "Too many: 33",
    ),
    ("label-value-long", {"namespaceSelector": {"matchLabels": {"a": "v" * 64}}}, "Too long"),
    (
        "in-without-values",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
        "matchExpressions with operator In or NotIn must have non-empty values",
    ),
    (
        "in-with-empty-values",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]}},
        "matchExpressions with operator In or NotIn must have non-empty values",
    ),
    (
        "exists-with-values",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
        "matchExpressions with operator Exists or DoesNotExist must not have values",
    ),
    (
        "expression-empty-key",
        {"namespaceSelector": {"matchExpressions": [{"key": "", "operator": "Exists"}]}},
        "key",
    ),
    ("expression-no-operator", {"namespaceSelector": {"matchExpressions": [{"key": "a"}]}}, "operator"),
    # nulls
    ("selector-null", {"namespaceSelector": None}, "namespaceSelector"),
    ("provider-item-null", {"providers": [None]}, "spec.providers[0]"),
    # the API server drops a null map value: {a: null} is an empty matchLabels
    ("label-value-null", {"namespaceSelector": {"matchLabels": {"a": None}}}, "list at least one label"),
    ("label-value-null-and-another", {"namespaceSelector": {"matchLabels": {"a": None, "b": "x"}}}, None),
    (
        "expression-values-null",
        {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": None}]}},
        None,
    ),
    ("expression-null-item", {"namespaceSelector": {"matchExpressions": [None]}}, "matchExpressions[0]"),
    ("review-null", {"review": None, "retention": None, "dataCategories": None}, None),
    ("forbidden-null", {"dataCategories": {"forbidden": None}}, None),
    ("providers-null", {"providers": None}, None),
    ("consent-null", {"consent": None}, None),
    ("maxdays-null", {"retention": {"maxDays": None}}, None),
    ("unapproved-null", {"unapprovedAI": None}, None),
    # valid, at the edges
    ("selector-empty", {"namespaceSelector": {}}, None),
    ("selector-32-labels", {"namespaceSelector": {"matchLabels": ALL_LABELS}}, None),
    (
        "selector-both",
        {
            "namespaceSelector": {
                "matchLabels": {"team": "\U0001f916"},
                "matchExpressions": [
                    {"key": "env", "operator": "NotIn", "values": ["dev", "sandbox"]},
                    {"key": "aidp.io/guardrail", "operator": "Exists", "values": []},
                    {"key": "k" * 317, "operator": "DoesNotExist"},
                ],
            }
        },
        None,
    ),
    ("every-provider", {"providers": list(builtin().names)}, None),
    ("every-residency", {"dataResidency": all_regions(builtin())}, None),
    ("every-basis", {"consent": {"allowedBases": list(LAWFUL_BASES)}}, None),
    ("consent-without-ceiling", {"consent": {}}, None),
    ("maxdays-zero", {"retention": {"maxDays": 0, "requireZeroDataRetention": True}}, None),
    ("maxdays-max", {"retention": {"maxDays": 3650}}, None),
    ("validity-bounds", {"review": {"required": True, "maxValidityDays": 1}}, None),
    ("validity-max", {"review": {"maxValidityDays": 3650}}, None),
    ("forbidden-64", {"dataCategories": {"forbidden": [f"c{i}" for i in range(64)]}}, None),
    ("forbidden-63-chars", {"dataCategories": {"forbidden": ["c" * 63, "a.b_c-d"]}}, None),
    ("each-mode", {"unapprovedAI": "deny"}, None),
    ("warn", {"unapprovedAI": "warn"}, None),
    # unknown fields are pruned by the API server (the linter, `aidp check`, names them)
    ("unknown-field", {"providerz": ["openai"], "consent": {"allowedBasis": ["x"]}}, None),
]


@pytest.mark.parametrize(("case", "change", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_guardrails_get_the_same_answer_from_the_api_server_and_the_parser(
    raw_api: RawApi, case: str, change: dict[str, Any], expected: str | None
) -> None:
    obj = guardrail(case, **change)
    accepted, message = agree(raw_api, obj)
    if expected is None:
        assert accepted, message
    else:
        assert not accepted, f"{case} was accepted"
        assert expected in message, message


@pytest.mark.parametrize(
    ("case", "obj"),
    [
        (
            "no-spec",
            {"apiVersion": "aidp.io/v1alpha1", "kind": "ClusterAIDataPolicy", "metadata": {"name": "x"}},
        ),
        (
            "spec-string",
            {
                "apiVersion": "aidp.io/v1alpha1",
                "kind": "ClusterAIDataPolicy",
                "metadata": {"name": "x"},
                "spec": "x",
            },
        ),
        (
            "no-selector",
            {
                "apiVersion": "aidp.io/v1alpha1",
                "kind": "ClusterAIDataPolicy",
                "metadata": {"name": "x"},
                "spec": {},
            },
        ),
    ],
)
def test_objects_without_a_usable_spec_are_refused_by_both(
    raw_api: RawApi, case: str, obj: dict[str, Any]
) -> None:
    accepted, message = agree(raw_api, obj)
    assert not accepted, case
    assert "spec" in message, message


def test_a_namespace_in_metadata_is_cleared_as_for_any_cluster_scoped_object(raw_api: RawApi) -> None:
    obj = guardrail("with-namespace")
    obj["metadata"]["namespace"] = "default"
    response = raw_api.dry_run_create(obj)
    assert response.status_code == 201, response.text
    assert "namespace" not in response.json()["metadata"]
    assert agree(raw_api, obj) == (True, "")


# ---- generated guardrails ------------------------------------------------------------------------------

ABSENT: Any = object()


def _obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(ABSENT), strategy)


JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5000), st.text(max_size=6), st.just([]), st.just({})
)
label_key = st.sampled_from(["team", "aidp.io/guardrail", "k" * 317, "\u202ek", "\U0001f916"])
label_value = st.sampled_from(["", "org", "v" * 63, "\U0001f916", "a b"])
expression = st.one_of(
    _obj(
        key=label_key,
        operator=st.sampled_from(["In", "NotIn"]),
        values=st.lists(label_value, min_size=1, max_size=3, unique=True),
    ),
    _obj(key=label_key, operator=st.sampled_from(["Exists", "DoesNotExist"]), values=_maybe(st.just([]))),
)
selector = st.one_of(
    st.just({}),
    st.just(NOWHERE),
    _obj(
        matchLabels=_maybe(st.dictionaries(label_key, label_value, min_size=1, max_size=3)),
        matchExpressions=_maybe(st.lists(expression, min_size=1, max_size=3)),
    ),
)
unique = {"min_size": 1, "max_size": 3, "unique": True}
valid_spec = _obj(
    namespaceSelector=selector,
    providers=_maybe(st.lists(st.sampled_from(builtin().names), **unique)),
    dataResidency=_maybe(st.lists(st.sampled_from(all_regions(builtin())), **unique)),
    consent=_maybe(_obj(allowedBases=_maybe(st.lists(st.sampled_from(LAWFUL_BASES), **unique)))),
    retention=_maybe(
        _obj(
            maxDays=_maybe(st.integers(0, 3650)),
            requireZeroDataRetention=_maybe(st.booleans()),
        )
    ),
    dataCategories=_maybe(
        _obj(
            forbidden=_maybe(st.lists(st.sampled_from(["health", "children", "c" * 63, "a.b_c-d"]), **unique))
        )
    ),
    review=_maybe(_obj(required=_maybe(st.booleans()), maxValidityDays=_maybe(st.integers(1, 3650)))),
    unapprovedAI=_maybe(st.sampled_from(["deny", "warn", "audit"])),
)
# hostile mutations: (path, value put there)
MUTATIONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (
        ("namespaceSelector",),
        st.one_of(JUNK, st.just({"matchLabels": {}}), st.just({"matchExpressions": []})),
    ),
    (("namespaceSelector", "matchLabels"), st.one_of(JUNK, st.just({"a": "v" * 64}), st.just({"a": 1}))),
    (
        ("namespaceSelector", "matchExpressions"),
        st.one_of(
            JUNK,
            st.lists(_obj(key=st.one_of(label_key, JUNK), operator=JUNK, values=_maybe(JUNK)), max_size=2),
        ),
    ),
    (
        ("providers",),
        st.one_of(JUNK, st.lists(st.sampled_from(["openai", "acme", "OpenAI", ""]), max_size=3)),
    ),
    (("dataResidency",), st.one_of(JUNK, st.lists(st.sampled_from(["eu", "EU", "mars"]), max_size=3))),
    (("consent",), JUNK),
    (
        ("consent", "allowedBases"),
        st.one_of(JUNK, st.lists(st.sampled_from(["consent", "vibes"]), max_size=3)),
    ),
    (("retention",), JUNK),
    (("retention", "maxDays"), st.one_of(JUNK, st.sampled_from([-1, 3651, 30.5, 2**40]))),
    (("retention", "requireZeroDataRetention"), JUNK),
    (
        ("dataCategories", "forbidden"),
        st.one_of(JUNK, st.lists(st.sampled_from(["Health", "c" * 64, "-x"]), max_size=2)),
    ),
    (("review",), JUNK),
    (("review", "required"), JUNK),
    (("review", "maxValidityDays"), st.one_of(JUNK, st.sampled_from([0, 3651, 1.5]))),
    (("unapprovedAI",), st.one_of(JUNK, st.sampled_from(["Deny", "dryrun", ""]))),
]


@st.composite
def hostile_spec(draw: st.DrawFn) -> dict[str, Any]:
    out = copy.deepcopy(draw(valid_spec))
    for i in draw(st.lists(st.integers(0, len(MUTATIONS) - 1), max_size=2)):
        path, strategy = MUTATIONS[i]
        node: Any = out
        for step in path[:-1]:
            if not isinstance(node.get(step), dict):
                node[step] = {}
            node = node[step]
        node[path[-1]] = draw(strategy)
    return out


def test_generated_guardrails_get_the_same_answer_from_the_api_server_and_the_parser(raw_api: RawApi) -> None:
    outcomes = {True: 0, False: 0}

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_spec())
    def check(generated: dict[str, Any]) -> None:
        obj = guardrail("generated")
        obj["spec"] = copy.deepcopy(generated)
        accepted, _ = agree(raw_api, obj)
        outcomes[accepted] += 1

    check()
    # both answers are exercised
    assert outcomes[True] >= 100 and outcomes[False] >= 50, outcomes
