"""`aidp audit -o json|markdown|csv|html` (aidp.audit.formats): same findings in every format."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from html.parser import HTMLParser

import msgspec
import pytest

from aidp.audit import formats
from aidp.audit.formats import CHART_MAX_NAMESPACES, CSV_HEADER, FORMATS, build_chart, md_cell, render
from aidp.audit.report import (
    FINDING_TYPES,
    FIXES,
    SEVERITIES,
    AuditReport,
    Changes,
    Finding,
    GuardrailSummary,
    NamespaceTally,
    ProcessingRecord,
    Skipped,
)

PAYLOAD = "<script>alert(1)</script> & friends"

Key = tuple[str, str, str, str, str]  # type, namespace, name, policy, rule


def sample_report() -> AuditReport:
    """One finding of each type, every severity but info, 2 records, 3 namespaces."""
    findings = [
        Finding(
            "review-expiring",
            "low",
            "payments",
            "AIDataPolicy",
            "fraud-openai",
            "review expires in 12 days",
            "fraud-openai",
            "review",
        ),
        Finding(
            "policy-violation",
            "critical",
            "payments",
            "Deployment",
            "fraud-scorer",
            "retention 90 days > 30 | consent basis missing\nsecond line",
            "fraud-openai",
            "max-retention",
        ),
        Finding(
            "shadow-ai",
            "high",
            "marketing",
            "Deployment",
            "copywriter",
            "env OPENAI_API_KEY, but no AIDataPolicy selects it",
        ),
        Finding(
            "review-expired",
            "critical",
            "support",
            "AIDataPolicy",
            "chat-summaries",
            PAYLOAD,
            "chat-summaries",
            "review",
        ),
        Finding(
            "egress-bypass",
            "medium",
            "marketing",
            "Pod",
            "scratch",
            'NetworkPolicy "allow-all" lets it reach the provider',
        ),
        Finding(
            "credential-exposure",
            "high",
            "payments",
            "Secret",
            "openai-key",
            "ServiceAccount payments/ci can read it",
            "fraud-openai",
        ),
        Finding(
            "egress-would-block",
            "low",
            "marketing",
            "Deployment",
            "copywriter",
            "observed namespace: once a policy here enforces, the egress rules would cut it",
        ),
        Finding(
            "out-of-bounds",
            "medium",
            "payments",
            "AIDataPolicy",
            "fraud-openai",
            "looser than ClusterAIDataPolicy/org: spec.retention.maxDays: 90, more than its ceiling of 30",
            "fraud-openai",
        ),
        Finding(
            "record-incomplete",
            "low",
            "support",
            "Deployment",
            "summarizer",
            "the record of processing under policy chat-summaries lacks GDPR Art. 30(1) items: the "
            "controller's name (spec.controller.name)",
            "chat-summaries",
        ),
    ]
    # finding types added since (one each, medium), so that every type has one
    findings += [
        Finding(t, "medium", "support", "AIDataPolicy", "chat-summaries", f"a {t} finding", "chat-summaries")
        for t in FINDING_TYPES
        if t not in {f.type for f in findings}
    ]
    records = [
        ProcessingRecord(
            "support",
            "Deployment",
            "summarizer",
            "chat-summaries",
            "Summarise tickets",
            ["api.anthropic.com", "api.openai.com"],
            "contract",
            0,
            ["support-tickets"],
            "EU",
            None,
            "2025-01-31",
        ),
        ProcessingRecord(
            "payments",
            "Deployment",
            "fraud-scorer",
            "fraud-openai",
            "Fraud scoring",
            ["api.openai.com"],
            "legitimate-interest",
            30,
            ["transaction-metadata", "pseudonymised-ids"],
            "EU",
            "dpo@example.com",
            "2025-03-01",
        ),
    ]
    namespaces = {
        "payments": NamespaceTally(workloads=12, approved=5, violating=3),
        "marketing": NamespaceTally(workloads=7, approved=0, violating=2),
        "support": NamespaceTally(workloads=4, approved=2, violating=1),
    }
    return AuditReport(
        generated_at="2025-02-17T09:30:00Z",
        workloads=23,
        approved=7,
        violating=6,
        findings=findings,
        records=records,
        namespaces=namespaces,
    )


def severities_in_order(report: AuditReport) -> list[str]:
    return sorted((f.severity for f in report.findings), key=SEVERITIES.index)


def keys(report: AuditReport) -> set[Key]:
    return {(f.type, f.namespace, f.name, f.policy or "", f.rule or "") for f in report.findings}


# --- json ------------------------------------------------------------------------------------------


def test_json_round_trips_to_the_contract_document() -> None:
    report = sample_report()
    text = render(report, "json")
    doc = json.loads(text)
    assert doc == report.to_dict()
    assert text == json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    assert list(doc)[:3] == ["apiVersion", "kind", "generatedAt"]
    assert (doc["apiVersion"], doc["kind"], doc["generatedAt"]) == (
        "aidp.io/v1alpha1",
        "AuditReport",
        "2025-02-17T09:30:00Z",
    )
    assert {"apiVersion", "kind", "generatedAt", "summary", "findings", "processingRecords"} <= set(doc)
    assert {"workloads", "approved", "violations", "findings"} <= set(doc["summary"])
    assert (doc["summary"]["workloads"], doc["summary"]["approved"], doc["summary"]["violations"]) == (
        23,
        7,
        6,
    )
    assert doc["summary"]["findings"] == dict.fromkeys(FINDING_TYPES, 1)
    for f in doc["findings"]:
        assert {"type", "severity", "namespace", "kind", "name", "message"} <= set(f)
        assert set(f) <= {"type", "severity", "namespace", "kind", "name", "policy", "rule", "message"}
    assert {
        (f["type"], f["namespace"], f["name"], f.get("policy", ""), f.get("rule", ""))
        for f in doc["findings"]
    } == keys(report)
    assert [SEVERITIES.index(f["severity"]) for f in doc["findings"]] == sorted(
        SEVERITIES.index(f["severity"]) for f in doc["findings"]
    )
    record_keys = {
        "namespace",
        "kind",
        "name",
        "policy",
        "purpose",
        "endpoints",
        "consentBasis",
        "retentionDays",
        "dataCategories",
        "dataResidency",
        "approvedBy",
        "expires",
        # contract section 9
        "controller",
        "dataSubjects",
        "recipient",
        "transfers",
        "providerRetention",
        "securityMeasures",
        "evidence",
    }
    assert [set(r) for r in doc["processingRecords"]] == [record_keys, record_keys]


def test_json_is_stable_whatever_the_input_order() -> None:
    a, b = sample_report(), sample_report()
    b.findings.reverse()
    b.records.reverse()
    b.namespaces = dict(reversed(list(b.namespaces.items())))
    for fmt in FORMATS:
        assert render(a, fmt) == render(b, fmt), fmt


class CountingSink(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        return super().write(data)


@pytest.mark.parametrize("chunk", [1, 100, 1 << 20])
def test_streamed_json_is_the_one_piece_document_byte_for_byte(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_json writes the findings, records and inventory item by item, in chunks: the bytes are
    those of formatting the whole document at once (and of the json module's indenting encoder)."""
    monkeypatch.setattr(formats, "_CHUNK", chunk)
    full = sample_report()
    full.workload_keys = {("payments", "Deployment", "fraud-scorer"), ("support", "Job", 'ünïcode "q"')}
    full.policy_generations = {("payments", "fraud-openai"): 3}
    full.guardrails = [GuardrailSummary("org", ["payments"], ["payments/fraud-openai"], [], "deny", [])]
    full.changes = Changes(since="2025-02-16T09:30:00Z", workloads_added=["payments/Deployment/a"])
    empty = AuditReport(generated_at="2025-02-17T09:30:00Z", scope="namespace team-a")
    for report in (full, empty):
        whole = msgspec.json.format(msgspec.json.encode(report.to_dict()), indent=2) + b"\n"
        assert whole.decode() == json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
        out = CountingSink()
        formats.write_json(report, out)
        assert out.getvalue() == whole
        assert render(report, "json").encode() == whole
        if chunk == 1:
            assert out.writes > 10  # as it is made, not at the end
    doc = json.loads(render(full, "json"))
    assert {r["name"] for r in doc["processingRecords"]} == {"summarizer", "fraud-scorer"}
    assert len(doc["inventory"]["workloads"]) == 2 and doc["guardrails"][0]["name"] == "org"


