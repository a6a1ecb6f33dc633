"""Records of processing (contract section 9, aidp.audit.records), what changed since the previous
report (aidp.audit.changes), the per-namespace summary and `aidp audit -o pdf|--previous` errors."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aidp.audit import changes, crs, formats, pdf, records
from aidp.audit.report import AuditReport, Finding, NamespaceTally, ProcessingRecord
from aidp.model import Policy, PolicyError
from aidp.policy import TRANSFER_SAFEGUARDS
from tests.integration import helpers

NS = "support"
COMPLETE = {
    "controller": {"name": "Example GmbH", "contact": "privacy@example.com"},
    "dataSubjects": ["customers", "support agents"],
    "transfers": {"safeguard": "dpf"},
}


def policy(**spec: Any) -> Policy:
    return Policy.from_object(helpers.policy("bots", NS, **spec))


# --- the new AIDataPolicy fields ------------------------------------------------------------------


def test_the_record_fields_are_parsed() -> None:
    p = policy(**COMPLETE)
    assert p.spec.controller is not None
    assert (p.spec.controller.name, p.spec.controller.contact) == ("Example GmbH", "privacy@example.com")
    assert p.spec.data_subjects == ("customers", "support agents")
    assert p.spec.transfers.safeguard == "dpf"
    bare = policy()
    assert bare.spec.controller is None and bare.spec.data_subjects == ()
    assert bare.spec.transfers.safeguard is None


@pytest.mark.parametrize(
    ("spec", "path", "problem"),
    [
        ({"controller": {"contact": "x@example.com"}}, "spec.controller.name", "is required"),
        ({"controller": {"name": ""}}, "spec.controller.name", "must not be empty"),
        ({"controller": {"name": "x" * 254}}, "spec.controller.name", "at most 253"),
        ({"controller": {"name": "x", "contact": 7}}, "spec.controller.contact", "must be a string"),
        ({"controller": "Example GmbH"}, "spec.controller", "must be an object"),
        ({"dataSubjects": ["a", "a"]}, "spec.dataSubjects[1]", "duplicate value 'a'"),
        ({"dataSubjects": [""]}, "spec.dataSubjects[0]", "must not be empty"),
        ({"dataSubjects": ["x" * 129]}, "spec.dataSubjects[0]", "at most 128"),
        ({"dataSubjects": [f"s{i}" for i in range(65)]}, "spec.dataSubjects", "at most 64 items"),
        (
            {"transfers": {"safeguard": "trust-me"}},
            "spec.transfers.safeguard",
            "unsupported value 'trust-me'",
        ),
    ],
)
def test_bad_record_fields_are_refused_naming_the_field(
    spec: dict[str, Any], path: str, problem: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        policy(**spec)
    assert caught.value.path == path and problem in caught.value.problem, str(caught.value)


def test_the_crd_declares_the_record_fields_in_both_copies() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    texts = [(root / d / "aidp.io_aidatapolicies.yaml").read_text() for d in ("crds", "charts/aidp/crds")]
    assert texts[0] == texts[1]
    spec = yaml.safe_load(texts[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert props["controller"]["required"] == ["name"]
    assert props["controller"]["properties"]["name"]["maxLength"] == 253
    assert props["dataSubjects"]["x-kubernetes-list-type"] == "set"
    assert props["dataSubjects"]["maxItems"] == 64
    assert props["transfers"]["properties"]["safeguard"]["enum"] == list(TRANSFER_SAFEGUARDS)


# --- transfers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "countries", "undetermined"),
    [
        ({"dataResidency": "eu"}, [], []),
        ({}, ["United States"], []),  # api.openai.com
        ({"dataResidency": "jp"}, ["Japan"], []),
        ({"provider": "aws-bedrock", "dataResidency": "eu-west-2"}, ["United Kingdom"], []),
        ({"provider": "aws-bedrock", "dataResidency": "eu-central-1"}, [], []),
        ({"provider": "google-gemini", "dataResidency": "europe-west4"}, [], []),
        ({"provider": "mistral"}, [], []),
        ({"provider": "cohere"}, ["Canada"], []),
        (
            {"provider": "azure-openai", "endpoints": [{"host": "myres.openai.azure.com"}]},
            [],
            ["myres.openai.azure.com"],
        ),
        (  # a regional host listed by hand
            {"provider": "aws-bedrock", "endpoints": [{"host": "bedrock-runtime.us-east-1.amazonaws.com"}]},
            ["United States"],
            [],
        ),
    ],
)
def test_third_countries_follow_the_endpoints(
    spec: dict[str, Any], countries: list[str], undetermined: list[str]
) -> None:
    t = records.transfers(policy(**spec))
    assert (t.thirdCountries, t.undetermined) == (countries, undetermined), t.basis


def test_the_countries_are_the_catalogs_data() -> None:
    from aidp import catalog

    builtin = catalog.builtin()
    # every residency region of the built-in catalog has its country
    missing = [(p.name, r) for p in builtin for r in p.regions if r not in builtin.regions]
    assert missing == []
    text = catalog.BUILTIN_FILE.read_text(encoding="utf-8")
    moved = text.replace("  jp: {country: Japan, eea: false}\n", "  jp: {country: Freedonia, eea: false}\n")
    moved = moved.replace(
        "    globalCountry: {country: Canada, eea: false}\n",
        "    globalCountry: {country: Canada, eea: true}\n",
    )
    try:
        catalog.use(catalog.parse(moved, "moved.yaml"))
        assert records.transfers(policy(dataResidency="jp")).thirdCountries == ["Freedonia"]
        assert records.transfers(policy(provider="cohere")).thirdCountries == []
        # an override without `regions` keeps the built-in table
        head, sep, providers = text.partition("\nproviders:\n")
        without = head.split("\nregions:\n")[0] + sep + providers
        catalog.use(catalog.parse(without, "without.yaml"))
        assert catalog.current().regions == builtin.regions
        assert records.transfers(policy(dataResidency="jp")).thirdCountries == ["Japan"]
    finally:
        catalog.use(None)


def test_recipient_and_provider_retention_come_from_the_catalog() -> None:
    from aidp import catalog

    facts = catalog.current()["openai"].facts
    d = records.details(policy(), {"aidp.io/zero-data-retention": " TRUE "}, {"app": "bot"}, None)
    assert d["recipient"].legalEntity == facts.legal_entity.value
    assert d["recipient"].processorTerms == facts.processor_terms.value
    assert d["providerRetention"].zeroDataRetention is True and d["providerRetention"].days == 0
    kept = records.provider_retention(policy(), {"aidp.io/zero-data-retention": "yes"})
    assert kept.zeroDataRetention is False and kept.days == facts.api_retention.days
    assert kept.retention == facts.api_retention.value
    assert d["securityMeasures"].tls == ["HTTPS (TLS) to api.openai.com:443"]
    assert d["securityMeasures"].egressRules is None  # NetworkPolicies not read


def test_egress_rules_in_force_are_the_network_policies_selecting_the_pods_for_egress() -> None:
    def np(name: str, selector: dict[str, Any], types: list[str], ns: str = NS) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": selector, "policyTypes": types},
        }

    nps = [
        np("aidp-egress-baseline", {}, ["Egress"]),
        np("aidp-egress-bots", {"matchLabels": {"app": "bot"}}, ["Egress"]),
        np("other-app", {"matchLabels": {"app": "other"}}, ["Egress"]),
        np("ingress-only", {}, ["Ingress"]),
        np("elsewhere", {}, ["Egress"], ns="other"),
    ]
    assert records.egress_rules(NS, {"app": "bot"}, nps) == ["aidp-egress-baseline", "aidp-egress-bots"]
    assert records.egress_rules(NS, {"app": "bot"}, []) == []


# --- record-incomplete ----------------------------------------------------------------------------


def record(p: Policy, **over: Any) -> ProcessingRecord:
    base = ProcessingRecord(
        NS,
        "Deployment",
        "bot",
        p.name,
        p.spec.purpose,
        ["api.openai.com:443"],
        "contract",
        14,
        ["internal"],
        None,
        "dpo@example.com",
        None,
        **records.details(p, {}, {"app": "bot"}, []),
    )
    return dataclasses.replace(base, **over)


def test_a_complete_record_lacks_nothing() -> None:
    assert records.missing(record(policy(**COMPLETE))) == []


def test_each_missing_art30_item_is_named() -> None:
    lacks = records.missing(record(policy(), retentionDays=None, dataCategories=[]))
    assert lacks == [
        "the controller's name (spec.controller.name)",
        "the controller's contact details (spec.controller.contact)",
        "the categories of data subjects (spec.dataSubjects)",
        "the categories of personal data (annotation aidp.io/data-categories)",
        "the safeguard for the transfer to United States (spec.transfers.safeguard)",
        "the time limit for erasure (annotation aidp.io/retention-days)",
    ]
    blank = record(policy(**{**COMPLETE, "controller": {"name": " \t", "contact": "x"}}))
    assert records.missing(blank) == ["the controller's name (spec.controller.name)"]
    none = record(policy(**{**COMPLETE, "transfers": {"safeguard": "none"}}))
    assert records.missing(none) == [
        "the safeguard for the transfer to United States (spec.transfers.safeguard)"
    ]
    eu = record(policy(**{**COMPLETE, "transfers": {}}, dataResidency="eu"))
    assert records.missing(eu) == []  # no third country, no safeguard needed


STATUS = {
    "observedGeneration": 3,
    "revision": "abc123",
    "lastAuditTime": "2026-12-01T10:00:00Z",
    "conditions": [
        {"type": "AdmissionEnforced", "status": "True", "reason": "Loaded", "message": "loaded into 1/1"},
        {
            "type": "EgressEnforced",
            "status": "True",
            "reason": "Applied",
            "message": "networkpolicy aidp-egress-bots allows egress to api.openai.com:443",
            "lastTransitionTime": "2026-12-01T09:00:00Z",
        },
    ],
}


def test_finalise_adds_evidence_and_flags_incomplete_records_once() -> None:
    complete, bare = policy(**COMPLETE), policy()
    report = AuditReport(generated_at="2026-12-01T10:05:00Z")
    report.records = [record(complete), dataclasses.replace(record(bare), name="legacy")]
    obj = helpers.policy("bots", NS)
    obj["metadata"]["generation"] = 3
    obj["status"] = STATUS
    records.finalise(report, [obj])
    records.finalise(report, [obj])  # idempotent
    ev = report.records[0].evidence
    assert (ev.bundleRevision, ev.egressRulesVerifiedAt, ev.policyGeneration, ev.observedGeneration) == (
        "abc123",
        "2026-12-01T09:00:00Z",
        3,
        3,
    )
    assert ev.egressStatus is not None and "aidp-egress-bots" in ev.egressStatus
    incomplete = [f for f in report.findings if f.type == "record-incomplete"]
    assert [(f.severity, f.kind, f.name, f.policy) for f in incomplete] == [
        ("low", "Deployment", "legacy", "bots")
    ]
    assert "spec.controller.name" in incomplete[0].message and "GDPR Art. 30(1)" in incomplete[0].message
    assert records.evidence(None) == records.evidence({"metadata": {}})
    # the admission engine in force, when the caller knows it (the operator does)
    records.finalise(report, [obj], "vap")
    records.finalise(report, [obj], "both")  # once named, kept
    admission = report.records[0].securityMeasures.admission or ""
    assert admission.startswith("admission engine vap (ValidatingAdmissionPolicy"), admission
    assert admission.endswith("create and update of the workload's pods")


def test_records_carry_every_section_9_field_in_every_format() -> None:
    p = policy(**COMPLETE)
    report = AuditReport(generated_at="2026-12-01T10:05:00Z", workloads=1, approved=1)
    report.records = [record(p)]
    report.namespaces = {NS: NamespaceTally(1, 1, 0)}
    records.finalise(report, [])
    doc = json.loads(formats.render(report, "json"))
    r = doc["processingRecords"][0]
    assert r["controller"] == {"name": "Example GmbH", "contact": "privacy@example.com"}
    assert r["dataSubjects"] == ["customers", "support agents"]
    assert r["recipient"]["legalEntity"] and r["recipient"]["processorTerms"]
    assert r["transfers"]["thirdCountries"] == ["United States"] and r["transfers"]["safeguard"] == "dpf"
    assert r["providerRetention"]["days"] == 30
    assert r["securityMeasures"]["egressRules"] == []
    assert set(r["evidence"]) >= {"bundleRevision", "egressRulesVerifiedAt"}
    md = formats.render(report, "markdown")
    assert "| Controller | Example GmbH (privacy@example.com) |" in md
    assert "| Transfers to third countries | United States; safeguard: dpf |" in md
    html = formats.render(report, "html")
    assert "Example GmbH" in html and "customers, support agents" in html and "safeguard: dpf" in html
    assert 'class="record-items"' in html


# --- per-namespace summary ------------------------------------------------------------------------


def test_the_summary_per_namespace_counts_findings_by_severity() -> None:
    report = AuditReport(generated_at="2026-12-01T10:05:00Z")
    report.namespaces = {"a": NamespaceTally(3, 1, 1), "b": NamespaceTally(1, 0, 0)}
    report.findings = [
        Finding("policy-violation", "high", "a", "Deployment", "x", "m", "p", "r"),
        Finding("shadow-ai", "high", "a", "Deployment", "y", "m"),
        Finding("review-expiring", "low", "c", "AIDataPolicy", "p", "m", "p"),
    ]
    doc = json.loads(formats.render(report, "json"))
    assert doc["namespaces"] == {
        "a": {
            "workloads": 3,
            "approved": 1,
            "violating": 1,
            "findings": 2,
            "severities": {"critical": 0, "high": 2, "medium": 0, "low": 0, "info": 0},
        },
        "b": {
            "workloads": 1,
            "approved": 0,
            "violating": 0,
            "findings": 0,
            "severities": {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0},
        },
        "c": {  # findings but no workloads (a policy's review)
            "workloads": 0,
            "approved": 0,
            "violating": 0,
            "findings": 1,
            "severities": {"critical": 0, "high": 0, "medium": 0, "low": 1, "info": 0},
        },
    }
    md = formats.render(report, "markdown")
    assert "| a | 3 | 1 | 1 | 0 | 2 | 0 | 0 | 0 |" in md
    assert "| c | 0 | 0 | 0 | 0 | 0 | 0 | 1 | 0 |" in md
    html = formats.render(report, "html")
    rows = re.findall(r'<tr class="namespace"><th scope="row" class="id">(\w)</th>(.*?)</tr>', html)
    assert [(ns, re.findall(r">(\d+)<", cells)) for ns, cells in rows] == [
        ("a", ["3", "1", "1", "0", "2", "0", "0", "0"]),
        ("b", ["1", "0", "0", "0", "0", "0", "0", "0"]),
        ("c", ["0", "0", "0", "0", "0", "0", "1", "0"]),
    ]


# --- what changed ---------------------------------------------------------------------------------


def audited(
    when: str, workloads: list[tuple[str, str, str]], findings: list[Finding], gens: dict[str, int]
) -> AuditReport:
    report = AuditReport(generated_at=when, findings=list(findings))
    report.workload_keys = set(workloads)
    objs = [
        {"metadata": {"namespace": ref.split("/")[0], "name": ref.split("/")[1], "generation": g}}
        for ref, g in gens.items()
    ]
    changes.compare(report, objs, None)
    return report


SHADOW = Finding("shadow-ai", "high", "a", "Deployment", "x", "references OpenAI")
EXPIRING = Finding("review-expiring", "low", "a", "AIDataPolicy", "p", "review expires in 12 days", "p")
VIOLATION = Finding("policy-violation", "high", "b", "Deployment", "y", "retention", "q", "retention-days")


def test_changes_list_exactly_what_changed() -> None:
    before = audited(
        "2026-12-01T10:00:00Z",
        [("a", "Deployment", "x"), ("b", "Deployment", "y")],
        [SHADOW, EXPIRING],
        {"a/p": 1, "b/q": 2, "b/gone": 1},
    )
    after = audited(
        "2026-12-01T11:00:00Z",
        [("b", "Deployment", "y"), ("b", "Deployment", "z")],
        [dataclasses.replace(EXPIRING, message="review expires in 11 days"), VIOLATION],
        {"a/p": 1, "b/q": 3, "b/new": 1},
    )
    c = changes.diff(changes.of_report(before), after)
    assert c.since == "2026-12-01T10:00:00Z"
    assert (c.workloads_added, c.workloads_removed) == (["b/Deployment/z"], ["a/Deployment/x"])
    assert (c.findings_new, c.findings_resolved) == ([VIOLATION], [SHADOW])  # review-expiring: the same
    assert (c.policies_added, c.policies_removed) == (["b/new"], ["b/gone"])
    assert [(p.policy, p.previous_generation, p.generation) for p in c.policies_changed] == [("b/q", 2, 3)]
    assert changes.diff(changes.of_report(after), after).empty
    assert changes.diff(None, after).since is None


def test_a_previous_json_report_round_trips(tmp_path: Path) -> None:
    before = audited("2026-12-01T10:00:00Z", [("a", "Deployment", "x")], [SHADOW], {"a/p": 1})
    after = audited("2026-12-01T11:00:00Z", [("a", "Deployment", "w")], [], {"a/p": 2})
    prev = changes.from_report_json(formats.render(before, "json"))
    after.changes = changes.diff(prev, after)
    doc = json.loads(formats.render(after, "json"))
    assert doc["changes"]["since"] == "2026-12-01T10:00:00Z"
    assert doc["changes"]["workloads"] == {"added": ["a/Deployment/w"], "removed": ["a/Deployment/x"]}
    assert doc["changes"]["findings"]["resolved"] == [SHADOW.to_dict()]
    assert doc["changes"]["policies"]["changed"] == [
        {"policy": "a/p", "generation": 2, "previousGeneration": 1}
    ]
    assert doc["inventory"] == {"workloads": ["a/Deployment/w"], "policies": {"a/p": 2}}
    html = formats.render(after, "html")
    main = html[html.index("<main>") :]
    # the changes come first (after the print-only cover)
    assert main.index('id="changes"') < main.index('id="summary"') < main.index('id="findings"')
    assert re.findall(r'data-change="([\w-]+)"', html) == [
        "workload-added",
        "workload-removed",
        "finding-resolved",
        "policy-changed",
    ]
    md = formats.render(after, "markdown")
    assert md.index("## What changed since 2026-12-01T10:00:00Z") < md.index("## Summary")
    assert "- workload added: a/Deployment/w" in md and "- policy changed: a/p (generation 1 -> 2)" in md
    # an old report without an inventory: findings compared, the rest named as not compared
    old = json.loads(formats.render(before, "json"))
    del old["inventory"]
    c = changes.diff(changes.from_dict(old), after)
    assert c.findings_resolved == [SHADOW] and c.workloads_added == []
    assert any("workloads not compared" in n for n in c.notes)
    with pytest.raises(ValueError, match="not JSON"):
        changes.from_report_json("{")
    with pytest.raises(ValueError, match="not an aidp audit report"):
        changes.from_dict({"kind": "AuditReport"})


def test_in_cluster_reports_carry_the_summary_for_the_next_audit() -> None:
    before = audited(
        "2026-12-01T10:00:00Z", [("a", "Deployment", "x"), ("b", "Pod", "y")], [SHADOW], {"a/p": 1, "c/q": 1}
    )
    objs = crs.render(before)
    assert sorted(o["metadata"]["namespace"] for o in objs) == ["a", "b", "c"]  # c: a policy only
    prev = crs.previous_summary(objs)
    assert prev is not None
    assert prev.workloads == {"a/Deployment/x", "b/Pod/y"} and prev.policies == {"a/p": 1, "c/q": 1}
    assert prev.findings == [SHADOW] and prev.generated_at == "2026-12-01T10:00:00Z"
    after = audited("2026-12-01T11:00:00Z", [("a", "Deployment", "x")], [], {"a/p": 1, "c/q": 2})
    after.changes = changes.diff(prev, after)
    by_ns = {o["metadata"]["namespace"]: o["metadata"]["annotations"] for o in crs.render(after)}
    a = json.loads(by_ns["a"][crs.CHANGES_ANNOTATION])
    assert a["since"] == "2026-12-01T10:00:00Z" and a["counts"]["findingsResolved"] == 1
    assert a["findingsResolved"] == ["high shadow-ai a/Deployment/x"]
    c = json.loads(by_ns["c"][crs.CHANGES_ANNOTATION])
    assert c["policiesChanged"] == ["c/q 1->2"]
    # a damaged annotation is skipped, not fatal
    broken = [{"metadata": {"annotations": {crs.SUMMARY_ANNOTATION: "not base64!"}}}]
    assert crs.previous_summary(broken) is None


def test_a_summary_too_large_for_an_annotation_drops_the_findings() -> None:
    import hashlib

    def noise(i: int) -> str:  # incompressible text
        return "".join(hashlib.sha256(f"{i}-{j}".encode()).hexdigest() for j in range(2))

    many = [Finding("shadow-ai", "high", "a", "Pod", f"p-{i}", noise(i)) for i in range(4000)]
    summary = changes.of_report(audited("t", [("a", "Pod", f"p-{i}") for i in range(10)], many, {"a/p": 1}))
    text = changes.encode(summary)
    assert len(text) <= changes.MAX_ENCODED
    back = changes.decode(text)
    assert back.findings is None  # then unknown: the next diff says findings were not compared
    assert back.workloads == summary.workloads and back.policies == {"a/p": 1}
    small = changes.decode(changes.encode(changes.of_report(audited("t", [], many[:10], {}))))
    assert small.findings == many[:10]


# --- aidp audit -o pdf / --previous ---------------------------------------------------------------


def test_pdf_without_chromium_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(pdf.ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pdf.PdfError, match=r"-o pdf needs headless Chromium.*apt-get install chromium"):
        pdf.find_chromium()
    monkeypatch.setenv(pdf.ENV, str(tmp_path / "nope"))
    with pytest.raises(pdf.PdfError, match="is not an executable"):
        pdf.find_chromium()

    from aidp.cli.main import app

    runner = CliRunner()
    out = runner.invoke(app, ["audit", "-o", "pdf", "--output-file", str(tmp_path / "r.pdf")])
    assert out.exit_code == 2 and "is not an executable" in out.output, out.output
    assert not (tmp_path / "r.pdf").exists()
    out = runner.invoke(app, ["audit", "-o", "pdf"])
    assert out.exit_code == 2 and "--output-file" in out.output, out.output
    bad = tmp_path / "prev.json"
    bad.write_text("[1, 2]")
    out = runner.invoke(app, ["audit", "--previous", str(bad)])
    assert out.exit_code == 2 and "must be a JSON object" in out.output, out.output


def test_records_csv_has_one_row_per_record_with_the_section_9_fields() -> None:
    import csv
    import io

    complete, bare = policy(**COMPLETE), policy()
    report = AuditReport(generated_at="2026-12-01T10:05:00Z")
    report.records = [record(complete), dataclasses.replace(record(bare), name='legacy, "old"')]
    records.finalise(report, [])
    text = formats.render(report, "records-csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(rows[0]) == list(formats.RECORDS_CSV_HEADER)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"bot", 'legacy, "old"'}  # quoted as RFC 4180 says
    bot = by_name["bot"]
    assert (bot["controllerName"], bot["controllerContact"]) == ("Example GmbH", "privacy@example.com")
    assert bot["dataSubjects"] == "customers; support agents"
    assert (bot["thirdCountries"], bot["transferSafeguard"]) == ("United States", "dpf")
    assert bot["egressRules"] == "" and bot["incomplete"] == "" and bot["retentionDays"] == "14"
    assert by_name['legacy, "old"']["incomplete"].startswith("the controller's name (spec.controller.name)")
    assert text.endswith("\r\n")
