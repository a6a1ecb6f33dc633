"""Hostile input against the live stack: generated AIDataPolicies and malformed workload annotations.

Generated policies (hypothesis): every object is either refused by the API server (400 or 422 with
a non-empty message) or accepted, and then the operator can use it and reconciles it to a clear
status. Objects are generated as a *valid* policy whose content is as odd as the schema allows
(unicode, right-to-left overrides, emoji, NUL and other control characters, strings at their
maxLength, 32 selector terms, ports 1 and 65535, dates such as 0000-01-01, 2028-02-29 and
9999-12-31), then zero to three *hostile mutations* are applied (values beyond maxLength, wrong
types, impossible dates such as 2027-02-29 and 2027-1-1, duplicate hosts, ports 0 and 65536,
empty or odd selectors, unknown fields at several depths, bad names, missing required fields,
NaN). That way more than half of the objects are accepted, and the others probe a few refusals at a
time.

Trade-off (issue: "thousands of objects"): thousands of objects (`DRY_RUN_EXAMPLES`) are sent as
server-side **dry-run** creates, which run the whole admission chain of the API server (decoding,
field validation in Strict, Warn or Ignore mode, schema, CEL, defaulting, pruning) but store nothing
and so do not reach the operator. For those, "the operator can use it" is checked by running what
the operator runs on a stored object (`Policy.from_object`, the OPA data and the egress rendering)
on the object the API server returned. A sample (`REAL_EXAMPLES`, hostile content but no hostile
mutation) is created for real and reconciled by the operator (status with `observedGeneration ==
generation` and a `Ready` reason); each is then replaced by a second generated object with
mutations (an UPDATE: refused, or reconciled again) and deleted. Creating thousands for real would
take tens of minutes on this shared machine and exercise the same code paths. Afterwards the
operator must still be alive and a policy change must still be enforced.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import secrets
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx  # lightkube's HTTP client
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lightkube import Client
from lightkube.types import PatchType

from aidp import render
from aidp.devcluster import ControlPlane
from aidp.devcluster.stack import AidpStack
from aidp.egress import backends
from aidp.egress.model import AddressBook, EgressContext
from aidp.egress.resolver import load_overrides
from aidp.model import HOST_PATTERN, LAWFUL_BASES, RULE_IDS, Policy, PolicyError
from tests.integration import helpers
from tests.integration.conftest import Env, drop_env, make_env
from tests.integration.helpers import COMPLIANT, create, workload
from tests.waiting import wait_for

DRY_RUN_EXAMPLES = 2000
REAL_EXAMPLES = 50
RECONCILE_TIMEOUT = 30.0
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same objects on every run: a failure here is reproducible
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# ---- the raw API: any JSON, server-side dry-run, field validation mode ----------------------------


class RawApi:
    """POSTs AIDataPolicies as raw JSON with the admin client certificate (lightkube's typed
    objects could not carry NaN, wrong types or unknown fields)."""

    def __init__(self, cp: ControlPlane) -> None:
        ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        ctx.load_cert_chain(str(cp.pki_dir / "admin.crt"), str(cp.pki_dir / "admin.key"))
        self.http = httpx.Client(base_url=cp.server, verify=ctx, trust_env=False, timeout=30.0)

    def create(self, ns: str, obj: Any, *, dry_run: bool, validation: str) -> httpx.Response:
        params = {"fieldValidation": validation, **({"dryRun": "All"} if dry_run else {})}
        body = json.dumps(obj, ensure_ascii=False).encode()  # NaN stays NaN: invalid JSON on purpose
        return self.http.post(
            f"/apis/aidp.io/v1alpha1/namespaces/{ns}/aidatapolicies",
            params=params,
            content=body,
            headers={"Content-Type": "application/json"},
        )

    def replace(self, ns: str, name: str, obj: Any, *, validation: str) -> httpx.Response:
        return self.http.put(
            f"/apis/aidp.io/v1alpha1/namespaces/{ns}/aidatapolicies/{name}",
            params={"fieldValidation": validation},
            content=json.dumps(obj, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
        )


@pytest.fixture(scope="module")
def raw_api(control_plane: ControlPlane) -> Iterator[RawApi]:
    api = RawApi(control_plane)
    yield api
    api.http.close()


@pytest.fixture(scope="module")
def hostile_env(aidp_stack: AidpStack, kube_client: Client) -> Iterator[Env]:
    """A namespace of its own: the generated policies select odd sets of pods (`DoesNotExist`
    selects every pod), so they must not share a namespace with other tests."""
    e = make_env(kube_client, aidp_stack.cp.kubeconfig)
    yield e
    drop_env(kube_client, e)


# ---- strategies ---------------------------------------------------------------------------------


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()  # a field drawn as ABSENT is left out of the object
DELETE: Any = type("_Delete", (), {"__repr__": lambda self: "DELETE"})()  # a mutation removing a field

ODD_CHARS = [
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\ufeff",  # byte order mark
    "\x00",
    "\x01",
    "\x1c",  # file separator: white space to Python, not to Go
    "\x7f",
    "\u0085",  # next line
    "\u00a0",
    "\u3000",
    "\u2028",
    "\U0001f916",  # robot face
    "\U0001f469\u200d\U0001f4bb",  # ZWJ sequence
    "e\u0301",  # combining accent
    "\u0130",  # I with dot above (lower-cases to two code points in some libraries)
    "\U0010ffff",
    "\\",
    '"',
    "\n",
    "\t",
]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(ABSENT), strategy)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not ABSENT})


def odd_text(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(min_size=min_size, max_size=max_size),
        st.lists(st.sampled_from([*ODD_CHARS, "a", "b", "-", ".", " "]), min_size=min_size, max_size=max_size)
        .map("".join)
        .filter(lambda s: min_size <= len(s) <= max_size),
    )


def sized(*lengths: int, chars: tuple[str, ...] = ("a", "\u00e9", "\U0001f916", "\u202e", "\x00")) -> Any:
    """One character repeated to exactly one of `lengths` characters (boundaries of maxLength)."""
    return st.builds(lambda ch, n: ch * n, st.sampled_from(chars), st.sampled_from(lengths))


label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\Z")
dns_name = st.one_of(
    st.lists(label, min_size=1, max_size=3).map(".".join),
    st.sampled_from(["a" * 63, "a" * 200, "a" * 240, "x." + "b" * 63]),
)
host = st.one_of(
    st.builds(
        lambda labels, tld: ".".join([*labels, tld]),
        st.lists(label, min_size=1, max_size=3),
        st.from_regex(r"\A[a-z]([a-z0-9]{0,4})\Z"),
    ),
    st.sampled_from(
        [
            "myres.openai.azure.com",
            "api.openai.com",  # the provider's own host, listed again
            "eu.api.openai.com",
            "xn--80ak6aa92e.com",
            "a" * 63 + ".com",
            ".".join(["a" * 63] * 3 + ["b" * 61]),  # 253 characters
        ]
    ),
)
BAD_HOSTS = [
    "Api.OpenAI.com",
    "203.0.113.7",
    "2001:db8::1",
    "https://a.example.com",
    "a.example.com:443",
    "a.example.com/v1",
    "localhost",
    "-a.example.com",
    "a..example.com",
    "a.example.com.",
    "*.openai.com",
    "\uff41.example.com",  # fullwidth a
    "a" * 64 + ".com",
    ".".join(["a" * 63] * 4),  # 255 characters
    "",
]
port = st.sampled_from([1, 443, 8443, 65535])
BAD_PORTS = [0, -1, 65536, 2**31, 2**63, "443", 443.5, None, True]
endpoint = obj(host=host, port=maybe(port))
endpoints = st.lists(endpoint, max_size=16, unique_by=lambda e: e["host"])

label_key = st.one_of(
    st.sampled_from(["app", "app.kubernetes.io/name", "aidp.example/team", "k" * 63, "x.y/" + "k" * 63]),
    st.sampled_from(
        ["", "-x", "a/b/c", "\U0001f916", "\u202eapp", "k\x00", "k" * 317]
    ),  # CRD-valid, not a label
    odd_text(1, 12),
)
label_value = st.one_of(
    st.sampled_from(["", "bot", "v" * 63]),
    st.sampled_from(["\U0001f916", "\u202ebot", "a b", "-x"]),  # CRD-valid, not a label value
    odd_text(0, 10),
)
expression = st.one_of(
    obj(
        key=label_key,
        operator=st.sampled_from(["In", "NotIn"]),
        values=st.lists(label_value, min_size=1, max_size=4, unique=True),
    ),
    obj(key=label_key, operator=st.sampled_from(["Exists", "DoesNotExist"]), values=maybe(st.just([]))),
)
selector = st.one_of(
    obj(matchLabels=st.dictionaries(label_key, label_value, min_size=1, max_size=4)),
    obj(matchExpressions=st.lists(expression, min_size=1, max_size=4)),
    obj(
        matchLabels=st.dictionaries(label_key, label_value, max_size=3),
        matchExpressions=st.lists(expression, min_size=1, max_size=3),
    ),
    st.builds(lambda n: {"matchLabels": {f"k{i}": "v" for i in range(n)}}, st.sampled_from([1, 32])),
    st.builds(
        lambda n: {"matchExpressions": [{"key": f"k{i}", "operator": "Exists"} for i in range(n)]},
        st.sampled_from([32]),
    ),
)
sa_name = st.one_of(
    st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,8}[a-z0-9])?\Z"), st.sampled_from(["bot", "s" * 253])
)
category = st.one_of(st.from_regex(r"\A[a-z0-9]([-a-z0-9_.]{0,8}[a-z0-9])?\Z"), st.just("c" * 63))
purpose = st.one_of(
    odd_text(1, 60),
    sized(1, 1024),
    st.sampled_from(["Summarise support tickets", "\u202estekcit esiramus", "\x00", "\x1c", "\u200b"]),
)
DATES = ["2027-06-30", "2028-02-29", "2000-02-29", "1900-02-28", "0000-01-01", "0001-01-01", "9999-12-31"]
date = st.one_of(st.sampled_from(DATES), st.dates().map(dt.date.isoformat))


@st.composite
def categories(draw: st.DrawFn) -> dict[str, Any]:
    cats = draw(st.lists(category, max_size=8, unique=True))
    split = draw(st.integers(0, len(cats)))
    out: dict[str, Any] = {}
    if split or draw(st.booleans()):
        out["allowed"] = cats[:split]
    if cats[split:] or draw(st.booleans()):
        out["forbidden"] = cats[split:]
    return out


consent = st.one_of(
    obj(
        required=maybe(st.just(True)),
        allowedBases=st.lists(st.sampled_from(LAWFUL_BASES), min_size=1, unique=True),
    ),
    obj(required=st.just(False), allowedBases=maybe(st.lists(st.sampled_from(LAWFUL_BASES), unique=True))),
)
review = obj(
    approvedBy=maybe(st.one_of(odd_text(0, 30), sized(253))),
    ticket=maybe(st.one_of(odd_text(0, 30), sized(253))),
    expires=maybe(date),
)
spec = obj(
    provider=st.just("openai"),
    dataResidency=maybe(st.sampled_from(["us", "eu", "au", "in", "jp"])),
    endpoints=maybe(endpoints),
    workloadSelector=selector,
    serviceAccountNames=maybe(st.lists(sa_name, max_size=4, unique=True)),
    purpose=purpose,
    consent=consent,  # absent, it defaults to required without bases: refused
    retention=obj(
        maxDays=st.one_of(st.sampled_from([0, 1, 30, 3650]), st.integers(0, 3650)),
        requireZeroDataRetention=maybe(st.booleans()),
    ),
    dataCategories=maybe(categories()),
    enforcement=maybe(st.sampled_from(["deny", "warn", "dryrun"])),
    review=maybe(review),
)

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities are not JSON: 400
    odd_text(0, 8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

# hostile mutations: (path, strategy of the value put there, or DELETE)
MUTATIONS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    (("spec", "provider"), st.one_of(st.sampled_from(["OpenAI", " openai", "anthropic", ""]), junk)),
    (("spec", "dataResidency"), st.one_of(st.sampled_from(["EU", "eu ", "de", ""]), junk)),
    (
        ("spec", "endpoints"),
        st.one_of(
            st.builds(lambda e: [e, {**e, "port": 8443}], endpoint),  # the same host twice
            st.lists(endpoint, min_size=17, max_size=17),
            st.builds(lambda h: [{"host": h}], st.one_of(st.sampled_from(BAD_HOSTS), odd_text(), junk)),
            st.builds(lambda p: [{"host": "a.example.com", "port": p}], st.sampled_from(BAD_PORTS)),
            st.just([{"port": 443}]),
            junk,
        ),
    ),
    (
        ("spec", "workloadSelector"),
        st.one_of(
            st.sampled_from(
                [
                    {},
                    {"matchLabels": {}},
                    {"matchExpressions": []},
                    {"matchLabels": {}, "matchExpressions": []},
                    {"matchExpressions": [{"key": "app", "operator": "In"}]},
                    {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": []}]},
                    {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]},
                    {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]},
                    {"matchExpressions": [{"key": "", "operator": "Exists"}]},
                    {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "a"]}]},
                    {"matchLabels": {"app": "v" * 64}},
                    {"matchLabels": {f"k{i}": "v" for i in range(33)}},
                    {"matchExpressions": [{"key": f"k{i}", "operator": "Exists"} for i in range(33)]},
                    {"matchExpressions": [{"key": "k" * 318, "operator": "Exists"}]},
                    {"matchLabels": {"app": 1}},
                    "app=bot",
                ]
            ),
            junk,
        ),
    ),
    (("spec", "serviceAccountNames"), st.one_of(st.sampled_from([["Bot"], ["a_b"], [""], ["b", "b"]]), junk)),
    (("spec", "purpose"), st.one_of(st.sampled_from(["", " ", "\t\n ", "\u3000"]), sized(1025), junk)),
    (
        ("spec", "consent"),
        st.one_of(
            st.sampled_from(
                [
                    {"required": True, "allowedBases": []},
                    {"required": True},
                    {"allowedBases": ["consent", "consent"]},
                    {"allowedBases": ["Consent"]},
                    {"allowedBases": ["vibes"]},
                    {"required": "yes", "allowedBases": ["consent"]},
                ]
            ),
            junk,
        ),
    ),
    (
        ("spec", "retention"),
        st.one_of(
            st.builds(lambda d: {"maxDays": d}, st.sampled_from([-1, 3651, 2**31, 2**63, 1.5, "30", None])),
            st.sampled_from(
                [{}, {"requireZeroDataRetention": True}, {"maxDays": 1, "requireZeroDataRetention": 1}]
            ),
            junk,
        ),
    ),
    (
        ("spec", "dataCategories"),
        st.one_of(
            st.sampled_from(
                [
                    {"allowed": ["health"], "forbidden": ["health"]},
                    {"allowed": ["Internal"]},
                    {"allowed": [""]},
                    {"allowed": ["a", "a"]},
                    {"forbidden": ["c" * 64]},
                    {"forbidden": ["-x"]},
                    {"allowed": [f"c{i}" for i in range(65)]},
                ]
            ),
            junk,
        ),
    ),
    (("spec", "enforcement"), st.one_of(st.sampled_from(["Deny", "audit", "", "deny "]), junk)),
    (
        ("spec", "review", "expires"),
        st.one_of(
            st.sampled_from(
                [
                    "2027-02-29",
                    "2100-02-29",
                    "2027-1-1",
                    "2027-13-01",
                    "2027-00-10",
                    "2027-04-31",
                    "2027-06-00",
                    "20270101",
                    "2027-06-30T00:00:00Z",
                    "\uff12\uff10\uff12\uff17-01-01",  # fullwidth digits
                    "2027-06-30\n",
                    "",
                    20270630,
                ]
            ),
            junk,
        ),
    ),
    (("spec", "review", "approvedBy"), st.one_of(sized(254), junk)),
    (("spec", "review", "ticket"), st.one_of(sized(254), junk)),
    (("spec", "review"), junk),
    (("spec", "provider"), st.just(DELETE)),
    (("spec", "workloadSelector"), st.just(DELETE)),
    (("spec", "purpose"), st.just(DELETE)),
    (("spec", "retention"), st.just(DELETE)),
    (("spec",), st.one_of(st.just(DELETE), junk)),
    (("spec", "unknownField"), junk),
    (("spec", "retention", "maxDayz"), junk),
    (("spec", "workloadSelector", "matchFields"), junk),
    (("spec", "review", "approvedAt"), junk),
    (("status",), st.just({"phase": "Active", "observedGeneration": 99})),  # ignored on create
    (("unknownTopLevel",), junk),
    (
        ("metadata", "name"),
        st.one_of(
            st.sampled_from(["", "UPPER", "a_b", "-a", "a-", "a" * 254, "a..b", "a/b", ".", ".."]), odd_text()
        ),
    ),
    (("metadata", "namespace"), st.just("some-other-namespace")),
    (("metadata", "labels"), st.dictionaries(label_key, label_value, min_size=1, max_size=2)),
    (("metadata", "annotations"), st.builds(lambda v: {"note": v}, sized(262_145, chars=("a",)))),
    (("kind",), st.sampled_from(["Pod", "aidatapolicy", ""])),
    (("apiVersion",), st.sampled_from(["aidp.io/v1", "v1", "aidp.io/v1alpha2"])),
]
mutation = st.one_of(*[st.tuples(st.just(path), value) for path, value in MUTATIONS])


def mutate(policy: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node: Any = policy
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


@st.composite
def candidates(draw: st.DrawFn, max_mutations: int = 3) -> tuple[dict[str, Any], str]:
    """(policy object, field validation mode): a hostile-but-valid policy with up to
    `max_mutations` hostile mutations."""
    policy: dict[str, Any] = {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {"name": draw(dns_name)},
        "spec": draw(spec),
    }
    for path, value in draw(st.lists(mutation, max_size=max_mutations)):
        mutate(policy, path, value)
    return policy, draw(st.sampled_from(["Strict", "Warn", "Ignore"]))


# ---- the properties -----------------------------------------------------------------------------


def egress_context(stack: AidpStack) -> EgressContext:
    static, _ = load_overrides(stack.addresses_file)
    return EgressContext(AddressBook(static), dt.datetime.now(dt.UTC).date())


def refused_properly(response: httpx.Response, sent: Any) -> None:
    assert response.status_code in (400, 422), (response.status_code, response.text[:2000], sent)
    body = response.json()
    message = body.get("message")
    assert isinstance(message, str) and message.strip(), body
    assert body.get("code") == response.status_code, body


def usable_by_the_operator(stored: dict[str, Any], ctx: EgressContext) -> Policy:
    """What the operator does with an object it lists: parse, render the OPA data and egress."""
    try:
        policy = Policy.from_object(stored)
    except PolicyError as err:
        raise AssertionError(
            f"the API server accepted an AIDataPolicy the operator cannot use ({err}): {stored['spec']!r}"
        ) from err
    render.render_data([policy])
    for backend in backends.BACKENDS.values():
        backends.render_all(backend, [policy], ctx)
    return policy


def test_thousands_of_generated_policies_are_refused_or_usable(
    raw_api: RawApi, hostile_env: Env, aidp_stack: AidpStack
) -> None:
    """Server-side dry-run creates of `DRY_RUN_EXAMPLES` generated objects."""
    ctx = egress_context(aidp_stack)
    outcomes: Counter[str] = Counter()

    @settings(HYPOTHESIS, max_examples=DRY_RUN_EXAMPLES)
    @given(candidate=candidates())
    def check(candidate: tuple[dict[str, Any], str]) -> None:
        policy, validation = candidate
        response = raw_api.create(hostile_env.ns, policy, dry_run=True, validation=validation)
        if response.status_code == 201:
            stored = response.json()
            assert stored["metadata"]["generation"] == 1
            usable_by_the_operator(stored, ctx)
            outcomes["accepted"] += 1
        else:
            refused_properly(response, policy)
            outcomes[f"refused {response.status_code}"] += 1

    check()
    print(f"dry-run creates: {dict(outcomes)}")  # shown with pytest -s
    assert sum(outcomes.values()) >= DRY_RUN_EXAMPLES
    # the generator must exercise both sides of the property
    assert outcomes["accepted"] >= DRY_RUN_EXAMPLES // 10, outcomes
    assert outcomes["refused 422"] >= DRY_RUN_EXAMPLES // 10, outcomes
    assert outcomes["refused 400"] >= 10, outcomes
    assert_still_enforcing(hostile_env, aidp_stack, "after-dry-run")


def reconciled(client: Client, ns: str, name: str) -> dict[str, Any] | None:
    """The policy once the operator reported on its current generation: Ready with a reason."""
    live = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
    status = live.get("status") or {}
    if status.get("observedGeneration") != live["metadata"]["generation"]:
        return None
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if not ready or ready.get("status") not in ("True", "False") or not ready.get("reason"):
        return None
    if ready.get("observedGeneration") != live["metadata"]["generation"]:
        return None
    assert status.get("phase") in ("Active", "Expired", "Degraded"), status
    return live


def test_a_sample_of_generated_policies_is_created_and_reconciled(
    raw_api: RawApi, hostile_env: Env, aidp_stack: AidpStack
) -> None:
    """`REAL_EXAMPLES` generated objects created for real (hostile content, no hostile mutation:
    the refusals are the dry-run test's business), each reconciled, then replaced by a second
    generated spec with mutations (an UPDATE: refused, or reconciled again), then deleted. Valid
    endpoint hosts are swapped for the addresses file's hosts and `.invalid` names, so that the
    operator resolves no generated name on the real network."""
    client, ns = hostile_env.client, hostile_env.ns
    ctx = egress_context(aidp_stack)
    counter = itertools.count()
    # the addresses file's hosts (no DNS), then names that never resolve: 16 in all (maxItems)
    hosts = sorted(load_overrides(aidp_stack.addresses_file)[0])
    hosts += [f"e{i}.aidp-test.invalid" for i in range(16 - len(hosts))]
    outcomes: Counter[str] = Counter()

    @settings(HYPOTHESIS, max_examples=REAL_EXAMPLES)
    @given(first=candidates(max_mutations=0), second=candidates())
    def check(first: tuple[dict[str, Any], str], second: tuple[dict[str, Any], str]) -> None:
        policy, validation = first
        offline(policy, hosts)
        offline(second[0], hosts)
        meta = policy.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            meta["name"] = f"h{next(counter)}-{meta['name']}"  # unique; an invalid name stays invalid
        response = raw_api.create(ns, policy, dry_run=False, validation=validation)
        if response.status_code != 201:
            refused_properly(response, policy)
            outcomes["refused"] += 1
            return
        stored = response.json()
        name = stored["metadata"]["name"]
        try:
            usable_by_the_operator(stored, ctx)
            live = wait_for(
                lambda: reconciled(client, ns, name), timeout=RECONCILE_TIMEOUT, what=f"status of {name}"
            )
            outcomes["created"] += 1
            ready = next(c for c in live["status"]["conditions"] if c["type"] == "Ready")
            outcomes[f"Ready {ready['status']}/{ready['reason']}"] += 1
            # an UPDATE to a second generated spec: refused, or reconciled at the new generation
            response = replace_spec(raw_api, client, ns, name, second)
            if response.status_code == 200:
                updated = response.json()
                usable_by_the_operator(updated, ctx)
                if updated["metadata"]["generation"] > live["metadata"]["generation"]:
                    wait_for(
                        lambda: reconciled(client, ns, name),
                        timeout=RECONCILE_TIMEOUT,
                        what=f"status of {name} after the update",
                    )
                outcomes["updated"] += 1
            else:
                refused_properly(response, second[0].get("spec"))
                outcomes["update refused"] += 1
        finally:
            client.delete(helpers.AIDataPolicy, name, namespace=ns)

    check()
    print(f"real creates: {dict(outcomes)}")  # shown with pytest -s
    assert outcomes["created"] >= REAL_EXAMPLES * 3 // 5, outcomes
    assert outcomes["updated"] >= REAL_EXAMPLES // 5, outcomes
    assert outcomes["update refused"] >= REAL_EXAMPLES // 5, outcomes
    assert_still_enforcing(hostile_env, aidp_stack, "after-real")


def offline(policy: dict[str, Any], hosts: list[str]) -> None:
    """Valid endpoint hosts replaced by `hosts`, so that the operator resolves no generated name
    on the real network (invalid hosts stay as they are, to be refused)."""
    spec = policy.get("spec")
    endpoints = spec.get("endpoints") if isinstance(spec, dict) else None
    for i, endpoint in enumerate(endpoints if isinstance(endpoints, list) else []):
        host = endpoint.get("host") if isinstance(endpoint, dict) else None
        if isinstance(host, str) and re.fullmatch(HOST_PATTERN, host):
            endpoint["host"] = hosts[i % len(hosts)]


def replace_spec(
    api: RawApi, client: Client, ns: str, name: str, candidate: tuple[dict[str, Any], str]
) -> httpx.Response:
    """PUT the live policy with the candidate's spec (a 409 conflict with a status write is retried)."""
    for _ in range(10):
        live = client.get(helpers.AIDataPolicy, name, namespace=ns).to_dict()
        meta = {k: live["metadata"][k] for k in ("name", "namespace", "resourceVersion")}
        replacement = {**live, "metadata": meta, "spec": candidate[0].get("spec")}
        response = api.replace(ns, name, replacement, validation=candidate[1])
        if response.status_code != 409:
            return response
    raise AssertionError(f"conflicts on every update of {ns}/{name}: {response.text}")


def assert_still_enforcing(env: Env, stack: AidpStack, name: str) -> None:
    """The operator survived, and a new policy and a change to it are enforced."""
    assert stack.operator is not None and stack.operator.alive(), "the operator exited"
    labels = {"app": name}
    env.policy(name, workloadSelector={"matchLabels": labels})
    pod = workload(
        "Pod",
        f"p-{secrets.token_hex(3)}",
        env.ns,
        labels=labels,
        annotations={**COMPLIANT, "aidp.io/retention-days": "20"},
    )
    assert create(env.client, pod, dry_run=True) is None
    env.client.patch(
        helpers.AIDataPolicy,
        name,
        {"spec": {"retention": {"maxDays": 10}}},
        namespace=env.ns,
        patch_type=PatchType.MERGE,
    )
    helpers.wait_enforced(env.client, env.ns, name)
    msg = create(env.client, pod, dry_run=True)
    assert msg is not None and f"AIDataPolicy {name}" in msg, msg
    assert "declares 20 days, more than the 10 days the policy allows" in msg, msg
    env.client.delete(helpers.AIDataPolicy, name, namespace=env.ns)


# ---- malformed workload annotations through the live webhook ------------------------------------

RETENTION = "aidp.io/retention-days"
BASIS = "aidp.io/consent-basis"
CATEGORIES = "aidp.io/data-categories"
ZDR = "aidp.io/zero-data-retention"

# (annotation, value, None when admitted else (rule id, fragment of the message))
ANNOTATION_CASES: list[tuple[str, str, tuple[str, str] | None]] = [
    (RETENTION, "-1", ("retention-days", f'annotation {RETENTION} "-1" is not a non-negative integer')),
    (RETENTION, "1.5", ("retention-days", f'annotation {RETENTION} "1.5" is not a non-negative integer')),
    (RETENTION, "1e3", ("retention-days", f'annotation {RETENTION} "1e3" is not a non-negative integer')),
    (RETENTION, "+5", ("retention-days", f'annotation {RETENTION} "+5" is not a non-negative integer')),
    (RETENTION, "0x10", ("retention-days", f'annotation {RETENTION} "0x10" is not a non-negative integer')),
    (RETENTION, "ten", ("retention-days", f'annotation {RETENTION} "ten" is not a non-negative integer')),
    (RETENTION, "\u0663", ("retention-days", "is not a non-negative integer")),  # Arabic-Indic three
    (RETENTION, "\uff17", ("retention-days", "is not a non-negative integer")),  # fullwidth seven
    (RETENTION, "3 0", ("retention-days", f'annotation {RETENTION} "3 0" is not a non-negative integer')),
    (
        RETENTION,
        "999999999999999999999",
        ("retention-days", "declares 999999999999999999999 days, more than the 30 days the policy allows"),
    ),
    # beyond float64's range (309 digits and more): was admitted before the fix in admission.rego
    (RETENTION, "9" * 400, ("retention-days", "days, more than the 30 days the policy allows")),
    (RETENTION, "31", ("retention-days", "declares 31 days, more than the 30 days the policy allows")),
    (
        RETENTION,
        "",
        ("retention-days", f"annotation {RETENTION} is empty; the policy allows at most 30 days"),
    ),
    (RETENTION, "   ", ("retention-days", f"annotation {RETENTION} is empty")),
    (RETENTION, " 7 ", None),
    (RETENTION, "7\n", None),
    (RETENTION, "007", None),
    (RETENTION, "0" * 400 + "30", None),
    (RETENTION, "0", None),
    (BASIS, "  CONTRACT ", None),
    (BASIS, "Consent", None),
    (
        BASIS,
        "gdpr",
        (
            "consent-basis",
            f'annotation {BASIS} "gdpr" is not an allowed basis; allowed bases: consent, contract',
        ),
    ),
    (BASIS, "legitimate-interests", ("consent-basis", '"legitimate-interests" is not an allowed basis')),
    (BASIS, "consent,contract", ("consent-basis", '"consent,contract" is not an allowed basis')),
    (BASIS, "con\u202etract", ("consent-basis", "is not an allowed basis")),
    (BASIS, "contract\x00", ("consent-basis", "is not an allowed basis")),
    (BASIS, "", ("consent-basis", f"annotation {BASIS} is empty; allowed bases: consent, contract")),
    (CATEGORIES, ",internal,,", None),
    (CATEGORIES, " Internal , PUBLIC ", None),
    (CATEGORIES, "internal,\tpseudonymised\n", None),
    (CATEGORIES, ",,,", ("data-categories", f"annotation {CATEGORIES} names no category")),
    (CATEGORIES, " , ", ("data-categories", f"annotation {CATEGORIES} names no category")),
    (CATEGORIES, "", ("data-categories", f"annotation {CATEGORIES} is empty")),
    (CATEGORIES, "internal,HEALTH ", ("data-categories", "forbidden categories declared: health")),
    (
        CATEGORIES,
        "internal,secret",
        (
            "data-categories",
            "categories not in the allowed list: secret (allowed: public, internal, pseudonymised)",
        ),
    ),
    (ZDR, "TRUE", None),
    (ZDR, " true ", None),
    (ZDR, "yes", ("zero-data-retention", f'annotation {ZDR} is "yes", not "true"')),
    (ZDR, "1", ("zero-data-retention", f'annotation {ZDR} is "1", not "true"')),
    (ZDR, "true,true", ("zero-data-retention", '"true,true", not "true"')),
    (ZDR, "", ("zero-data-retention", f"annotation {ZDR} is empty")),
]


@pytest.fixture(scope="module")
def annotated(module_env: Env) -> Env:
    module_env.policy("annot", workloadSelector={"matchLabels": {"app": "annot"}})
    return module_env


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    ANNOTATION_CASES,
    ids=[f"{a.split('/')[1]}={v[:24]!r}" for a, v, _ in ANNOTATION_CASES],
)
def test_malformed_annotations_get_a_precise_deny_message(
    annotated: Env, annotation: str, value: str, expected: tuple[str, str] | None
) -> None:
    pod = workload(
        "Pod",
        f"a-{secrets.token_hex(3)}",
        annotated.ns,
        labels={"app": "annot"},
        annotations={**COMPLIANT, annotation: value},
    )
    msg = create(annotated.client, pod, dry_run=True)
    if expected is None:
        assert msg is None, msg
        return
    rule, fragment = expected
    assert msg is not None, f"{annotation}={value!r} was admitted"
    assert msg.startswith('admission webhook "validate.aidp.io" denied the request: aidp: Pod '), msg
    assert "AIDataPolicy annot: " in msg, msg
    assert {r for r in RULE_IDS if f"[{r}]" in msg} == {rule}, msg
    assert fragment in msg, msg


