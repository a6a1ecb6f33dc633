"""`aidp audit -o json|markdown|csv|html`: the report (contract section 5 (docs/policy-contract.md)) as text.

Every renderer returns the whole document as a string that ends with a newline; write it
as is. The HTML report is one self-contained file (inline CSS and SVG, no scripts, no
external references) that can be opened offline.
"""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import jinja2
import msgspec

from .report import (
    FIXES,
    NO_PREVIOUS,
    SEVERITIES,
    AuditReport,
    Changes,
    Finding,
    Items,
    NamespaceTally,
    ProcessingRecord,
)

FORMATS = ("json", "markdown", "csv", "html", "records-csv")

CSV_HEADER = ("type", "severity", "namespace", "kind", "name", "policy", "rule", "message")
# -o records-csv: one row per record of processing (contract sections 5 and 9, flattened)
RECORDS_CSV_HEADER = (
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
    "controllerName",
    "controllerContact",
    "dataSubjects",
    "recipientLegalEntity",
    "recipientProcessorTerms",
    "thirdCountries",
    "transferSafeguard",
    "providerRetention",
    "providerRetentionDays",
    "zeroDataRetention",
    "tls",
    "egressRules",
    "admission",
    "bundleRevision",
    "egressRulesVerifiedAt",
    "incomplete",
)

# the HTML chart shows at most this many namespaces (those with the most workloads)
CHART_MAX_NAMESPACES = 40

_TEMPLATES = Path(__file__).parent / "templates"
_EMPTY = "\u2014"  # em dash for an absent value in Markdown and HTML


def render(report: AuditReport, fmt: str) -> str:
    """The report in format `fmt` (one of FORMATS)."""
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown audit report format {fmt!r}; expected one of: {', '.join(FORMATS)}")
    return renderer(report)


# --- json ------------------------------------------------------------------------------------------


def render_json(report: AuditReport) -> str:
    """`AuditReport.to_dict()`, indented by 2, keys in the contract's order, UTF-8 (no \\u escapes):
    what `write_json` writes, as one string."""
    out = io.BytesIO()
    write_json(report, out)
    return out.getvalue().decode()


# what write_json gathers before it writes to its stream
_CHUNK = 1 << 20
_INDENT = b"  "