def test_workloads_sharing_a_template_get_their_own_names_in_the_streamed_json() -> None:
    """Findings and records that share every value but the workload's (formats._Shared formats
    their common text once) still read as each their own; odd values (a stand-in's text inside a
    message, a name that is not a string) are formatted whole, with the same bytes."""
    base = sample_report()
    record = base.records[0]
    message = "the record lacks \x00aidp-slot-1\x00 items"  # a stand-in's text: formatted whole
    shared = [Finding("record-incomplete", "low", "ns-a", "Pod", f"p-{i}", message, "pol") for i in range(3)]
    report = AuditReport(
        generated_at="2025-02-17T09:30:00Z",
        findings=[
            *(Finding("shadow-ai", "high", f"ns-{i % 2}", "Pod", f"p-{i}", "m") for i in range(5)),
            *shared,
            Finding("shadow-ai", "high", "ns-z", "Pod", 7, "m"),  # type: ignore[arg-type]
        ],
        records=[dataclasses.replace(record, namespace=f"ns-{i % 3}", name=f"w-{i}") for i in range(6)],
    )
    whole = msgspec.json.format(msgspec.json.encode(report.to_dict()), indent=2) + b"\n"
    out = io.BytesIO()
    formats.write_json(report, out)
    assert out.getvalue() == whole
    doc = json.loads(whole)
    assert [(r["namespace"], r["name"]) for r in doc["processingRecords"]] == sorted(
        (f"ns-{i % 3}", f"w-{i}") for i in range(6)
    )
    assert {f["name"] for f in doc["findings"] if f["type"] == "shadow-ai"} == {
        *(f"p-{i}" for i in range(5)),
        7,
    }
    assert [f["message"] for f in doc["findings"] if f["type"] == "record-incomplete"] == [message] * 3


