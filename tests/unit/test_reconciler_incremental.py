"""The reconciler's own copy of the AIDataPolicies between full syncs (aidp.controller.reconciler):
slimmed, taken from watch events in order, stale events dropped, changed namespaces marked; the
audit loop's rule for writing its figures (aidp.audit.worker.audit_status_due)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from aidp import opadata, render
from aidp.audit.worker import audit_status_due
from aidp.config import OperatorConfig
from aidp.controller import held as held_mod
from aidp.controller import reconciler as rec_mod
from tests.integration import helpers


def obj(
    name: str, ns: str, *, uid: str = "u1", generation: int = 1, rv: str = "10", **status: Any
) -> dict[str, Any]:
    o = helpers.policy(name, ns)
    o["metadata"].update(
        uid=uid,
        generation=generation,
        resourceVersion=rv,
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}", "team": "a"},
    )
    if status:
        o["status"] = dict(status)
    return o


@pytest.fixture
def rec() -> rec_mod.Reconciler:
    async def replicas() -> list[Any]:
        return []

    return rec_mod.Reconciler(OperatorConfig(egress_backend="none"), None, replicas)  # type: ignore[arg-type]


def test_slim_keeps_what_the_reconciler_reads_and_copies() -> None:
    o = obj("p", "a", phase="Active")
    s = held_mod.HeldPolicy.of(o).object()
    assert "managedFields" not in s["metadata"]
    assert s["metadata"]["annotations"] == {"team": "a"}
    assert s["spec"] == o["spec"] and s["status"] == {"phase": "Active"}
    s["spec"]["provider"] = "changed"
    assert o["spec"]["provider"] == "openai"  # a copy: the watch's body is not shared


def test_a_held_policy_is_its_slim_json_and_its_identity() -> None:
    o = obj("p", "a", generation=4, rv="17", phase="Active")
    held = held_mod.HeldPolicy.of(o)
    assert (held.key, held.uid, held.generation, held.resource_version) == (("a", "p"), "u1", 4, "17")
    assert held.object()["spec"] == o["spec"] and held.object()["status"] == {"phase": "Active"}
    assert len(held.body) < len(json.dumps(o))  # managedFields and last-applied are not kept
    copy = held.object()
    copy["spec"]["provider"] = "changed"
    assert held.object()["spec"]["provider"] == "openai"  # each decode is a fresh copy
    body = held.object()
    body["status"], body["metadata"]["resourceVersion"] = {"phase": "Expired"}, "18"
    held.written(body)
    assert held.object()["status"] == {"phase": "Expired"} and held.resource_version == "18"
    assert held.object()["metadata"]["resourceVersion"] == "18"
    odd = held_mod.HeldPolicy.of({"metadata": {"name": "x", "generation": "junk"}})
    assert (odd.key, odd.generation) == (("", "x"), 0)  # odd data: no crash


def test_events_mark_only_namespaces_whose_policies_changed(rec: rec_mod.Reconciler) -> None:
    rec.observe(obj("p", "a"))
    rec.observe(obj("q", "b", uid="u2"))
    rec._take_events()
    assert rec.dirty == {"a", "b"} and set(rec.objects) == {("a", "p"), ("b", "q")}
    rec.dirty.clear()
    rec.observe(obj("p", "a", rv="11", phase="Active"))  # a status write: same generation
    rec._take_events()
    assert rec.dirty == set() and rec.objects[("a", "p")].object()["status"] == {"phase": "Active"}
    rec.observe(obj("p", "a", generation=2, rv="12"))  # a spec change
    rec.observe(obj("q", "b", uid="u2"), deleted=True)
    rec._take_events()
    assert rec.dirty == {"a", "b"} and set(rec.objects) == {("a", "p")}


def test_stale_events_are_dropped(rec: rec_mod.Reconciler) -> None:
    rec.observe(obj("p", "a", generation=3, rv="30"))
    rec._take_events()
    rec.dirty.clear()
    rec.observe(obj("p", "a", generation=2, rv="40"))  # an older generation, whatever its RV
    rec.observe(obj("p", "a", generation=3, rv="20", phase="Old"))  # same generation, older RV
    rec._take_events()
    held = rec.objects[("a", "p")]
    assert held.generation == 3 and "status" not in held.object() and rec.dirty == set()
    # a deletion of another object with the same name (another uid) leaves this one
    rec.observe(obj("p", "a", uid="other"), deleted=True)
    rec._take_events()
    assert ("a", "p") in rec.objects
    # a new object under the same name (new uid) replaces it and marks the namespace
    rec.observe(obj("p", "a", uid="new", generation=1, rv="5"))
    rec._take_events()
    assert rec.objects[("a", "p")].uid == "new" and rec.dirty == {"a"}


def test_opa_documents_put_the_policies_apart() -> None:
    data = {"revision": "r", "config": {}, "policies": {"a": {"p": {}}}}
    assert render.opa_documents(data) == {
        "aidp": {"revision": "r", "config": {}},
        "aidp_policies": {"a": {"p": {}}},
    }
    assert render.opa_documents({"revision": "r"})["aidp_policies"] == {}


NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
WANT = {"matchedWorkloads": 2, "violations": 1, "lastAuditTime": "2026-12-01T12:00:00Z"}


@pytest.mark.parametrize(
    ("current", "due"),
    [
        ({}, True),  # never audited
        ({"matchedWorkloads": 2, "violations": 0, "lastAuditTime": "2026-12-01T11:59:00Z"}, True),
        ({"matchedWorkloads": 2, "violations": 1, "lastAuditTime": "2026-12-01T11:59:00Z"}, False),
        ({"matchedWorkloads": 2, "violations": 1, "lastAuditTime": "2026-12-01T11:55:00Z"}, True),
        ({"matchedWorkloads": 2, "violations": 1, "lastAuditTime": "garbage"}, True),
    ],
)
def test_audit_figures_are_written_when_changed_or_an_interval_old(
    current: dict[str, Any], due: bool
) -> None:
    assert audit_status_due(current, WANT, NOW, 300.0) is due


def _parsed_with_keys(objs: list[dict[str, Any]]) -> tuple[list[Any], dict[str, str]]:
    """The parsed policies and each namespace's digest (what the reconciler passes as keys)."""
    from aidp.model import Policy

    policies = [Policy.from_object(o) for o in objs]
    by_ns: dict[str, list[Policy]] = {}
    for p in policies:
        by_ns.setdefault(p.namespace, []).append(p)
    return policies, {ns: opadata.digest(opadata.namespace_document(ps)) for ns, ps in by_ns.items()}