def test_no_generated_policy_is_left_behind(hostile_env: Env) -> None:
    """Every policy the property tests created was deleted again."""
    left = [p.metadata.name for p in hostile_env.client.list(helpers.AIDataPolicy, namespace=hostile_env.ns)]
    assert [n for n in left if n.startswith("h")] == [], left


def test_thousands_of_leading_zeros_do_not_break_the_audit(annotated: Env, aidp_stack: AidpStack) -> None:
    """ "000…07" declares 7 days and is admitted; the audit's records of processing must read it too
    (Python's int() refuses strings of more than 4300 digits: the whole audit used to fail)."""
    name = f"zeros-{secrets.token_hex(3)}"
    pod = workload(
        "Pod",
        name,
        annotated.ns,
        labels={"app": "annot"},
        annotations={**COMPLIANT, RETENTION: "0" * 1000 + "7"},  # within the 1024 characters aidp reads
    )
    assert create(annotated.client, pod) is None
    argv = [
        sys.executable,
        "-m",
        "aidp.cli.main",
        "audit",
        "--kubeconfig",
        str(aidp_stack.cp.kubeconfig),
        "-n",
        annotated.ns,
        "-o",
        "json",
        "--fail-on",
        "never",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    records = [r for r in json.loads(out.stdout)["processingRecords"] if r["name"] == name]
    assert [(r["policy"], r["retentionDays"]) for r in records] == [("annot", 7)], records