class _Sink:
    """Bytes for a stream, written in chunks of about _CHUNK bytes."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.out.write(b"".join(self.parts))
            self.parts, self.size = [], 0


def _formatted(value: Any, depth: int) -> bytes:
    """`value` as msgspec formats it with indent 2, its lines after the first indented for `depth`
    (JSON strings hold no raw line break: every newline of the text is the formatter's)."""
    text = msgspec.json.format(msgspec.json.encode(value), indent=2)
    return text.replace(b"\n", b"\n" + _INDENT * depth) if depth else text


def _streamed(value: Any) -> bool:
    return isinstance(value, Items) or (isinstance(value, dict) and any(_streamed(v) for v in value.values()))


# stand-ins for the `vary` values of an item's shared text (see _Shared); NUL is escaped in JSON
_SLOT = "\x00aidp-slot-{}\x00"
_SHARED_TEXTS = 4096


class _Shared:
    """The formatted text of Items' objects that share their `shared` values (the same objects),
    made once per such group: the text with a stand-in for each `vary` value, cut there; then each
    object's text is the parts with its own values encoded between them. An object whose stand-in
    text is not found exactly once, or whose varying values are not strings, is formatted whole."""

    def __init__(self, items: Items, depth: int) -> None:
        self.items, self.depth = items, depth
        self.shared = operator.attrgetter(*items.shared) if items.shared else None
        self.vary = operator.attrgetter(*items.vary)
        self.slots = [msgspec.json.encode(_SLOT.format(i)) for i in range(len(items.vary))]
        self.texts: dict[tuple[int, ...], list[bytes] | None] = {}

    def text(self, obj: Any) -> bytes:
        values = self.vary(obj)
        if type(values) is not tuple:
            values = (values,)
        if self.shared is None or any(type(v) is not str for v in values):
            return _formatted(self.items.plain(obj), self.depth)
        shared = self.shared(obj)
        key = tuple(map(id, shared)) if type(shared) is tuple else (id(shared),)
        if key in self.texts:
            parts = self.texts[key]
        else:
            if len(self.texts) >= _SHARED_TEXTS:
                self.texts.clear()
            parts = self.texts[key] = self._parts(obj)
        if parts is None:
            return _formatted(self.items.plain(obj), self.depth)
        out = [parts[0]]
        for value, part in zip(values, parts[1:], strict=True):
            out += (msgspec.json.encode(value), part)
        return b"".join(out)

    def _parts(self, obj: Any) -> list[bytes] | None:
        plain = self.items.plain(obj)
        for i, name in enumerate(self.items.vary):
            plain[name] = _SLOT.format(i)
        text = _formatted(plain, self.depth)
        if any(text.count(slot) != 1 for slot in self.slots):
            return None
        parts = []
        for slot in self.slots:
            before, _, text = text.partition(slot)
            parts.append(before)
        return [*parts, text]


def _write_value(sink: _Sink, value: Any, depth: int) -> None:
    """`value` at `depth` as the one-piece formatting would give it; an `Items` item by item, and a
    dict holding one key by key."""
    if isinstance(value, Items):
        shared = _Shared(value, depth + 1) if value.vary else None
        separator = b"[\n" + _INDENT * (depth + 1)
        for obj in value.objects():
            text = shared.text(obj) if shared is not None else _formatted(value.plain(obj), depth + 1)
            sink.add(separator + text)
            separator = b",\n" + _INDENT * (depth + 1)
        sink.add(b"[]" if separator[0] == ord("[") else b"\n" + _INDENT * depth + b"]")
    elif isinstance(value, dict) and value and _streamed(value):
        for i, (key, item) in enumerate(value.items()):
            sink.add(b"{\n" if i == 0 else b",\n")
            sink.add(_INDENT * (depth + 1) + msgspec.json.encode(str(key)) + b": ")
            _write_value(sink, item, depth + 1)
        sink.add(b"\n" + _INDENT * depth + b"}")
    else:
        sink.add(_formatted(value, depth))


def write_json(report: AuditReport, out: BinaryIO) -> None:
    """The JSON report (as `render_json`) written to `out` as UTF-8 while it is made: the findings,
    records and inventory one item at a time (`AuditReport.document`), so that memory holds about
    one chunk of the text, not the whole document in dicts, in bytes and in a string.

    msgspec encodes and indents in C: the json module's indenting encoder is pure Python and took
    a tenth of a large audit's time."""
    sink = _Sink(out)
    _write_value(sink, report.document(), 0)
    sink.add(b"\n")
    sink.flush()


def write(report: AuditReport, fmt: str, out: BinaryIO) -> None:
    """The report in format `fmt` (one of FORMATS) written to `out` as UTF-8; json as it is made."""
    if fmt == "json":
        write_json(report, out)
    else:
        out.write(render(report, fmt).encode())


# --- csv -------------------------------------------------------------------------------------------


def render_csv(report: AuditReport) -> str:
    """One row per finding (most severe first) under the header `CSV_HEADER`.

    Quoting follows RFC 4180 (CRLF line ends, fields with commas, quotes or line breaks
    quoted, quotes doubled); an absent policy or rule is an empty field. The records of
    processing are not in the CSV: they are in the json, markdown and html formats.
    """
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, dialect="excel", lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    for f in report.sorted_findings():
        writer.writerow(
            (f.type, f.severity, f.namespace, f.kind, f.name, f.policy or "", f.rule or "", f.message)
        )
    return buf.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def render_records_csv(report: AuditReport) -> str:
    """One row per record of processing under `RECORDS_CSV_HEADER` (RFC 4180 as `render_csv`): the
    record for a spreadsheet. Lists are joined with "; "; `incomplete` names the missing Art. 30(1)
    items (the record-incomplete finding's message), empty when the record is complete."""
    incomplete = {
        (f.namespace, f.kind, f.name, f.policy): f.message.split(": ", 1)[-1]
        for f in report.findings
        if f.type == "record-incomplete"
    }
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, dialect="excel", lineterminator="\r\n")
    writer.writerow(RECORDS_CSV_HEADER)
    for r in _sorted_records(report.records):
        sm, ev = r.securityMeasures, r.evidence
        row = (
            r.namespace,
            r.kind,
            r.name,
            r.policy,
            r.purpose,
            r.endpoints,
            r.consentBasis,
            r.retentionDays,
            r.dataCategories,
            r.dataResidency,
            r.approvedBy,
            r.expires,
            r.controller.name,
            r.controller.contact,
            r.dataSubjects,
            r.recipient.legalEntity,
            r.recipient.processorTerms,
            r.transfers.thirdCountries,
            r.transfers.safeguard,
            r.providerRetention.retention,
            r.providerRetention.days,
            r.providerRetention.zeroDataRetention,
            sm.tls,
            sm.egressRules,
            sm.admission,
            ev.bundleRevision,
            ev.egressRulesVerifiedAt,
            incomplete.get((r.namespace, r.kind, r.name, r.policy)),
        )
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


