"""What the audit makes once per pod template (aidp.audit.engine): the template's facts, the records
that workloads of one template share, and the verdicts of workloads that agree on what the Rego
reads. Two workloads that differ in one field the verdict, the detector or the record reads are never
merged: judged together in one page, each comes out as it does alone (a real OPA)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aidp.audit import records
from aidp.audit.engine import Auditor, _frozen, _meta_key, _template_annotations
from aidp.audit.rbac import RbacIndex
from aidp.audit.report import AuditReport
from aidp.model import Policy
from aidp.workloads import pod_template
from tests.integration import helpers
from tests.unit.test_audit_engine import local_evaluator

NS = "tpl"
OTHER = "tpl-other"
TODAY = dt.date(2026, 6, 1)
POLICIES = [
    helpers.policy("bots", NS),
    helpers.policy("warned", NS, enforcement="warn", workloadSelector={"matchLabels": {"app": "warned"}}),
]


@pytest.fixture(scope="module")
def evaluate() -> Iterator[Any]:
    yield from local_evaluator(POLICIES)


# egress rules for the pods labelled tier=web: their records name it (securityMeasures.egressRules)
WEB_EGRESS = {
    "metadata": {"name": "web-egress", "namespace": NS},
    "spec": {"podSelector": {"matchLabels": {"tier": "web"}}, "policyTypes": ["Egress"], "egress": [{}]},
}


def _auditor(evaluate: Any) -> Auditor:
    return Auditor(
        evaluate,
        [Policy.from_object(p) for p in POLICIES],
        TODAY,
        network_policies=[WEB_EGRESS],
        rbac=RbacIndex.build([], [], [], []),
    )


def _audit(evaluate: Any, objects: list[dict[str, Any]]) -> AuditReport:
    auditor = _auditor(evaluate)
    auditor.add(copy.deepcopy(objects))
    report = auditor.finish()
    records.finalise(report, POLICIES)
    return report


def _outcomes(report: AuditReport) -> dict[tuple[str, str, str], Any]:
    """Per workload: its findings and its records (as the JSON report has them)."""
    out: dict[tuple[str, str, str], Any] = {k: ([], []) for k in report.workload_keys}
    for f in report.findings:
        out[(f.namespace, f.kind, f.name)][0].append(f.to_dict())
    for r in report.records:
        out[(r.namespace, r.kind, r.name)][1].append(r.to_dict())
    return {k: (sorted(map(str, fs)), sorted(map(str, rs))) for k, (fs, rs) in out.items()}


def _pod(name: str, change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    obj = helpers.workload("Pod", name, NS)
    if change is not None:
        change(obj)
    return obj


def _ann(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda o: o["metadata"]["annotations"].__setitem__(key, value)


def _label(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda o: o["metadata"]["labels"].__setitem__(key, value)


def _spec(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda o: o["spec"].__setitem__(key, value)


def _env(o: dict[str, Any]) -> None:
    """Unselected (as "unselected") and with an AI key: shadow AI, where "unselected" has none."""
    o["metadata"]["labels"]["app"] = "other"
    o["spec"]["containers"][0]["env"] = [{"name": "OPENAI_API_KEY", "value": "sk"}]


def _namespace(o: dict[str, Any]) -> None:
    o["metadata"]["namespace"] = OTHER


def _annotations_reordered(o: dict[str, Any]) -> None:
    o["metadata"]["annotations"] = dict(reversed(list(o["metadata"]["annotations"].items())))


# each differs from the compliant pod in one field that the verdict, the detector or the record reads
VARIANTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "retention": _ann("aidp.io/retention-days", "31"),
    "retention-not-a-string": _ann("aidp.io/retention-days", 14),  # absent to the Rego
    "retention-true": _ann("aidp.io/retention-days", True),
    "basis": _ann("aidp.io/consent-basis", "legitimate-interests"),
    "categories": _ann("aidp.io/data-categories", "internal"),  # the record's categories
    "purpose": _ann("aidp.io/purpose", "another purpose"),  # the record's purpose only
    "zdr": _ann("aidp.io/zero-data-retention", "false"),
    "unselected": _label("app", "other"),
    "warned": _label("app", "warned"),
    "label-not-a-string": _label("app", 1),
    "extra-label": _label("tier", "web"),
    "service-account": _spec("serviceAccountName", "default"),
    "host-network": _spec("hostNetwork", True),
    "env": _env,
    "namespace": _namespace,
    "reordered": _annotations_reordered,  # the same verdict and record, another key
}


def test_workloads_differing_in_one_read_field_are_judged_and_recorded_as_each_alone(evaluate: Any) -> None:
    base = _pod("base")
    variants = [_pod(name, change) for name, change in VARIANTS.items()]
    twins = [_pod(f"twin-{i}") for i in range(3)]  # the base's template exactly
    together = _outcomes(_audit(evaluate, [base, *variants, *twins]))
    alone: dict[tuple[str, str, str], Any] = {}
    for obj in [base, *variants, *twins]:
        alone |= _outcomes(_audit(evaluate, [obj]))
    assert together == alone

    # and the variants do read differently from the base (else the test would prove nothing)
    def of(name: str, ns: str = NS) -> Any:
        return together[(ns, "Pod", name)]

    assert of("base")[1] and all("record-incomplete" in f for f in of("base")[0])  # approved
    for name in VARIANTS:
        if name in ("reordered",):
            assert of(name) == _renamed(of("base"), "base", name)
            continue
        got = of(name, OTHER if name == "namespace" else NS)
        like = "unselected" if name == "env" else "base"
        assert got != _renamed(of(like), like, name), name
    for i in range(3):
        assert of(f"twin-{i}") == _renamed(of("base"), "base", f"twin-{i}")


def _renamed(outcome: Any, old: str, new: str) -> Any:
    fs, rs = outcome
    swap = lambda items: sorted(s.replace(f"'name': '{old}'", f"'name': '{new}'") for s in items)  # noqa: E731
    return swap(fs), swap(rs)


def test_the_records_of_one_template_share_values_but_not_names(evaluate: Any) -> None:
    report = _audit(evaluate, [_pod(f"w-{i}") for i in range(4)])
    assert sorted(r.name for r in report.records) == [f"w-{i}" for i in range(4)]
    first, *rest = report.records
    for r in rest:  # made once for the template
        assert r.dataCategories is first.dataCategories and r.securityMeasures is first.securityMeasures


ODD_OBJECTS: list[dict[str, Any]] = [
    helpers.workload("Pod", "p", NS),
    helpers.workload("Deployment", "d", NS, labels={"app": "bot", "n": 1}),  # type: ignore[dict-item]
    helpers.workload("CronJob", "c", NS, annotations={"a": True, "b": ["x"]}),  # type: ignore[dict-item]
    helpers.workload("StatefulSet", "s", NS, labels={}, annotations={}),
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "labels": ["x"], "annotations": "y"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": 3}},
    {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {},
        "spec": {"template": {"spec": {"serviceAccount": "old"}}},
    },
]


@pytest.mark.parametrize("obj", ODD_OBJECTS, ids=lambda o: f"{o['kind']}-{o['metadata'].get('name')}")
def test_template_facts_are_pod_template_s(obj: dict[str, Any]) -> None:
    """Auditor._template gives what pod_template, _template_annotations and the keys derived from
    them give, the first time and from its memo."""
    auditor = Auditor(lambda reviews: [], [], TODAY)
    tpl = pod_template(obj)
    listed = _template_annotations(obj)
    want = (tpl, listed, tuple(sorted(tpl.labels.items())) if tpl else (), _frozen(listed))
    assert auditor._template(obj) == want
    assert auditor._template(copy.deepcopy(obj)) == want


def test_meta_key_tells_apart_what_reads_differently() -> None:
    keys = [
        _meta_key({"a": "1"}, None),
        _meta_key(None, {"a": "1"}),
        _meta_key({"a": "1"}, {}),
        _meta_key({"a": "1", "b": "2"}, None),
        _meta_key({"a": "2"}, None),
    ]
    assert len(set(keys)) == len(keys) and None not in keys
    assert _meta_key({"a": "1"}, None) == _meta_key({"a": "1"}, None)
    # values that are not strings (1, True, 1.0 are equal in Python, and read differently): no key
    for odd in ({"a": 1}, {"a": True}, {"a": 1.0}, {1: "a"}, {"a": ["x"]}, ["x"], "s"):
        assert _meta_key(odd, None) is None and _meta_key(None, odd) is None


def test_finalise_copies_records_as_dataclasses_replace_does(evaluate: Any) -> None:
    report = _audit(evaluate, [_pod("a"), _pod("b", _ann("aidp.io/data-categories", "internal"))])
    for r in report.records:
        ev = records.evidence({"metadata": {"generation": 2}, "status": {"revision": "r1"}})
        copied = records._with(r, ev, r.securityMeasures)
        assert copied == dataclasses.replace(r, evidence=ev) and copied is not r
        assert type(copied) is type(r) and copied.evidence is ev and r.evidence is not ev
