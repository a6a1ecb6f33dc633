"""aidp's handlers are all on.event, so Kopf's per-event diff base is not kept
(aidp.controller.kopfstorage)."""

from __future__ import annotations

import inspect

import kopf
import pytest
from kopf._cogs.structs import bodies

from aidp.controller import handlers, kopfstorage


def test_the_operator_registers_no_handler_that_needs_the_diff_base() -> None:
    registry = kopf.get_default_registry()
    assert handlers.policy_changed  # the module registered its handlers on import
    assert kopfstorage.changing_handlers(registry) == []
    kopfstorage.check_events_only(registry)  # what startup checks


def test_a_changing_handler_is_refused() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.update("aidp.io", "v1alpha1", "aidatapolicies", registry=registry)
    def updated(**_: object) -> None:
        return None

    assert [i.rsplit(".", 1)[-1] for i in kopfstorage.changing_handlers(registry)] == ["updated"]
    with pytest.raises(RuntimeError, match=r"diff base.*updated"):
        kopfstorage.check_events_only(registry)


def test_nothing_is_copied_or_stored() -> None:
    store = kopfstorage.EventsOnly()
    body = bodies.Body({"metadata": {"name": "x", "annotations": {"a": "b"}}, "spec": {"big": "x" * 1000}})
    assert store.build(body=body) == {}
    assert store.fetch(body=body) == {}
    patch = kopf.Patch()
    store.store(body=body, patch=patch, essence=bodies.BodyEssence())
    assert not patch  # no annotation written on the object


def test_every_event_handler_runs_in_the_event_loop() -> None:
    """Kopf runs a plain function in a worker thread, where trigger()'s asyncio.Event.set is not
    safe: every handler of the module is a coroutine function."""
    for name in (
        "policy_changed",
        "namespace_changed",
        "pod_changed",
        "webhook_changed",
        "vap_object_changed",
    ):
        assert inspect.iscoroutinefunction(getattr(handlers, name)), name