# --- markdown --------------------------------------------------------------------------------------


def md_cell(value: object) -> str:
    """`value` as the text of one GitHub-flavoured Markdown table cell.

    Backslashes, pipes and angle brackets are backslash-escaped (so a message can neither end
    the cell nor open raw HTML) and line breaks become `<br>`.
    """
    if value is None or value == "":
        return _EMPTY
    text = str(value)
    for char in ("\\", "|", "<", ">"):
        text = text.replace(char, "\\" + char)
    return "<br>".join(text.splitlines())


def _md_table(
    header: Iterable[str], rows: Iterable[Iterable[object]], right: Iterable[int] = ()
) -> list[str]:
    header = list(header)
    aligned = set(right)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in aligned else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _joined(values: list[str]) -> str:
    return ", ".join(values)


def _md_changes(changes: Changes) -> list[str]:
    out = [f"## What changed{' since ' + md_cell(changes.since) if changes.since else ''}", ""]
    if not changes.since:
        return [
            *out,
            "No previous report to compare with: the next report says what changed since this one.",
            "",
        ]
    out += [f"- Note: {md_cell(n)}" for n in changes.notes]
    if changes.notes:
        out.append("")
    if changes.empty:
        return [*out, "Nothing changed: the same workloads, findings and policy generations.", ""]
    out += _md_table(
        (
            "Workloads added",
            "Workloads removed",
            "New findings",
            "Resolved findings",
            "Policies added",
            "Policies removed",
            "Policies changed",
        ),
        [changes.counts().values()],
        right=range(7),
    )
    out.append("")
    items = [
        *(f"- workload added: {md_cell(w)}" for w in changes.workloads_added),
        *(f"- workload removed: {md_cell(w)}" for w in changes.workloads_removed),
        *(
            f"- finding new: {md_cell(f.severity)} {md_cell(f.type)} {md_cell(f.namespace)}/"
            f"{md_cell(f.kind)}/{md_cell(f.name)}: {md_cell(f.message)}"
            for f in changes.findings_new
        ),
        *(
            f"- finding resolved: {md_cell(f.severity)} {md_cell(f.type)} {md_cell(f.namespace)}/"
            f"{md_cell(f.kind)}/{md_cell(f.name)}: {md_cell(f.message)}"
            for f in changes.findings_resolved
        ),
        *(f"- policy added: {md_cell(p)}" for p in changes.policies_added),
        *(f"- policy removed: {md_cell(p)}" for p in changes.policies_removed),
        *(
            f"- policy changed: {md_cell(c.policy)} (generation {c.previous_generation} -> {c.generation})"
            for c in changes.policies_changed
        ),
    ]
    return [*out, *items, ""]


