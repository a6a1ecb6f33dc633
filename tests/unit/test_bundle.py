"""aidp.bundle (the durable copy of what OPA holds) and the reconciler's `make_bundle`."""

from __future__ import annotations

import base64
import gzip
import json
import random
import uuid
from typing import Any

import pytest

from aidp import bundle as bundle_mod
from aidp import render
from aidp.bundle import Bundle
from aidp.controller.reconciler import make_bundle
from aidp.model import DEFAULT_EXCLUDED_NAMESPACES, LAWFUL_BASES, Policy

MODULES = {
    "aidp/admission.rego": "package aidp.admission\n\nimport data.aidp.selector\n",
    "aidp/selector.rego": "package aidp.selector\n\nmatches(s, l) := true\n",
}
DATA: dict[str, Any] = {
    "revision": "0123456789abcdef",
    "config": {"excludedNamespaces": ["kube-system"]},
    "policies": {"support": {"p": {"name": "p", "purpose": "Zusammenfassung für Agenten ✓"}}},
}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible test data, not cryptography


def policy_object(rng: random.Random, i: int) -> dict[str, Any]:
    """A realistic AIDataPolicy, different from its neighbours in the ways real ones differ."""
    team = f"team-{i // 10:03d}"
    app = f"{rng.choice(['support', 'search', 'billing', 'hr', 'sales', 'ops'])}-bot-{i}"
    allowed = rng.sample(["public", "internal", "pseudonymised", "aggregated", "telemetry", "marketing"], k=3)
    forbidden = rng.sample(["health", "biometric", "children", "payment-card", "special-category"], k=3)
    spec: dict[str, Any] = {
        "provider": "openai",
        "workloadSelector": {
            "matchLabels": {"app.kubernetes.io/name": app, "team": team},
            "matchExpressions": [
                {
                    "key": "environment",
                    "operator": "In",
                    "values": rng.sample(["prod", "staging", "dev"], k=2),
                },
                {"key": "aidp.io/opt-out", "operator": "DoesNotExist"},
            ],
        },
        "serviceAccountNames": [app, f"{app}-batch"],
        "purpose": f"Summarise {app} conversations for agents of {team} (case {rng.randint(1000, 99999)})",
        "consent": {"required": True, "allowedBases": rng.sample(list(LAWFUL_BASES), k=2)},
        "retention": {"maxDays": rng.randint(0, 365), "requireZeroDataRetention": rng.random() < 0.3},
        "dataCategories": {"allowed": allowed, "forbidden": forbidden},
        "enforcement": rng.choice(["deny", "deny", "warn", "dryrun"]),
        "review": {
            "approvedBy": f"dpo-{rng.randint(1, 40)}@example.com",
            "ticket": f"PRIV-{rng.randint(1000, 99999)}",
            "expires": f"20{rng.randint(27, 30)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        },
    }
    if rng.random() < 0.5:
        spec["dataResidency"] = rng.choice(["eu", "us", "jp"])
    if rng.random() < 0.3:
        spec["endpoints"] = [
            {"host": f"{app}.openai.azure.com"},
            {"host": f"gw-{i}.proxy.example.com", "port": 8443},
        ]
    return {
        "apiVersion": "aidp.io/v1alpha1",
        "kind": "AIDataPolicy",
        "metadata": {
            "name": f"{app}-policy",
            "namespace": team,
            "uid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "generation": rng.randint(1, 20),
        },
        "spec": spec,
    }


# --- encode / decode -----------------------------------------------------------------------------


def test_round_trip() -> None:
    b = Bundle(modules=dict(MODULES), data=DATA)
    back = Bundle.decode(b.encode())
    assert back == b
    assert back.revision == "0123456789abcdef"
    assert back.data["policies"]["support"]["p"]["purpose"] == "Zusammenfassung für Agenten ✓"


def test_encoding_is_deterministic() -> None:
    one = Bundle(modules=dict(MODULES), data=DATA).encode()
    # same content, other insertion order
    two = Bundle(
        modules=dict(reversed(list(MODULES.items()))), data=dict(reversed(list(DATA.items())))
    ).encode()
    assert one == two
    assert gzip.decompress(one) == gzip.decompress(two)  # (and not only by accident of compression)


def test_encoding_differs_when_content_differs() -> None:
    other = {**DATA, "revision": "fedcba9876543210"}
    assert Bundle(dict(MODULES), DATA).encode() != Bundle(dict(MODULES), other).encode()


def test_revision_of_data_without_one_is_empty() -> None:
    assert Bundle(modules={}, data={}).revision == ""


@pytest.mark.parametrize(
    "doc",
    [
        {"modules": {}},
        {"data": {}},
        {"modules": [], "data": {}},
        {"modules": {}, "data": "x"},
        [],  # not an object at all
        "bundle",
    ],
)
def test_decode_rejects_documents_without_modules_and_data(doc: object) -> None:
    with pytest.raises(ValueError, match="lacks modules or data"):
        Bundle.decode(gzip.compress(json.dumps(doc).encode()))


def test_decode_rejects_bytes_that_are_not_gzip() -> None:
    with pytest.raises(OSError, match="gzip"):
        Bundle.decode(b'{"modules": {}, "data": {}}')


# --- the ConfigMap -------------------------------------------------------------------------------


def test_configmap_manifest() -> None:
    b = Bundle(modules=dict(MODULES), data=DATA)
    cm = bundle_mod.configmap("aidp-opa-bundle", "aidp-system", b)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "aidp-opa-bundle"
    assert cm["metadata"]["namespace"] == "aidp-system"
    assert cm["metadata"]["annotations"] == {"aidp.io/revision": "0123456789abcdef"}
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "aidp"
    assert set(cm["binaryData"]) == {bundle_mod.KEY}
    assert "data" not in cm
    blob = base64.b64decode(cm["binaryData"][bundle_mod.KEY], validate=True)
    assert blob == b.encode()
    assert Bundle.decode(blob) == b


def test_thousand_policies_fit_in_one_configmap() -> None:
    rng = seeded(20300101)
    policies = [Policy.from_object(policy_object(rng, i)) for i in range(1000)]
    assert len({p.ref for p in policies}) == 1000
    data = render.render_data(policies, DEFAULT_EXCLUDED_NAMESPACES)
    b = make_bundle(render.policy_modules(), data)
    blob = b.encode()
    manifest = json.dumps(bundle_mod.configmap("aidp-opa-bundle", "aidp-system", b)).encode()
    print(
        f"1,000 policies: {len(json.dumps(data)) / 1024:.0f} KiB of JSON, "
        f"{len(blob) / 1024:.0f} KiB gzip-compressed, ConfigMap {len(manifest) / 1024:.0f} KiB"
    )
    assert len(blob) < 900 * 1024
    # what the API server stores is the base64 form, in a 1 MiB object: that has to fit too
    assert len(manifest) < 1024 * 1024
    assert Bundle.decode(blob).data["policies"] == data["policies"]


# --- make_bundle ---------------------------------------------------------------------------------


def test_make_bundle_keeps_the_content_and_stamps_the_combined_revision() -> None:
    data = dict(DATA)
    b = make_bundle(dict(MODULES), data)
    assert b.modules == MODULES
    assert {k: v for k, v in b.data.items() if k != "revision"} == {
        k: v for k, v in DATA.items() if k != "revision"
    }
    assert b.revision == b.data["revision"]
    assert len(b.revision) == 16 and int(b.revision, 16) >= 0
    assert b.revision != DATA["revision"]  # it covers the modules too
    assert data == DATA  # the input is not modified


def test_make_bundle_revision_is_stable() -> None:
    one = make_bundle(dict(MODULES), dict(DATA))
    two = make_bundle(dict(reversed(list(MODULES.items()))), json.loads(json.dumps(DATA)))
    assert one.revision == two.revision
    assert one.encode() == two.encode()


def test_make_bundle_revision_changes_when_a_module_changes() -> None:
    base = make_bundle(dict(MODULES), DATA).revision
    edited = {**MODULES, "aidp/selector.rego": MODULES["aidp/selector.rego"] + "\n# tweak\n"}
    renamed = {"aidp/selector2.rego" if k == "aidp/selector.rego" else k: v for k, v in MODULES.items()}
    added = {**MODULES, "aidp/extra.rego": "package aidp.extra\n"}
    removed = {"aidp/admission.rego": MODULES["aidp/admission.rego"]}
    revisions = {base} | {make_bundle(m, DATA).revision for m in (edited, renamed, added, removed)}
    assert len(revisions) == 5


def test_make_bundle_revision_changes_when_the_data_changes() -> None:
    rng = seeded(7)
    policies = [Policy.from_object(policy_object(rng, i)) for i in range(3)]
    modules = render.policy_modules()
    base = make_bundle(modules, render.render_data(policies)).revision
    assert make_bundle(modules, render.render_data(policies)).revision == base
    assert make_bundle(modules, render.render_data(policies[:2])).revision != base
    other_config = render.render_data(policies, ("kube-system", "monitoring"))
    assert make_bundle(modules, other_config).revision != base
    obj = policy_object(seeded(7), 0)
    obj["spec"]["retention"]["maxDays"] += 1
    changed = [Policy.from_object(obj), *policies[1:]]
    assert make_bundle(modules, render.render_data(changed)).revision != base


def test_make_bundle_module_boundaries_matter() -> None:
    # moving text from one module's source to the next module's id must not collide
    a = {"a": "xb", "c": "d"}
    b = {"a": "x", "bc": "d"}
    assert make_bundle(a, DATA).revision != make_bundle(b, DATA).revision


# --- the sharded durable copy --------------------------------------------------------------------


def _sharded(n: int, seed: int = 20300101) -> tuple[dict[str, Any], dict[str, str], list[dict[str, Any]]]:
    from aidp import opadata

    rng = seeded(seed)
    policies = [Policy.from_object(policy_object(rng, i)) for i in range(n)]
    data = render.render_data(policies, DEFAULT_EXCLUDED_NAMESPACES)
    digests = {ns: opadata.digest(doc) for ns, doc in data["policies"].items()}
    cms = bundle_mod.durable_configmaps(
        "aidp-opa-bundle", "aidp-system", render.policy_modules(), data, digests
    )
    return data, digests, cms


def _reader(cms: list[dict[str, Any]]) -> bundle_mod.ShardReader:
    by_name = {c["metadata"]["name"]: c for c in cms}

    def read(name: str) -> tuple[dict[str, str], dict[str, str]] | None:
        c = by_name.get(name)
        return None if c is None else (c["binaryData"], c["metadata"]["annotations"])

    return read


def test_ten_thousand_policies_fit_in_the_sharded_configmaps() -> None:
    data, _, cms = _sharded(10_000)
    sizes = [len(json.dumps(c).encode()) for c in cms]
    single = len(
        json.dumps(bundle_mod.configmap("aidp-opa-bundle", "aidp-system", Bundle({}, data))).encode()
    )
    print(
        f"10,000 policies: one ConfigMap would take {single / 1024:.0f} KiB "
        f"({single / 10_000:.0f} B a policy); {len(cms) - 1} shards of at most "
        f"{max(sizes[:-1]) / 1024:.0f} KiB and a head of {sizes[-1] / 1024:.0f} KiB"
    )
    assert single > 1024 * 1024  # the format before the shards could not hold them
    assert len(cms) == bundle_mod.SHARDS + 1
    assert max(sizes) < 1024 * 1024 // 4  # room for four times as many policies
    head = cms[-1]
    assert head["metadata"]["name"] == "aidp-opa-bundle" and set(head["binaryData"]) == {bundle_mod.HEAD_KEY}
    bundle, problems = bundle_mod.decode_durable(head["binaryData"], _reader(cms))
    assert problems == []
    assert bundle.data == data and bundle.modules == render.policy_modules()


def test_only_the_shards_asked_for_are_made_and_the_head_comes_last() -> None:
    data, digests, _ = _sharded(200)
    ns = sorted(data["policies"])[0]
    index = bundle_mod.shard_of(ns)
    cms = bundle_mod.durable_configmaps(
        "aidp-opa-bundle", "aidp-system", render.policy_modules(), data, digests, only={index}
    )
    assert [c["metadata"]["name"] for c in cms] == [
        bundle_mod.shard_name("aidp-opa-bundle", index),
        "aidp-opa-bundle",
    ]


def test_a_shard_behind_the_head_is_reported_and_loaded_as_it_is() -> None:
    data, _, cms = _sharded(200)
    stale = json.loads(json.dumps(cms[3]))
    stale["metadata"]["annotations"][bundle_mod.SHARD_DIGEST_ANNOTATION] = "0" * 16
    broken = [*cms[:3], stale, *cms[4:-2], cms[-1]]  # shard 3 stale, shard 15 missing
    bundle, problems = bundle_mod.decode_durable(cms[-1]["binaryData"], _reader(broken))
    assert any(p.startswith("aidp-opa-bundle-03: digest 0000") for p in problems)
    assert "aidp-opa-bundle-15: missing" in problems
    missing = {ns for ns in data["policies"] if bundle_mod.shard_of(ns) == 15}
    assert set(bundle.data["policies"]) == set(data["policies"]) - missing


def test_the_format_before_the_shards_is_still_read() -> None:
    b = Bundle(modules=dict(MODULES), data=DATA)
    old = bundle_mod.configmap("aidp-opa-bundle", "aidp-system", b)
    bundle, problems = bundle_mod.decode_durable(old["binaryData"], lambda _name: None)
    assert bundle == b and problems == []
    with pytest.raises(bundle_mod.DurableUnreadable):
        bundle_mod.decode_durable({}, lambda _name: None)


def test_a_shard_too_large_for_a_configmap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_mod, "MAX_SHARD_BYTES", 1000)
    with pytest.raises(bundle_mod.DurableTooLarge, match="1 MiB"):
        _sharded(200)


def test_shards_spread_the_namespaces() -> None:
    counts = [0] * bundle_mod.SHARDS
    for i in range(1000):
        counts[bundle_mod.shard_of(f"team-{i:04d}")] += 1
    assert min(counts) > 1000 / bundle_mod.SHARDS / 2
