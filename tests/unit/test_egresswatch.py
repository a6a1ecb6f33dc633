"""The watches that wake the reconciler on egress objects (aidp.controller.egresswatch): which kinds
each backend watches, and how an event is routed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from aidp.controller import egresswatch


def names(backend: str) -> list[tuple[str, bool, bool]]:
    return [(k.name, k.namespaced, k.users) for k in egresswatch.kinds(backend)]


@pytest.mark.parametrize(
    ("backend", "want"),
    [
        ("networkpolicy", [("networkpolicies", True, True)]),
        ("none", [("networkpolicies", True, True)]),  # users' policies still isolate pods
        ("cilium", [("networkpolicies", True, True), ("ciliumnetworkpolicies", True, True)]),
        ("clusternetworkpolicy", [("networkpolicies", True, True), ("clusternetworkpolicies", False, False)]),
        ("adminnetworkpolicy", [("networkpolicies", True, True), ("adminnetworkpolicies", False, False)]),
    ],
)
def test_each_backend_watches_networkpolicies_and_its_own_kind(
    backend: str, want: list[tuple[str, bool, bool]]
) -> None:
    assert names(backend) == want


def obj(labels: Any, namespace: Any = "team") -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(labels=labels, namespace=namespace))


def route(kind: egresswatch.WatchedKind, o: Any) -> list[str]:
    calls: list[str] = []
    wake = egresswatch.Wakers(
        managed=lambda: calls.append("managed"), user=lambda ns: calls.append(f"user:{ns}")
    )
    egresswatch.dispatch(kind, o, wake)
    return calls


def test_events_wake_the_reconciler_for_generated_and_users_objects() -> None:
    netpol, admin = egresswatch.kinds("adminnetworkpolicy")
    assert route(netpol, obj({"app.kubernetes.io/managed-by": "aidp"})) == ["managed"]
    assert route(netpol, obj({"app": "x"})) == ["user:team"]
    assert route(netpol, obj(None)) == ["user:team"]
    # someone else's "managed-by" is a user's object
    assert route(netpol, obj({"app.kubernetes.io/managed-by": "helm"})) == ["user:team"]
    # cluster-scoped admin-tier objects: only aidp's own matter
    assert route(admin, obj({"app.kubernetes.io/managed-by": "aidp"}, None)) == ["managed"]
    assert route(admin, obj({"x": "y"}, None)) == []


def test_odd_events_are_ignored() -> None:
    netpol = egresswatch.kinds("networkpolicy")[0]
    assert route(netpol, SimpleNamespace()) == []  # no metadata
    assert route(netpol, obj({"a": "b"}, namespace="")) == []
    assert route(netpol, obj("not-a-mapping", namespace=7)) == []