def _md_record(r: ProcessingRecord) -> list[str]:
    t = r.transfers
    if t.thirdCountries:
        transfers = f"{_joined(t.thirdCountries)}; safeguard: {t.safeguard or _EMPTY}"
    else:
        transfers = "none implied by the endpoints"
    if t.undetermined:
        transfers += f" (country not determined: {_joined(t.undetermined)})"
    sm = r.securityMeasures
    rules = "not read" if sm.egressRules is None else (_joined(sm.egressRules) or "none select the pods")
    ev = r.evidence
    controller = r.controller.name or ""
    if r.controller.contact:
        controller += f" ({r.controller.contact})"
    recipient = r.recipient.legalEntity or ""
    if r.recipient.processorTerms:
        recipient += f"; processor terms: {r.recipient.processorTerms}"
    items = (
        ("Controller", controller),
        ("Purpose", r.purpose),
        ("Lawful basis", r.consentBasis),
        ("Data subjects", _joined(r.dataSubjects)),
        ("Data categories", _joined(r.dataCategories)),
        ("Recipient", recipient),
        ("Transfers to third countries", transfers),
        ("Retention (ours, days)", r.retentionDays),
        ("Retention (provider)", r.providerRetention.retention),
        ("Security measures", f"{'; '.join(sm.tls)}; egress rules in force: {rules}; {sm.admission or ''}"),
        (
            "Evidence",
            f"bundle revision {ev.bundleRevision or _EMPTY}; egress rules verified "
            f"{ev.egressRulesVerifiedAt or _EMPTY}",
        ),
    )
    return [
        f"### {md_cell(r.namespace)}/{md_cell(r.name)} ({md_cell(r.kind)}), policy {md_cell(r.policy)}",
        "",
        *_md_table(("Item", "Value"), items),
        "",
    ]


def _md_guardrails(report: AuditReport) -> list[str]:
    """The ClusterAIDataPolicies and the namespaces they govern (none: no section)."""
    if not report.guardrails:
        return []
    rows = [
        (
            g.name,
            _joined(g.namespaces),
            _joined(g.policies),
            _joined(g.out_of_bounds),
            g.unapproved_ai,
            g.problem,
        )
        for g in report.guardrails
    ]
    header = (
        "ClusterAIDataPolicy",
        "Namespaces",
        "Policies in scope",
        "Out of bounds",
        "Unapproved AI",
        "Problem",
    )
    return ["## Guardrails", "", *_md_table(header, rows), ""]


