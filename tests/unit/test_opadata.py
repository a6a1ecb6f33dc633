"""aidp.opadata: the data.aidp document per namespace, its revision and the JSON Patch between two."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from aidp import opadata, render
from aidp.model import Policy
from tests.unit.test_bundle import policy_object, seeded

TOP: dict[str, Any] = {
    "config": {"excludedNamespaces": ["kube-system"]},
    "detector": {"env": [], "hosts": []},
}


def state_of(
    policies: list[Policy], top: dict[str, Any] | None = None, modules: str = "m1"
) -> opadata.DataState:
    by_ns: dict[str, list[Policy]] = {}
    for p in policies:
        by_ns.setdefault(p.namespace, []).append(p)
    docs = {ns: opadata.encode(opadata.namespace_document(ps)) for ns, ps in by_ns.items()}
    return opadata.build(
        modules, TOP if top is None else top, docs, {ns: opadata.digest_of(d) for ns, d in docs.items()}
    )


def apply_delta(held: dict[str, Any], d: opadata.Delta) -> dict[str, Any]:
    """What a replica holding `held` (OPA's layout: render.opa_documents) holds after `d`."""
    out = copy.deepcopy(held)
    for ns, doc in d.put.items():
        out["aidp_policies"][ns] = copy.deepcopy(doc)
    for ns in d.remove:
        del out["aidp_policies"][ns]  # KeyError: OPA refuses to delete what is not there
    out["aidp"] = apply_patch(out["aidp"], d.top)
    return out


def apply_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 add/remove on object members, as OPA applies them (parents must exist)."""
    out = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = out
        for part in parts[:-1]:
            parent = parent[part]  # KeyError: a missing parent, as OPA refuses it
        if op["op"] == "add":
            parent[parts[-1]] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[parts[-1]]  # KeyError: removing what is not there fails the whole patch
        else:
            raise AssertionError(op)
    return out


def policies(rng: random.Random, n: int) -> list[Policy]:
    return [Policy.from_object(policy_object(rng, i)) for i in range(n)]


def test_namespace_document_is_sorted_and_refuses_duplicates() -> None:
    ps = policies(seeded(1), 10)[:5]  # one namespace (team-000)
    doc = opadata.namespace_document(reversed(ps))
    assert list(doc) == sorted(p.name for p in ps)
    with pytest.raises(ValueError, match="duplicate AIDataPolicy"):
        opadata.namespace_document([ps[0], ps[0]])


def test_document_holds_every_namespace_the_top_and_the_revision() -> None:
    ps = policies(seeded(2), 40)
    s = state_of(ps)
    doc = s.document()
    assert doc["revision"] == s.revision and len(s.revision) == 16
    assert doc["config"] == TOP["config"]
    assert sorted(doc["policies"]) == sorted({p.namespace for p in ps})
    assert sum(len(v) for v in doc["policies"].values()) == 40


def test_revision_is_stable_and_follows_every_input() -> None:
    ps = policies(seeded(3), 30)
    base = state_of(ps).revision
    assert state_of(list(reversed(ps))).revision == base
    assert state_of(ps, modules="m2").revision != base
    assert state_of(ps, top={**TOP, "config": {"excludedNamespaces": []}}).revision != base
    assert state_of(ps[1:]).revision != base


def test_build_refuses_inconsistent_digests_and_reserved_keys() -> None:
    with pytest.raises(ValueError, match="digest for every namespace"):
        opadata.build("m", TOP, {"a": b"{}"}, {})
    with pytest.raises(ValueError, match="neither policies nor revision"):
        opadata.build("m", {"policies": {}}, {}, {})


@pytest.mark.parametrize("seed", range(20))
def test_delta_takes_a_replica_from_the_old_document_to_the_new(seed: int) -> None:
    rng = seeded(100 + seed)
    ps = policies(rng, 60)
    old = state_of(ps)
    changed = list(ps)
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(changed))
        action = rng.choice(["drop", "edit", "add"])
        if action == "drop":
            changed.pop(i)
        elif action == "edit":
            obj = policy_object(seeded(rng.randint(0, 10**6)), i)
            changed[i] = Policy.from_object(obj)
        else:
            changed.append(Policy.from_object(policy_object(rng, 1000 + i)))
    dedup = {p.ref: p for p in changed}
    new_top = TOP if rng.random() < 0.7 else {**TOP, "cluster": {"g": {"name": "g"}}}
    new = state_of(list(dedup.values()), top=new_top)
    d = opadata.delta(old, new)
    held = render.opa_documents(old.document())
    assert apply_delta(held, d) == render.opa_documents(new.document())
    assert d.top[-1] == {"op": "add", "path": "/revision", "value": new.revision}
    assert set(d.put) | set(d.remove) == opadata.changed_namespaces(old, new)


def test_delta_of_one_policy_change_names_one_namespace() -> None:
    ps = policies(seeded(7), 1000)
    old = state_of(ps)
    edited = Policy.from_object(
        {**policy_object(seeded(7), 0), "spec": {**policy_object(seeded(9), 0)["spec"]}}
    )
    new = state_of([edited, *ps[1:]])
    d = opadata.delta(old, new)
    assert list(d.put) == [ps[0].namespace] and d.remove == ()
    assert [op["path"] for op in d.top] == ["/revision"]


def test_delta_removes_what_is_gone_and_escapes_pointers() -> None:
    old = opadata.build("m", {**TOP, "cluster": {}, "a/b~c": 1}, {"gone": b'{"p":{}}'}, {"gone": "x"})
    new = opadata.build("m", TOP, {}, {})
    d = opadata.delta(old, new)
    assert {"op": "remove", "path": "/cluster"} in d.top
    assert {"op": "remove", "path": "/a~1b~0c"} in d.top
    assert d.remove == ("gone",)
    held = render.opa_documents(old.document())
    assert apply_delta(held, d) == render.opa_documents(new.document())


def test_changed_namespaces_without_an_old_state_is_every_namespace() -> None:
    s = state_of(policies(seeded(8), 25))
    assert opadata.changed_namespaces(None, s) == set(s.digests)
    assert opadata.changed_namespaces(s, s) == set()


def test_namespaces_are_held_encoded_and_decoded_where_read() -> None:
    """Each namespace is its canonical JSON (the bytes its digest hashes); the view decodes it
    where it is read and equals the decoded document; JSON encoders get plain dicts."""
    import json

    from aidp import bundle as bundle_mod

    ps = policies(seeded(7), 30)
    s = state_of(ps)
    assert all(isinstance(raw, bytes) for raw in s.namespaces.values())
    for ns, raw in s.namespaces.items():
        assert s.digests[ns] == opadata.digest_of(raw) == opadata.digest(s.namespace(ns))
        assert raw == render.canonical_json(s.namespace(ns)).encode()
    view = s.view()
    assert view == s.document() and dict(view["policies"]) == s.document()["policies"]
    assert list(view["policies"]) == sorted(s.namespaces)
    assert view["revision"] == s.revision and view["config"] == TOP["config"]
    docs = render.opa_documents(view)
    assert type(docs["aidp_policies"]) is dict and docs == render.opa_documents(s.document())
    json.dumps(docs)  # plain dicts all the way down
    b = bundle_mod.Bundle(modules={"aidp/x.rego": "package aidp.x\n"}, data=view)
    assert bundle_mod.Bundle.decode(b.encode()).data == s.document()


def test_the_durable_copy_decodes_only_the_shards_it_writes() -> None:
    from aidp import bundle as bundle_mod

    ps = policies(seeded(8), 200)
    s = state_of(ps)
    read: list[str] = []

    class Counting(opadata.Policies):
        def __getitem__(self, namespace: str) -> dict[str, Any]:
            read.append(namespace)
            return super().__getitem__(namespace)

    data = {**s.document(), "policies": Counting(s.namespaces)}
    shard = bundle_mod.shard_of(sorted(s.namespaces)[0])
    some = bundle_mod.durable_configmaps("b", "aidp", {}, data, s.digests, {shard})
    assert read and {bundle_mod.shard_of(ns) for ns in read} == {shard}
    assert some == bundle_mod.durable_configmaps("b", "aidp", {}, s.document(), s.digests, {shard})