def test_egress_rendering_reuses_unchanged_namespaces_and_equals_render_all() -> None:
    from aidp.controller.egress import EgressApplier
    from aidp.egress import backends
    from aidp.egress.model import AddressBook, EgressContext
    from aidp.model import Policy

    def world(retention: int) -> tuple[list[Policy], dict[str, str]]:
        objs = [helpers.policy(f"p{i}", f"ns-{i % 4}") for i in range(12)]
        objs[0]["spec"]["retention"] = {"maxDays": retention}
        objs[5]["spec"]["enforcement"] = "dryrun"
        return _parsed_with_keys(objs)

    backend = backends.get("networkpolicy")
    applier = EgressApplier(None, backend)  # type: ignore[arg-type]
    ctx = EgressContext(
        AddressBook({"api.openai.com": ("192.0.2.1/32",)}), dt.date(2026, 12, 1), extra_cut={"g": ("x",)}
    )
    first, keys = world(30)
    objs, _, _ = applier._render(first, ctx, keys)
    assert objs == backends.render_all(backend, first, ctx)
    kept = {ns: hit.objects for ns, hit in applier._rendered.items()}
    second, keys2 = world(7)  # one policy of ns-0 changed
    objs2, prints, _ = applier._render(second, ctx, keys2)
    assert objs2 == backends.render_all(backend, second, ctx) and len(prints) == len(objs2)
    # reused: every namespace but the changed one and "g" (no policies: no digest, always rendered)
    assert all(applier._rendered[ns].objects is kept[ns] for ns in kept if ns not in ("ns-0", "g"))
    assert applier._rendered["g"].objects is not kept["g"]
    assert applier._rendered["ns-0"].objects is not kept["ns-0"]
    later = EgressContext(ctx.addresses, dt.date(2026, 12, 2), extra_cut=ctx.extra_cut)
    applier._render(second, later, keys2)
    assert all(applier._rendered[ns].objects is not kept[ns] for ns in kept)  # a new day: all again


