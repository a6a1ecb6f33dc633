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
    docs = {ns: opadata.namespace_document(ps) for ns, ps in by_ns.items()}
    return opadata.build(
        modules, TOP if top is None else top, docs, {ns: opadata.digest(d) for ns, d in docs.items()}
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
        opadata.build("m", TOP, {"a": {}}, {})
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
    old = opadata.build("m", {**TOP, "cluster": {}, "a/b~c": 1}, {"gone": {"p": {}}}, {"gone": "x"})
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