def test_write_gives_every_format_as_render_does() -> None:
    report = sample_report()
    for fmt in FORMATS:
        out = io.BytesIO()
        formats.write(report, fmt, out)
        assert out.getvalue() == render(report, fmt).encode(), fmt


def test_unknown_format_is_a_value_error_naming_the_formats() -> None:
    with pytest.raises(ValueError, match=r"unknown audit report format 'yaml'.*json, markdown, csv, html"):
        render(sample_report(), "yaml")


# --- markdown --------------------------------------------------------------------------------------

_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def md_rows(text: str, header_first: str) -> list[list[str]]:
    """The body rows of every Markdown table whose first header cell is `header_first`."""
    rows: list[list[str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in _UNESCAPED_PIPE.split(line)[1:-1]]
        if not cells or cells[0] != header_first or not lines[i + 1].startswith("|-"):
            continue
        for body in lines[i + 2 :]:
            if not body.startswith("|"):
                break
            rows.append([c.strip() for c in _UNESCAPED_PIPE.split(body)[1:-1]])
    return rows


def md_unescape(cell: str) -> str:
    return re.sub(r"\\(.)", r"\1", cell.replace("<br>", "\n"))


def test_markdown_has_every_finding_grouped_by_severity_with_fixes() -> None:
    report = sample_report()
    text = render(report, "markdown")
    rows = md_rows(text, "Type")
    assert all(len(r) == 7 for r in rows), rows
    found = {(r[0], r[1], r[3], r[4].replace("\u2014", ""), r[5].replace("\u2014", "")) for r in rows}
    assert found == keys(report)
    assert {md_unescape(r[6]) for r in rows} == {f.message for f in report.findings}
    assert "- Generated at: 2025-02-17T09:30:00Z" in text
    assert "Scope: cluster" in text
    # severity groups, most severe first; info has no findings so no group
    headings = re.findall(r"^### (\w+) \((\d+)\)$", text, flags=re.MULTILINE)
    by_sev = report.by_severity()
    assert headings == [(s.capitalize(), str(n)) for s, n in by_sev.items() if n]
    assert headings[:2] == [("Critical", "2"), ("High", "2")]
    for t in FINDING_TYPES:
        assert f"- **{t}**: {FIXES[t]}" in text
    summary = md_rows(text, "Workloads")
    assert summary == [["23", "7", "6", str(len(report.findings))]]
    assert md_rows(text, "Finding type") == [[t, "1"] for t in FINDING_TYPES]
    assert md_rows(text, "Severity") == [[s, str(n)] for s, n in by_sev.items()]
    assert by_sev["low"] == 3 and by_sev["info"] == 0
    records = md_rows(text, "Namespace")
    assert [(r[0], r[2], r[3]) for r in records] == [
        ("payments", "fraud-scorer", "fraud-openai"),
        ("support", "summarizer", "chat-summaries"),
    ]
    assert all(len(r) == 12 for r in records)


def test_markdown_cells_escape_pipes_newlines_and_html() -> None:
    assert md_cell("a|b\nc\r\nd") == "a\\|b<br>c<br>d"
    assert md_cell(PAYLOAD) == "\\<script\\>alert(1)\\</script\\> & friends"
    assert md_cell("back\\slash|") == "back\\\\slash\\|"
    assert md_cell(None) == md_cell("") == "\u2014"
    assert md_cell(0) == "0"
    text = render(sample_report(), "markdown")
    assert "<script>" not in text


# --- csv -------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_finding_with_rfc4180_quoting() -> None:
    report = sample_report()
    text = render(report, "csv")
    assert text.startswith(",".join(CSV_HEADER) + "\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert (
        tuple(rows[0])
        == CSV_HEADER
        == (
            "type",
            "severity",
            "namespace",
            "kind",
            "name",
            "policy",
            "rule",
            "message",
        )
    )
    body = [dict(zip(CSV_HEADER, r, strict=True)) for r in rows[1:]]
    assert len(body) == len(report.findings)
    assert {(r["type"], r["namespace"], r["name"], r["policy"], r["rule"]) for r in body} == keys(report)
    expected = {
        (f.type, f.severity, f.namespace, f.kind, f.name, f.policy or "", f.rule or "", f.message)
        for f in report.findings
    }
    assert {tuple(r) for r in rows[1:]} == expected
    # quoting: the message with a comma, the one with quotes and the one with a line break
    assert '"env OPENAI_API_KEY, but no AIDataPolicy selects it"' in text
    assert '"NetworkPolicy ""allow-all"" lets it reach the provider"' in text
    assert '"retention 90 days > 30 | consent basis missing\nsecond line"' in text
    assert [r["severity"] for r in body] == severities_in_order(report)


# --- html ------------------------------------------------------------------------------------------


class ReportParser(HTMLParser):
    """Collects finding rows (`tr.finding`), tag names, attributes and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.findings: list[tuple[dict[str, str], list[str]]] = []
        self.text: list[str] = []
        self._row: tuple[dict[str, str], list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and a.get("class") == "finding":
            self._row = (a, [])
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row[1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.findings.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser


def html_findings(parsed: ReportParser) -> list[tuple[str, str, str, str, str, str, str]]:
    """(type, severity, namespace, name, policy, rule, message) of every finding row."""
    out = []
    for attrs, cells in parsed.findings:
        if len(cells) == 6:
            ns, _kind, name, policy, rule, message = cells
        else:
            ns, _kind, name, message = cells
            policy = rule = ""
        policy, rule = policy.replace("\u2014", ""), rule.replace("\u2014", "")
        out.append((attrs["data-type"], attrs["data-severity"], ns, name, policy, rule, message))
    return out


def test_html_has_every_finding_with_its_fix_and_the_records() -> None:
    report = sample_report()
    text = render(report, "html")
    parsed = parse(text)
    rows = html_findings(parsed)
    assert len(rows) == len(report.findings)
    assert {(t, ns, name, p, r) for t, _s, ns, name, p, r, _m in rows} == keys(report)
    assert {m for *_, m in rows} == {f.message for f in report.findings}
    assert [s for _t, s, *_ in rows] == severities_in_order(report)
    visible = " ".join(" ".join(parsed.text).split())
    for t in FINDING_TYPES:
        assert " ".join(FIXES[t].split()) in visible
    for needle in ("2025-02-17T09:30:00Z", "cluster", "Records of processing", "dpo@example.com"):
        assert needle in visible
    # summary cards
    for card, value in (("workloads", 23), ("approved", 7), ("violating", 6), ("critical", 2), ("info", 0)):
        assert re.search(
            rf'id="card-{card}"><div class="label">\w+</div><div class="value">{value}</div>', text
        )
    # severity groups in order, one heading per finding type present
    assert re.findall(r'id="severity-(\w+)"', text) == ["critical", "high", "medium", "low"]
    # every table has a caption for screen readers
    assert text.count("<table") == text.count("<caption>")


def test_html_is_self_contained_and_escapes_user_strings() -> None:
    report = sample_report()
    report.scope = 'namespace <b>"x"</b>'
    text = render(report, "html")
    parsed = parse(text)
    assert "http://" not in text
    assert "https://" not in text
    assert "script" not in parsed.tags
    assert not {"src", "href", "xlink:href"} & {k for k, _ in parsed.attrs}
    assert not any(k.startswith("on") for k, _ in parsed.attrs)
    assert "url(" not in text
    assert "@import" not in text
    assert "<script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends" in text
    assert "<b>" not in text
    assert "namespace &lt;b&gt;&#34;x&#34;&lt;/b&gt;" in text
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<style>") == 1


def test_html_chart_is_an_accessible_inline_svg() -> None:
    text = render(sample_report(), "html")
    assert text.count("<svg") == 1
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert 'role="img"' in svg
    assert 'aria-labelledby="chart-title chart-desc"' in svg
    assert '<title id="chart-title">' in svg
    assert "payments: 12 workloads, 5 approved, 3 violating, 4 other" in svg
    for legend in ("Approved", "Violating", "Other", "Workloads", "Namespace"):
        assert f">{legend}</text>" in svg
    assert svg.count('<g class="bar">') == 3
    assert svg.count('class="seg-approved"') == 2  # marketing has no approved workload
    assert svg.count('class="seg-violating"') == 3
    assert "more namespace" not in text


def test_chart_caps_the_namespaces_and_says_how_many_more() -> None:
    namespaces = {
        f"ns-{i:03d}": NamespaceTally(workloads=i, approved=i // 2, violating=i // 4) for i in range(200)
    }
    chart = build_chart(namespaces)
    assert len(chart.bars) == CHART_MAX_NAMESPACES == 40
    assert [b.namespace for b in chart.bars] == [f"ns-{i:03d}" for i in range(199, 159, -1)]
    assert chart.hidden == 160
    assert chart.hidden_workloads == sum(range(160))
    assert chart.ticks[0].value == 0
    assert chart.ticks[-1].value >= 199
    assert chart.ticks[-1].x == chart.plot_right
    assert max(b.end_x for b in chart.bars) <= chart.plot_right
    report = AuditReport(generated_at="2025-02-17T09:30:00Z", namespaces=namespaces)
    text = render(report, "html")
    assert text.count('<g class="bar">') == 40
    assert "and 160 more namespaces (12720 workloads) not shown" in text
    assert text.count('<tr class="namespace">') == 200  # the summary per namespace lists them all


def test_chart_handles_inconsistent_and_zero_tallies() -> None:
    chart = build_chart(
        {
            "a-very-long-namespace-name-that-does-not-fit-the-label-column": NamespaceTally(3, 2, 2),
            "empty": NamespaceTally(0, 0, 0),
        }
    )
    long, empty = chart.bars
    assert long.other == 0  # approved + violating > workloads: no negative segment
    assert [s.kind for s in long.segments] == ["approved", "violating"]
    assert long.label.endswith("\u2026") and len(long.label) == 32
    assert empty.segments == () and empty.end_x == chart.plot_left
    none = build_chart({})
    assert none.bars == () and none.hidden == 0


def test_empty_report_renders_in_every_format() -> None:
    report = AuditReport(generated_at="2025-02-17T09:30:00Z", scope="namespace team-a")
    doc = json.loads(render(report, "json"))
    assert doc["findings"] == [] and doc["processingRecords"] == []
    assert doc["summary"]["workloads"] == 0
    assert render(report, "csv") == ",".join(CSV_HEADER) + "\r\n"
    md = render(report, "markdown")
    assert "No findings." in md and "no records of processing" in md
    assert md_rows(md, "Type") == []
    html = render(report, "html")
    assert "No findings" in html
    assert "No workloads in scope" in html
    assert "<svg" in html
    assert "namespace team-a" in html
    assert parse(html).findings == []
    assert "http://" not in html and "https://" not in html


def test_skipped_analyses_are_in_every_format_but_csv() -> None:
    report = sample_report()
    report.skipped.append(
        Skipped("credential-exposure", 'not analysed: clusterroles is forbidden <for "dev">')
    )
    doc = json.loads(render(report, "json"))
    assert doc["skipped"] == [
        {"analysis": "credential-exposure", "reason": 'not analysed: clusterroles is forbidden <for "dev">'}
    ]
    assert json.loads(render(sample_report(), "json"))["skipped"] == []
    md = render(report, "markdown")
    assert "**Not analysed**" in md and "- **credential-exposure**: not analysed" in md
    assert "Not analysed" not in render(sample_report(), "markdown")
    html = render(report, "html")
    assert 'id="skipped"' in html and "&lt;for &#34;dev&#34;&gt;" in html
    assert 'id="skipped"' not in render(sample_report(), "html")


def test_the_subjects_left_out_of_credential_exposure_are_named_in_every_format_but_csv() -> None:
    from aidp.audit.rbac import LeftOut, Subject

    report = sample_report()
    report.left_out |= {
        LeftOut("cluster-admin", Subject("Group", "system:masters")),
        LeftOut("cluster-admin", Subject("User", "<b>bob</b>")),
        LeftOut("kube-system", Subject("ServiceAccount", "replicaset-controller", "kube-system")),
    }
    doc = json.loads(render(report, "json"))
    assert doc["leftOut"] == [
        {
            "analysis": "credential-exposure",
            "reason": "service accounts of kube-system (the built-in controllers)",
            "subjects": ["ServiceAccount kube-system/replicaset-controller"],
        },
        {
            "analysis": "credential-exposure",
            "reason": "cluster admins (system:masters, ClusterRoleBindings to cluster-admin)",
            "subjects": ["Group system:masters", "User <b>bob</b>"],
        },
    ]
    assert json.loads(render(sample_report(), "json"))["leftOut"] == []
    md = render(report, "markdown")
    assert "**Left out by design**" in md and "Group system:masters, User \\<b\\>bob\\</b\\>" in md
    assert "Left out" not in render(sample_report(), "markdown")
    html = render(report, "html")
    assert 'id="left-out"' in html and "User &lt;b&gt;bob&lt;/b&gt;" in html
    assert 'id="left-out"' not in render(sample_report(), "html")
    assert "system:masters" not in render(report, "csv")