def render_markdown(report: AuditReport) -> str:
    findings = report.sorted_findings()
    out = [
        "# AI data-processing audit",
        "",
        f"- Generated at: {md_cell(report.generated_at)}",
        f"- Scope: {md_cell(report.scope)}",
        "",
        *_md_changes(report.changes or Changes(notes=[NO_PREVIOUS])),
        "## Summary",
        "",
        *_md_table(
            ("Workloads", "Approved", "Violating", "Findings"),
            [(report.workloads, report.approved, report.violating, len(findings))],
            right=range(4),
        ),
        "",
        *_md_table(("Finding type", "Count"), report.counts().items(), right=(1,)),
        "",
        *_md_table(("Severity", "Count"), report.by_severity().items(), right=(1,)),
        "",
    ]
    summaries = report.namespace_summaries()
    if summaries:
        out += ["### Per namespace", ""]
        out += _md_table(
            (
                "Namespace (summary)",
                "Workloads",
                "Approved",
                "Violating",
                *(s.capitalize() for s in SEVERITIES),
            ),
            [
                (ns, s["workloads"], s["approved"], s["violating"], *(s["severities"][v] for v in SEVERITIES))
                for ns, s in summaries.items()
            ],
            right=range(1, 4 + len(SEVERITIES)),
        )
        out.append("")
    if report.skipped:
        out += ["**Not analysed** (the audit could not read what these need; missing, not clean):", ""]
        out += [f"- **{md_cell(s.analysis)}**: {md_cell(s.reason)}" for s in report.skipped]
        out.append("")
    if report.left_out:
        out += [
            "**Left out by design** (they can get at the AI credentials, but every cluster has them):",
            "",
        ]
        out += [
            f"- **{md_cell(g['analysis'])}**: {md_cell(g['reason'])}: {md_cell(_joined(g['subjects']))}"
            for g in report.left_out_groups()
        ]
        out.append("")
    out += _md_guardrails(report)
    out += ["## Findings", ""]
    if not findings:
        out += ["No findings.", ""]
    for severity, group in _by_severity(findings):
        out += [f"### {severity.capitalize()} ({len(group)})", ""]
        out += _md_table(
            ("Type", "Namespace", "Kind", "Name", "Policy", "Rule", "Message"),
            [(f.type, f.namespace, f.kind, f.name, f.policy, f.rule, f.message) for f in group],
        )
        out += ["", "How to fix:", ""]
        out += [f"- **{t}**: {FIXES.get(t, '')}" for t in _types(group)]
        out.append("")
    out += ["## Records of processing", ""]
    records = _sorted_records(report.records)
    if records:
        out += _md_table(
            (
                "Namespace",
                "Kind",
                "Name",
                "Policy",
                "Purpose",
                "Endpoints",
                "Consent basis",
                "Retention (days)",
                "Data categories",
                "Data residency",
                "Approved by",
                "Review expires",
            ),
            [
                (
                    r.namespace,
                    r.kind,
                    r.name,
                    r.policy,
                    r.purpose,
                    _joined(r.endpoints),
                    r.consentBasis,
                    r.retentionDays,
                    _joined(r.dataCategories),
                    r.dataResidency,
                    r.approvedBy,
                    r.expires,
                )
                for r in records
            ],
        )
        out.append("")
        for r in records:
            out += _md_record(r)
    else:
        out.append("No approved workloads, so no records of processing.")
        out.append("")
    return "\n".join(out)


# --- html ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    kind: str  # approved | violating | other
    x: float
    width: float
    count: int


@dataclass(frozen=True)
class Bar:
    namespace: str
    label: str  # the namespace, shortened to fit the label column
    y: float
    workloads: int
    approved: int
    violating: int
    other: int
    segments: tuple[Segment, ...]
    end_x: float  # where the bar ends (the total is written after it)


@dataclass(frozen=True)
class Tick:
    x: float
    value: int


@dataclass(frozen=True)
class Chart:
    """Geometry of the stacked horizontal bar chart (SVG user units)."""

    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    bar_height: int
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    hidden: int  # namespaces not shown
    hidden_workloads: int
    total_namespaces: int


_CHART_WIDTH = 1000
_LABEL_WIDTH = 230
_PLOT_RIGHT = 950  # room for the totals after the longest bar
_ROW = 24
_BAR = 16
_TOP = 44  # legend above the bars
_AXIS = 44  # tick labels and axis title below
_LABEL_CHARS = 32


def _nice_step(maximum: int, target: int = 8) -> int:
    raw = max(maximum, 1) / target
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw:
            return max(1, int(m * magnitude))
    return max(1, int(10 * magnitude))  # pragma: no cover - the loop always returns