def test_incremental_egress_apply_looks_only_at_namespaces_rendered_again() -> None:
    """Between full passes, only the namespaces rendered again (and those gone) are compared with
    what was applied; what is remembered as applied equals the full rendering afterwards."""
    import asyncio

    from aidp.controller.egress import EgressApplier, key_of
    from aidp.egress import backends
    from aidp.egress.model import AddressBook, EgressContext
    from aidp.model import Policy

    class Recorder:  # stands in for the API client: records the writes asked for
        def __init__(self) -> None:
            self.applied: list[tuple[str, str, str]] = []
            self.deleted: list[tuple[str, str]] = []

        async def apply(self, obj: Any, **_: Any) -> None:
            self.applied.append(key_of(obj.to_dict() if hasattr(obj, "to_dict") else obj))

        async def delete(self, res: Any, name: str, namespace: str | None = None) -> None:
            self.deleted.append((str(namespace), name))

    def world(namespaces: int, retention: int) -> tuple[list[Policy], dict[str, str]]:
        objs = [helpers.policy(f"p{i}", f"ns-{i % namespaces}") for i in range(3 * namespaces)]
        objs[0]["spec"]["workloadSelector"] = {"matchLabels": {"app": f"bot-{retention}"}}  # its egress
        return _parsed_with_keys(objs)

    backend = backends.get("networkpolicy")
    client = Recorder()
    applier = EgressApplier(client, backend)  # type: ignore[arg-type]
    ctx = EgressContext(AddressBook({"api.openai.com": ("192.0.2.1/32",)}), dt.date(2026, 12, 1))
    first, keys = world(4, 30)
    objs, prints, _ = applier._render(first, ctx, keys)
    applier._applied = {key_of(o): f for o, f in zip(objs, prints, strict=True)}  # as a full pass leaves it

    def remembered_is_everything(policies: list[Policy]) -> bool:
        every = backends.render_all(backend, policies, ctx)
        return applier._applied == {key_of(o): opadata.digest(o) for o in every}

    second, keys2 = world(4, 7)  # policy p0 of ns-0 changed
    result = asyncio.run(applier.reconcile(second, ctx, verify_live=False, namespace_keys=keys2))
    assert client.applied and {k[1] for k in client.applied} == {"ns-0"}, client.applied
    assert not client.deleted and not result.errors
    assert remembered_is_everything(second)
    # between passes the renderings keep fingerprints and keys, not the objects
    assert applier._rendered and not any(r.objects for r in applier._rendered.values())
    assert {ns for ns, _ in result.by_policy} == {"ns-0", "ns-1", "ns-2", "ns-3"}  # every namespace's
    client.applied.clear()
    third = [p for p in second if p.namespace != "ns-3"]  # ns-3's policies gone: its objects deleted
    keys3 = {ns: k for ns, k in keys2.items() if ns != "ns-3"}
    asyncio.run(applier.reconcile(third, ctx, verify_live=False, namespace_keys=keys3))
    assert client.deleted and {ns for ns, _ in client.deleted} == {"ns-3"}, client.deleted
    assert not client.applied  # nothing else written
    assert remembered_is_everything(third)
