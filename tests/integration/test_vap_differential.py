"""One verdict, two engines (contract section 7): hypothesis-generated (policy set, workload) pairs
evaluated by the Rego (aidp check's path: `aidp.check.evaluate`, `opa eval`) and by kube-apiserver
with the vap engine's ValidatingAdmissionPolicy objects (server-side dry-run creates); the
verdicts, the failing policies and their rule ids must be the same.

A fixed seed; AIDP_VAP_DIFFERENTIAL_PAIRS pairs (default 200, as in `make test`; 2,000 for a long
run), ten workloads per generated policy set (one namespace each). What each engine reports:
- deny: kube-apiserver reports the first denying policy only (docs/admission-engines.md): it must be
  one of the Rego's denying policies, with exactly the Rego's rule ids for it;
- warn: one warning per failing rule: the same (policy, rule) pairs;
- dryrun: audit annotations, which a client cannot see: a test-only binding of the dryrun policy
  with validationActions Warn makes them warnings, compared like warn;
- unapproved-ai: two in three worlds' namespaces are selected by a ClusterAIDataPolicy with
  unapprovedAI deny or warn (two guardrails of this module, with no other rule), and the workloads
  reference AI providers (env names, hosts in env values and args, look-alikes that are not).

Besides the generated worlds, one forced world per rule (`forced_world`) fails that rule under each
mode: the coverage of every rule under deny, warn and dryrun does not depend on the seed (hypothesis
derives its fixed seed from the test function's source, so an edit of the test changes the draws).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from lightkube import Client, codecs
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import Namespace, ServiceAccount

from aidp import check, kube, render
from aidp.controller.governance import ClusterAIDataPolicy
from aidp.controller.vap import NamespaceAdmission
from aidp.guardrail import ClusterPolicy
from aidp.model import CHECKED_KINDS, RULE_IDS, Policy
from aidp.vap import unapproved as vap_policies  # `unapproved` is a world's guardrail mode below
from tests.integration import helpers
from tests.integration.vapstack import dry_run, vap_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.local_only

PAIRS = int(os.environ.get("AIDP_VAP_DIFFERENTIAL_PAIRS", "200"))
PER_WORLD = 10
DRYRUN_AS_WARN = "aidp-test-dryrun-as-warn"

TODAY = dt.datetime.now(dt.UTC).date()
KINDS = ("Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob")
LABEL_KEYS = ("app", "tier", "team")
LABEL_VALUES = ("bot", "web", "x")
SERVICE_ACCOUNTS = ("bot", "other")
BASES = ("consent", "contract", "legal-obligation", "vital-interests", "public-task", "legitimate-interests")
CATEGORIES = ("public", "internal", "pseudonymised", "health", "biometric", "kids", "payment-card")

# odd annotation values: white space (ASCII and Unicode), case, leading zeros, huge numbers,
# non-ASCII digits and letters, the two non-ASCII letters whose lower case is ASCII (U+0130, U+212A)
CONSENT_VALUES = (
    *BASES,
    "CONTRACT",
    " Consent ",
    "\tcontract\n",
    "Legitimate-Interests",
    "LEG\u0130TIMATE-INTERESTS",
    "publ\u0130c-task",
    "consent,contract",
    "\u00e7ontract",
    "CONSENT\u00a0",
    "\u3000contract\u2003",
    "contrac",
    "",
    "   ",
)
RETENTION_VALUES = (
    "0",
    "7",
    "007",
    " 14 ",
    "14",
    "30",
    "31",
    "3650",
    "3651",
    "-3",
    "+7",
    "1e3",
    "3.5",
    "",
    "  ",
    "99999999999999999999999",
    "0000000000000000000007",
    "000000000000000000000000000000000000000000",
    "\u0663",
    "\uff11\uff14",
    "1 4",
    "0x10",
    "\u00a07\u00a0",
)
ZDR_VALUES = ("true", "TRUE", " True ", "yes", "", "false", "tru\u0435", "\u2003true", "true,true")
CATEGORY_ITEMS = (
    *CATEGORIES,
    "PUBLIC",
    " Internal ",
    "",
    " ",
    "\u212aids",
    "b\u0130ometric",
    "Health",
    "hea lth",
    "\u00fcnicode",
    "\u00a0internal\u3000",
)


# what the catalog's detector finds (or must not): env names, and hosts in env values and args
AI_ENV_NAMES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "MISTRAL_X",
    "OPENAI_A.B",  # OPA's glob: `*` stops at a dot
    "openai_api_key",
    "MY_OPENAI_KEY",
    "PATH",
)
AI_TEXTS = (
    "https://api.openai.com/v1",
    "HTTPS://EU.API.OPENAI.COM/v1",
    "--url=api.anthropic.com",
    "myres.openai.azure.com",
    "a.b.openai.azure.com",
    "bedrock-runtime.eu-west-1.amazonaws.com",
    "ap\u0130.openai.com",
    "api.openai.com.evil.example",
    "notapi.openai.com",
    "api-openai-com",
    "localhost",
)
UNAPPROVED_LABEL = "aidp-test/unapproved"


def guardrail_name(mode: str) -> str:
    return f"diff-unapproved-{mode}"


@st.composite
def selectors(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=2))
    exprs = []
    for _ in range(draw(st.integers(0 if labels else 1, 2))):
        op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        expr: dict[str, Any] = {"key": draw(st.sampled_from(LABEL_KEYS)), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(
                st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=3, unique=True)
            )
        exprs.append(expr)
    sel: dict[str, Any] = {}
    if labels:
        sel["matchLabels"] = labels
    if exprs:
        sel["matchExpressions"] = exprs
    return sel


@st.composite
def policy_specs(draw: st.DrawFn, mode: str) -> dict[str, Any]:
    required = draw(st.booleans())
    bases = draw(st.lists(st.sampled_from(BASES), min_size=1 if required else 0, max_size=3, unique=True))
    allowed = draw(st.lists(st.sampled_from(CATEGORIES), max_size=4, unique=True))
    forbidden = draw(
        st.lists(st.sampled_from([c for c in CATEGORIES if c not in allowed]), max_size=3, unique=True)
    )
    expires = draw(st.sampled_from((None, -400, -1, 0, 1, 4000)))
    spec: dict[str, Any] = {
        "provider": "openai",
        "workloadSelector": draw(selectors()),
        "purpose": "differential test",
        "consent": {"required": required, "allowedBases": bases},
        "retention": {
            "maxDays": draw(st.sampled_from((0, 1, 7, 14, 30, 3650))),
            "requireZeroDataRetention": draw(st.booleans()),
        },
        "dataCategories": {"allowed": allowed, "forbidden": forbidden},
        "enforcement": mode,
    }
    accounts = draw(st.lists(st.sampled_from(SERVICE_ACCOUNTS), max_size=2, unique=True))
    if accounts:
        spec["serviceAccountNames"] = accounts
    if expires is not None:
        spec["review"] = {
            "approvedBy": "dpo@example.com",
            "expires": (TODAY + dt.timedelta(days=expires)).isoformat(),
        }
    return spec


@st.composite
def workloads(draw: st.DrawFn) -> dict[str, Any]:
    ann: dict[str, str] = {}
    for key, values in (
        ("aidp.io/consent-basis", CONSENT_VALUES),
        ("aidp.io/retention-days", RETENTION_VALUES),
        ("aidp.io/zero-data-retention", ZDR_VALUES),
    ):
        if draw(st.integers(0, 5)):
            ann[key] = draw(st.sampled_from(values))
    if draw(st.integers(0, 5)):
        ann["aidp.io/data-categories"] = ",".join(draw(st.lists(st.sampled_from(CATEGORY_ITEMS), max_size=5)))
    return {
        "kind": draw(st.sampled_from(KINDS)),
        "labels": draw(
            st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=3)
        ),
        "annotations": ann,
        "sa": draw(st.sampled_from((None, "bot", "other", "legacy:bot"))),
        "hostNetwork": draw(st.integers(0, 7)) == 0,
        "env": draw(
            st.lists(st.tuples(st.sampled_from(AI_ENV_NAMES), st.sampled_from(("x", *AI_TEXTS))), max_size=2)
        ),
        "args": draw(st.lists(st.sampled_from(AI_TEXTS), max_size=2)),
    }


@st.composite
def aimed_labels(draw: st.DrawFn, selector: dict[str, Any]) -> dict[str, str]:
    """Labels that a selector selects (most of the time: the extra label may change that)."""
    labels = dict(selector.get("matchLabels", {}))
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In":
            labels[key] = draw(st.sampled_from(values))
        elif op == "Exists":
            labels.setdefault(key, draw(st.sampled_from(LABEL_VALUES)))
        elif op == "DoesNotExist" or (op == "NotIn" and labels.get(key) in values):
            labels.pop(key, None)
    if draw(st.integers(0, 3)) == 0:
        labels[draw(st.sampled_from(LABEL_KEYS))] = draw(st.sampled_from(LABEL_VALUES))
    return labels


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    # the modes in turn from a drawn one: every mode in most worlds, deny in most
    first = draw(st.integers(0, 2))
    modes = [("deny", "warn", "dryrun")[(first + i) % 3] for i in range(draw(st.integers(1, 3)))]
    specs = [draw(policy_specs(mode)) for mode in modes]
    ws = []
    for _ in range(PER_WORLD):
        w = draw(workloads())
        if draw(st.integers(0, 3)):  # three in four aim at a policy's selector
            w["labels"] = draw(aimed_labels(draw(st.sampled_from(specs))["workloadSelector"]))
        ws.append(w)
    return specs, ws, draw(st.sampled_from((None, "deny", "warn")))


def manifest(w: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    obj = helpers.workload(
        w["kind"] if w["kind"] != "ReplicaSet" else "Deployment",
        name,
        namespace,
        labels=w["labels"],
        annotations=w["annotations"],
    )
    if w["kind"] == "ReplicaSet":
        obj["kind"] = "ReplicaSet"
        obj["spec"]["selector"] = {"matchLabels": {"aidp-test": name}}
    template = (
        obj
        if w["kind"] == "Pod"
        else (
            obj["spec"]["jobTemplate"]["spec"]["template"]
            if w["kind"] == "CronJob"
            else obj["spec"]["template"]
        )
    )
    if w["kind"] != "Pod":
        # workload controllers need a selector that matches the template
        template["metadata"]["labels"] = {**w["labels"], "aidp-test": name}
        if w["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            obj["spec"]["selector"] = {"matchLabels": {"aidp-test": name}}
    else:
        obj["metadata"]["labels"] = dict(w["labels"])
    spec = template["spec"]
    spec.pop("serviceAccountName", None)
    if w["sa"] == "legacy:bot":
        spec["serviceAccount"] = "bot"
    elif w["sa"]:
        spec["serviceAccountName"] = w["sa"]
    if w["hostNetwork"]:
        spec["hostNetwork"] = True
    container = spec["containers"][0]
    if w["env"]:
        container["env"] = [{"name": n, "value": v} for n, v in dict(w["env"]).items()]
    if w["args"]:
        container["args"] = list(w["args"])
    return obj


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Client]:
    cp, _ = vap_stack(tmp_path_factory, request)
    c = kube.client(cp.kubeconfig)
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": DRYRUN_AS_WARN},
        "spec": {
            "policyName": "aidp-workloads-dryrun",
            "validationActions": ["Warn"],
            "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
        },
    }
    c.apply(codecs.from_dict(binding), field_manager="aidp-test", force=True)
    for mode in ("deny", "warn"):
        rail = {
            "apiVersion": "aidp.io/v1alpha1",
            "kind": "ClusterAIDataPolicy",
            "metadata": {"name": guardrail_name(mode)},
            "spec": {"namespaceSelector": {"matchLabels": {UNAPPROVED_LABEL: mode}}, "unapprovedAI": mode},
        }
        c.apply(codecs.from_dict(rail), field_manager="aidp-test", force=True)
    wait_for(
        lambda: _exists(c, ValidatingAdmissionPolicy, "aidp-unapproved-ai-warn"),
        timeout=30,
        what="the unapproved-ai policies",
    )
    yield c
    with contextlib.suppress(ApiError):
        c.delete(ValidatingAdmissionPolicyBinding, DRYRUN_AS_WARN)
    for mode in ("deny", "warn"):
        with contextlib.suppress(ApiError):
            c.delete(ClusterAIDataPolicy, guardrail_name(mode))
    # the rest of the session's vap stack sees no guardrail
    wait_for(
        lambda: not _exists(c, ValidatingAdmissionPolicy, "aidp-unapproved-ai-deny"),
        timeout=30,
        what="the guardrails' policies removed",
    )


def _exists(client: Client, res: Any, name: str, namespace: str | None = None) -> bool:
    try:
        client.get(res, name, namespace=namespace)
    except ApiError as err:
        if err.status.code == 404:
            return False
        raise
    return True


_RULE = re.compile(r"\[([a-z-]+)\]")
_WARNING = re.compile(
    r"Validation failed for ValidatingAdmissionPolicy '[a-z-]+' with binding '([a-z-]+)': "
    r"aidp: .*?: (?:AIDataPolicy ([a-z0-9-]+)|(ClusterAIDataPolicy/[a-z0-9-]+)) \[([a-z-]+)\]"
)
WARN_BINDINGS = {"aidp-workloads-warn": "warn", DRYRUN_AS_WARN: "dryrun", "aidp-unapproved-ai-warn": "warn"}
# what the pairs covered: (mode, rule) of every failure the two engines agreed on
SEEN: collections.Counter[tuple[str, str]] = collections.Counter()


def _vap_outcome(
    code: int, message: str, warnings: list[str]
) -> tuple[bool, str | None, set[str], set[tuple[str, str, str]]]:
    """(allowed, the reported denying policy, its rule ids, {(mode, policy, rule)} of the warnings)."""
    policy, rules = None, set()
    if code >= 300:
        m = re.search(r"denied by (?:AIDataPolicy ([a-z0-9-]+)|(ClusterAIDataPolicy/[a-z0-9-]+)): ", message)
        assert m, message
        policy = m.group(1) or m.group(2)
        rules = set(_RULE.findall(message[m.end() - 2 :]))
    warned = set()
    for text in warnings:
        m = _WARNING.match(text)
        assert m, text
        warned.add((WARN_BINDINGS[m.group(1)], m.group(2) or m.group(3), m.group(4)))
    return code < 300, policy, rules, warned


def _new_namespace(client: Client, unapproved: str | None) -> str:
    name = f"diff-{secrets.token_hex(4)}"
    labels = {UNAPPROVED_LABEL: unapproved} if unapproved else None
    client.create(Namespace(metadata=ObjectMeta(name=name, labels=labels)))
    for sa in SERVICE_ACCOUNTS:
        client.create(ServiceAccount(metadata=ObjectMeta(name=sa, namespace=name)))
    wait_for(lambda: client.get(ServiceAccount, "default", namespace=name), timeout=30, what="default SA")
    return name


def _param_spec(client: Client, ns: str) -> Any:
    try:
        return client.get(NamespaceAdmission, "aidp", namespace=ns).to_dict().get("spec")
    except ApiError as err:
        if err.status.code == 404:
            return None
        raise


def _sentinel_approves(client: Client, ns: str) -> bool:
    """The param kube-apiserver holds lists the sentinel policy (the last one created): a compliant
    pod it selects, with an AI key, gets no unapproved-ai refusal or warning."""
    probe = helpers.workload("Pod", "sentinel-ai-probe", ns, labels={"sentinel": "yes"}, sa="bot")
    probe["spec"]["containers"][0]["env"] = [{"name": "OPENAI_API_KEY", "value": "x"}]
    _, message, warnings = dry_run(client, probe)
    return "[unapproved-ai]" not in message + " ".join(warnings)


def _sentinel_seen(client: Client, ns: str) -> bool:
    """The sentinel policy (created last) is in kube-apiserver's param cache: so are the others."""
    probe = helpers.workload(
        "Pod", "sentinel-probe", ns, labels={"sentinel": "yes"}, annotations={}, sa="bot"
    )
    return helpers.create(client, probe, dry_run=True) is not None


World = tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]

# a compliant workload's declarations for the forced worlds' base spec
COMPLIANT = {
    "aidp.io/consent-basis": "consent",
    "aidp.io/retention-days": "7",
    "aidp.io/zero-data-retention": "true",
    "aidp.io/data-categories": "internal",
}
MODE_LABEL = {"deny": "bot", "warn": "web", "dryrun": "x"}


def forced_world(rule: str) -> World:
    """A world in which each mode's policy fails `rule` (and only it) for the workloads it selects:
    the coverage of every rule under every mode does not depend on what the seed draws."""
    unapproved = {"unapproved-ai-deny": "deny", "unapproved-ai-warn": "warn"}.get(rule)
    specs = []
    for mode, value in MODE_LABEL.items():
        spec: dict[str, Any] = {
            "provider": "openai",
            "workloadSelector": {"matchLabels": {"app": value}},
            "purpose": "differential test, forced",
            "consent": {"required": True, "allowedBases": ["consent"]},
            "retention": {"maxDays": 30, "requireZeroDataRetention": rule == "zero-data-retention"},
            "dataCategories": {"allowed": ["public", "internal"], "forbidden": ["health"]},
            "enforcement": mode,
            "review": {
                "approvedBy": "dpo@example.com",
                "expires": (TODAY + dt.timedelta(days=-1 if rule == "review-expired" else 400)).isoformat(),
            },
        }
        if rule == "service-account":
            spec["serviceAccountNames"] = ["bot"]
        specs.append(spec)
    annotations = dict(COMPLIANT)
    if rule == "consent-basis":
        annotations["aidp.io/consent-basis"] = "contract"
    elif rule == "retention-days":
        annotations["aidp.io/retention-days"] = "31"
    elif rule == "zero-data-retention":
        annotations["aidp.io/zero-data-retention"] = "false"
    elif rule == "data-categories":
        annotations["aidp.io/data-categories"] = "internal,health"
    ws = []
    for i, value in enumerate([*MODE_LABEL.values(), "none"]):  # "none": no policy selects it
        ws.append(
            {
                "kind": KINDS[i % len(KINDS)],
                "labels": {"app": value},
                "annotations": annotations,
                "sa": "other" if rule == "service-account" else "bot",
                "hostNetwork": rule == "host-network",
                "env": [("OPENAI_API_KEY", "x")] if unapproved else [],
                "args": [],
            }
        )
    return specs, ws, unapproved