def _shorten(text: str, limit: int = _LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def build_chart(namespaces: dict[str, NamespaceTally], limit: int = CHART_MAX_NAMESPACES) -> Chart:
    """Stacked bars (approved, violating, other) for the `limit` namespaces with most workloads."""
    ranked = sorted(namespaces.items(), key=lambda item: (-item[1].workloads, item[0]))
    shown, rest = ranked[:limit], ranked[limit:]
    rows = []
    for ns, t in shown:
        approved, violating = max(t.approved, 0), max(t.violating, 0)
        rows.append((ns, t.workloads, approved, violating, max(t.workloads - approved - violating, 0)))
    longest = max((a + v + o for _, _, a, v, o in rows), default=0)
    step = _nice_step(longest)
    axis_max = max(step, math.ceil(longest / step) * step)
    scale = (_PLOT_RIGHT - _LABEL_WIDTH) / axis_max
    bars = []
    for i, (ns, workloads, approved, violating, other) in enumerate(rows):
        x = float(_LABEL_WIDTH)
        segments = []
        for kind, count in (("approved", approved), ("violating", violating), ("other", other)):
            if count > 0:
                width = round(count * scale, 2)
                segments.append(Segment(kind, round(x, 2), width, count))
                x += width
        bars.append(
            Bar(
                namespace=ns,
                label=_shorten(ns),
                y=_TOP + i * _ROW + (_ROW - _BAR) / 2,
                workloads=workloads,
                approved=approved,
                violating=violating,
                other=other,
                segments=tuple(segments),
                end_x=round(x, 2),
            )
        )
    plot_bottom = _TOP + max(len(rows), 1) * _ROW
    ticks = tuple(Tick(round(_LABEL_WIDTH + v * scale, 2), v) for v in range(0, axis_max + 1, step))
    return Chart(
        width=_CHART_WIDTH,
        height=plot_bottom + _AXIS,
        plot_left=_LABEL_WIDTH,
        plot_right=_PLOT_RIGHT,
        plot_top=_TOP,
        plot_bottom=plot_bottom,
        bar_height=_BAR,
        bars=tuple(bars),
        ticks=ticks,
        hidden=len(rest),
        hidden_workloads=sum(t.workloads for _, t in rest),
        total_namespaces=len(ranked),
    )


@dataclass(frozen=True)
class TypeGroup:
    type: str
    fix: str
    findings: tuple[Finding, ...]
    has_policy: bool


@dataclass(frozen=True)
class SeverityGroup:
    severity: str
    findings: tuple[Finding, ...]
    types: tuple[TypeGroup, ...]


def _by_severity(findings: list[Finding]) -> list[tuple[str, list[Finding]]]:
    """(severity, findings) for each severity that has findings, most severe first."""
    groups = [(s, [f for f in findings if f.severity == s]) for s in SEVERITIES]
    known = [(s, g) for s, g in groups if g]
    unknown = [f for f in findings if f.severity not in SEVERITIES]
    return known + ([("unknown", unknown)] if unknown else [])


def _types(findings: list[Finding]) -> list[str]:
    return list(dict.fromkeys(f.type for f in findings))


def _severity_groups(report: AuditReport) -> list[SeverityGroup]:
    out = []
    for severity, group in _by_severity(report.sorted_findings()):
        types = []
        for t in _types(group):
            of_type = tuple(f for f in group if f.type == t)
            types.append(TypeGroup(t, FIXES.get(t, ""), of_type, any(f.policy or f.rule for f in of_type)))
        out.append(SeverityGroup(severity, tuple(group), tuple(types)))
    return out


def _sorted_records(records: list[ProcessingRecord]) -> list[ProcessingRecord]:
    return sorted(records, key=lambda r: (r.namespace, r.kind, r.name, r.policy))


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _changes(report: AuditReport) -> Changes:
    return report.changes or Changes(notes=[NO_PREVIOUS])


def render_html(report: AuditReport) -> str:
    findings = report.sorted_findings()
    namespaces = sorted(report.namespaces.items())
    changes = _changes(report)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            findings=findings,
            severities=report.by_severity(),
            counts=report.counts(),
            groups=_severity_groups(report),
            records=_sorted_records(report.records),
            chart=build_chart(report.namespaces),
            namespaces=namespaces,
            left_out=report.left_out_groups(),
            empty=_EMPTY,
            changes=changes,
            change_counts=changes.counts(),
            namespace_rows=list(report.namespace_summaries().items()),
            severity_names=SEVERITIES,
            incomplete={
                (f.namespace, f.kind, f.name, f.policy) for f in findings if f.type == "record-incomplete"
            },
        )
    )


_RENDERERS: dict[str, Callable[[AuditReport], str]] = {
    "json": render_json,
    "markdown": render_markdown,
    "csv": render_csv,
    "html": render_html,
    "records-csv": render_records_csv,
}
