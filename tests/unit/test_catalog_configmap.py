"""The provider catalog in a ConfigMap: the reference, the parsing, and what the watch does with each
change (applied, or refused with the last good catalog kept), on any data a ConfigMap can hold.
The watch against a real API server: tests/integration/test_catalog_configmap.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event

from aidp import catalog, metrics
from aidp.controller import catalogwatch
from aidp.controller.catalogwatch import CatalogWatch

BUILTIN_TEXT = catalog.BUILTIN_FILE.read_text(encoding="utf-8")
REF = catalog.ConfigMapRef("aidp-system", "providers")
EXTRA = """
  - name: acme-ai
    endpoints: [api.acme-ai.test]
    detection: {env: ["ACME_AI_*"]}
    facts:
      legalEntity: {value: Acme AI Ltd, source: unverified}
      processorTerms: {value: Acme DPA, source: unverified}
      apiRetention: {value: none, source: unverified}
      zeroDataRetention: {available: unverified, value: unknown, source: unverified}
      trainsOnApiData: {value: unverified, source: unverified}
"""


@pytest.fixture(autouse=True)
def builtin_catalog() -> Iterator[None]:
    catalog.use(None)
    yield
    catalog.use(None)


def test_a_reference_is_namespace_name_and_an_optional_key() -> None:
    assert catalog.ConfigMapRef.parse("aidp-system/providers") == REF
    assert REF.key == "providers.yaml" == catalog.CONFIGMAP_KEY
    assert catalog.ConfigMapRef.parse("ns/cm:cat.yaml") == catalog.ConfigMapRef("ns", "cm", "cat.yaml")
    for bad in ("providers", "/providers", "ns/", "NS/cm", "ns/cm:", "ns/cm:a b", "ns/cm/x"):
        with pytest.raises(ValueError, match=r"NAMESPACE/NAME|ConfigMap key"):
            catalog.ConfigMapRef.parse(bad)


def test_a_configmaps_catalog_is_parsed_and_errors_name_the_configmap_line_and_field() -> None:
    cat = catalog.from_configmap({"providers.yaml": BUILTIN_TEXT + EXTRA}, REF)
    assert "acme-ai" in cat and cat.source == "ConfigMap aidp-system/providers key providers.yaml"
    bad = BUILTIN_TEXT.replace("  - name: openai\n", "  - name: 5\n", 1)
    with pytest.raises(catalog.CatalogError) as info:
        catalog.from_configmap({"providers.yaml": bad}, REF)
    line = next(i + 1 for i, s in enumerate(bad.splitlines()) if s == "  - name: 5")
    assert str(info.value) == (
        f"provider catalog ConfigMap aidp-system/providers key providers.yaml:{line}: "
        "providers[0].name: Expected `str`, got `int`"
    )


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "the ConfigMap has no key providers.yaml (its keys: none)"),
        ({}, "the ConfigMap has no key providers.yaml (its keys: none)"),
        ({"other.yaml": "x"}, "the ConfigMap has no key providers.yaml (its keys: other.yaml)"),
        ({"providers.yaml": 5}, "the key's value is not text but int"),
        ([1, 2], "the ConfigMap's data is not a mapping but list"),
        ({"providers.yaml": ""}, "is empty; expected a mapping with `providers`"),
        ({"providers.yaml": "providers: ["}, "invalid YAML"),
        ({"providers.yaml": "- a\n- b\n"}, "Expected `object`, got `array`"),
    ],
)
def test_odd_configmap_data_is_refused_with_a_message(data: object, problem: str) -> None:
    with pytest.raises(catalog.CatalogError) as info:
        catalog.from_configmap(data, REF)
    assert problem in str(info.value) and "ConfigMap aidp-system/providers" in str(info.value)


class Recorder:
    """Where the watch posts its Events (the API server's part is the integration test's)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def create(self, obj: Event) -> Event:
        self.events.append(obj)
        return obj


def configmap(data: Any) -> ConfigMap:
    cm = ConfigMap(
        metadata=ObjectMeta(name="providers", namespace="aidp-system", uid="u1", resourceVersion="1")
    )
    cm.data = data
    return cm


def watcher(recorder: Recorder, changes: list[int]) -> CatalogWatch:
    w = CatalogWatch(recorder, REF, lambda: changes.append(1))  # type: ignore[arg-type]
    w.started_with({"providers.yaml": BUILTIN_TEXT})
    return w


def test_a_valid_change_is_applied_and_an_invalid_one_keeps_the_last_good() -> None:
    recorder, changes = Recorder(), []
    w = watcher(recorder, changes)

    async def scenario() -> None:
        await w.observe("ADDED", configmap({"providers.yaml": BUILTIN_TEXT}))  # as at start: nothing
        assert changes == [] and recorder.events == []
        await w.observe("MODIFIED", configmap({"providers.yaml": BUILTIN_TEXT + EXTRA}))
        assert "acme-ai" in catalog.current() and changes == [1]
        assert [e.reason for e in recorder.events] == [catalogwatch.APPLIED]
        assert metrics.CATALOG_REJECTED._value.get() == 0
        bad = BUILTIN_TEXT + EXTRA.replace('env: ["ACME_AI_*"]', "env: ACME_AI_KEY")
        await w.observe("MODIFIED", configmap({"providers.yaml": bad}))
        assert "acme-ai" in catalog.current() and changes == [1]  # the last good one
        warning = recorder.events[-1]
        assert (warning.type, warning.reason) == ("Warning", catalogwatch.REJECTED)
        assert warning.involvedObject.kind == "ConfigMap" and warning.involvedObject.name == "providers"
        line = next(i + 1 for i, s in enumerate(bad.splitlines()) if "env: ACME_AI_KEY" in s)
        assert f"key providers.yaml:{line}: providers[7].detection.env: Expected `array`" in (
            warning.message or ""
        )
        assert "keeping the last good catalog" in (warning.message or "")
        assert metrics.CATALOG_REJECTED._value.get() == 1
        await w.observe("MODIFIED", configmap({"providers.yaml": bad}))  # the same again: said once
        assert len(recorder.events) == 2
        for odd in (None, {"providers.yaml": None}, {"x": "y"}, "text"):
            await w.observe("MODIFIED", configmap(odd) if odd != "text" else object())
        await w.observe("DELETED", configmap(None))
        assert "acme-ai" in catalog.current() and changes == [1]
        assert recorder.events[-1].reason == catalogwatch.REJECTED and "deleted" in (
            recorder.events[-1].message or ""
        )
        await w.observe("ADDED", configmap({"providers.yaml": BUILTIN_TEXT + EXTRA}))  # back: in use
        assert changes == [1] and metrics.CATALOG_REJECTED._value.get() == 0
        await w.observe("MODIFIED", configmap({"providers.yaml": BUILTIN_TEXT}))
        assert "acme-ai" not in catalog.current() and changes == [1, 1]

    asyncio.run(scenario())


def test_a_replica_that_does_not_work_posts_no_events() -> None:
    recorder, changes = Recorder(), []
    w = CatalogWatch(recorder, REF, lambda: changes.append(1), report=lambda: False)  # type: ignore[arg-type]
    asyncio.run(w.observe("MODIFIED", configmap({"providers.yaml": BUILTIN_TEXT + EXTRA})))
    asyncio.run(w.observe("MODIFIED", configmap({"providers.yaml": "providers: 5"})))
    assert "acme-ai" in catalog.current() and changes == [1] and recorder.events == []
