"""The reconciler's own copy of the AIDataPolicies between full syncs (aidp.controller.reconciler):
slimmed, taken from watch events in order, stale events dropped, changed namespaces marked; the
audit loop's rule for writing its figures (aidp.controller.auditloop.audit_status_due)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from aidp import render
from aidp.config import OperatorConfig
from aidp.controller import reconciler as rec_mod
from aidp.controller.auditloop import audit_status_due
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
    s = rec_mod.slim(o)
    assert "managedFields" not in s["metadata"]
    assert s["metadata"]["annotations"] == {"team": "a"}
    assert s["spec"] == o["spec"] and s["status"] == {"phase": "Active"}
    s["spec"]["provider"] = "changed"
    assert o["spec"]["provider"] == "openai"  # a copy: the watch's body is not shared


def test_events_mark_only_namespaces_whose_policies_changed(rec: rec_mod.Reconciler) -> None:
    rec.observe(obj("p", "a"))
    rec.observe(obj("q", "b", uid="u2"))
    rec._take_events()
    assert rec.dirty == {"a", "b"} and set(rec.objects) == {("a", "p"), ("b", "q")}
    rec.dirty.clear()
    rec.observe(obj("p", "a", rv="11", phase="Active"))  # a status write: same generation
    rec._take_events()
    assert rec.dirty == set() and rec.objects[("a", "p")]["status"] == {"phase": "Active"}
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
    assert held["metadata"]["generation"] == 3 and "status" not in held and rec.dirty == set()
    # a deletion of another object with the same name (another uid) leaves this one
    rec.observe(obj("p", "a", uid="other"), deleted=True)
    rec._take_events()
    assert ("a", "p") in rec.objects
    # a new object under the same name (new uid) replaces it and marks the namespace
    rec.observe(obj("p", "a", uid="new", generation=1, rv="5"))
    rec._take_events()
    assert rec.objects[("a", "p")]["metadata"]["uid"] == "new" and rec.dirty == {"a"}


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


def test_egress_rendering_reuses_unchanged_namespaces_and_equals_render_all() -> None:
    from aidp import opadata
    from aidp.controller.egress import EgressApplier
    from aidp.egress import backends
    from aidp.egress.model import AddressBook, EgressContext
    from aidp.model import Policy

    def world(retention: int) -> tuple[list[Policy], dict[str, str]]:
        objs = [helpers.policy(f"p{i}", f"ns-{i % 4}") for i in range(12)]
        objs[0]["spec"]["retention"] = {"maxDays": retention}
        objs[5]["spec"]["enforcement"] = "dryrun"
        policies = [Policy.from_object(o) for o in objs]
        by_ns: dict[str, list[Policy]] = {}
        for p in policies:
            by_ns.setdefault(p.namespace, []).append(p)
        return policies, {ns: opadata.digest(opadata.namespace_document(ps)) for ns, ps in by_ns.items()}

    backend = backends.get("networkpolicy")
    applier = EgressApplier(None, backend)  # type: ignore[arg-type]
    ctx = EgressContext(
        AddressBook({"api.openai.com": ("192.0.2.1/32",)}), dt.date(2026, 12, 1), extra_cut={"g": ("x",)}
    )
    first, keys = world(30)
    objs, _ = applier._render(first, ctx, keys)
    assert objs == backends.render_all(backend, first, ctx)
    kept = {ns: hit[1] for ns, hit in applier._rendered.items()}
    second, keys2 = world(7)  # one policy of ns-0 changed
    objs2, prints = applier._render(second, ctx, keys2)
    assert objs2 == backends.render_all(backend, second, ctx) and len(prints) == len(objs2)
    # reused: every namespace but the changed one and "g" (no policies: no digest, always rendered)
    assert all(applier._rendered[ns][1] is kept[ns] for ns in kept if ns not in ("ns-0", "g"))
    assert applier._rendered["g"][1] is not kept["g"]
    assert applier._rendered["ns-0"][1] is not kept["ns-0"]
    later = EgressContext(ctx.addresses, dt.date(2026, 12, 2), extra_cut=ctx.extra_cut)
    applier._render(second, later, keys2)
    assert all(applier._rendered[ns][1] is not kept[ns] for ns in kept)  # a new day: all again