# each workload rule of the contract, and the guardrail's rule under each of its modes
FORCED = (
    *(r for r in RULE_IDS if r != "unapproved-ai"),
    "unapproved-ai-deny",
    "unapproved-ai-warn",
)


@settings(
    max_examples=max(1, PAIRS // PER_WORLD),
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(world=worlds())
def test_rego_and_cel_give_the_same_verdict(client: Client, world: World) -> None:
    compare(client, world)


@pytest.mark.parametrize("rule", FORCED)
def test_each_rule_in_each_mode_gives_the_same_verdict(client: Client, rule: str) -> None:
    before = SEEN.copy()
    compare(client, forced_world(rule))
    added = SEEN - before
    mode = rule.removeprefix("unapproved-ai-") if rule.startswith("unapproved-ai") else None
    if mode:  # the guardrail's own rule, under its mode, for the workload no policy selects
        assert added[(mode, "unapproved-ai")] == 1, added
    else:  # each mode's policy failed the rule for the workload it selects, and nothing else failed
        failed = {k: v for k, v in added.items() if k[0] != "pairs"}
        assert failed == {(m, rule): 1 for m in MODE_LABEL}, added


def compare(client: Client, world: World) -> None:
    """The world's policies created in a new namespace; each workload's verdict from the Rego and
    from kube-apiserver's dry-run, compared."""
    specs, ws, unapproved = world
    if dt.datetime.now(dt.UTC).date() != TODAY:  # the expiry dates were drawn relative to TODAY
        pytest.skip("the UTC date changed during the run")
    ns = _new_namespace(client, unapproved)
    try:
        live = []
        for i, spec in enumerate(specs):
            obj = helpers.policy(f"p{i}", ns)
            obj["spec"] = spec
            live.append(client.create(helpers.AIDataPolicy(obj)).to_dict())
        sentinel = helpers.policy("sentinel", ns, workloadSelector={"matchLabels": {"sentinel": "yes"}})
        live.append(client.create(helpers.AIDataPolicy(sentinel)).to_dict())
        wait_for(
            lambda: _sentinel_seen(client, ns), timeout=30, what="the policies in kube-apiserver's cache"
        )
        parsed = [Policy.from_object(p) for p in live]
        guardrails: dict[str, dict[str, Any]] = {}
        if unapproved:
            name = guardrail_name(unapproved)
            guardrails[name] = ClusterPolicy.from_object(
                client.get(ClusterAIDataPolicy, name).to_dict()
            ).to_document()
            want = vap_policies.params_objects(
                {ns: [render.policy_document(p) for p in parsed]}, guardrails, {ns: [name]}
            )[ns]["spec"]
            wait_for(
                lambda: _param_spec(client, ns) == want,
                timeout=30,
                what="the operator's NamespaceAdmission with every policy",
            )
            wait_for(
                lambda: _sentinel_approves(client, ns), timeout=30, what="the param in kube-apiserver's cache"
            )
        objs = [manifest(w, f"w{i}", ns) for i, w in enumerate(ws)]
        kinds = {k.kind: k for k in CHECKED_KINDS}
        reviews = [check.admission_review(o, kinds[o["kind"]], f"diff-{i}") for i, o in enumerate(objs)]
        data = render.render_data(
            parsed,
            guardrails=guardrails or None,
            guardrails_of={ns: sorted(guardrails)} if guardrails else None,
            with_detector=True,
        )
        decisions = check.evaluate(reviews, data)
        for obj, w, decision in zip(objs, ws, decisions, strict=True):
            allowed, policy, rules, warned = _vap_outcome(*dry_run(client, obj))
            violations = decision["violations"]
            denying = {v["policy"] for v in violations if v["enforcement"] not in ("warn", "dryrun")}
            context = (
                f"policies {specs}\nworkload {w}\nrego {decision}\nvap {(allowed, policy, rules, warned)}"
            )
            assert allowed == decision["allowed"] == (not denying), context
            if not allowed:
                assert policy in denying, context
                assert rules == {v["rule"] for v in violations if v["policy"] == policy}, context
            expected = {
                (v["enforcement"], v["policy"], v["rule"])
                for v in violations
                if v["enforcement"] in ("warn", "dryrun")
            }
            assert warned == expected, context
            SEEN.update((v["enforcement"], v["rule"]) for v in violations)
            SEEN.update([("pairs", "allowed" if allowed else "denied")])
    finally:
        with contextlib.suppress(ApiError):
            client.delete(Namespace, ns)


def test_the_pairs_cover_every_rule_and_mode() -> None:
    """The pairs (above, same module) are not vacuous: each rule failed under each mode (the forced
    worlds see to it, whatever the seed draws), and generated pairs were allowed and denied."""
    if not SEEN:
        pytest.skip("the differential test did not run")
    rules = {"review-expired", "service-account", "consent-basis", "retention-days", "zero-data-retention"}
    for rule in (*rules, "data-categories", "host-network"):
        for mode in ("deny", "warn", "dryrun"):
            assert SEEN[(mode, rule)] > 0, (mode, rule, SEEN)
    assert SEEN[("deny", "unapproved-ai")] > 0 and SEEN[("warn", "unapproved-ai")] > 0, SEEN
    assert SEEN[("pairs", "allowed")] > 0 and SEEN[("pairs", "denied")] > 0, SEEN
